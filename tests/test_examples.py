"""The examples of cryobench.examples run (on the small grid) and do what their docstrings say.

Each is run in-process through its ``main(argv)``, as ``python -m cryobench.examples.NAME`` would.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cryobench  # noqa: F401  (registers the environments)
from cryobench.evaluate import evaluate
from cryobench.examples.common import env_kwargs, good_exposures_per_episode, make_test_env


def test_good_exposures_are_the_rewarded_steps_of_each_session():
    rewards = np.array([0.0, 1.0, 0.5, 0.0, 0.9, 1.0, 0.0, 0.0, 0.3])
    dones = np.array([0, 0, 0, 1, 0, 0, 0, 1, 0])  # two sessions end; the third is still running
    assert good_exposures_per_episode(rewards, dones) == [2, 2]


def test_the_count_of_rewarded_steps_equals_the_worlds_good_exposures():
    env = make_test_env(small=True)
    obs, _ = env.reset(seed=4)
    rewards, terminated = [], False
    while not terminated:
        obs, reward, terminated, _, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        rewards.append(reward)
    inner = env.unwrapped
    truth = int(inner.world.true_good[np.asarray(inner.state.exposures)].sum())
    assert good_exposures_per_episode(rewards, [0] * (len(rewards) - 1) + [1]) == [truth]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sb3_example_trains_saves_and_scores_on_the_test_split(tmp_path):
    pytest.importorskip("sb3_contrib")
    from cryobench.examples import sb3_maskable_ppo
    from cryobench.policies import load_per_hole_model

    scores = sb3_maskable_ppo.main(["--small", "--timesteps", "512", "--episodes", "3", "--out", str(tmp_path)])
    assert scores == json.loads((tmp_path / "scores.json").read_text())
    assert scores["timesteps"] == 512 and scores["training_worlds"]["seeds"] == [10**6, 10**6 + 2]
    # snowball's number is cryobench's own evaluation of snowball on the same seeds
    snowball = evaluate("snowball", "cryobench/Aldolase-v1", env_kwargs(True), episodes=3, progress=False)
    assert scores["test_split"]["snowball"] == np.mean([row["good_exposures"] for row in snowball["episodes"]])
    # the policy's number is the saved model's, replayed
    env = make_test_env(small=True)
    model = load_per_hole_model(str(tmp_path / "model.zip"), env, device="cpu")

    rows = []
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        terminated = False
        while not terminated:
            action, _ = model.predict(obs, action_masks=obs["action_mask"].astype(bool), deterministic=True)
            obs, _, terminated, _, info = env.step(int(action))
        rows.append(info["good_exposures"])
    assert scores["test_split"]["per_hole_ppo"] == np.mean(rows)
    curve = np.loadtxt(tmp_path / "curve.csv", delimiter=",", skiprows=1, ndmin=2)
    assert len(curve) >= 2 and np.all(np.diff(curve[:, 0]) >= 0) and curve[-1, 0] <= 512
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cleanrl_example_trains_and_is_reproducible():
    from cryobench.examples import cleanrl_ppo

    first = cleanrl_ppo.main(["--small", "--total-timesteps", "512"])
    again = cleanrl_ppo.main(["--small", "--total-timesteps", "512"])
    assert len(first) >= 4 and first == again  # every random choice comes from --seed


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
def test_torchrl_example_trains_with_a_bool_mask():
    pytest.importorskip("torchrl", reason="torchrl is not installed (pip install 'cryobench[torchrl]')")
    from cryobench.examples import torchrl_ppo

    env = torchrl_ppo.make_env(small=True, seed=0)
    assert env.observation_spec["action_mask"].dtype == torch.bool  # what ActionMask and MaskedCategorical need
    good = torchrl_ppo.main(["--small", "--frames", "512"])
    assert len(good) >= 4 and good == torchrl_ppo.main(["--small", "--frames", "512"])


def zoo_hyperparameters(env_id: str) -> tuple[dict, dict]:
    """The rl-baselines3-zoo file's entry for ``env_id``, prepared as rl_zoo3's ExperimentManager
    prepares it (2.9.2, ``_preprocess_hyperparams``): returns (model kwargs, run settings)."""
    import importlib
    from importlib.resources import files

    import yaml

    hyperparams = dict(yaml.safe_load(files("cryobench.examples").joinpath("rl_zoo.yml").read_text())[env_id])
    run = {key: hyperparams.pop(key) for key in ("n_envs", "n_timesteps", "env_kwargs")}
    hyperparams["policy_kwargs"] = eval(hyperparams["policy_kwargs"])  # the zoo evaluates this string too
    module, _, name = hyperparams["policy"].rpartition(".")  # a dotted policy name is imported
    hyperparams["policy"] = getattr(importlib.import_module(module), name)
    return hyperparams, run


@pytest.mark.slow
def test_the_rl_zoo_hyperparameter_file_trains_maskable_ppo():
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.env_util import make_vec_env

    from cryobench.policies import PerHolePolicy

    hyperparams, run = zoo_hyperparameters("cryobench/Aldolase-v1")
    assert hyperparams["policy"] is PerHolePolicy and run["env_kwargs"] == {
        "split": "train",
        "new_world_each_reset": True,
    }
    env = make_vec_env(
        "cryobench/Aldolase-v1", n_envs=run["n_envs"], env_kwargs={**run["env_kwargs"], **env_kwargs(True)}
    )
    model = MaskablePPO(env=env, seed=0, device="cpu", **hyperparams)
    assert model.policy.features_extractor.features_dim == 42 + 16  # the file's widths reached the policy
    model.learn(total_timesteps=512)
    assert model.num_timesteps == 512


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
def test_tianshou_example_masks_actions_keeps_a_compact_buffer_and_scores_on_the_test_split():
    pytest.importorskip("tianshou", reason="tianshou is not installed (pip install 'cryobench[tianshou]')")
    from cryobench.examples import tianshou_dqn

    _policy, buffer, numbers = tianshou_dqn.train(small=True, steps=512)
    assert numbers["steps"] == 512 and len(buffer) == 512
    stored = buffer[np.arange(len(buffer))]
    # Tianshou read the renamed mask: no collected action chose an empty candidate slot
    assert stored.obs.mask[np.arange(len(buffer)), stored.act].all()
    assert (stored.info.hole == stored.obs.candidate_holes[np.arange(len(buffer)), stored.act]).all()
    # one compact observation per transition and no second copy as obs_next
    observation = tianshou_dqn.make_env(small=True).reset(seed=0)[0]
    assert not hasattr(buffer, "obs_next")
    assert sum(value.nbytes for value in buffer.obs.values()) == buffer.maxsize * sum(
        np.asarray(value).nbytes for value in observation.values()
    )

    scores = tianshou_dqn.main(["--small", "--steps", "512", "--episodes", "3"])
    assert scores == tianshou_dqn.main(["--small", "--steps", "512", "--episodes", "3"])  # every draw from --seed
    snowball = evaluate("snowball", "cryobench/Aldolase-v1", {**env_kwargs(True), "split": "test"}, episodes=3)
    assert scores["test_split"]["snowball"] == np.mean([row["good_exposures"] for row in snowball["episodes"]])
