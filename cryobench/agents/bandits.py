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


@dataclass
class Config:
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
class UCBConfig(Config):
    #: weight of the exploration bonus sqrt(2 ln t / (strength + n))
    exploration: float = 0.1


@dataclass
class ThompsonConfig(Config):
    pass


@dataclass
class EpsilonGreedyConfig(Config):
    #: probability of moving to a random arm
    epsilon: float = 0.02


class _ArmBandit(Agent):
    """The shared machinery: arms, Beta beliefs, cost-aware choice; subclasses give ``index``."""

    needs_feedback = True

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

    def entry_minutes(self, current_hole: int) -> np.ndarray:
        """Minutes of the move into each arm from the current hole (in-patch for the current arm)."""
        h = self.hierarchy
        if self.config.arm == "patch":
            return h.patch_minutes(current_hole)
        same_tile = h.square_tile == h.tile[current_hole]
        entry = np.where(same_tile, h.minutes[2], h.minutes[3])
        entry[h.square[current_hole]] = h.minutes[0]
        return entry

    def index(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs: dict, info: dict) -> int:
        c, arm_of, n_arms = self.config, self.arm_of, self.n_arms
        self.steps += 1
        available = obs["action_mask"].astype(bool)
        candidates = available & (self.p_prior >= c.candidate_probability)
        per_arm = np.bincount(arm_of[candidates], minlength=n_arms)
        # An arm without candidates left offers all its remaining holes.
        fallback = available & (per_arm[arm_of] == 0)
        candidates |= fallback
        count = np.bincount(arm_of[candidates], minlength=n_arms).astype(np.float64)
        prior_mean = np.bincount(arm_of[candidates], weights=self.p_prior[candidates], minlength=n_arms) / np.maximum(
            count, 1
        )
        revealed = obs["revealed"].astype(bool)
        good = (obs["revealed_ctf"] < self.layout.threshold) & revealed
        n = np.bincount(arm_of[revealed], minlength=n_arms).astype(np.float64)
        wins = np.bincount(arm_of[good], minlength=n_arms).astype(np.float64)
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
        arm = int(arm_of[current])
        if not (count[arm] > 0 and mean_value[arm] >= mean_value.max()):
            value = self.index(a, b, n) * per_minute
            value[arm] = mean_value[arm]
            arm = self.explore(int(np.argmax(value)), count)
        return int(np.argmax(np.where(candidates & (arm_of == arm), self.p_prior, -np.inf)))

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

    def index(self, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
        return a / (a + b)

    def explore(self, arm: int, count: np.ndarray) -> int:
        if self.rng.random() < self.config.epsilon:
            arms = np.flatnonzero(count > 0)
            return int(arms[self.rng.integers(len(arms))])
        return arm
