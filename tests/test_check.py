"""cryobench check (issue 15, item 7): a regression check for other people's CI, and its pytest plugin."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cryobench.check import CHECK_FORMAT, compare, load_baseline
from cryobench.cli import main
from cryobench.errors import InputError

pytest_plugins = ["pytester"]

#: predict-rank's quick-tier submission (cryobench submit --agent predict-rank --tier quick).
BASELINE = Path(__file__).parent / "fixtures" / "predict-rank-v2-quick.json"


def scored(per_task: dict[str, list[float]]) -> dict:
    """A document with only what compare reads: per task, one run per world with its score."""
    return {"tasks": {name: {"runs": [{"score": s} for s in scores]} for name, scores in per_task.items()}}


# ---- the verdict ---------------------------------------------------------------------------------------
def test_a_candidate_below_the_baseline_on_every_world_is_worse():
    baseline = scored({"a": [10, 12, 11], "b": [5, 6, 7]})
    candidate = scored({"a": [1, 2, 3], "b": [1, 2, 0]})
    verdict = compare(candidate, baseline)
    assert verdict["worse"] and verdict["probability_of_improvement"]["high"] == 0.0
    assert verdict["reason"].startswith("worse than the baseline: P(candidate > baseline) = 0.000")
    assert verdict["tasks"]["a"] == {"candidate": 2.0, "baseline": 11.0}


def test_the_same_scores_are_never_worse():
    baseline = scored({"a": [10, 12, 11], "b": [5, 6, 7]})
    verdict = compare(copy.deepcopy(baseline), baseline)
    interval = verdict["probability_of_improvement"]
    assert not verdict["worse"] and interval["point"] == 0.5 and interval["low"] < 0.5 < interval["high"]


def test_overlapping_scores_are_not_a_supported_difference():
    """Lower on average but not on every world: the CI reaches 0.5, so no alarm."""
    baseline = scored({"a": [10, 12, 11, 9], "b": [5, 6, 7, 8]})
    candidate = scored({"a": [9, 11, 12, 8], "b": [4, 6, 8, 7]})
    verdict = compare(candidate, baseline)
    assert verdict["probability_of_improvement"]["point"] < 0.5 and not verdict["worse"]


def test_a_tolerance_moves_the_limit_down():
    baseline = scored({"a": [10, 12, 11, 9, 13, 14], "b": [5, 6, 7, 8, 9, 10]})
    candidate = scored({"a": [8, 9, 12, 7, 10, 11], "b": [4, 5, 6, 8, 7, 6]})  # lower on 10 of 12 worlds
    strict = compare(candidate, baseline)
    high = strict["probability_of_improvement"]["high"]
    assert strict["worse"] and 0.4 < high < 0.5
    lenient = compare(candidate, baseline, tolerance=0.1)  # fails only below 0.4: not supported here
    assert not lenient["worse"] and lenient["reason"].endswith("reaches 0.400 or above")
    with pytest.raises(InputError, match="--tolerance"):
        compare(candidate, baseline, tolerance=0.5)


def test_only_the_shared_tasks_are_compared():
    baseline = scored({"a": [1, 2], "blind": [3, 4]})
    verdict = compare(scored({"a": [1, 2]}), baseline)
    assert list(verdict["tasks"]) == ["a"] and verdict["not_compared"] == ["blind"]
    with pytest.raises(InputError, match="no task in common"):
        compare(scored({"x": [1, 2]}), baseline)


# ---- baselines -----------------------------------------------------------------------------------------
def test_the_committed_baseline_loads():
    doc = load_baseline(BASELINE)
    assert doc["agent"]["name"] == "predict-rank" and doc["protocol"]["tier"] == "quick"


def test_a_check_report_is_a_baseline_too(tmp_path):
    report = {"format": CHECK_FORMAT, "candidate": json.loads(BASELINE.read_text())}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert load_baseline(path) == json.loads(BASELINE.read_text())


def _written(tmp_path: Path, doc) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda doc: {"format": "cryobench-results/1", "env": {"id": "cryobench/Aldolase-v1"}},
            r"a results file of one environment \(cryobench/Aldolase-v1\); a baseline is a protocol 2 submission",
        ),
        (lambda doc: {**doc, "format": "cryobench-submission/1"}, "protocol 1 submissions cannot be compared"),
        (
            lambda doc: {**doc, "protocol": {**doc["protocol"], "worlds": [1073741824, 1073741999]}},
            r"not a baseline of this cryobench's protocol 2 \(quick tier\): its test worlds",
        ),
        (
            lambda doc: {
                **doc,
                "tasks": {**doc["tasks"], "aldolase": {**doc["tasks"]["aldolase"], "env_id": "cryobench/RNAPII-v0"}},
            },
            r"task 'aldolase' ran cryobench/RNAPII-v0 \{\}, not the protocol's cryobench/Aldolase-v0",
        ),
        (lambda doc: [1, 2], r"format None is not a protocol 2 submission"),
    ],
)
def test_a_baseline_of_another_environment_or_protocol_is_one_line(tmp_path, change, message):
    path = _written(tmp_path, change(json.loads(BASELINE.read_text())))
    with pytest.raises(InputError, match=message):
        load_baseline(path)
    result = CliRunner().invoke(main, ["check", "--agent", "random", "--against", str(path), "--quiet"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "full"], "but the baseline"),
        (["--tolerance", "0.5"], "Invalid value for '--tolerance'"),
        (["--agent", "random", "--policy", "tests.any_policies:first_free"], "exactly one of --agent"),
        (["--policy", "tests.any_policies"], "expected MODULE:ATTR"),
    ],
)
def test_check_refuses_bad_options(args, message):
    if "--agent" not in args and "--policy" not in args:
        args = ["--agent", "random", *args]
    result = CliRunner().invoke(main, ["check", "--against", str(BASELINE), "--quiet", *args])
    assert result.exit_code == 2 and message in result.output, result.output


# ---- the whole command, both ways ------------------------------------------------------------------------
@pytest.mark.slow  # two sealed quick-tier runs (about 20 s each on an idle machine)
def test_check_fails_a_clearly_worse_agent_and_passes_the_same_agent_again(tmp_path):
    worse = CliRunner().invoke(
        main, ["check", "--agent", "random", "--against", str(BASELINE), "--quiet", "--out", tmp_path / "w.json"]
    )
    assert worse.exit_code == 1, worse.output
    reason = "Error: worse than the baseline: P(candidate > baseline) = 0.000, 95% CI [0.000, 0.000] lies wholly below"
    assert worse.output.strip().splitlines()[-1].startswith(reason)
    report = json.loads((tmp_path / "w.json").read_text())
    assert report["verdict"] == "worse" and report["candidate"]["agent"]["name"] == "random"
    baseline = json.loads(BASELINE.read_text())
    for name, block in baseline["tasks"].items():  # the baseline's worlds, each played by the candidate
        assert [run["world"] for run in report["candidate"]["tasks"][name]["runs"]] == [
            r["world"] for r in block["runs"]
        ]

    again = CliRunner().invoke(
        main, ["check", "--agent", "predict-rank", "--against", str(BASELINE), "--quiet", "--out", tmp_path / "s.json"]
    )
    assert again.exit_code == 0, again.output
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["verdict"] == "ok" and report["probability_of_improvement"]["point"] == 0.5
    for name, block in baseline["tasks"].items():  # the same agent scores the same on every world
        assert [run["score"] for run in report["candidate"]["tasks"][name]["runs"]] == [
            r["score"] for r in block["runs"]
        ]


# ---- the pytest plugin ---------------------------------------------------------------------------------------
@pytest.fixture
def plugin_pytester(pytester, monkeypatch):
    """A pytest run with only cryobench's plugin (and pytest-benchmark), however the environment is installed."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run_plugin(pytester, *args):
    return pytester.runpytest("-p", "cryobench.pytest_plugin", "-p", "pytest_benchmark.plugin", "-q", *args)


