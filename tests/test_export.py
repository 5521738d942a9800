"""cryobench export (issue 15, item 5): results files and play sessions out as trajectories, exact on replay."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import cryobench  # noqa: F401  (registers the environments)
from cryobench.cli import main
from cryobench.errors import InputError
from cryobench.evaluate import evaluate
from cryobench.export import (
    JOURNAL_FORMAT,
    export_minari,
    export_npz,
    load_trajectories,
    replay_observations,
)
from cryobench.play import PlayConfig, create_app
from cryobench.results import save_results

ENV = "cryobench/Aldolase-v1"
SHORT = {"duration": 40.0}


class SometimesStays:
    """Exposes the lowest predicted-CTF feature, but every 5th decision picks its current (visited) hole:
    a costed no-op that results files do not list (export must find it from the minutes)."""

    def reset(self, env, seed):
        self.decisions = 0

    def act(self, obs, info):
        self.decisions += 1
        if self.decisions % 5 == 0:
            return int(obs["current_hole"])
        return int(np.argmin(np.where(obs["action_mask"].astype(bool), obs["features"][:, 0], np.inf)))


def played_by_hand(seed: int, env_kwargs: dict) -> tuple[list[dict], list[float], list[bool]]:
    """The observations (reset's first), rewards and terminations of SometimesStays, through gym.make."""
    env = gym.make(ENV, **env_kwargs)
    policy = SometimesStays()
    obs, info = env.reset(seed=seed)
    policy.reset(env, seed)
    observations, rewards, terminations = [obs], [], []
    terminated = False
    while not terminated:
        obs, reward, terminated, _truncated, info = env.step(policy.act(obs, info))
        observations.append(obs)
        rewards.append(reward)
        terminations.append(terminated)
    return observations, rewards, terminations


@pytest.fixture
def results_file(tmp_path):
    result = evaluate(env=ENV, env_kwargs=SHORT, policy=SometimesStays(), episodes=2, seed=11, progress=False)
    assert all(row["invalid_moves"] > 0 for row in result["episodes"])  # the no-ops are there to be found
    return save_results(result, tmp_path / "stays.json")


def test_npz_round_trip_rewards_and_observations_are_exact(results_file, tmp_path):
    metadata = export_npz([results_file], tmp_path / "t.npz")
    trajectories = load_trajectories(tmp_path / "t.npz")
    assert metadata["episodes"] == len(trajectories) == 2 and trajectories.metadata == metadata
    recorded = json.loads(results_file.read_text())
    for index, seed in enumerate((11, 12)):
        observations, rewards, terminations = played_by_hand(seed, SHORT)
        steps = trajectories.episode(index)
        assert steps["rewards"].tolist() == rewards  # replayed rewards equal the recorded ones, step by step
        assert steps["terminations"].tolist() == terminations and not steps["truncations"].any()
        assert float(steps["rewards"].sum()) == recorded["episodes"][index]["total_reward"]
        exposed = ~np.isnan(steps["revealed_ctf"])
        assert steps["actions"][exposed].tolist() == recorded["episodes"][index]["trajectory"]
        assert steps["revealed_ctf"][exposed].tolist() == recorded["episodes"][index]["trajectory_ctf"]
        assert (~exposed).sum() == recorded["episodes"][index]["invalid_moves"]
        rebuilt = [obs for obs, _info in replay_observations(trajectories, index)]
        assert len(rebuilt) == len(observations)
        for mine, theirs in zip(rebuilt, observations, strict=True):
            assert mine.keys() == theirs.keys()
            for key in mine:
                np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


def test_episodes_on_several_worlds_replay_on_their_own(tmp_path):
    result = evaluate("random", ENV, {"duration": 20.0}, episodes=1, seed=3, progress=False, worlds=(7, 8))
    path = save_results(result, tmp_path / "worlds.json")
    export_npz([path], tmp_path / "t.npz")
    trajectories = load_trajectories(tmp_path / "t.npz")
    assert trajectories.arrays["worlds"].tolist() == [7, 8]
    for index, row in enumerate(result["episodes"]):
        steps = trajectories.episode(index)
        assert steps["actions"].tolist() == row["trajectory"]
        assert float(steps["rewards"].sum()) == row["total_reward"]
        assert len(list(replay_observations(trajectories, index))) == len(row["trajectory"]) + 1


def test_a_run_with_compact_observations_is_exported_with_holes_as_actions(tmp_path):
    def first_slot(obs, info):
        return int(np.flatnonzero(obs["action_mask"])[0])  # a candidate slot, not a hole

    kwargs = {"duration": 20.0, "observation": "compact"}
    result = evaluate(env=ENV, env_kwargs=kwargs, policy=first_slot, episodes=1, progress=False)
    metadata = export_npz([save_results(result, tmp_path / "compact.json")], tmp_path / "t.npz")
    assert metadata["env"]["kwargs"] == {"duration": 20.0, "observation": "full"}
    steps = load_trajectories(tmp_path / "t.npz").episode(0)
    assert steps["actions"].tolist() == result["episodes"][0]["trajectory"]
    assert float(steps["rewards"].sum()) == result["episodes"][0]["total_reward"]


def test_a_changed_world_is_noticed_on_replay(results_file, tmp_path):
    export_npz([results_file], tmp_path / "t.npz")
    trajectories = load_trajectories(tmp_path / "t.npz")
    trajectories.metadata["env"]["kwargs"] = {**SHORT, "world_seed": 5}  # another world, same layout
    with pytest.raises(InputError, match=r"episode 0, step \d+: the replay gives reward .* another world"):
        list(replay_observations(trajectories, 0))


def test_a_results_file_of_another_world_is_refused(results_file, tmp_path):
    doc = json.loads(results_file.read_text())
    doc["env"]["kwargs"]["world_seed"] = 5
    path = tmp_path / "moved.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"moved.json episode 0: .*(replaying it gives|replayed rewards sum)"):
        export_npz([path], tmp_path / "t.npz")
    assert not (tmp_path / "t.npz").exists()  # nothing half-written


def test_files_of_two_environments_are_refused(results_file, tmp_path):
    other = evaluate(env=ENV, env_kwargs={"duration": 20.0}, agent_name="random", episodes=1, progress=False)
    path = save_results(other, tmp_path / "other.json")
    with pytest.raises(InputError, match=r"other.json: environment .* differs from .*stays.json's"):
        export_npz([results_file, path], tmp_path / "t.npz")


STAGED = "cryobench/AldolaseStaged-v0"


class RecordsStagedActions:
    """Random allowed actions of a staged session (holes of imaged squares, squares not imaged yet), each
    episode's actions recorded; with ``no_op_every`` it re-images the start's square now and then (a costed no-op)."""

    def __init__(self, no_op_every: int = 0) -> None:
        self.no_op_every, self.episodes = no_op_every, []

    def reset(self, env, seed):
        self.rng, self.n_holes = np.random.default_rng(seed), env.unwrapped.world.n_holes
        self.start_square = int(env.unwrapped.state.squares_imaged[0])
        self.episodes.append([])

    def act(self, obs, info):
        if self.no_op_every and len(self.episodes[-1]) % self.no_op_every == self.no_op_every - 1:
            action = self.n_holes + self.start_square  # imaged already
        else:
            action = int(self.rng.choice(np.flatnonzero(obs["action_mask"])))
        self.episodes[-1].append(action)
        return action


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    """A staged results file of two random episodes, and the actions they took."""
    agent = RecordsStagedActions()
    result = evaluate(env=STAGED, env_kwargs={"duration": 90.0}, policy=agent, episodes=2, progress=False)
    path = save_results(result, tmp_path_factory.mktemp("staged") / "staged.json")
    return path, result, agent.episodes


@pytest.mark.slow  # builds a staged world (seconds)
def test_a_staged_session_round_trips_with_its_imaging_where_it_was(staged_run, tmp_path):
    path, result, recorded = staged_run
    n_holes = gym.make(STAGED, duration=90.0).unwrapped.world.n_holes
    # the imaging is interleaved with the exposures (not all at the start), so placing it is tested
    assert any(
        a >= n_holes and any(b < n_holes for b in actions[:i]) for actions in recorded for i, a in enumerate(actions)
    )
    export_npz([path], tmp_path / "staged.npz")
    trajectories = load_trajectories(tmp_path / "staged.npz")
    for index, row in enumerate(result["episodes"]):
        steps = trajectories.episode(index)
        # every action where it was: square actions placed from the recorded minutes alone
        assert steps["actions"].tolist() == recorded[index]
        squares = steps["actions"] >= n_holes
        assert np.sum(steps["rewards"][~squares]) == row["total_reward"]  # the exposures' rewards, summed alike
        assert np.isnan(steps["revealed_ctf"][squares]).all() and (steps["rewards"][squares] == 0).all()
        assert steps["revealed_ctf"][~squares].tolist() == row["trajectory_ctf"]
        # replaying checks every stored reward; the last observation is the session's end
        observations = list(replay_observations(trajectories, index))
        assert len(observations) == len(recorded[index]) + 1
        assert observations[-1][1]["good_exposures"] == row["good_exposures"]


@pytest.mark.slow
def test_a_staged_journal_round_trips_with_its_imaging_pairs(staged_run, tmp_path):
    path, result, recorded = staged_run
    n_holes = gym.make(STAGED, duration=90.0).unwrapped.world.n_holes
    actions = recorded[0]
    # a journal: the exposures, and each square imaged with the number of exposures made before it
    pairs = [[sum(a < n_holes for a in actions[:i]), a - n_holes] for i, a in enumerate(actions) if a >= n_holes]
    journal = {
        "format": JOURNAL_FORMAT,
        "seed": result["episodes"][0]["seed"],
        "exposures": [a for a in actions if a < n_holes],
        "env": result["env"],
        "squares_imaged": pairs,
    }
    (tmp_path / "journal.json").write_text(json.dumps(journal))
    export_npz([tmp_path / "journal.json"], tmp_path / "j.npz")
    assert load_trajectories(tmp_path / "j.npz").episode(0)["actions"].tolist() == actions
    journal["squares_imaged"] = [[len(actions) + 5, 0]]
    (tmp_path / "journal.json").write_text(json.dumps(journal))
    with pytest.raises(InputError, match=r"journal.json: 'squares_imaged' must hold \[exposures before, square\]"):
        export_npz([tmp_path / "journal.json"], tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.slow
def test_a_staged_session_with_costed_no_ops_is_refused_in_one_line(tmp_path):
    agent = RecordsStagedActions(no_op_every=4)
    result = evaluate(env=STAGED, env_kwargs={"duration": 30.0}, policy=agent, episodes=1, progress=False)
    assert result["episodes"][0]["invalid_moves"] == len(agent.episodes[0]) // 4  # every 4th action re-imaged
    path = save_results(result, tmp_path / "staged.json")
    with pytest.raises(InputError, match=r"staged.json episode 0: episode seed 0: a staged episode with \d+ costed"):
        export_npz([path], tmp_path / "t.npz")
    assert not (tmp_path / "t.npz").exists()


def test_not_a_trajectories_file(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="not a cryobench trajectories file"):
        load_trajectories(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="not a readable .npz file"):
        load_trajectories(tmp_path / "text.npz")


# ---- people's play sessions -------------------------------------------------------------------------------
def test_play_sessions_finished_and_in_progress_are_exported(tmp_path):
    kwargs = {"split": "all", "duration": 30.0}
    config = PlayConfig("aldolaseau-v0", kwargs, seed=4, results_dir=tmp_path / "play")
    client = create_app(config).test_client()
    finished = client.post("/api/sessions", json={"player": "Ann"}).json
    unfinished = client.post("/api/sessions", json={"player": "Bo"}).json
    patch = np.asarray(client.get("/api/layout").json["patch"])
    holes = [int(h) for h in np.flatnonzero(patch == patch[finished["start_hole"]]) if h != finished["start_hole"]]
    for hole in holes[:3]:
        client.post(f"/api/sessions/{finished['session']}/expose", json={"hole": hole})
        client.post(f"/api/sessions/{unfinished['session']}/expose", json={"hole": hole})
    done = client.post(f"/api/sessions/{finished['session']}/finish", json={}).json  # stopped early
    journal = tmp_path / "play" / "sessions-in-progress" / f"{unfinished['session']}.json"
    assert json.loads(journal.read_text())["format"] == JOURNAL_FORMAT

    metadata = export_npz([done["results_file"], journal], tmp_path / "people.npz")
    trajectories = load_trajectories(tmp_path / "people.npz")
    assert [s["agent"] for s in metadata["sources"]] == ["human:Ann", "human:Bo"]
    assert trajectories.arrays["human"].tolist() == [True, True]
    env = gym.make("cryobench/AldolaseAu-v0", **kwargs)
    env.reset(seed=4)
    rewards = [env.step(hole)[1] for hole in holes[:3]]
    for index in range(2):
        steps = trajectories.episode(index)
        assert steps["actions"].tolist() == holes[:3]
        assert steps["rewards"].tolist() == rewards
        assert steps["truncations"].tolist() == [False, False, True]  # cut short by the person, not the clock
        assert not steps["terminations"].any()
    assert trajectories.arrays["start_holes"].tolist() == [finished["start_hole"]] * 2


# ---- minari ----------------------------------------------------------------------------------------------
def test_minari_dataset_holds_the_replayed_observations(results_file, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari", reason="Minari is not installed (pip install 'cryobench[minari]')")
    folder = export_minari([results_file], "cryobench/stays-v0", tmp_path / "minari")
    assert folder == tmp_path / "minari" / "cryobench" / "stays-v0"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dataset = minari.load_dataset("cryobench/stays-v0")
    episodes = list(dataset.iterate_episodes())
    assert len(episodes) == 2
    observations, rewards, terminations = played_by_hand(11, SHORT)
    first = episodes[0]
    assert first.rewards.tolist() == rewards and first.terminations.tolist() == terminations
    np.testing.assert_array_equal(first.observations["features"], np.stack([o["features"] for o in observations]))
    np.testing.assert_array_equal(first.observations["current_hole"], [o["current_hole"] for o in observations])
    assert dataset.recover_environment().spec.id == ENV
    with pytest.raises(InputError, match="--dataset-id 'cryobench/stays-v0'"):
        export_minari([results_file], "cryobench/stays-v0", tmp_path / "minari")  # taken
    with pytest.raises(InputError, match="--dataset-id: expected namespace/name-vN"):
        export_minari([results_file], "no-version", tmp_path / "minari")


# ---- the command line --------------------------------------------------------------------------------------
def test_export_command(results_file, tmp_path):
    out = tmp_path / "t.npz"
    result = CliRunner().invoke(main, ["export", str(results_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("2 episodes, ") and "from 1 results file(s) (0 played by people)" in result.output
    assert len(load_trajectories(out)) == 2
    for args, message in (
        ([str(results_file), "--out", str(tmp_path)], "is a folder; --format npz writes a file"),
        ([str(tmp_path / "none.json")], "no such results file or folder"),
        ([str(out)], "not UTF-8 text"),
    ):
        result = CliRunner().invoke(main, ["export", *args])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert message in result.output, result.output


def test_the_journal_format_is_the_play_servers():
    from cryobench.play.session import JOURNAL_FORMAT as PLAY_JOURNAL_FORMAT

    assert JOURNAL_FORMAT == PLAY_JOURNAL_FORMAT
