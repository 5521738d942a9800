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
environment whose feedback is ``none``. Agents whose decisions never depend on revealed CTFs
(fixed plans from the predictions) set ``reads_feedback = False``: a sealed run then plays them
on observations without feedback, so their worker never waits for the parent (a test checks
each such declaration by playing with and without feedback; a false one only blinds the agent).

Every random choice comes from the ``seed`` given to ``reset`` (and to ``fit``).

Staged sessions (``acquisition="staged"``: the atlas first, squares imaged on demand): an agent
whose class sets ``plays_staged = True`` is played by ``cryobench.agents.staged.StagedDriver``,
which chooses the squares to image and runs a copy of the agent over the imaged squares' holes
(the class's own ``reset`` and ``act`` are routed there, see ``Agent.__init_subclass__``).
Every other agent refuses a staged environment with a one-line error that names the agents that
can (every agent of the ``cryobench.agents`` entry points whose class sets ``plays_staged``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

from cryobench.errors import InputError

#: The entry-point group every agent is declared in (built-in and third-party alike).
GROUP = "cryobench.agents"


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
    #: Its decisions may depend on revealed CTFs (False: a fixed plan; see the module docstring).
    reads_feedback: ClassVar[bool] = True
    #: It reads ``obs["features"]`` (False: a sealed run's worker does not build the feature
    #: matrix, most of an observation's cost, and leaves the entry out).
    reads_features: ClassVar[bool] = True
    #: Can plan over the holes known so far: played in staged sessions by ``agents.staged.StagedDriver``.
    plays_staged: ClassVar[bool] = False
    #: True on the copies a StagedDriver runs over the imaged squares (they see a paper-like view).
    _driven: bool = False

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Route a staged session's ``reset`` and ``act`` to a StagedDriver (paper sessions: untouched)."""
        super().__init_subclass__(**kwargs)
        if "reset" in cls.__dict__:
            cls.reset = _staged_reset(cls.__dict__["reset"])
        if "act" in cls.__dict__:
            cls.act = _staged_act(cls.__dict__["act"])

    def fit(self, env, seed: int = 0) -> None:  # noqa: B027 - optional hook
        """Learn or plan offline on ``env`` (default: nothing to do)."""

    def reset(self, env, seed: int) -> None:
        """A new session on ``env`` starts; remember what is needed from its layout."""
        self.env = env.unwrapped
        self.layout = self.env.layout
        self.rng = np.random.default_rng(seed)
        if self.needs_feedback and not self.layout.feedback.reveals:
            # An environment that draws its feedback (Training-v0) knows the fix; others take it as an argument.
            advice = getattr(self.env, "feedback_advice", None)
            raise InputError(
                f"agent {self.name!r} learns from revealed CTFs and needs feedback 'inspection' or 'queue:K'; "
                + (advice() if advice else "the environment has feedback 'none' (pass -e feedback=inspection)")
            )

    def act(self, obs: dict, info: dict) -> int:
        raise NotImplementedError


def _staged_reset(reset):
    @functools.wraps(reset)
    def wrapper(self, env, seed: int) -> None:
        layout = env.unwrapped.layout
        if getattr(layout, "acquisition", "paper") == "staged" and not self._driven:
            if not type(self).plays_staged:
                raise InputError(
                    f"agent {self.name!r} cannot plan with squares not imaged yet (acquisition='staged'); "
                    f"agents that can: {', '.join(agents_that_play_staged())}"
                )
            from cryobench.agents.staged import StagedDriver  # the agents package, imported on first use

            Agent.reset(self, env, seed)  # the feedback check and self.env / layout / rng
            self._staged_driver = StagedDriver(self, env, seed)
            return None
        if getattr(self, "staged_options", None) is not None and not self._driven:
            raise InputError(
                f"agent {self.name!r}: staged options (squares, min_pool, ...) were given, but the environment's "
                "acquisition is 'paper' (pass -e acquisition=staged)"
            )
        self._staged_driver = None
        return reset(self, env, seed)

    return wrapper


def agents_that_play_staged() -> list[str]:
    """The names of the agents whose class declares ``plays_staged`` (plugins too), sorted.

    Imports every agent's module (the DQN's imports torch: about a second), so it is asked only when
    an agent refuses a staged session; ``cryobench list agents`` shows the same from the cards.
    """
    names = []
    for point in entry_points(group=GROUP):
        try:
            cls = point.load()
        except Exception:  # a broken plugin cannot play anything; the listing reports why
            continue
        if isinstance(cls, type) and issubclass(cls, Agent) and cls.plays_staged:
            names.append(point.name)
    return sorted(set(names))


def _staged_act(act):
    @functools.wraps(act)
    def wrapper(self, obs: dict, info: dict):
        driver = self.__dict__.get("_staged_driver")
        if driver is not None:
            return driver.act(obs, info)
        return act(self, obs, info)

    return wrapper


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> int:
    """Index of the best score among allowed entries (ties: the lowest index)."""
    return int(np.argmax(np.where(mask.astype(bool), scores, -np.inf)))
