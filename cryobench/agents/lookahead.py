"""Bayesian lookahead: hierarchical-bayes's posterior, and Monte Carlo rollouts that value what
the next exposures will reveal before leaving a patch.

Belief: ``hierarchical-bayes``'s model, unchanged and not recomputed here (the calibrated
prediction plus grid, tile, square and patch random effects and a distance-weighted effect of
revealed neighbours in the patch; ``cryobench.agents.hierarchical``), updated by every CTF the
feedback mode reveals.

Decision: greedy's planner on the posterior (``PatchPlanner``) proposes; it leaves a patch as
soon as the patch's best hole is worth less than the price of a minute. That rule is myopic: an
exposure in an uncertain patch also *reveals* a CTF that moves the patch's and its neighbours'
probabilities. Before leaving, the agent therefore looks ahead: it samples ``scenarios``
futures of staying (each exposure's outcome drawn from the current belief, the belief updated
by it as the feedback mode would reveal it, ``queue:K`` included), follows in each the rule
"take the best hole while it beats the price, then leave" for up to ``horizon`` exposures, and
stays when the expected good exposures gained beyond the price of the minutes spent is
positive. Leaving is worth zero by the price's definition (the best use of a minute elsewhere),
so the comparison is exact within the model. Outcomes use common random numbers from the
agent's seeded generator.

What it is not: a full POMCP tree over all moves. Moves between patches and squares stay the
planner's (their value is mostly travel time, which the planner prices exactly); the search
spends its effort where revealed CTFs change decisions, inside the patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.hierarchical import HierarchicalBayesAgent, HierarchicalBayesConfig, _sigmoid
from cryobench.errors import InputError


@dataclass
class BayesLookaheadConfig(HierarchicalBayesConfig):
    """Hyperparameters: hierarchical-bayes's model and planner (inherited) and the lookahead's."""

    #: sampled futures of staying per lookahead
    scenarios: int = 32
    #: at most this many simulated exposures per future
    horizon: int = 12


def batched_patch_probabilities(
    base: np.ndarray,
    weights: np.ndarray,
    shown: np.ndarray,
    y: np.ndarray,
    patch_variance: float,
    neighbour_variance: float,
) -> np.ndarray:
    """P(good) of a patch's holes in many scenarios at once: the update of
    ``HierarchicalBayesAgent.patch_probabilities`` (patch effect, then neighbour effects, one
    penalised Newton step each), for ``shown`` and ``y`` of shape (scenarios, holes).

    ``base``: the holes' logits before the patch's revealed holes (prior + coarse effects);
    ``weights``: the patch's neighbour weights (target x source).
    """
    shown_f = shown.astype(np.float64)
    p = _sigmoid(base) * shown_f
    residual = np.sum((y - p) * shown_f, axis=1, keepdims=True)
    information = np.sum(p * (1.0 - p) * shown_f, axis=1, keepdims=True)
    logit = base + residual / (information + 1.0 / patch_variance)
    p = _sigmoid(logit)
    neighbour = (((y - p) * shown_f) @ weights.T) / ((p * (1.0 - p) * shown_f) @ weights.T + 1.0 / neighbour_variance)
    return _sigmoid(logit + neighbour)


class BayesLookaheadAgent(HierarchicalBayesAgent):
    """Hierarchical-bayes's posterior + Monte Carlo lookahead over staying in a patch."""

    name = "bayes-lookahead"
    Config = BayesLookaheadConfig
    plays_staged = False

    def reset(self, env, seed: int) -> None:
        c = self.config
        for name in ("scenarios", "horizon"):
            value = getattr(c, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InputError(f"agent {self.name!r}: hyperparameter {name!r} must be an integer >= 1, got {value!r}")
        super().reset(env, seed)
        feedback = self.layout.feedback
        self.reveal_batch = feedback.batch if feedback.mode == "queue" else 1
        self.lookaheads = 0  # how often the planner's "leave" was looked into (for tests and reports)
        self.stays = 0  # how often the lookahead kept the agent in the patch against the planner

    def stay_value(self, obs: dict, current_hole: int, price: float) -> float:
        """Expected good exposures beyond the price of their minutes, of staying in the current patch
        (then leaving when the best hole no longer beats the price), over sampled futures."""
        c, h = self.config, self.hierarchy
        patch = h.patch[current_hole]
        members = self.planner.patch_members(current_hole)
        open_now = obs["action_mask"][members].astype(bool)
        revealed = obs["revealed"][members].astype(bool)
        base = self.prior_logit[members] + self.coarse_shift[patch]
        y_now = (obs["revealed_ctf"][members] < self.layout.threshold).astype(np.float64) * revealed
        m0 = float(h.minutes[0])
        steps = min(c.horizon, int(open_now.sum()), int(float(obs["time_left"][0]) // m0) + 1)
        if steps <= 0:
            return -np.inf
        n = c.scenarios
        shown = np.repeat(revealed[None, :], n, axis=0)
        y = np.repeat(y_now[None, :], n, axis=0)
        available = np.repeat(open_now[None, :], n, axis=0)
        waiting = np.zeros_like(shown)  # exposed in the simulation, not revealed yet (queue:K)
        visited = ~obs["action_mask"].astype(bool)
        pending = int(np.count_nonzero(visited & ~obs["revealed"].astype(bool))) % self.reveal_batch
        draws = self.rng.random((steps, n))
        rows = np.arange(n)
        active = np.ones(n, dtype=bool)
        gain = np.zeros(n)
        weights = self.patch_weights[patch]
        for t in range(steps):
            p = batched_patch_probabilities(
                base, weights, shown, y, self.patch_level_variance, self.config.neighbour_variance
            )
            chance = np.where(available, p, -1.0)
            best = np.argmax(chance, axis=1)
            p_best = chance[rows, best]
            if t > 0:  # the first exposure is the one being decided; later ones follow the rule
                active &= p_best >= price * m0
            if not active.any():
                break
            gain += np.where(active, p_best - price * m0, 0.0)
            outcome = draws[t] < p_best
            available[rows[active], best[active]] = False
            waiting[rows[active], best[active]] = True
            y[rows[active], best[active]] = outcome[active]
            if (pending + t + 1) % self.reveal_batch == 0:
                shown |= waiting
                waiting[:] = False
        return float(gain.mean())

    def act(self, obs: dict, info: dict) -> int:
        current = int(obs["current_hole"])
        # Most steps stay in the patch (hierarchical-bayes's fast path: the planner would stay anyway).
        hole = self.stay_in_patch(obs, current)
        if hole is not None:
            return hole
        self.refit_beliefs(obs)
        mask = obs["action_mask"].astype(bool)
        hole = self.planner.next_hole(self.p_good, mask, current, float(obs["time_left"][0]))
        patch = self.hierarchy.patch[current]
        members = self.planner.patch_members(current)
        if self.hierarchy.patch[hole] == patch or not mask[members].any():
            return hole
        # The planner leaves: would staying, with what the next exposures reveal, pay its minutes?
        self.lookaheads += 1
        price = float(self.planner.last_price)
        if self.stay_value(obs, current, price) <= 0.0:
            return hole
        self.stays += 1
        probability = np.where(mask[members], self.patch_probabilities(obs, current), -1.0)
        return int(members[np.argmax(probability)])
