"""Protocol v2's training environment: a new training world under new conditions at every reset."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from cryobench import simulator
from cryobench.catalog import build_world, load_dataset
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError

#: The conditions a training world is drawn under: they cover what protocol v2's families vary
#: (regressor quality and error model, timings, session length, threshold, feedback), drawn
#: from ranges, never from the test worlds (whose seeds the training draws cannot reach).
PROFILES = ("paper", "arxiv", "measured-aldolase")
MAX_DURATION = 960.0


#: Which regressors the draws cover: ``all`` (protocol v2's range, perfect to uninformative) or ``poor``
#: (noise 1-2.5, Gaussian sigma 1.5-3, uninformative twice as often: for agents meant for a poor regressor).
REGRESSOR_RANGES = {
    "all": {"p": [0.6, 0.35, 0.05], "noise": (0.0, 2.5), "sigma": (0.5, 3.0)},
    "poor": {"p": [0.5, 0.4, 0.1], "noise": (1.0, 2.5), "sigma": (1.5, 3.0)},
}

#: Which feedback the draws cover: ``all`` (inspection, queue:10 or none, 3:1:1) or ``reveals`` (only the
#: modes that reveal CTFs, inspection or queue:10, 3:1: for agents that learn from revealed CTFs).
#: Every range draws from the same modes with one uniform number, so ``reveals`` draws the same
#: worlds and other conditions as ``all`` from a seed (a world that drew inspection still does).
FEEDBACK_MODES = ("inspection", "queue:10", "none")
FEEDBACK_RANGES = {"all": [0.6, 0.2, 0.2], "reveals": [0.75, 0.25, 0.0]}


def draw_conditions(rng: np.random.Generator, regressors: str = "all", feedback: str = "all") -> dict[str, Any]:
    """One set of session conditions, from ``rng`` (the environment's ``np_random``)."""
    _check_ranges(regressors, feedback)
    ranges = REGRESSOR_RANGES[regressors]
    model = rng.choice(["default", "gaussian", "uninformative"], p=ranges["p"])
    if model == "default":
        regressor, noise = None, float(rng.uniform(*ranges["noise"]))
    elif model == "gaussian":
        regressor = {
            "model": "gaussian",
            "sigma": round(float(rng.uniform(*ranges["sigma"])), 3),
            "bias": round(float(rng.uniform(-1.0, 2.0)), 3),
            "patch_share": round(float(rng.uniform(0.0, 0.6)), 3),
        }
        noise = 1.0
    else:
        regressor, noise = "uninformative", 1.0
    if rng.random() < 0.75:
        profile: Any = str(rng.choice(PROFILES))
    else:  # a custom stage: minutes increasing with the move's level
        steps = np.cumsum(rng.uniform([0.5, 0.5, 1.0, 0.0], [1.5, 3.0, 12.0, 10.0]))
        profile = {"name": "drawn", "minutes": [round(float(m), 2) for m in steps], "beta": 0.1}
    drawn_feedback = str(rng.choice(FEEDBACK_MODES, p=FEEDBACK_RANGES[feedback]))
    return {
        "regressor": regressor,
        "noise": noise,
        "profile": profile,
        "duration": float(rng.choice([240.0, 360.0, 480.0, 720.0, MAX_DURATION])),
        "threshold": round(float(rng.uniform(5.0, 7.0)), 2),
        "feedback": drawn_feedback,
    }


def _check_ranges(regressors: str, feedback: str) -> None:
    if regressors not in REGRESSOR_RANGES:
        raise InputError(f"argument 'regressors': expected one of {', '.join(REGRESSOR_RANGES)}, got {regressors!r}")
    if feedback not in FEEDBACK_RANGES:
        raise InputError(
            f"argument 'feedback': expected one of {', '.join(FEEDBACK_RANGES)} (Training-v0 draws the feedback "
            f"at every reset; 'reveals' draws only inspection or queue:10), got {feedback!r}"
        )


class TrainingWorldsEnv(CryoEMSessionEnv):
    """
    ## Description

    Protocol v2's training environment (``cryobench/Training-v0``): every reset draws a new
    *training* world of a twin (layout and quality from seeds below 2**30, never a test world)
    and new session conditions (:func:`draw_conditions`: regressor error model and quality,
    instrument timings, session length, quality threshold, feedback). Train and select agents
    here (and on the cards' own worlds, which are training worlds too); score them with
    ``cryobench submit`` on the held-out test worlds.

    ## Action Space, Observation Space, Rewards, Episode End

    As :class:`cryobench.env.CryoEMSessionEnv` on the whole grid (``split="all"``: every layout
    of a twin has the same number of holes), except that ``time_left`` is bounded by the longest
    session drawn (960 minutes).

    ## Starting State

    A new world and conditions, then a start hole, all from ``reset(seed=...)``. The drawn
    conditions are in ``env.unwrapped.conditions`` and in ``info["conditions"]`` at reset.

    ## Arguments

    - ``dataset``: the twin (default ``aldolase``).
    - ``regressors``: ``"all"`` (default: perfect to uninformative, as protocol v2 varies them) or
      ``"poor"`` (only poor regressors; :data:`REGRESSOR_RANGES`).
    - ``feedback``: ``"all"`` (default: inspection, queue:10 or none) or ``"reveals"`` (only
      inspection or queue:10, for agents that learn from revealed CTFs; :data:`FEEDBACK_RANGES`).
    - ``render_mode``: ``None`` or ``"rgb_array"``.
    """

    def __init__(
        self,
        dataset: str = "aldolase",
        regressors: str = "all",
        feedback: str = "all",
        render_mode: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise InputError(
                f"unknown argument(s) {', '.join(map(repr, sorted(unknown)))}; cryobench/Training-v0 takes "
                "'dataset', 'regressors', 'feedback' and 'render_mode' (the conditions are drawn at every reset)"
            )
        _check_ranges(regressors, feedback)
        self.regressors = regressors
        self.feedback_range = feedback
        super().__init__(
            dataset=dataset,
            split="all",
            duration=MAX_DURATION,
            new_world_each_reset=True,
            new_layout_each_reset=True,
            render_mode=render_mode,
        )
        self.observation_space["time_left"] = spaces.Box(0.0, MAX_DURATION, shape=(1,), dtype=np.float32)
        self.conditions: dict[str, Any] = {}

    def _training_world(self, world_seed: int, layout_seed: int | None) -> simulator.World:
        self.conditions = draw_conditions(self.np_random, self.regressors, self.feedback_range)
        base = load_dataset(dataset=self._dataset_name, seed=world_seed, layout_seed=layout_seed)
        return build_world(base, split="all", prediction_seed=world_seed, **self.conditions)

    def feedback_advice(self) -> str:
        """What an agent that needs revealed CTFs tells the user when this world drew feedback 'none'."""
        return (
            "this training world drew feedback 'none' (cryobench/Training-v0 draws it for about 1 world in 5); "
            "pass -e feedback=reveals to draw only feedback that reveals CTFs (inspection or queue:10)"
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "conditions": self.conditions}
