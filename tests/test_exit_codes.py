"""The command line's exit codes: one per kind of failure (cryobench.errors.ExitCode), a one-line message each."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import cryobench.leaderboard.verify
import cryobench.registration
import cryobench.sweep
from cryobench.cli import main
from cryobench.errors import ExitCode, InputError, Interrupted


def test_the_codes_are_distinct_and_documented():
    codes = {code.name: code.value for code in ExitCode}
    assert codes == {"OK": 0, "REJECTED": 1, "BAD_INPUT": 2, "INTERNAL_ERROR": 3, "INTERRUPTED": 130}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code in ExitCode:
        assert f"| {code.value} |" in readme, f"README lacks exit code {code.value} ({code.name})"


def test_bad_input_exits_2_in_one_line(tmp_path):
    runner = CliRunner()
    unknown = runner.invoke(main, ["run", "--agent", "nosuch", "--env", "aldolase", "--episodes", "1", "--quiet"])
    missing_option = runner.invoke(main, ["run", "--agent", "random"])  # click's own usage error
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "results.json"  # a folder that is a file: an OSError
    unwritable = runner.invoke(main, ["run", "--agent", "random", "--env", "aldolase", "--episodes", "1", "--quiet",
                                      "--out", str(out)])  # fmt: skip
    assert [r.exit_code for r in (unknown, missing_option, unwritable)] == [ExitCode.BAD_INPUT] * 3
    assert unknown.output.startswith("Error: unknown agent 'nosuch'") and unknown.output.count("\n") == 1
    assert "Missing option '--env'" in missing_option.output
    assert unwritable.output.splitlines()[-1] == f"Error: {tmp_path / 'file'}: File exists"
    assert all("Traceback" not in r.output for r in (unknown, missing_option, unwritable))


def test_a_rejected_submission_exits_1(tmp_path, monkeypatch):
    submission = tmp_path / "s.json"
    submission.write_text("{}")
    report = {"accepted": False, "reduced": False, "reasons": ["episodes differ"]}
    monkeypatch.setattr(cryobench.leaderboard.verify, "verify", lambda file, **options: report)
    result = CliRunner().invoke(main, ["leaderboard", "verify", str(submission)])
    assert result.exit_code == ExitCode.REJECTED
    assert result.output.splitlines()[-1] == "Error: 1 of 1 submission(s) rejected"


@pytest.mark.parametrize(
    ("error", "code", "last_line"),
    [
        (InputError("envs/x.yaml: field 'title' must be a str"), ExitCode.BAD_INPUT,
         "Error: envs/x.yaml: field 'title' must be a str"),
        (ZeroDivisionError("division by zero"), ExitCode.INTERNAL_ERROR,
         "Error: internal error (a bug in cryobench; please report it with the traceback above): "
         "ZeroDivisionError('division by zero')"),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted"),
    ],
)  # fmt: skip
def test_every_command_maps_failures_to_codes_even_undecorated_ones(monkeypatch, error, code, last_line):
    def fail():
        raise error

    monkeypatch.setattr(cryobench.registration, "env_cards", fail)  # `list envs` has no decorator of its own
    result = CliRunner().invoke(main, ["list", "envs"])
    assert result.exit_code == code
    assert result.output.splitlines()[-1] == last_line
    assert ("Traceback" in result.output) == (code == ExitCode.INTERNAL_ERROR)  # only a bug shows one


def test_an_interrupted_sweep_exits_130_with_its_message(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise Interrupted("sweep interrupted: 2 of 4 task results are finished and kept in out, 2 still to run")

    monkeypatch.setattr(cryobench.sweep, "run_sweep", interrupted)
    args = ["sweep", "--agents", "random", "--envs", "aldolase", "--out", str(tmp_path), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.output == "sweep interrupted: 2 of 4 task results are finished and kept in out, 2 still to run\n"


def test_a_misspelled_agent_name_gets_the_closest_one_suggested():
    from click.testing import CliRunner

    from cryobench.cli import main

    result = CliRunner().invoke(main, ["run", "--agent", "dqnn", "--env", "aldolase", "--episodes", "1"])
    assert result.output.startswith("Error: unknown agent 'dqnn' (did you mean 'dqn'?); available: annealing")
    far = CliRunner().invoke(main, ["run", "--agent", "nosuch", "--env", "aldolase", "--episodes", "1"])
    assert far.output.startswith("Error: unknown agent 'nosuch'; available: ")  # nothing close: no guess
