"""Any policy, scored: evaluate(policy=...), --policy module:attr, the headline metrics in info,
TypeError for unknown keywords, and workers that find the environments (issue 15, item 4)."""

from __future__ import annotations

import json
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import cryobench  # noqa: F401  (registers the environments)
from cryobench.agents.external import SB3Agent, as_agent, load_policy_object, policy_slug
from cryobench.cli import main
from cryobench.errors import InputError, UnknownArgumentError
from cryobench.evaluate import evaluate
from cryobench.metrics import episode_metrics
from tests import any_policies

ENV = "cryobench/Aldolase-v1"


def manual_episode(choose, seed: int, env_kwargs=None) -> dict:
    """The episode a policy plays when driven by hand through gym.make (what evaluate must equal)."""
    env = gym.make(ENV, **(env_kwargs or {}))
    obs, info = env.reset(seed=seed)
    terminated = False
    while not terminated:
        obs, _reward, terminated, _truncated, info = env.step(choose(obs, info))
    return episode_metrics(env.unwrapped.world, env.unwrapped.state)


# ---- evaluate(policy=...) --------------------------------------------------------------------------
def test_a_callable_scores_as_when_driven_by_hand():
    result = evaluate(env=ENV, policy=any_policies.lowest_prediction, episodes=2, seed=5, progress=False)
    for row, seed in zip(result["episodes"], (5, 6), strict=True):
        by_hand = manual_episode(any_policies.lowest_prediction, seed)
        assert row["trajectory"] == by_hand["trajectory"]
        assert row["good_exposures"] == by_hand["good_exposures"]
    assert result["agent"]["name"] == "tests.any_policies:lowest_prediction"
    assert result["agent"]["upper_bound"] is False


def test_an_agent_object_gets_reset_with_the_environment():
    agent = any_policies.PredictedBest()
    result = evaluate(env=ENV, policy=agent, episodes=1, seed=0, progress=False)
    env = gym.make(ENV)
    env.reset(seed=0)
    predicted = env.unwrapped.layout.predicted_ctf

    def by_prediction(obs, info):
        return int(np.argmin(np.where(obs["action_mask"].astype(bool), predicted, np.inf)))

    assert result["episodes"][0]["trajectory"] == manual_episode(by_prediction, 0)["trajectory"]
    assert result["agent"]["name"] == "tests.any_policies:PredictedBest"


def test_a_maskable_model_is_given_the_mask_as_bool():
    model = any_policies.MaskableModel()
    result = evaluate(env=ENV, policy=model, episodes=1, seed=0, progress=False)
    assert all(mask.dtype == bool for mask in model.masks)
    assert len(model.masks) == result["episodes"][0]["exposures"]
    # it picks the last unmasked hole each step: never a visited one
    assert result["episodes"][0]["invalid_moves"] == 0
    assert isinstance(as_agent(model), SB3Agent) and as_agent(model).maskable


def test_a_plain_model_plays_without_a_mask():
    agent = as_agent(any_policies.PlainModel())
    assert not agent.maskable
    result = evaluate(env=ENV, policy=any_policies.PlainModel(), episodes=1, seed=0, progress=False)
    assert result["episodes"][0]["trajectory"] == manual_episode(any_policies.first_free, 0)["trajectory"]


@pytest.mark.slow  # builds an SB3 model (torch)
def test_a_real_maskable_ppo_model_scores_as_its_own_predict_loop(tmp_path):
    sb3_contrib = pytest.importorskip(
        "sb3_contrib", reason="sb3-contrib is not installed (pip install 'cryobench[sb3]')"
    )
    env_kwargs = {"split": "train", "duration": 20.0}
    env = gym.make(ENV, **env_kwargs)
    model = sb3_contrib.MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu")

    def predict(obs, info):
        action, _ = model.predict(obs, deterministic=True, action_masks=obs["action_mask"].astype(bool))
        return int(action)

    result = evaluate(env=ENV, env_kwargs=env_kwargs, policy=model, episodes=2, seed=3, progress=False)
    for row, seed in zip(result["episodes"], (3, 4), strict=True):
        assert row["trajectory"] == manual_episode(predict, seed, env_kwargs)["trajectory"]
        assert row["invalid_moves"] == 0  # masked: never a visited hole
    assert result["agent"]["name"] == "sb3_contrib.ppo_mask.ppo_mask:MaskablePPO"


