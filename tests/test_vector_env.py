"""The native batched environment: ``gym.make_vec(id, num_envs=B, vectorization_mode="vector_entry_point")``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401
from cryobench.errors import InputError
from cryobench.vector_env import CryoEMVectorEnv

ENV_ID = "cryobench/Aldolase-v0"


def _vector(num_envs, **kwargs):
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def _assert_same_observation(batched, singles):
    for key, value in batched.items():
        for i, single in enumerate(singles):
            assert value[i].dtype == np.asarray(single[key]).dtype, key
            assert np.array_equal(value[i], single[key]), (key, i)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(observation="compact"),
        dict(observation="compact", feedback="queue:3", mask_dtype="bool"),
        dict(feedback="none", split="train"),
        dict(split="train", profile="arxiv"),
    ],
)
def test_same_trajectories_as_single_environments(kwargs):
    """Session i of the batch is a single environment reset with seed + i: the same
    observations, rewards, ends and info, bit for bit, through autoresets and invalid actions."""
    n_envs, seed = 3, 40
    batched = _vector(n_envs, duration=90.0, **kwargs)
    singles = [gym.make(ENV_ID, duration=90.0, **kwargs).unwrapped for _ in range(n_envs)]
    obs, _ = batched.reset(seed=seed)
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    rng = np.random.default_rng(0)
    done = np.zeros(n_envs, dtype=bool)
    ends = 0
    for _ in range(300):
        _assert_same_observation(obs, single_obs)
        # mostly allowed actions, sometimes a masked one (the costed no-op)
        actions = np.array(
            [
                rng.choice(np.flatnonzero(mask)) if rng.random() < 0.9 else rng.integers(len(mask))
                for mask in obs["action_mask"]
            ]
        )
        obs, rewards, terminated, truncated, info = batched.step(actions)
        for i, env in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: the single environment's reset, without a seed
                single_obs[i], _ = env.reset()
                assert rewards[i] == 0.0 and not terminated[i] and not info["invalid_action"][i]
                assert "hole" not in info or info["hole"][i] == -1
                continue
            single_obs[i], reward, end, _, single_info = env.step(int(actions[i]))
            assert rewards[i] == reward and terminated[i] == end and not truncated[i]
            assert info["elapsed_minutes"][i] == single_info["elapsed_minutes"]
            assert info["exposures"][i] == single_info["exposures"]
            assert info["invalid_action"][i] == single_info["invalid_action"]
            if "hole" in single_info:
                assert info["hole"][i] == single_info["hole"]
        done = terminated | truncated
        ends += int(done.sum())
    assert ends >= n_envs  # every session went through at least one autoreset


def test_make_vec_chooses_the_native_environment_and_batches_the_spaces():
    envs = _vector(5, observation="compact")
    assert isinstance(envs.unwrapped, CryoEMVectorEnv)
    assert envs.action_space == gym.spaces.MultiDiscrete([32] * 5)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert obs["candidate_features"].shape == (5, 32, 42)
    assert info["_elapsed_minutes"].all() and (info["elapsed_minutes"] == 0).all()


def test_reset_mask_resets_only_the_chosen_sessions():
    envs = _vector(2, observation="compact")
    envs.reset(seed=0)
    envs.step(np.array([1, 1]))
    obs, info = envs.reset(options={"reset_mask": np.array([True, False])})
    assert info["elapsed_minutes"][0] == 0.0 and info["elapsed_minutes"][1] > 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_envs=0), "argument 'num_envs': expected a positive integer, got 0"),
        (dict(num_envs=2, acquisition="staged"), "paper sessions on one fixed world"),
        (dict(num_envs=2, new_world_each_reset=True), "paper sessions on one fixed world"),
        (dict(num_envs=2, observation="graph"), "argument 'observation'"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs, message):
    num_envs = kwargs.pop("num_envs")
    with pytest.raises(InputError, match=message):
        CryoEMVectorEnv(num_envs=num_envs, dataset="aldolase", **kwargs)


def test_bad_actions_are_input_errors():
    envs = _vector(2, observation="compact")
    envs.reset(seed=0)
    with pytest.raises(InputError, match=r"action 32 out of range: actions are 0..31"):
        envs.step(np.array([0, 32]))
    message = r"actions: expected 2 integers \(one per session\), got float64 of shape \(2,\)"
    with pytest.raises(InputError, match=message):
        envs.step(np.array([0.0, 1.0]))


def test_make_vec_defaults_to_the_native_environment_for_paper_sessions_only():
    assert isinstance(gym.make_vec(ENV_ID, num_envs=2).unwrapped, CryoEMVectorEnv)
    staged = gym.make_vec("cryobench/AldolaseStaged-v0", num_envs=2)
    assert isinstance(staged, gym.vector.SyncVectorEnv)
    staged.close()
