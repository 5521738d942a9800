"""The compact observation (``observation="compact"``) and the bool mask (``mask_dtype="bool"``)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cryobench  # noqa: F401
from cryobench.candidates import LEVEL_SLOTS, N_CANDIDATES
from cryobench.errors import InputError
from cryobench.simulator import move_levels


def _make(**kwargs):
    return gym.make("cryobench/Aldolase-v0", **kwargs).unwrapped


@pytest.mark.parametrize(
    "kwargs",
    [dict(observation="compact"), dict(observation="compact", mask_dtype="bool"), dict(mask_dtype="bool")],
)
def test_check_env_passes_with_warnings_as_errors(kwargs):
    env = _make(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    expected = np.bool_ if kwargs.get("mask_dtype") == "bool" else np.int8
    assert obs["action_mask"].dtype == expected and info["action_mask"].dtype == expected


def test_compact_observation_is_fixed_size_and_small():
    for name in ("cryobench/Aldolase-v0", "cryobench/AldolaseAu-v0"):
        env = gym.make(name, observation="compact", split="all").unwrapped
        obs, _ = env.reset(seed=0)
        assert sum(value.nbytes for value in obs.values()) == 32 * 42 * 4 + 32 * 8 + 4 + 8 + 32
        assert obs["candidate_features"].shape == (N_CANDIDATES, 42)


def test_candidates_are_rows_of_the_full_observation_and_the_same_session():
    """Driven side by side, a compact and a full environment give the same rewards, and each
    candidate's features are its hole's row of the full observation, bit for bit."""
    compact, full = _make(observation="compact"), _make()
    obs, _ = compact.reset(seed=11)
    full_obs, _ = full.reset(seed=11)
    rng = np.random.default_rng(0)
    done, steps = False, 0
    while not done:
        holes = obs["candidate_holes"]
        filled = holes >= 0
        np.testing.assert_array_equal(obs["action_mask"], filled.astype(np.int8))
        assert np.array_equal(obs["candidate_features"][filled], full_obs["features"][holes[filled]])
        assert not obs["candidate_features"][~filled].any()
        assert obs["time_left"] == full_obs["time_left"] and obs["current_hole"] == full_obs["current_hole"]
        slot = int(rng.choice(np.flatnonzero(filled)))
        obs, reward, done, _, info = compact.step(slot)
        full_obs, full_reward, full_done, _, full_info = full.step(info["hole"])
        assert info["hole"] == holes[slot] and reward == full_reward and done == full_done
        assert info["elapsed_minutes"] == full_info["elapsed_minutes"]
        steps += 1
    assert steps == len(full.state.exposures) and steps > 50


def test_candidates_follow_the_documented_rule():
    env = _make(observation="compact", split="all")
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(1)
    patch = env.world.groups[0]
    pred = env.world.predicted_ctf
    for _ in range(40):
        holes = obs["candidate_holes"]
        levels = move_levels(env.world, env.state.current)
        unvisited = ~env.state.visited
        start = 0
        for level, slots in enumerate(LEVEL_SLOTS):
            chosen = holes[start : start + slots]
            start += slots
            # every patch at this level with an unvisited hole, by its best hole (prediction, then id)
            best = {}
            for hole in np.flatnonzero(unvisited & (levels == level)):
                key = (pred[hole], hole)
                best[patch[hole]] = min(best.get(patch[hole], key), key)
            expected = [hole for _, hole in sorted(best.values())[:slots]]
            assert chosen[: len(expected)].tolist() == expected
            assert (chosen[len(expected) :] == -1).all()
        best_hole = np.flatnonzero(unvisited)[np.argmin(pred[unvisited])]
        assert patch[best_hole] in set(patch[holes[holes >= 0]])
        obs, *_ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))


def test_an_empty_slot_is_the_costed_no_op():
    env = _make(observation="compact", split="train")
    obs, _ = env.reset(seed=0)
    empty = np.flatnonzero(obs["action_mask"] == 0)
    assert len(empty) > 0  # the train split has too few patches at some levels to fill their slots
    before = env.state.elapsed
    obs, reward, _, _, info = env.step(int(empty[0]))
    assert info["invalid_action"] and reward == 0.0 and info["hole"] == -1
    assert env.state.elapsed == before + env.world.profile.minutes[0]


def test_bool_mask_equals_the_int8_mask():
    a, b = _make(), _make(mask_dtype="bool")
    obs_a, info_a = a.reset(seed=2)
    obs_b, info_b = b.reset(seed=2)
    for _ in range(5):
        np.testing.assert_array_equal(obs_a["action_mask"].astype(bool), obs_b["action_mask"])
        np.testing.assert_array_equal(info_a["action_mask"].astype(bool), info_b["action_mask"])
        np.testing.assert_array_equal(obs_a["features"], obs_b["features"])
        hole = int(np.flatnonzero(obs_a["action_mask"])[0])
        obs_a, _, _, _, info_a = a.step(hole)
        obs_b, _, _, _, info_b = b.step(hole)
    assert a.observation_space["action_mask"].dtype == np.int8
    assert b.observation_space["action_mask"].dtype == np.bool_


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(observation="graph"), "argument 'observation': expected 'full' or 'compact', got 'graph'"),
        (dict(mask_dtype="float32"), "argument 'mask_dtype': expected 'int8' or 'bool', got 'float32'"),
        (dict(observation="compact", acquisition="staged"), "'compact' needs acquisition='paper'"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _make(**kwargs)


def test_out_of_range_slot_is_an_input_error():
    env = _make(observation="compact")
    env.reset(seed=0)
    message = r"action 32 out of range: the compact observation's candidate slots are 0..31"
    with pytest.raises(InputError, match=message):
        env.step(32)
