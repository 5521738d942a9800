"""The command line: run, compare, plot, list agents; results files and their provenance; bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import cryobench  # noqa: F401
from cryobench.agents.base import Agent
from cryobench.cli import main
from cryobench.evaluate import evaluate, play_episode
from cryobench.plots import PLOT_DESCRIPTIONS, PLOT_KINDS
from cryobench.results import save_results


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
    assert a["env"]["kwargs"] == {"duration": 120} and a["env"]["spec"]["id"] == "cryobench/Aldolase-v1"
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
    assert document["env"]["spec"]["id"] == "cryobench/AldolaseAu-v1"
    assert document["agent"]["card"]["hyperparameters"]["checkpoint"] == "checkpoints/dqn-v3-seed0.pt"
    episode = document["episodes"][0]
    assert episode["exposures"] > 100 and episode["good_exposures"] > 50 and not episode["invalid_actions"]


@pytest.mark.slow  # three runs and every plot kind (tests/test_plots.py checks the figures themselves)
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
    assert plotted.output.split() == [str(plots / f"{kind}.png") for kind in PLOT_KINDS]
    for kind in PLOT_KINDS:
        png = plots / f"{kind}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", kind


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON (line 1"),
        ('{"format": "something-else"}', "not a cryobench results file"),
        (
            '{"format": "cryobench-results/1", "env": {}, "agent": {}, "seeds": [0], "episodes": [{}]}',
            "field agent: 'name' is a required property",
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


# ---- compare and plot: formats, sweep folders, wrong input ------------------------------------
def _one_line_error(result, message: str) -> None:
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_compare_json_and_csv(tmp_path):
    random_file, _ = _run(tmp_path, "random", "random")
    rank_file, _ = _run(tmp_path, "predict-rank", "rank", "-e", "noise=2")
    as_json = CliRunner().invoke(main, ["compare", str(random_file), str(rank_file), "--json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    rows = {row["agent"]: row for row in document["table"]}
    assert set(rows) == {"random", "predict-rank"} and rows["predict-rank"]["env"] == "cryobench/Aldolase-v1[noise=2]"
    ranked = json.loads(rank_file.read_text())
    assert rows["predict-rank"]["good_mean"] == ranked["summary"]["good_exposures"]["mean"]
    assert rows["random"]["normalised_score"] is None  # no upper bound among the files: null, not NaN
    matrix = document["jaccard"]["matrix"]
    assert document["jaccard"]["labels"] == [
        "random@cryobench/Aldolase-v1",
        "predict-rank@cryobench/Aldolase-v1[noise=2]",
    ]
    assert matrix[0][1] is None and 0.0 <= matrix[0][0] <= 1.0  # different arguments do not compare
    as_csv = CliRunner().invoke(main, ["compare", str(random_file), str(rank_file), "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    table = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [row["agent"] for row in table] == [row["agent"] for row in document["table"]]
    assert float(table[0]["good_mean"]) == document["table"][0]["good_mean"]
    both = CliRunner().invoke(main, ["compare", str(random_file), "--json", "--csv"])
    _one_line_error(both, "options --json and --csv: choose one")


def _chunk(folder, agent: str, first_seed: int, **env_kwargs) -> None:
    result = evaluate(agent, "aldolase", {"duration": 60.0, **env_kwargs}, 2, first_seed, progress=False)
    save_results(result, folder / f"{agent}_{first_seed}_{len(env_kwargs)}.json")


def test_a_sweep_folder_is_merged_by_agent_and_environment(tmp_path):
    folder = tmp_path / "sweep"
    for first_seed in (0, 2):
        _chunk(folder, "random", first_seed)
        _chunk(folder, "random", first_seed, noise=2.0)
    compared = CliRunner().invoke(main, ["compare", str(folder), "--json"])
    assert compared.exit_code == 0, compared.output
    table = json.loads(compared.output)["table"]
    assert sorted(row["env"] for row in table) == [
        "cryobench/Aldolase-v1[duration=60.0,noise=2.0]",
        "cryobench/Aldolase-v1[duration=60.0]",
    ]
    assert [row["episodes"] for row in table] == [4, 4]
    plotted = CliRunner().invoke(
        main, ["plot", str(folder), "--kind", "curve", "--format", "svg", "--out", str(tmp_path)]
    )
    assert plotted.exit_code == 0, plotted.output
    svg = (tmp_path / "curve.svg").read_text()
    assert "random, noise=1" in svg and "random, noise=2" in svg and "mean over 4 episodes" in svg
    _chunk(folder, "random", 1)  # seeds 1-2 overlap the chunks 0-1 and 2-3
    _one_line_error(CliRunner().invoke(main, ["compare", str(folder)]), "seed 1 of random on cryobench/Aldolase-v1")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--dpi", "0"], "Invalid value for '--dpi': 0 is not in the range 10<=x<=2400"),
        (["--dpi", "many"], "Invalid value for '--dpi': 'many' is not a valid integer range"),
        (["--format", "gif"], "Invalid value for '--format': 'gif' is not one of 'png', 'svg', 'pdf'"),
        (["--kind", "pie"], "Invalid value for '--kind': 'pie' is not one of"),
    ],
)
def test_plot_refuses_wrong_options_in_one_line(tmp_path, arguments, message):
    random_file, _ = _run(tmp_path, "random", "random")
    _one_line_error(CliRunner().invoke(main, ["plot", str(random_file), *arguments]), message)


def test_an_empty_or_missing_folder_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for command in ("compare", "plot"):
        _one_line_error(CliRunner().invoke(main, [command, str(tmp_path / "empty")]), "no results files (*.json)")
        _one_line_error(CliRunner().invoke(main, [command, str(tmp_path / "nothing")]), "no such results file")


def test_plot_svg_and_pdf(tmp_path):
    random_file, _ = _run(tmp_path, "random", "random")
    for form, magic in (("svg", b"<?xml"), ("pdf", b"%PDF")):
        plotted = CliRunner().invoke(
            main, ["plot", str(random_file), "--kind", "bins", "--format", form, "--dpi", "72", "--out", str(tmp_path)]
        )
        assert plotted.exit_code == 0 and plotted.output.strip() == str(tmp_path / f"bins.{form}")
        assert (tmp_path / f"bins.{form}").read_bytes()[:5].startswith(magic)


# ---- run: default names, the split ----------------------------------------------------------
def test_run_default_name_has_the_arguments_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = ["run", "--agent", "random", "--env", "aldolase", "--episodes", "1", "--quiet", "-e", "noise=1.5"]
    first = CliRunner().invoke(main, command)
    second = CliRunner().invoke(main, command)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    name = "cryobench-results/random_aldolase_noise-1.5_seed0.json"
    assert first.output.splitlines()[-1] == f"results: {name}"
    assert second.output.splitlines()[-1] == (
        f"results: cryobench-results/random_aldolase_noise-1.5_seed0-2.json ({name} exists and is kept; "
        "pass --out to choose the name)"
    )
    assert sorted(p.name for p in (tmp_path / "cryobench-results").iterdir()) == [
        "random_aldolase_noise-1.5_seed0-2.json",
        "random_aldolase_noise-1.5_seed0.json",
    ]
    holes = json.loads((tmp_path / name).read_text())["env"]["n_holes"]
    assert f"1 episodes on the test split: {holes} holes" in first.output
    whole = CliRunner().invoke(main, [*command, "-e", "split=all", "--out", "all.json"])
    assert "1 episodes on the all split: 3538 holes" in whole.output


# ---- list, help, completion, datasets ---------------------------------------------------------
def test_list_json():
    envs = json.loads(CliRunner().invoke(main, ["list", "envs", "--json"]).output)
    assert {row["short_name"] for row in envs} == {card["short_name"] for card in cryobench.env_cards().values()}
    agents = json.loads(CliRunner().invoke(main, ["list", "agents", "--json"]).output)
    assert [row["name"] for row in agents] == sorted(ep.name for ep in entry_points(group="cryobench.agents"))
    bounds = {row["name"] for row in agents if row["upper_bound"]}
    assert bounds == {"oracle-informed", "oracle-planner", "oracle-predict-rank"}


def test_listing_agents_from_cards_agrees_with_the_classes():
    from cryobench.agents.registry import list_agents

    def flags(row):
        return row["upper_bound"], row["needs_feedback"], row["plays_staged"]

    from_cards = {row["name"]: flags(row) for row in list_agents()}
    loaded = {row["name"]: flags(row) for row in list_agents(load=True)}
    assert from_cards == loaded
    assert {name for name, (_, _, staged) in loaded.items() if staged} >= {"predict-rank", "greedy", "oracle-planner"}
    assert not any(loaded[name][2] for name in ("dqn", "orienteering", "bayes-lookahead", "smartem-bma"))


def test_list_agents_tags_the_agents_that_play_staged_sessions():
    from cryobench.agents.registry import agent_class, list_agents

    output = CliRunner().invoke(main, ["list", "agents"]).output
    tagged = {line.split()[0] for line in output.splitlines() if line.endswith("[plays staged]")}
    names = [row["name"] for row in list_agents() if row["error"] is None]
    assert tagged == {name for name in names if agent_class(name).plays_staged}
    assert "[plays staged]: also plays staged sessions (-e acquisition=staged" in output


def test_list_agents_imports_no_agent_module_and_not_torch():
    script = (
        "import sys; from cryobench.cli import main\n"
        "try:\n    main(['list', 'agents'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('cryobench.agents.')))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "['cryobench.agents.base', 'cryobench.agents.registry']"
    assert "dqn-noise-robust" in out and "oracle-planner" in out


def test_every_option_and_command_has_help():
    import click

    missing = []

    def walk(command, path):
        if not command.help:
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(main, "cryobench")
    assert missing == []
    overview = CliRunner().invoke(main, ["--help"]).output
    assert "plot         Figures from results files: the cryoRL paper's kinds." in overview
    assert "later" not in CliRunner().invoke(main, ["list", "--help"]).output
    plot_help = CliRunner().invoke(main, ["plot", "--help"]).output
    for kind, text in PLOT_DESCRIPTIONS.items():
        assert f"{kind:<10} {text}" in plot_help


@pytest.mark.parametrize(
    "words, expected",
    [
        ("cryobench run --agent pre", ["predict-rank"]),
        ("cryobench run --agent oracle-", ["oracle-informed", "oracle-planner", "oracle-predict-rank"]),
        (
            "cryobench run --env aldolase",
            [
                "aldolase-staged",
                "aldolase",
                "aldolase-v0",
                "aldolaseau-cassette",
                "aldolaseau-staged",
                "aldolaseau",
                "aldolaseau-v0",
            ],
        ),
        ("cryobench run --env cryobench/R", ["cryobench/RNAPII-v1", "cryobench/RNAPII-v0"]),
        ("cryobench sweep --agents random,gre", ["random,greedy"]),
        ("cryobench play --env rna", ["rnapii", "rnapii-v0"]),
    ],
)
def test_shell_completion_of_agent_and_environment_names(words, expected):
    result = CliRunner().invoke(
        main,
        [],
        prog_name="cryobench",
        env={"_CRYOBENCH_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)},
    )
    assert result.output.split() == [f"plain,{name}" for name in expected]


def test_import_cryorl_says_it_only_validates(aldolase_data):
    result = CliRunner().invoke(main, ["datasets", "import-cryorl", str(aldolase_data)])
    assert result.exit_code == 0, result.output
    assert f"{aldolase_data}: a valid CryoRL folder. Nothing was copied or registered" in result.output
    assert f"cryobench run --agent predict-rank --env cryorl -e data={aldolase_data}" in result.output
    # True: no name was registered, so the folder's name is no environment.
    unknown = CliRunner().invoke(main, ["run", "--agent", "random", "--env", aldolase_data.name, "--quiet"])
    _one_line_error(unknown, f"unknown environment {aldolase_data.name!r}")


def test_import_cryorl_of_a_folder_that_is_not_one(tmp_path):
    _one_line_error(CliRunner().invoke(main, ["datasets", "import-cryorl", str(tmp_path)]), str(tmp_path))


def test_leaderboard_verify_shows_progress(tmp_path):
    bad = tmp_path / "submission.json"
    bad.write_text("{}")
    result = CliRunner().invoke(main, ["leaderboard", "verify", str(bad)])
    assert result.exit_code != 0
    assert f"verifying 1 of 1: {bad} (re-running every task)" in result.output
    quiet = CliRunner().invoke(main, ["leaderboard", "verify", str(bad), "--quiet"])
    assert "verifying" not in quiet.output and f"rejected: {bad}" in quiet.output