def test_the_plugin_gives_an_environment_and_times_a_decision(plugin_pytester):
    plugin_pytester.makepyfile(
        """
        import numpy as np

        def first_free(obs, info):
            return int(np.flatnonzero(obs["action_mask"])[0])

        def test_env(cryobench_env):
            env = cryobench_env("cryobench/Aldolase-v1", duration=60.0)
            obs, info = env.reset(seed=0)
            assert obs["action_mask"].sum() == env.action_space.n - 1

        def test_speed(cryobench_decision_benchmark):
            action = cryobench_decision_benchmark(first_free, env="cryobench/Aldolase-v1", steps=5)
            assert isinstance(action, int) and action >= 0
        """
    )
    result = run_plugin(plugin_pytester, "--benchmark-disable")
    result.assert_outcomes(passed=2)


def test_the_check_fixture_fails_the_test_with_the_reason(plugin_pytester, monkeypatch):
    import cryobench.check

    def fake_run_check(agent, against, work_dir, **kwargs):
        verdict = compare(scored({"a": [1, 2]}), scored({"a": [5, 6]}))
        return {"format": CHECK_FORMAT, "verdict": "worse" if verdict["worse"] else "ok", **verdict}

    monkeypatch.setattr(cryobench.check, "run_check", fake_run_check)
    plugin_pytester.makepyfile(
        """
        def test_not_worse(cryobench_check):
            cryobench_check("my.agent:Agent", against="baseline.json")
        """
    )
    result = run_plugin(plugin_pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*worse than the baseline: P(candidate > baseline) = 0.000*", "*a *1.50 *5.50*"])


def test_the_pytest11_entry_point_names_the_plugin_and_its_fixtures():
    """pytest finds the plugin through pyproject's entry point (active once cryobench is installed)."""
    import importlib
    import tomllib

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    plugin = importlib.import_module(declared["cryobench"])
    for fixture in ("cryobench_env", "cryobench_check", "cryobench_decision_benchmark"):
        assert callable(getattr(plugin, fixture)), fixture
