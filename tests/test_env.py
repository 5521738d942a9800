"""The gymnasium environments: registration, API conformance, determinism, bad arguments."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cryobench  # noqa: F401  (registers the environments)
from cryobench.errors import InputError
from cryobench.features import N_FEATURES, hole_features_from_scratch
from cryobench.registration import env_cards

TWIN_IDS = [env_id for env_id, card in env_cards().items() if card["simulated"]]


def random_rollout(env, seed: int, steps: int | None = None) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    actions, rewards = [], []
    done = False
    while not done and (steps is None or len(actions) < steps):
        action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    return actions, rewards


@pytest.mark.parametrize("env_id", TWIN_IDS)
def test_check_env_passes_without_warnings(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("env_id", TWIN_IDS)
def test_same_seed_same_episode(env_id):
    a = random_rollout(gym.make(env_id), seed=3)
    b = random_rollout(gym.make(env_id), seed=3)
    assert a == b
    c = random_rollout(gym.make(env_id), seed=4)
    assert a != c


def test_observation_and_info_contents():
    env = gym.make("cryobench/Aldolase-v0")
    obs, info = env.reset(seed=0)
    n = env.action_space.n
    assert obs["features"].shape == (n, N_FEATURES)
    assert obs["action_mask"].dtype == np.int8 and obs["action_mask"].sum() == n - 1
    assert obs["time_left"][0] == pytest.approx(480.0)
    assert set(info) >= {"action_mask", "elapsed_minutes", "exposures", "level", "invalid_action"}
    np.testing.assert_array_equal(env.unwrapped.action_masks(), obs["action_mask"].astype(bool))
    hole = int(np.flatnonzero(obs["action_mask"])[0])
    obs, reward, terminated, truncated, info = env.step(hole)
    assert info["exposures"] == 1 and info["level"] in ("patch", "square", "tile", "grid")
    truth = env.unwrapped.ground_truth_ctf()[hole]
    assert obs["revealed"][hole] == 1 and obs["revealed_ctf"][hole] == pytest.approx(min(truth, 20.0))
    assert obs["revealed"].sum() == 1
    assert env.observation_space.contains(obs)


def test_ground_truth_never_in_observation_or_info():
    env = gym.make("cryobench/Aldolase-v0", feedback="none")
    obs, info = env.reset(seed=0)
    truth = env.unwrapped.ground_truth_ctf()
    for _ in range(20):
        hole = int(np.flatnonzero(obs["action_mask"])[0])
        obs, _, _, _, info = env.step(hole)
    assert not obs["revealed"].any() and not obs["revealed_ctf"].any()
    truth_scaled = np.minimum(truth, 20.0) / 20.0
    for column in range(N_FEATURES):
        assert not np.allclose(obs["features"][:, column], truth_scaled), column
    assert not any(isinstance(v, np.ndarray) and v.shape == truth.shape and v.dtype.kind == "f" for v in info.values())
    assert not hasattr(env.unwrapped.layout, "ctf")


def test_invalid_action_costs_in_patch_time_and_no_reward():
    env = gym.make("cryobench/Aldolase-v0")
    obs, info = env.reset(seed=1)
    start = int(env.unwrapped.state.start)
    obs, reward, terminated, truncated, info = env.step(start)
    assert info["invalid_action"] and reward == 0.0
    assert info["elapsed_minutes"] == pytest.approx(1.0) and info["exposures"] == 0


def test_episode_ends_past_the_duration():
    env = gym.make("cryobench/AldolaseAu-v0")
    _, rewards = random_rollout(env, seed=0)
    elapsed = env.unwrapped.state.elapsed
    assert 480.0 < elapsed <= 488.0


def test_queue_feedback_reveals_in_batches():
    env = gym.make("cryobench/Aldolase-v0", feedback="queue:5")
    obs, info = env.reset(seed=0)
    for step in range(1, 12):
        hole = int(np.flatnonzero(obs["action_mask"])[0])
        obs, *_ = env.step(hole)
        assert obs["revealed"].sum() == (step // 5) * 5


def test_noise_knob_changes_predictions_only():
    perfect = gym.make("cryobench/Aldolase-v0", noise=0.0).unwrapped
    default = gym.make("cryobench/Aldolase-v0").unwrapped
    np.testing.assert_allclose(perfect.layout.predicted_ctf, np.minimum(perfect.ground_truth_ctf(), 20.0))
    np.testing.assert_array_equal(perfect.ground_truth_ctf(), default.ground_truth_ctf())
    assert not np.allclose(perfect.layout.predicted_ctf, default.layout.predicted_ctf)


def test_splits_are_disjoint_tiles():
    train = gym.make("cryobench/Aldolase-v0", split="train").unwrapped.world.grid
    test = gym.make("cryobench/Aldolase-v0", split="test").unwrapped.world.grid
    assert not set(train.hole_names) & set(test.hole_names)


def test_new_world_each_reset_changes_quality_keeps_layout():
    env = gym.make("cryobench/Aldolase-v0", new_world_each_reset=True)
    env.reset(seed=0)
    first = env.unwrapped.ground_truth_ctf()
    env.reset(seed=1)
    second = env.unwrapped.ground_truth_ctf()
    assert len(first) == len(second) and not np.array_equal(first, second)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.unwrapped.ground_truth_ctf(), first)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec("cryobench/Aldolase-v0", num_envs=2, vectorization_mode=mode)
    obs, info = envs.reset(seed=[0, 1])
    assert obs["features"].shape[0] == 2
    actions = np.array([int(np.flatnonzero(m)[0]) for m in obs["action_mask"]])
    obs, rewards, terminated, truncated, info = envs.step(actions)
    assert rewards.shape == (2,)
    envs.close()


def test_render_draws_the_grid():
    env = gym.make("cryobench/Aldolase-v0", render_mode="rgb_array")
    random_rollout(env, seed=0, steps=30)
    image = env.render()
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # not a blank canvas


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise": -0.1}, "argument 'noise'.*out of range"),
        ({"noise": 9}, "argument 'noise'.*out of range"),
        ({"noise": "high"}, "argument 'noise': expected a number"),
        ({"noise": None}, "argument 'noise': expected a number"),
        ({"noise": float("nan")}, "argument 'noise': expected a number"),
        ({"noise": True}, "argument 'noise': expected a number"),
        ({"duration": -5}, "argument 'duration': expected a positive number"),
        ({"duration": 0}, "argument 'duration': expected a positive number"),
        ({"duration": float("inf")}, "argument 'duration': expected a positive number"),
        ({"duration": "480"}, "argument 'duration': expected a positive number"),
        ({"duration": True}, "argument 'duration': expected a positive number"),
        ({"threshold": 0}, "argument 'threshold': expected a positive number"),
        ({"threshold": "6"}, "argument 'threshold': expected a positive number"),
        ({"split": "val"}, "argument 'split': expected 'train', 'test' or 'all'"),
        ({"split": None}, "argument 'split': expected 'train', 'test' or 'all'"),
        ({"feedback": "sometimes"}, "argument 'feedback': expected 'inspection', 'queue:K'"),
        ({"feedback": "queue:0"}, "argument 'feedback': expected .*K a positive integer"),
        ({"feedback": 3}, "argument 'feedback': expected 'inspection'"),
        ({"profile": "fast"}, "argument 'profile': unknown profile 'fast'; expected one of paper"),
        ({"profile": 3}, "argument 'profile': expected a profile name or a mapping"),
        ({"profile": {"minutes": [1, 2, 3]}}, "argument 'profile': 'minutes' must be a list of 4 numbers"),
        ({"profile": {"minutes": [1, 2, 3, "x"]}}, "argument 'profile': 'minutes' must be a list of 4 numbers"),
        ({"profile": {"minutes": [1, 2, 3, 4], "speed": 2}}, "argument 'profile': a custom profile is a mapping"),
        ({"profile": {"minutes": [8, 6, 2, 1]}}, "minutes must not decrease"),
        ({"profile": {"minutes": [1, 2, 3, 4], "beta": -1}}, "beta must be a non-negative number"),
        ({"partial_reward": "yes"}, "argument 'partial_reward': expected True or False"),
        ({"new_world_each_reset": "yes"}, "argument 'new_world_each_reset': expected True or False"),
        ({"world_seed": 1.5}, "argument 'world_seed': expected an integer from 0 to"),
        ({"world_seed": -1}, "argument 'world_seed': expected an integer from 0 to"),
        ({"world_seed": "1"}, "argument 'world_seed': expected an integer from 0 to"),
        ({"regressor": "psychic"}, "argument 'regressor': unknown model 'psychic'"),
        ({"regressor": 3}, "argument 'regressor': expected a model name or a mapping"),
        ({"dataset": 3}, "argument 'dataset': expected a dataset name or card path"),
        ({"dataset": "nope"}, "unknown dataset 'nope'; expected one of"),
        # ("human" is not refused: gym.make wraps an rgb_array environment in HumanRendering)
        ({"render_mode": "ansi"}, "argument 'render_mode': expected None or 'rgb_array'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make warns about an unknown render mode first
        with pytest.raises(InputError, match=message):
            gym.make("cryobench/Aldolase-v0", **kwargs)


def test_unknown_argument_is_refused_with_the_expected_ones():
    with pytest.raises(InputError, match=r"unexpected keyword argument 'colour'; expected some of dataset, data, sp"):
        gym.make("cryobench/Aldolase-v0", colour="blue")


def test_cryorl_env_needs_a_folder(tmp_path):
    with pytest.raises(InputError, match="'data'"):
        gym.make("cryobench/CryoRL-v0")
    with pytest.raises(InputError, match="not a folder"):
        gym.make("cryobench/CryoRL-v0", data=str(tmp_path / "missing"))
    with pytest.raises(InputError, match="argument 'data': expected the path of a CryoRL-format folder, got 3"):
        gym.make("cryobench/CryoRL-v0", data=3)
    with pytest.raises(InputError, match="exactly one of the arguments 'dataset'"):
        gym.make("cryobench/Aldolase-v0", data=str(tmp_path))


def test_observation_features_are_fresh_arrays_equal_to_a_recomputation():
    """The incremental features equal the from-scratch ones at every step, and an observation
    handed out is never changed later (agents keep histories of them)."""
    env = gym.make("cryobench/Aldolase-v0", feedback="queue:3")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    history = []
    done = False
    while not done:
        history.append((obs["features"], obs["features"].copy()))
        np.testing.assert_array_equal(
            obs["features"], hole_features_from_scratch(env.unwrapped.world, env.unwrapped.state)
        )
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        done = terminated or truncated
    for handed_out, snapshot in history:
        np.testing.assert_array_equal(handed_out, snapshot)


def test_layout_seed_draws_another_layout_with_the_cards_numbers():
    card = gym.make("cryobench/Aldolase-v0", split="all")
    other = gym.make("cryobench/Aldolase-v0", split="all", layout_seed=2**30 + 5, world_seed=2**30 + 5)
    again = gym.make("cryobench/Aldolase-v0", split="all", layout_seed=2**30 + 5, world_seed=2**30 + 5)
    a, b, c = card.unwrapped, other.unwrapped, again.unwrapped
    assert a.world.n_holes == b.world.n_holes  # the card's hole count, whatever the layout
    assert b.layout_seed == 2**30 + 5 and a.layout_seed != b.layout_seed
    assert not np.array_equal(a.layout.patch, b.layout.patch)  # another hierarchy
    assert np.array_equal(b.layout.patch, c.layout.patch)  # reproducible
    assert np.array_equal(b.world.grid.ctf, c.world.grid.ctf)


def test_new_layout_each_reset_draws_training_layouts_only():
    env = gym.make("cryobench/Aldolase-v0", split="all", new_world_each_reset=True, new_layout_each_reset=True)
    layouts = set()
    for seed in range(3):
        env.reset(seed=seed)
        inner = env.unwrapped
        assert inner.layout_seed < 2**30 and inner.world_seed < 2**30  # never a test world
        layouts.add(inner.layout.patch.tobytes())
    assert len(layouts) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"new_layout_each_reset": True}, "needs new_world_each_reset=True and split='all'"),
        ({"new_layout_each_reset": True, "new_world_each_reset": True}, "split='all'"),
        ({"layout_seed": -1}, "argument 'layout_seed': expected an integer"),
        ({"layout_seed": 2**31}, "argument 'layout_seed': expected an integer"),
    ],
)
def test_bad_layout_arguments_are_refused(kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        gym.make("cryobench/Aldolase-v0", **kwargs)