@pytest.mark.slow  # builds an SB3 model (torch)
def test_a_per_hole_model_trained_on_one_split_is_scored_on_another_by_spec(tmp_path):
    """cryobench.policies' model: built on the train split, saved, loaded with the test split's spaces in
    a policy file, and scored by ``run --policy file.py:model`` as by evaluate(policy=model)."""
    pytest.importorskip("sb3_contrib", reason="sb3-contrib is not installed (pip install 'cryobench[sb3]')")
    from sb3_contrib import MaskablePPO

    from cryobench.policies import PerHolePolicy, load_per_hole_model

    train = gym.make(ENV, split="train", duration=20.0)
    MaskablePPO(PerHolePolicy, train, n_steps=64, batch_size=32, seed=0, device="cpu").save(tmp_path / "m.zip")
    policy_file = tmp_path / "my_policy.py"
    policy_file.write_text(
        "import gymnasium as gym\nimport cryobench\nfrom cryobench.policies import load_per_hole_model\n\n"
        f"model = load_per_hole_model({str(tmp_path / 'm.zip')!r}, gym.make({ENV!r}, duration=20.0), device='cpu')\n"
    )
    model = load_per_hole_model(str(tmp_path / "m.zip"), gym.make(ENV, duration=20.0), device="cpu")

    def predict(obs, info):
        action, _ = model.predict(obs, deterministic=True, action_masks=obs["action_mask"].astype(bool))
        return int(action)

    direct = evaluate(env=ENV, env_kwargs={"duration": 20.0}, policy=model, episodes=1, seed=2, progress=False)
    assert direct["episodes"][0]["trajectory"] == manual_episode(predict, 2, {"duration": 20.0})["trajectory"]
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        ["run", "--policy", f"{policy_file}:model", "--env", ENV, "-e", "duration=20", "--episodes", "1"]
        + ["--seed", "2", "--quiet", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["episodes"][0]["trajectory"] == direct["episodes"][0]["trajectory"]


@pytest.mark.slow  # builds an SB3 model (torch)
def test_a_model_trained_on_other_spaces_is_one_line():
    sb3_contrib = pytest.importorskip(
        "sb3_contrib", reason="sb3-contrib is not installed (pip install 'cryobench[sb3]')"
    )
    other = gym.make(ENV, split="train", duration=20.0)  # another split: another number of holes
    model = sb3_contrib.MaskablePPO("MultiInputPolicy", other, n_steps=64, batch_size=32, seed=0, device="cpu")
    with pytest.raises(InputError, match=r"predict refused the environment's observation .*observation space"):
        evaluate(env=ENV, policy=model, episodes=1, progress=False)


def test_a_policy_spec_string_is_loaded():
    result = evaluate(env=ENV, policy="tests.any_policies:first_free", episodes=1, progress=False)
    assert result["episodes"][0]["trajectory"] == manual_episode(any_policies.first_free, 0)["trajectory"]
    assert result["agent"]["name"] == "tests.any_policies:first_free"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of the arguments 'agent_name'"),
        ({"agent_name": "random", "policy": any_policies.first_free}, "exactly one of"),
        ({"policy": any_policies.first_free, "hyperparameters": {"x": 1}}, "a policy has none"),
        ({"policy": any_policies.first_free, "sealed": True}, "give a 'module:attr' spec"),
        ({"policy": 42}, "expected an agent .* got int"),
    ],
)
def test_evaluate_refuses_what_it_cannot_run(kwargs, message):
    with pytest.raises(InputError, match=message):
        evaluate(env=ENV, episodes=1, progress=False, **kwargs)


def test_an_invalid_action_names_the_step_and_value():
    with pytest.raises(InputError, match=r"episode seed 0, step 3: returned 1000000000, expected a hole index from 0"):
        evaluate(env=ENV, policy=any_policies.out_of_range_at_step_3, episodes=1, progress=False)


def test_a_policy_that_raises_names_the_step_and_its_line():
    with pytest.raises(InputError, match=r"step 2: it raised KeyError: 'no such column' \(.*any_policies.py:\d+\)"):
        evaluate(env=ENV, policy=any_policies.raises_at_step_2, episodes=1, progress=False)


