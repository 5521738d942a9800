"""Policies that are not agent packages, for tests/test_any_policy.py (loaded by "module:attr")."""

from __future__ import annotations

import numpy as np


def lowest_prediction(obs, info):
    """A plain function: the unvisited hole with the lowest predicted-CTF feature column 0 (any fixed rule)."""
    scores = obs["features"][:, 0]
    return int(np.argmin(np.where(obs["action_mask"].astype(bool), scores, np.inf)))


def first_free(obs, info):
    return int(np.flatnonzero(obs["action_mask"])[0])


def out_of_range_at_step_3(obs, info):
    return 10**9 if info["exposures"] == 3 else first_free(obs, info)


def raises_at_step_2(obs, info):
    if info["exposures"] == 2:
        raise KeyError("no such column")
    return first_free(obs, info)


class PredictedBest:
    """An agent object (no cryobench base class): reset reads the public layout, act the mask."""

    def reset(self, env, seed):
        self.predicted = np.asarray(env.unwrapped.layout.predicted_ctf)

    def act(self, obs, info):
        return int(np.argmin(np.where(obs["action_mask"].astype(bool), self.predicted, np.inf)))


class RecordsInfo:
    """Keeps every info it is given (what a policy may learn from during a session)."""

    def __init__(self):
        self.infos = []

    def act(self, obs, info):
        self.infos.append(dict(info))
        return first_free(obs, info)


class MaskableModel:
    """Shaped like sb3-contrib's MaskablePPO: predict(obs, state, episode_start, deterministic, action_masks)."""

    def __init__(self):
        self.masks = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False, action_masks=None):
        self.masks.append(action_masks)
        return np.array(int(np.flatnonzero(action_masks)[-1])), None


class PlainModel:
    """Shaped like SB3's PPO: predict without masks (returns a 1-element array, as some wrappers do)."""

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return np.array([int(np.flatnonzero(observation["action_mask"])[0])]), None


lowest = lowest_prediction  # an attribute that is a module-level alias
