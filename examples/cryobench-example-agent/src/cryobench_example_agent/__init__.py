"""A third-party cryobench agent: stay in the current patch while it has a hole predicted good,
else go to the unvisited hole with the lowest predicted CTF anywhere.

It exists to show (and test) the plugin route: a package of its own, an entry point in the
``cryobench.agents`` group, no change to cryobench. See ``README.md`` beside ``pyproject.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryobench.agents.base import Agent, masked_argmax


@dataclass
class LowestPredictionConfig:
    #: A hole counts as predicted good below this CTF (Å), relative to the session's threshold.
    margin: float = 0.0


class LowestPredictionAgent(Agent):
    """Lowest predicted CTF, preferring the current patch while it still has a predicted-good hole."""

    name = "lowest-prediction"
    Config = LowestPredictionConfig

    def act(self, obs: dict, info: dict) -> int:
        mask = obs["action_mask"].astype(bool)
        predicted = self.layout.predicted_ctf
        here = self.layout.patch == self.layout.patch[int(obs["current_hole"])]
        good_here = mask & here & (predicted < self.layout.threshold - self.config.margin)
        candidates = good_here if good_here.any() else mask
        # Lowest prediction first; ties broken by the agent's seeded generator, never by chance.
        noise = self.rng.random(len(predicted)) * 1e-9
        return masked_argmax(-(predicted + noise), candidates)