# ---- specs -------------------------------------------------------------------------------------------
def test_a_file_path_spec_loads_code_that_is_not_a_package(tmp_path):
    path = tmp_path / "my_policy.py"
    path.write_text(
        "import numpy as np\n\ndef pick(obs, info):\n    return int(np.flatnonzero(obs['action_mask'])[-1])\n"
    )
    result = evaluate(env=ENV, policy=f"{path}:pick", episodes=1, progress=False)
    by_hand = manual_episode(lambda obs, info: int(np.flatnonzero(obs["action_mask"])[-1]), 0)
    assert result["episodes"][0]["trajectory"] == by_hand["trajectory"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.any_policies:nothing", r"has no attribute 'nothing' \(it has: .*first_free"),
        ("tests.no_such_module:x", r"no module 'tests.no_such_module'"),
        ("missing/file.py:x", r"file 'missing/file.py' not found"),
        (":x", "expected MODULE:ATTRIBUTE"),
        ("tests.any_policies:", "expected MODULE:ATTRIBUTE"),
    ],
)
def test_a_wrong_spec_is_one_line(spec, message):
    with pytest.raises(InputError, match=message):
        load_policy_object(spec)


def test_a_file_that_fails_to_run_is_one_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('half written')\n")
    with pytest.raises(InputError, match=r"running '.*broken.py' failed: RuntimeError: half written"):
        load_policy_object(f"{path}:x")


def test_policy_slug_is_a_leaderboard_name():
    assert policy_slug("path/to/my_file.py:My_Policy") == "policy-my-policy"
    assert policy_slug("pkg.mod:__call__") == "policy-call"


