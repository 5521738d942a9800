"""Bayesian lookahead: a belief that learns how far to trust the regressor from the session's own
revealed CTFs, and Monte Carlo rollouts that value what the next exposures will reveal before
leaving a patch.

Belief (``cryobench.agents.calibrated``): the revealed CTFs as a Gaussian model of the
predictions (bias, a slope between patches and one within them, noise) plus tile, square and
patch effects and a field of revealed neighbours in the patch; calibration and variances are
refitted online by empirical Bayes at every full decision, so a perfect regressor is trusted and
a poor or uninformative one discounted as the session reveals which it is. (Version 1 reused
``hierarchical-bayes``'s fixed calibration and lost to Predict-Rank on the RNAPII twins.)

Decision: Predict-Rank's plan from the first decision while every revealed CTF that can tell
agrees with the calibrated predictions (a near-perfect regressor leaves nothing to learn, and on
perfect predictions that plan beats the per-minute planner); otherwise greedy's planner on the
posterior (``PatchPlanner``, moving only into patches with holes left and weighing moves to
other squares and tiles ``move_caution`` times their minutes) proposes; it leaves a patch as
soon as the patch's best hole is worth less than the price of a minute. That rule is myopic:
an exposure in an uncertain patch also *reveals* a CTF that moves the patch's and its
neighbours' probabilities. Before leaving, the agent therefore
looks ahead: it samples ``scenarios`` futures of staying (each exposure's CTF drawn from the
belief's predictive distribution, the belief updated as the feedback mode would reveal it,
``queue:K`` included), follows in each the rule "take the best hole while it beats the price,
then leave" for up to ``horizon`` exposures, and stays when the expected good exposures gained
beyond the price of the minutes spent is positive. Leaving is worth zero by the price's
definition (the best use of a minute elsewhere). Outcomes use common random numbers from the
agent's seeded generator.

What it is not: a full POMCP tree over all moves. Moves between patches and squares stay the
planner's (their value is mostly travel time, which the planner prices exactly); the search
spends its effort where revealed CTFs change decisions, inside the patch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from cryobench.agents.base import Agent
from cryobench.agents.calibrated import CalibratedBelief, CalibrationPriors
from cryobench.agents.common import Hierarchy, PatchPlanner
from cryobench.agents.predict_rank import nested_plan
from cryobench.errors import InputError


@dataclass
class BayesLookaheadConfig(CalibrationPriors):
    """Hyperparameters: the belief's priors (inherited), the planner's and the lookahead's."""

    #: stay in a patch while its next hole beats the price of a minute at the session's end
    shadow_price: bool = True
    #: the shadow price is multiplied by this (> 1: pickier in a patch)
    price_scale: float = 1.0
    #: while staying in a patch, reuse the price of staying for this many decisions before replanning
    replan_every: int = 8
    #: sampled futures of staying per lookahead
    scenarios: int = 32
    #: at most this many simulated exposures per future
    horizon: int = 12
    #: follow Predict-Rank's plan once at least ``trust_holes`` revealed CTFs that can tell (see
    #: ``CalibratedBelief.fit_calibration``) are within this rms (Å, model scale) of the calibrated
    #: predictions, and while they stay so: a near-perfect regressor leaves nothing to learn, and
    #: Predict-Rank's plan beats the per-minute planner on perfect predictions (0: never follow it)
    trust_rms: float = 0.25
    trust_holes: int = 5
    #: follow Predict-Rank's plan from the first decision, until a revealed CTF that can tell is off
    #: the calibrated prediction by more than ``trust_rms`` (false, version 2: only once trusted, so
    #: its first moves were the planner's even on perfect predictions, a little below Predict-Rank)
    trust_first: bool = True
    #: the planner counts a move to another square or tile as this many times its minutes (> 1: it
    #: leaves a square less readily, where its estimates of squares not yet visited are the least
    #: reliable; 1: version 2)
    move_caution: float = 1.5

    #: Hyperparameters added after results were recorded, with the value those results ran with
    #: (version 2's entries re-run as version 2: ``cryobench.agents.registry.recorded_hyperparameters``).
    ADDED_AFTER_RECORDING: ClassVar[dict[str, Any]] = {"trust_first": False, "move_caution": 1.0}


