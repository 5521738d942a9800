"""The command line: run, compare, plot, list agents; results files and their provenance; bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import cryobench  # noqa: F401
from cryobench.agents.base import Agent
from cryobench.cli import main
from cryobench.evaluate import play_episode


def _run(tmp_path, agent: str, name: str, *extra: str):
    out = tmp_path / f"{name}.json"
    args = [
        "run",
        "--agent",
        agent,
        "--env",
        "aldolase",
        "--episodes",
        "3",
        "--seed",
        "5",
        "--quiet",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_writes_a_reproducible_results_file(tmp_path):
    first, output = _run(tmp_path, "random", "a", "-e", "duration=120")
    second, _ = _run(tmp_path, "random", "b", "-e", "duration=120")
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert "good_exposures" in output and "95% CI" in output
    assert a["seeds"] == [5, 6, 7] and len(a["episodes"]) == 3
    assert a["env"]["kwargs"] == {"duration": 120} and a["env"]["spec"]["id"] == "cryobench/Aldolase-v0"
    assert a["provenance"]["cryobench"] == cryobench.__version__ and a["provenance"]["numpy"] == np.__version__
    assert a["agent"]["name"] == "random" and a["agent"]["upper_bound"] is False
    for doc in (a, b):  # everything but the creation time and the timings is reproducible
        doc["provenance"].pop("created")
        doc.pop("timing")
    assert a == b
    episode = a["episodes"][0]
    assert episode["minutes"] > 120 and len(episode["trajectory"]) == episode["exposures"]
    assert episode["good_exposures"] == sum(episode["trajectory_good"])


def test_the_readmes_main_job_runs_the_shipped_dqn_on_aldolaseau(tmp_path):
    """`cryobench run --agent dqn --env aldolaseau` needs no training step: the card's checkpoint ships."""
    out = tmp_path / "dqn.json"
    result = CliRunner().invoke(
        main, ["run", "--agent", "dqn", "--env", "aldolaseau", "--episodes", "1", "--quiet", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["env"]["spec"]["id"] == "cryobench/AldolaseAu-v0"
    assert document["agent"]["card"]["hyperparameters"]["checkpoint"] == "checkpoints/dqn-aldolase.pt"
    episode = document["episodes"][0]
    assert episode["exposures"] > 100 and episode["good_exposures"] > 50 and not episode["invalid_actions"]


def test_compare_and_plot(tmp_path):
    random_file, _ = _run(tmp_path, "random", "random")
    rank_file, _ = _run(tmp_path, "predict-rank", "rank")
    oracle_file, _ = _run(tmp_path, "oracle-predict-rank", "oracle")
    compared = CliRunner().invoke(main, ["compare", str(random_file), str(rank_file), str(oracle_file)])
    assert compared.exit_code == 0, compared.output
    assert "predict-rank" in compared.output and "Jaccard" in compared.output
    plots = tmp_path / "plots"
    plotted = CliRunner().invoke(main, ["plot", str(random_file), str(rank_file), "--out", str(plots)])
    assert plotted.exit_code == 0, plotted.output
    for kind in ("curve", "bins", "jaccard", "path", "squares"):
        png = plots / f"{kind}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", kind


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON (line 1"),
        ('{"format": "something-else"}', "not a cryobench results file"),
        (
            '{"format": "cryobench-results/1", "env": {}, "agent": {}, "seeds": [0], "episodes": [{}]}',
            "episode 0 lacks",
        ),
    ],
)
def test_corrupt_or_foreign_results_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    for command in (["compare", str(path)], ["plot", str(path), "--kind", "bins", "--out", str(tmp_path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_unknown_names_list_the_known_ones():
    runner = CliRunner()
    agent = runner.invoke(main, ["run", "--agent", "nosuch", "--env", "aldolase", "--episodes", "1", "--quiet"])
    assert agent.exit_code != 0 and "unknown agent 'nosuch'" in agent.output and "predict-rank" in agent.output
    env = runner.invoke(main, ["run", "--agent", "random", "--env", "nosuch", "--episodes", "1", "--quiet"])
    assert env.exit_code != 0 and "unknown environment 'nosuch'" in env.output and "aldolaseau" in env.output
    argument = runner.invoke(main, ["run", "--agent", "random", "--env", "aldolase", "-e", "noise=9", "--quiet"])
    assert argument.exit_code != 0 and "argument 'noise'" in argument.output


def test_list_agents_keeps_upper_bounds_apart():
    output = CliRunner().invoke(main, ["list", "agents"]).output
    agents, bounds = output.split("upper bounds")
    assert "predict-rank" in agents and "oracle-predict-rank" not in agents
    assert "oracle-predict-rank" in bounds


@dataclass
class _Config:
    pass


class _BrokenAgent(Agent):
    """Returns a hole that does not exist every third step."""

    name = "broken"

    def act(self, obs, info):
        if info["exposures"] % 3 == 2:
            return -1
        return int(np.flatnonzero(obs["action_mask"])[0])


def test_an_invalid_hole_is_recorded_not_a_crash():
    env = gym.make("cryobench/Aldolase-v0", duration=60.0)
    row = play_episode(env, _BrokenAgent(), seed=0)
    assert row["invalid_actions"] and row["invalid_actions"][0]["action"] == "-1"
    assert row["invalid_moves"] == len(row["invalid_actions"])