# ---- the command line ------------------------------------------------------------------------------
def test_run_policy_writes_results(tmp_path):
    path = tmp_path / "pick.py"
    path.write_text(
        textwrap.dedent(
            """
            import numpy as np

            class LastFree:
                def act(self, obs, info):
                    return int(np.flatnonzero(obs["action_mask"])[-1])
            """
        )
    )
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main, ["run", "--policy", f"{path}:LastFree", "--env", ENV, "--episodes", "2", "--quiet", "--out", out]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["agent"]["name"] == f"{path}:LastFree" and len(doc["episodes"]) == 2
    by_hand = manual_episode(lambda obs, info: int(np.flatnonzero(obs["action_mask"])[-1]), 0)
    assert doc["episodes"][0]["good_exposures"] == by_hand["good_exposures"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "tests.any_policies:nothing"], "has no attribute 'nothing'"),
        (["--policy", "nowhere.py:x"], "file 'nowhere.py' not found"),
        (["--policy", "tests.any_policies"], "expected MODULE:ATTR"),
        (["--policy", "tests.any_policies:out_of_range_at_step_3"], "step 3: returned 1000000000"),
        (["--agent", "random", "--policy", "tests.any_policies:first_free"], "exactly one of --agent"),
        ([], "exactly one of --agent"),
        (["--agent", "tests.any_policies:first_free"], "goes to --policy"),
    ],
)
def test_run_policy_errors_are_one_line(args, message):
    result = CliRunner().invoke(main, ["run", "--env", "aldolase", "--episodes", "1", "--quiet", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_submit_policy_needs_protocol_2():
    result = CliRunner().invoke(main, ["submit", "--policy", "tests.any_policies:first_free", "--protocol", "1"])
    assert result.exit_code == 2 and "protocol 1 is frozen to registered agents" in result.output


# ---- info: the headline metrics, and no leak of the truth ------------------------------------------------
@pytest.mark.parametrize("feedback", ["inspection", "queue:4", "none"])
def test_info_carries_the_headline_metrics_at_the_end(feedback):
    env = gym.make(ENV, feedback=feedback)
    obs, info = env.reset(seed=2)
    terminated = False
    while not terminated:
        obs, _reward, terminated, _truncated, info = env.step(any_policies.first_free(obs, info))
    row = episode_metrics(env.unwrapped.world, env.unwrapped.state)
    assert (info["good_exposures"], info["exposures"], info["minutes"]) == (
        row["good_exposures"],
        row["exposures"],
        row["minutes"],
    )


@pytest.mark.parametrize("feedback", ["inspection", "queue:4", "none"])
def test_info_during_a_session_shows_only_what_feedback_revealed(feedback):
    """What an agent sees as info: with feedback none no good count until the end; otherwise the
    count of good holes among those revealed so far, never more."""
    recorder = any_policies.RecordsInfo()
    result = evaluate(env=ENV, env_kwargs={"feedback": feedback}, policy=recorder, episodes=1, progress=False)
    row = result["episodes"][0]
    good_so_far = np.concatenate([[0], np.cumsum(row["trajectory_good"])])
    env = gym.make(ENV, feedback=feedback)
    for info in recorder.infos:
        step = info["exposures"]
        if feedback == "none":
            assert "good_exposures" not in info
        elif feedback == "inspection":  # every exposure revealed at once
            assert info["good_exposures"] == good_so_far[step]
        else:  # queue:4: revealed in batches of 4, so the count lags by the unrevealed remainder
            revealed = step - step % 4
            assert info["good_exposures"] == good_so_far[revealed]
    assert len(recorder.infos) == row["exposures"]
    env.close()


@pytest.mark.parametrize("feedback", ["inspection", "queue:4", "none"])
def test_a_cassettes_good_exposures_per_grid_follow_the_same_rule(feedback):
    env = gym.make(ENV, grids=2, duration=200.0, feedback=feedback)
    obs, info = env.reset(seed=0)
    world, state = env.unwrapped.world, env.unwrapped.state
    terminated = False
    while not terminated:
        obs, _reward, terminated, _truncated, info = env.step(any_policies.first_free(obs, info))
        exposed = np.asarray(state.exposures)
        if terminated:
            good = world.true_good[exposed]
        elif feedback == "none":
            assert "grid_good_exposures" not in info and "good_exposures" not in info
            continue
        else:
            good = world.true_good[exposed] & state.revealed[exposed]
        expected = [int(good[world.cassette[exposed] == g].sum()) for g in range(world.n_grids)]
        assert info["grid_good_exposures"].tolist() == expected
        assert info["grid_good_exposures"].sum() == info["good_exposures"]


# ---- TypeError for unknown keywords --------------------------------------------------------------------
def test_an_unknown_keyword_is_a_type_error_and_an_input_error():
    with pytest.raises(TypeError) as caught:
        gym.make(ENV, categorical_action_encoding=True)  # what TorchRL's GymEnv probes with
    assert isinstance(caught.value, InputError) and isinstance(caught.value, UnknownArgumentError)
    assert "unexpected keyword argument 'categorical_action_encoding'; expected some of dataset" in str(caught.value)


def test_the_cli_still_shows_an_unknown_keyword_as_one_line():
    result = CliRunner().invoke(main, ["run", "--agent", "random", "--env", "aldolase", "-e", "colour=blue", "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: unexpected keyword argument 'colour'; expected some of "
        + ", ".join(cryobench.env.ENV_ARGUMENTS)
        + " (see the class docstring)"
    ]


# ---- workers find the environments -------------------------------------------------------------------------
@pytest.mark.slow  # starts worker processes
def test_sb3_subproc_vec_env_finds_the_environment_by_module_and_id():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is not installed (pip install 'cryobench[sb3]')")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    kwargs = {"split": "train", "duration": 30.0}
    vec = make_vec_env(
        "cryobench:cryobench/Aldolase-v1", n_envs=2, seed=7, vec_env_cls=SubprocVecEnv, env_kwargs=kwargs
    )
    try:
        obs = vec.reset()
        single = gym.make(ENV, **kwargs)
        for index in range(2):
            expected, _ = single.reset(seed=7 + index)
            np.testing.assert_array_equal(obs["features"][index], expected["features"])
        assert obs["features"].shape == (2, *single.observation_space["features"].shape)
    finally:
        vec.close()


@pytest.mark.slow  # starts a worker process
def test_the_plain_id_is_unknown_in_a_spawned_worker_that_did_not_import_cryobench():
    """Why the module:id form is documented: gymnasium 1.x loads no plugin entry points, so a fresh
    worker knows the ``cryobench/`` namespace only once something imports cryobench."""
    import multiprocessing as mp

    from tests.gym_worker import make_and_close

    context = mp.get_context("spawn")
    with context.Pool(1) as pool:
        outcome = pool.apply(make_and_close, ("cryobench/Aldolase-v1",))
        again = pool.apply(make_and_close, ("cryobench:cryobench/Aldolase-v1",))
    assert outcome.startswith("NamespaceNotFound: Namespace cryobench not found") and again == "ok"