class BayesLookaheadAgent(Agent):
    """Online-calibrated hierarchical posterior + Monte Carlo lookahead over staying in a patch."""

    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    name = "bayes-lookahead"
    Config = BayesLookaheadConfig
    needs_feedback = True

    def reset(self, env, seed: int) -> None:
        c = self.config
        for name in ("scenarios", "horizon", "trust_holes"):
            value = getattr(c, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InputError(f"agent {self.name!r}: hyperparameter {name!r} must be an integer >= 1, got {value!r}")
        super().reset(env, seed)
        h = self.hierarchy = Hierarchy.from_layout(self.layout)
        planned = h
        if c.move_caution != 1.0:
            minutes = h.minutes.copy()
            minutes[2:] *= c.move_caution  # square and tile moves, as the planner weighs them
            planned = replace(h, minutes=minutes)
        self.planner = PatchPlanner(planned, c.shadow_price, c.price_scale, c.replan_every, skip_exhausted=True)
        self.belief = CalibratedBelief(h, c)
        self.fixed_plan = nested_plan(h, h.predicted_ctf, h.threshold, "count", False)  # Predict-Rank's
        self.plan_position = 0
        self.trusting = bool(c.trust_first)  # following Predict-Rank's plan (the regressor looks near-perfect)
        feedback = self.layout.feedback
        self.reveal_batch = feedback.batch if feedback.mode == "queue" else 1
        self.lookaheads = 0  # how often the planner's "leave" was looked into (for tests and reports)
        self.stays = 0  # how often the lookahead kept the agent in the patch against the planner

    @property
    def p_good(self) -> np.ndarray:
        return self.belief.p_good

    def patch_probabilities(self, obs: dict, current_hole: int) -> np.ndarray:
        """P(good) of the current patch's holes after its revealed holes (the fast in-patch update)."""
        patch = int(self.hierarchy.patch[current_hole])
        members = self.belief.members[patch]
        ctf = self.belief.to_model(obs["revealed_ctf"][members])
        return self.belief.patch_probabilities(patch, obs["revealed"][members], ctf)[0]

    def refit_beliefs(self, obs: dict) -> None:
        """Refit calibration, variances and every group effect to the revealed holes."""
        shown = np.flatnonzero(obs["revealed"])
        self.belief.refit(shown, obs["revealed_ctf"][shown])

    def stay_value(self, obs: dict, current_hole: int, price: float) -> float:
        """Expected good exposures beyond the price of their minutes, of staying in the current patch
        (then leaving when the best hole no longer beats the price), over sampled futures."""
        c, h, belief = self.config, self.hierarchy, self.belief
        patch = int(h.patch[current_hole])
        members = belief.members[patch]
        open_now = obs["action_mask"][members].astype(bool)
        revealed = obs["revealed"][members].astype(bool)
        ctf_now = np.where(revealed, belief.to_model(obs["revealed_ctf"][members]), 0.0)
        m0 = float(h.minutes[0])
        steps = min(c.horizon, int(open_now.sum()), int(float(obs["time_left"][0]) // m0) + 1)
        if steps <= 0:
            return -np.inf
        n = c.scenarios
        shown = np.repeat(revealed[None, :], n, axis=0)
        y = np.repeat(ctf_now[None, :], n, axis=0)
        available = np.repeat(open_now[None, :], n, axis=0)
        waiting = np.zeros_like(shown)  # exposed in the simulation, not revealed yet (queue:K)
        visited = ~obs["action_mask"].astype(bool)
        pending = int(np.count_nonzero(visited & ~obs["revealed"].astype(bool))) % self.reveal_batch
        draws = self.rng.standard_normal((steps, n))
        rows = np.arange(n)
        active = np.ones(n, dtype=bool)
        gain = np.zeros(n)
        for t in range(steps):
            p = belief.patch_probabilities(patch, shown, y)
            chance = np.where(available, p, -1.0)
            best = np.argmax(chance, axis=1)
            p_best = chance[rows, best]
            if t > 0:  # the first exposure is the one being decided; later ones follow the rule
                active &= p_best >= price * m0
            if not active.any():
                break
            gain += np.where(active, p_best - price * m0, 0.0)
            outcome = belief.last_mean[rows, best] + belief.last_sd[rows, best] * draws[t]
            taken = rows[active], best[active]
            available[taken] = False
            waiting[taken] = True
            y[taken] = outcome[active]
            if (pending + t + 1) % self.reveal_batch == 0:
                shown |= waiting
                waiting[:] = False
        return float(gain.mean())

    def trusts_predictions(self) -> bool:
        """True when enough revealed CTFs that can tell are close to the calibrated predictions (with
        ``trust_first``, also while too few have been revealed to tell and none of them is off)."""
        c, belief = self.config, self.belief
        if c.trust_rms <= 0:
            return False
        if belief.revealed < c.trust_holes:
            early = c.trust_first and self.trusting
            return early and (belief.revealed == 0 or belief.residual_rms <= c.trust_rms)
        return belief.residual_rms <= c.trust_rms

    def plan_hole(self, available: np.ndarray) -> int:
        """Predict-Rank's next hole (its plan skips visited holes; the pointer only moves forward)."""
        while not available[self.fixed_plan[self.plan_position]]:
            self.plan_position += 1
        return int(self.fixed_plan[self.plan_position])

    def act(self, obs: dict, info: dict) -> int:
        current = int(obs["current_hole"])
        members = self.planner.patch_members(current)
        if self.trusting:
            self.refit_beliefs(obs)
            if self.trusts_predictions():
                return self.plan_hole(obs["action_mask"])
            self.trusting = False  # the regressor errs: learn from what it reveals from now on
        else:
            if self.planner.has_price(current):  # most steps: stay in the patch while it beats the price
                members_open = obs["action_mask"][members]
                hole = self.planner.try_stay(current, self.patch_probabilities(obs, current), members_open)
                if hole is not None:
                    return hole
            self.refit_beliefs(obs)
            if self.trusts_predictions():
                self.trusting = True
                return self.plan_hole(obs["action_mask"])
        mask = obs["action_mask"].astype(bool)
        hole = self.planner.next_hole(self.p_good, mask, current, float(obs["time_left"][0]))
        if self.hierarchy.patch[hole] == self.hierarchy.patch[current] or not mask[members].any():
            return hole
        # The planner leaves: would staying, with what the next exposures reveal, pay its minutes?
        self.lookaheads += 1
        if self.stay_value(obs, current, float(self.planner.last_price)) <= 0.0:
            return hole
        self.stays += 1
        probability = np.where(mask[members], self.patch_probabilities(obs, current), -1.0)
        return int(members[np.argmax(probability)])
