"""Snowball: the paper's baseline, as many exposures as the session allows, quality ignored.

The paper trains a policy with threshold 30 Å so that "the reward only depends on the
time cost". The policy that maximises the number of exposures is the one written here:
from the random start, always take the cheapest move (same patch, then another patch of
the square, then another square of the tile, then another tile), and among the holes that
cost the same, the nearest by stage position. Predictions are never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent
from cryobench.agents.common import Hierarchy, nearest


@dataclass
class SnowballConfig:
    """Snowball has no hyperparameters."""


class SnowballAgent(Agent):
    """The paper's snowball baseline: cheapest move next, nearest hole first, quality ignored."""

    reads_feedback = False  # decides without revealed CTFs (sealed runs: no feedback wait)
    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    name = "snowball"
    Config = SnowballConfig
    plays_staged = True

    def reset(self, env, seed: int) -> None:
        super().reset(env, seed)
        self.hierarchy = Hierarchy.from_layout(self.layout)

    def act(self, obs: dict, info: dict) -> int:
        current = int(obs["current_hole"])
        available = obs["action_mask"].astype(bool)
        minutes = np.where(available, self.hierarchy.hole_minutes(current), np.inf)
        return nearest(self.hierarchy, current, minutes == minutes.min())
