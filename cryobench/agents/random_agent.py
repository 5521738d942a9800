"""Random: every exposure at a hole drawn uniformly among the unvisited ones (a floor for every table)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent


@dataclass
class RandomConfig:
    """The random agent has no hyperparameters."""


class RandomAgent(Agent):
    """Masked uniform: any unvisited hole, each equally likely (from ``self.rng``)."""

    reads_feedback = False  # decides without revealed CTFs (sealed runs: no feedback wait)
    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    name = "random"
    Config = RandomConfig
    plays_staged = True

    def act(self, obs: dict, info: dict) -> int:
        holes = np.flatnonzero(obs["action_mask"])
        return int(holes[self.rng.integers(len(holes))])
