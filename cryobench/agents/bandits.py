"""Bandits: patches (or squares) as arms, a prior from the predictions, learning from revealed CTFs.

Each arm's chance that its next hole is good has a Beta belief:

    a = strength * m + good revealed,   b = strength * (1 - m) + bad revealed

with ``m`` the mean calibrated prediction (see ``cryobench.agents.common``) of the arm's
remaining candidate holes (those predicted good with probability >= ``candidate_probability``;
all its holes once it has none), so the prior falls as the arm's best holes are taken, and
``strength`` the prior's weight in pseudo-holes. The three agents differ only in the index
they give an arm: UCB (mean + an exploration bonus), Thompson (a draw from the Beta) and
epsilon-greedy (the mean, or a random arm with probability epsilon).

Moves cost time, so the index is turned into expected good per minute of moving into the arm
and collecting its ``L`` candidates: ``index * L / (entry + (L - 1) * in-patch minutes)``; the
current arm has entry = one in-patch move. The agent stays in an arm while its believed rate
(Beta mean per minute) is the best of all arms; only when it leaves does the exploring index
choose where to go (an index redrawn or inflated at every step would pull the stage away
for a costly move all the time). In the chosen arm the agent exposes the candidate with the
best prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent
from cryobench.agents.common import Hierarchy, predicted_good_probability
from cryobench.errors import InputError
from cryobench.rules import move_level


@dataclass
class BanditConfig:
    """Hyperparameters shared by the bandit agents."""

    #: arms: "patch" or "square"
    arm: str = "patch"
    #: weight of the prediction prior, in pseudo-holes
    prior_strength: float = 4.0
    #: a hole is a candidate of its arm when its calibrated probability is at least this
    candidate_probability: float = 0.5
    #: calibration of the regressor (see greedy): P(good) = 1/2 at threshold + offset (Å)
    offset: float = 0.5
    scale: float = 0.8


@dataclass
class UCBConfig(BanditConfig):
    #: weight of the exploration bonus sqrt(2 ln t / (strength + n))
    exploration: float = 0.1


@dataclass
class ThompsonConfig(BanditConfig):
    pass


@dataclass
class EpsilonGreedyConfig(BanditConfig):
    #: probability of moving to a random arm
    epsilon: float = 0.02


class _ArmBandit(Agent):
    """The shared machinery: arms, Beta beliefs, cost-aware choice; subclasses give ``index``."""

    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    needs_feedback = True
    plays_staged = True
    #: keep a move to an arm with no hole left (a visited hole) instead of choosing again: the
    #: decisions recorded in epsilon-greedy's protocol v2 results include two (its next version drops it)
    keep_visited_moves = False

    def reset(self, env, seed: int) -> None:
        super().reset(env, seed)
        c = self.config
        if c.arm not in ("patch", "square"):
            raise InputError(f"hyperparameter 'arm': expected 'patch' or 'square', got {c.arm!r}")
        h = self.hierarchy = Hierarchy.from_layout(self.layout)
        self.arm_of = h.patch if c.arm == "patch" else h.square
        self.n_arms = h.n_patches if c.arm == "patch" else h.n_squares
        self.p_prior = predicted_good_probability(h.predicted_ctf, h.threshold, c.offset, c.scale, 0.03, 0.97)
        self.steps = 0
        # Per-arm tallies, kept incrementally: only the holes visited or revealed since the last
        # decision change them (found by comparing the masks with the last ones seen).
        self.is_candidate = self.p_prior >= c.candidate_probability
        n_arms = self.n_arms
        self.candidate_count = np.bincount(self.arm_of[self.is_candidate], minlength=n_arms).astype(np.float64)
        self.candidate_prior = np.bincount(
            self.arm_of[self.is_candidate], weights=self.p_prior[self.is_candidate], minlength=n_arms
        )
        self.available_count = np.bincount(self.arm_of, minlength=n_arms).astype(np.float64)
        self.available_prior = np.bincount(self.arm_of, weights=self.p_prior, minlength=n_arms)
        self.revealed_count = np.zeros(n_arms)
        self.good_count = np.zeros(n_arms)
        self.last_available = np.ones(h.n_holes, dtype=np.int8)
        self.last_revealed = np.zeros(h.n_holes, dtype=np.int8)
        # Holes of each arm, for choosing inside the arm without scanning the grid.
        order = np.argsort(self.arm_of, kind="stable")
        bounds = np.searchsorted(self.arm_of[order], np.arange(n_arms + 1))
        self.arm_members = [order[bounds[a] : bounds[a + 1]] for a in range(n_arms)]

    def update_tallies(self, obs: dict) -> None:
        """Fold the holes visited and revealed since the last decision into the per-arm tallies."""
        available = obs["action_mask"]
        visited = np.flatnonzero(available != self.last_available)
        if len(visited):
            self.last_available = available
            arms = self.arm_of[visited]
            np.subtract.at(self.available_count, arms, 1.0)
            np.subtract.at(self.available_prior, arms, self.p_prior[visited])
            chosen = self.is_candidate[visited]
            np.subtract.at(self.candidate_count, arms[chosen], 1.0)
            np.subtract.at(self.candidate_prior, arms[chosen], self.p_prior[visited[chosen]])
        revealed = np.flatnonzero(obs["revealed"] != self.last_revealed)
        if len(revealed):
            self.last_revealed = obs["revealed"]
            arms = self.arm_of[revealed]
            np.add.at(self.revealed_count, arms, 1.0)
            np.add.at(self.good_count, arms, (obs["revealed_ctf"][revealed] < self.layout.threshold).astype(float))

    def entry_minutes(self, current_hole: int) -> np.ndarray:
        """Minutes of the move into each arm from the current hole (in-patch for the current arm)."""
        h = self.hierarchy
        if self.config.arm == "patch":
            return h.patch_minutes(current_hole)
        same_square = np.arange(h.n_squares) == h.square[current_hole]
        # the current square counts as in-patch: an arm's holes are taken from where the stage is
        return h.minutes[move_level(h.square_tile == h.tile[current_hole], same_square, same_square)]

    def index(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs: dict, info: dict) -> int:
        c = self.config
        self.steps += 1
        self.update_tallies(obs)
        # An arm without candidates left offers all its remaining holes.
        fallback = self.candidate_count == 0
        count = np.where(fallback, self.available_count, self.candidate_count)
        prior_mean = np.where(fallback, self.available_prior, self.candidate_prior) / np.maximum(count, 1)
        n, wins = self.revealed_count, self.good_count
        a = c.prior_strength * prior_mean + wins
        b = c.prior_strength * (1.0 - prior_mean) + (n - wins)
        # Expected good per minute of moving in and collecting the arm's candidates.
        current = int(obs["current_hole"])
        entry = self.entry_minutes(current)
        step = self.hierarchy.minutes[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_minute = np.where(count > 0, count / (entry + (count - 1) * step), -np.inf)
            # Stay while the current arm's believed rate is the best (exploring only when leaving,
            # else every noisy index would pull the stage away for a costly move).
            mean_value = a / (a + b) * per_minute
        arm = int(self.arm_of[current])
        if not (count[arm] > 0 and mean_value[arm] >= mean_value.max()):
            with np.errstate(invalid="ignore"):
                value = self.index(a, b, n) * per_minute
            value[arm] = mean_value[arm]
            arm = self.explore(int(np.argmax(value)), count)
            if count[arm] == 0 and not self.keep_visited_moves:
                # An arm with no hole left can score nan (0 x -inf once its prior mean is 0),
                # which argmax takes for the largest: the move would go to a visited hole, a
                # costed no-op repeated until the session ends. Only then choose again among the
                # arms with holes left (every other decision stays as it was).
                arm = int(np.argmax(np.where(count > 0, value, -np.inf)))
        return self.best_hole(arm, obs, fallback)

    def best_hole(self, arm: int, obs: dict, fallback: np.ndarray) -> int:
        """The arm's available hole with the best prediction (among its candidates while it has any)."""
        members = self.arm_members[arm]
        offered = obs["action_mask"][members].astype(bool)
        if not fallback[arm]:
            offered &= self.is_candidate[members]
        return int(members[np.argmax(np.where(offered, self.p_prior[members], -np.inf))])

    def explore(self, arm: int, count: np.ndarray) -> int:
        """Hook for epsilon-greedy: replace the chosen arm (default: keep it)."""
        return arm


class UCBAgent(_ArmBandit):
    """UCB over patches: Beta mean plus an exploration bonus, per minute of moving in."""

    name = "ucb"
    Config = UCBConfig

    def index(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        bonus = self.config.exploration * np.sqrt(2.0 * np.log(self.steps + 1.0) / (self.config.prior_strength + n))
        return np.minimum(a / (a + b) + bonus, 1.0)


class ThompsonAgent(_ArmBandit):
    """Thompson sampling over patches: one Beta draw per arm, per minute of moving in."""

    name = "thompson"
    Config = ThompsonConfig

    def index(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        return self.rng.beta(np.maximum(a, 1e-3), np.maximum(b, 1e-3))


class EpsilonGreedyAgent(_ArmBandit):
    """Epsilon-greedy over patches: the best Beta mean per minute, a random arm with probability epsilon."""

    name = "epsilon-greedy"
    Config = EpsilonGreedyConfig
    keep_visited_moves = True

    def index(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        return a / (a + b)

    def explore(self, arm: int, count: np.ndarray) -> int:
        if self.rng.random() < self.config.epsilon:
            arms = np.flatnonzero(count > 0)
            return int(arms[self.rng.integers(len(arms))])
        return arm
