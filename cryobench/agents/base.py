"""The agent interface every cryobench agent implements, built-in or third-party.

An agent is a class whose ``Config`` attribute names its ``<Agent>Config`` dataclass of hyperparameters (its card in
``agents/<name>.yaml`` gives the values) and three methods::

    agent = MyAgent(config)
    agent.fit(env)                 # optional: learn or plan offline (may be a no-op)
    agent.reset(env, seed)         # a new session starts: read env.unwrapped.layout
    hole = agent.act(obs, info)    # choose the next hole (an unvisited one)

Agents see only what the environment shows: ``env.unwrapped.layout`` (hierarchy,
positions, predictions, costs), the observation (features, revealed CTFs, time left,
mask) and ``info``. Upper bounds (``uses_ground_truth = True``, names ``oracle-*``) may
call ``env.unwrapped.ground_truth_ctf()``; nothing else may, and every table keeps them
apart. Agents that learn from revealed CTFs set ``needs_feedback = True`` and refuse an
environment whose feedback is ``none``.

Every random choice comes from the ``seed`` given to ``reset`` (and to ``fit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cryobench.errors import InputError


@dataclass
class NoConfig:
    """An agent without hyperparameters."""


class Agent:
    """Base class: subclass it, set ``name`` and ``Config``, implement ``act`` (and ``reset``)."""

    name: ClassVar[str] = "agent"
    Config: ClassVar[type] = NoConfig
    #: Reads the ground truth: an upper bound, not a real agent.
    uses_ground_truth: ClassVar[bool] = False
    #: Learns from revealed CTFs: needs feedback "inspection" or "queue:K".
    needs_feedback: ClassVar[bool] = False

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def fit(self, env, seed: int = 0) -> None:  # noqa: B027 - optional hook
        """Learn or plan offline on ``env`` (default: nothing to do)."""

    def reset(self, env, seed: int) -> None:
        """A new session on ``env`` starts; remember what is needed from its layout."""
        self.env = env.unwrapped
        self.layout = self.env.layout
        self.rng = np.random.default_rng(seed)
        if self.needs_feedback and not self.layout.feedback.reveals:
            raise InputError(
                f"agent {self.name!r} learns from revealed CTFs and needs feedback 'inspection' or 'queue:K'; "
                "the environment has feedback 'none' (pass -e feedback=inspection)"
            )

    def act(self, obs: dict, info: dict) -> int:
        raise NotImplementedError


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> int:
    """Index of the best score among allowed entries (ties: the lowest index)."""
    return int(np.argmax(np.where(mask.astype(bool), scores, -np.inf)))
