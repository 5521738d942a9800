"""What the examples share: the environments they train and score on, and counting good exposures."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

import cryobench  # noqa: F401  (registers the environments)
from cryobench.resources import card_dir

#: The full-size example: the Aldolase twin (its test split has 2431 holes).
ENV_ID = "cryobench/Aldolase-v1"
#: The small grid of ``--small``: the Aldolase card shrunk to 600 holes, sessions of 120 minutes.
SMALL_DURATION = 120.0


def small_twin_card(directory: str | Path | None = None) -> str:
    """The Aldolase twin's card shrunk to 4 tiles, 6 squares, 600 holes (a dataset card file); returns its path."""
    card = yaml.safe_load((card_dir("datasets") / "aldolase.yaml").read_text())
    card["name"] = "aldolase-small"
    card["layout"]["tiles"]["value"] = 4
    card["layout"]["squares"]["value"] = 6
    card["layout"]["holes"]["value"] = 600
    card["layout"]["patches_per_square"]["value"] = {"min": 2, "median": 5, "max": 8}
    directory = Path(directory or tempfile.mkdtemp(prefix="cryobench-example-"))
    path = directory / "aldolase-small.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


def env_kwargs(small: bool) -> dict[str, Any]:
    """``gym.make`` arguments for the full Aldolase twin, or for the small grid."""
    return {"dataset": small_twin_card(), "duration": SMALL_DURATION} if small else {}


def make_training_env(small: bool = False, **kwargs: Any) -> gym.Env:
    """Training worlds only: the train split, a new training world (seed < 2**30) at every reset."""
    return gym.make(ENV_ID, split="train", new_world_each_reset=True, **env_kwargs(small), **kwargs)


def make_test_env(small: bool = False, **kwargs: Any) -> gym.Env:
    """The twin's test split, the card's fixed world: where ``cryobench run --env aldolase`` scores agents."""
    return gym.make(ENV_ID, split="test", **env_kwargs(small), **kwargs)


def good_exposures_per_episode(rewards: np.ndarray, dones: np.ndarray) -> list[int]:
    """Good exposures of each session that ends in a stream of steps (rewards and done flags).

    Without ``partial_reward`` a step earns more than 0 exactly when its hole is good, so the
    count of rewarded steps is the session's good exposures.
    """
    rewards, dones = np.asarray(rewards).ravel(), np.asarray(dones).ravel().astype(bool)
    ends = np.flatnonzero(dones)
    starts = np.r_[0, ends[:-1] + 1]
    return [int((rewards[start : end + 1] > 0).sum()) for start, end in zip(starts, ends, strict=True)]
