"""The catalogue of bad command-line input beyond data folders (those are in test_bad_data.py): results
files for compare and plot, seeds, hyperparameters. Each gives a one-line error naming the file and
field (or the option) and what was expected, exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryobench.cli import main
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import ExitCode, InputError
from cryobench.evaluate import evaluate
from cryobench.results import load_results, save_results, schema_path


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> Path:
    """A real results file: two episodes of random on the Aldolase twin."""
    path = tmp_path_factory.mktemp("results") / "random.json"
    save_results(evaluate("random", "aldolase", episodes=2, progress=False), path)
    return path


def _edited(document: dict, where: tuple, value) -> dict:
    document = json.loads(json.dumps(document))
    target = document
    for key in where[:-1]:
        target = target[key]
    if value is DELETE:
        del target[where[-1]]
    else:
        target[where[-1]] = value
    return document


DELETE = object()
# (where in the document, the new value, what the one-line message says after "FILE: ")
BAD_RESULTS = {
    "good count a string": (("episodes", 0, "good_exposures"), "999", "field episodes.0.good_exposures: '999' is not"),
    "good count null": (("episodes", 0, "good_exposures"), None, "field episodes.0.good_exposures: None is not of"),
    "good count negative": (("episodes", 1, "good_exposures"), -100, "good_exposures: -100 is less than the minimum"),
    "good count a bool": (("episodes", 0, "good_exposures"), True, "good_exposures: True is not of type 'integer'"),
    "good count a fraction": (("episodes", 0, "good_exposures"), 12.5, "good_exposures: 12.5 is not of type"),
    "more good than exposures": (("episodes", 0, "good_exposures"), 10**6, "is more than its"),
    "episodes a number": (("episodes",), 5, "field episodes: 5 is not of type 'array'"),
    "no episodes": (("episodes",), [], "field episodes: [] should be non-empty"),
    "no agent name": (("agent", "name"), DELETE, "field agent: 'name' is a required property"),
    "no env spec": (("env", "spec"), DELETE, "field env: 'spec' is a required property"),
    "env id a number": (("env", "id"), 3, "field env.id: 3 is not of type 'string'"),
    "seeds text": (("seeds",), "0-1", "field seeds: '0-1' is not of type 'array'"),
    "seed not among the seeds": (("episodes", 1, "seed"), 77, "field episodes.1.seed: 77 is not among the file's"),
    "bins a list": (("episodes", 0, "bins"), [1, 2], "field episodes.0.bins: [1, 2] is not of type 'object'"),
    "bins that do not add up": (("episodes", 0, "bins", "<4"), 10**4, "field episodes.0.bins: they count"),
    "trajectory too short": (("episodes", 0, "trajectory"), [1], "field episodes.0.trajectory: 1 entries for"),
    "good curve of text": (("episodes", 0, "good_curve", "good"), "many", "good_curve.good: 'many' is not of type"),
    "reward a string": (("episodes", 0, "total_reward"), "12", "total_reward: '12' is not of type 'number'"),
    "good flag 2": (("episodes", 0, "trajectory_good", 0), 2, "field episodes.0.trajectory_good.0: 2 is not one of"),
}


@pytest.mark.parametrize("case", list(BAD_RESULTS))
@pytest.mark.parametrize("command", ["compare", "plot"])
def test_a_results_file_with_a_wrong_field_is_one_line_naming_file_and_field(results_file, tmp_path, command, case):
    where, value, expected = BAD_RESULTS[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_edited(json.loads(results_file.read_text()), where, value)))
    out = tmp_path / "plots"
    arguments = {"compare": [str(results_file), str(path)], "plot": [str(path), "--kind", "bins", "--out", str(out)]}
    result = CliRunner().invoke(main, [command, *arguments[command]])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(f"Error: {path}: field ") and expected in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"format": "cryobench-results/1", "episodes": NaN}', "holds the non-finite number NaN"),
        ('{"format": "cryobench-results/1", "name": "caf\u00e9"}'.encode("latin-1"), "not UTF-8 text"),
        (b"", "not valid JSON (line 1"),
        (b"[" * 100_000, "JSON nested too deeply, not a results file"),
        (None, "cannot read the results file: Too many levels of symbolic links"),
    ],
    ids=["NaN", "not UTF-8", "empty", "deeply nested", "symlink loop"],
)
def test_unreadable_results_files_are_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    if content is None:
        path.symlink_to(path.name)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_results(path)
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_every_file_run_writes_follows_the_published_schema(results_file):
    import jsonschema

    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(results_file.read_text()), schema)
    assert load_results(results_file)["episodes"][1]["seed"] == 1


def test_good_only_on_a_file_without_good_flags_names_the_option(results_file, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps(_edited(json.loads(results_file.read_text()), ("episodes", 0, "trajectory_good"), DELETE))
    )
    result = CliRunner().invoke(main, ["compare", str(old), "--good-only"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.startswith("Error: option --good-only: the results of random@cryobench/Aldolase-v1 have no")
    assert CliRunner().invoke(main, ["compare", str(results_file), "--good-only"]).exit_code == 0


# ---- seeds and hyperparameters ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["run", "--agent", "random", "--env", "aldolase", "--episodes", "1"],
        ["train", "--agent", "dqn", "--env", "aldolase", "--steps", "1"],
        ["play", "--port", "0"],
        ["datasets", "show", "aldolase"],
    ],
    ids=["run", "train", "play", "datasets show"],
)
def test_a_negative_seed_is_refused_by_its_option(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*command, "--seed", "-1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip().splitlines()[-1] == "Error: Invalid value for '--seed': -1 is not in the range x>=0."
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", [-1, True, 1.5, "3"])
def test_evaluate_refuses_a_seed_that_is_no_natural_number(seed):
    with pytest.raises(InputError, match=r"^argument 'seed': expected an integer >= 0 \(episode i uses seed \+ i\)"):
        evaluate("random", "aldolase", episodes=1, seed=seed, progress=False)


@pytest.mark.parametrize(
    "agent, assignments, expected",
    [
        ("random", ["foo=1"], "unknown hyperparameter(s) ['foo'] for agent 'random'; it takes no hyperparameters"),
        (
            "greedy",
            ["flor=1", "bar=2"],
            "unknown hyperparameter(s) ['bar', 'flor'] for agent 'greedy' (did you mean 'floor'?); "
            "it takes ceiling, floor, offset, price_scale, replan_every, scale, shadow_price",
        ),
    ],
)
def test_an_unknown_hyperparameter_names_the_option_and_what_the_agent_takes(agent, assignments, expected, tmp_path):
    options = [word for a in assignments for word in ("-H", a)]
    out = tmp_path / "r.json"
    arguments = ["run", "--agent", agent, "--env", "aldolase", "--episodes", "1", "--out", str(out), *options]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip().splitlines() == [f"Error: the hyperparameters given (-H): {expected}"]
    assert not out.exists()


# ---- actions: random values ------------------------------------------------------------------------------
ACTION_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.complex_numbers(),
    st.lists(st.integers(0, 10), max_size=3),
    st.integers(0, 3000).map(np.int64),
    st.integers(0, 3000).map(np.array),
    st.integers(0, 3000).map(lambda i: np.array([i])),
    st.floats(0, 3000).map(np.float32),
    st.booleans().map(np.bool_),
)


@pytest.fixture(scope="module")
def session_env() -> CryoEMSessionEnv:
    return CryoEMSessionEnv(dataset="aldolase")


@settings(max_examples=150, deadline=None)
@given(values=st.lists(ACTION_VALUES, min_size=1, max_size=5))
def test_random_action_values_are_a_hole_or_a_one_line_error_leaving_the_session_unchanged(session_env, values):
    """A Python int, a numpy integer or a 0-d integer array in range is a hole index (a visited one an
    invalid move, recorded); anything else, out-of-range integers too, is refused in one line and changes
    nothing."""
    env = session_env
    env.reset(seed=0)
    for value in values:
        before = (env.state.elapsed, list(env.state.exposures), env.state.invalid_moves)
        integer = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        integer |= isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu"
        in_range = integer and 0 <= int(value) < env.unwrapped.world.n_holes
        try:
            env.step(value)
        except InputError as exc:
            assert not in_range, f"{value!r} is a hole index, refused: {exc}"
            expected = f"action {int(value)} out of range" if integer else "action: expected a hole index"
            assert "\n" not in str(exc) and str(exc).startswith(expected), str(exc)
            assert (env.state.elapsed, list(env.state.exposures), env.state.invalid_moves) == before
            continue
        assert in_range, f"{value!r} was taken as an action"
        if env.state.elapsed >= env.unwrapped.world.duration:
            env.reset(seed=0)


# ---- submissions: unreadable is bad input, malformed is rejected -----------------------------------------
@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"format": "cryobench-submission/1", "agent": "caf\xe9"}', "not UTF-8 text"),
        ('{"format": "cryobench-submission/2"}'.encode("utf-16"), "not UTF-8 text"),
        (b'{"format": ', "not valid JSON (line 1"),
        (None, "no such submission file"),
    ],
    ids=["not UTF-8", "UTF-16", "not JSON", "missing"],
)
def test_verify_of_an_unreadable_submission_is_bad_input_before_anything_runs(tmp_path, content, expected):
    path = tmp_path / "submission.json"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(main, ["leaderboard", "verify", str(path), "--quiet"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(f"Error: {path}: {expected}")


def test_verify_of_a_readable_but_malformed_submission_rejects_it_with_the_reason(tmp_path):
    path = tmp_path / "submission.json"
    path.write_text('{"format": "cryobench-submission/1", "agent": {}}')
    result = CliRunner().invoke(main, ["leaderboard", "verify", str(path), "--quiet"])
    assert result.exit_code == ExitCode.REJECTED
    assert f"  - schema: {path}: field 'protocol' missing or not a dict" in result.output.splitlines()


# ---- results files: random values in random fields --------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every (path, value) of a JSON document's fields (lists: their first three items)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from _paths(item, (*prefix, index))


@pytest.fixture(scope="module")
def results_document(tmp_path_factory) -> dict:
    return evaluate("random", "aldolase", episodes=2, progress=False)


@pytest.mark.slow  # 200 documents written and read: about 30 s
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_in_any_field_of_a_results_file_is_read_or_refused_in_one_line(results_document, tmp_path, data):
    """compare's table from a file that loads; else one InputError naming the file. Nothing else."""
    from cryobench.compare import comparison_table, jaccard_between

    document = json.loads(json.dumps(results_document))
    where = data.draw(st.sampled_from([p for p in _paths(document) if p]))
    document = _edited(document, where, data.draw(JSON_VALUES | st.just(DELETE)))
    path = tmp_path / "mutated.json"
    path.write_text(json.dumps(document))
    try:
        loaded = load_results(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        return
    table = comparison_table([loaded])
    assert np.isfinite(table["good_mean"]).all() and (table["good_mean"] >= 0).all()
    jaccard_between([loaded], good_only=all("trajectory_good" in row for row in loaded["episodes"]))
