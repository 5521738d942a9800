"""Facility data in: the hole table (datasets/README.md, "Facility data"), its importer, the converter from the
CryoRL format, imported folders by name, and the catalogue of bad tables (one line naming file, line
and column; nothing written)."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryobench.catalog import load_dataset
from cryobench.cli import main
from cryobench.cryorl_format import load_cryorl
from cryobench.errors import ExitCode, InputError
from cryobench.evaluate import evaluate
from cryobench.facility_table import convert_cryorl, import_table, load_table
from tests.test_bad_data import make_folder

ARRAYS = ("tile", "square", "patch", "x_um", "y_um", "ctf", "confidence", "failed", "square_xy_um")


def assert_same_dataset(a, b) -> None:
    """The same holes, hierarchy, positions, truth, split and predictions, bit for bit."""
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a.grid, name), getattr(b.grid, name), err_msg=name, strict=True)
    assert a.grid.hole_names == b.grid.hole_names
    np.testing.assert_array_equal(a.split, b.split, strict=True)
    if a.measured_predictions is None:
        assert b.measured_predictions is None
    else:
        np.testing.assert_array_equal(a.measured_predictions, b.measured_predictions, strict=True)


# ---- both paths on the measured data ------------------------------------------------------------------
@pytest.fixture
def aldolase_table(aldolase_data, tmp_path) -> Path:
    return convert_cryorl(aldolase_data, tmp_path / "aldolase.csv")[0]


def test_the_converted_measured_data_imports_to_the_cryorl_importers_dataset(aldolase_data, aldolase_table, tmp_path):
    folder, imported = import_table(aldolase_table, tmp_path / "aldolase")
    original = load_cryorl(aldolase_data)
    assert_same_dataset(original, imported)
    assert (imported.grid.n_holes, int((imported.split == "test").sum())) == (3538, 2341)
    # timestamps.csv filled the timestamp column: every hole has one, in the session's days.
    assert imported.grid.meta["timestamps"] == {
        "holes": 3538,
        "first": "2021-03-02T14:34:09",
        "last": "2021-03-07T09:33:42",
    }
    manifest = json.loads((folder / "import.json").read_text())
    assert manifest["holes"] == 3538 and manifest["splits"] == {"train": 1197, "test": 2341}


def test_the_converted_table_makes_the_same_world_and_episodes(aldolase_data, aldolase_table, tmp_path):
    folder, _ = import_table(aldolase_table, tmp_path / "aldolase")
    via_table = evaluate("predict-rank", "cryorl", {"data": str(folder)}, episodes=2, progress=False)
    via_cryorl = evaluate("predict-rank", "cryorl", {"data": str(aldolase_data)}, episodes=2, progress=False)
    assert via_table["episodes"] == via_cryorl["episodes"]
    a = gym.make("cryobench/CryoRL-v0", data=str(aldolase_table)).unwrapped.world
    b = gym.make("cryobench/CryoRL-v0", data=str(aldolase_data)).unwrapped.world
    np.testing.assert_array_equal(a.predicted_ctf, b.predicted_ctf, strict=True)
    np.testing.assert_array_equal(a.true_good, b.true_good, strict=True)


def test_a_handmade_folder_round_trips(tmp_path):
    """Without the measured data too: a small CryoRL folder, converted and imported, is the same dataset."""
    folder = make_folder(tmp_path / "cryorl")
    table, dataset = convert_cryorl(folder, tmp_path / "t.csv")
    assert_same_dataset(dataset, load_table(table))
    header = table.read_text().splitlines()[0].split(",")
    assert header[:9] == ["hole", "grid", "tile", "square", "patch", "x_um", "y_um", "ctf_max_res", "split"]
    assert "timestamp" not in header  # the folder has no timestamps.csv


def test_a_table_without_predictions_needs_a_regressor_like_a_cryorl_folder(tmp_path):
    table, _ = convert_cryorl(make_folder(tmp_path / "cryorl"), tmp_path / "t.csv")
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    plain = tmp_path / "plain.csv"
    _write(plain, [{k: v for k, v in row.items() if k != "prediction"} for row in rows])
    assert load_dataset(data=plain).measured_predictions is None
    with pytest.raises(InputError, match="has no prediction files"):
        gym.make("cryobench/CryoRL-v0", data=str(plain))
    assert gym.make("cryobench/CryoRL-v0", data=str(plain), regressor="perfect").action_space.n == 24


def test_parquet_imports_like_csv(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs the parquet extra (pyarrow)")
    import pyarrow.csv

    table, dataset = convert_cryorl(make_folder(tmp_path / "cryorl"), tmp_path / "t.csv")
    parquet = tmp_path / "t.parquet"
    pq.write_table(pyarrow.csv.read_csv(table), parquet)
    assert_same_dataset(dataset, load_table(parquet))
    folder, imported = import_table(parquet, tmp_path / "imported")
    assert_same_dataset(dataset, imported)
    assert (folder / "holes.csv").read_text().splitlines()[0] == table.read_text().splitlines()[0]


def test_csv_needs_no_pyarrow_and_parquet_without_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    table, dataset = convert_cryorl(make_folder(tmp_path / "cryorl"), tmp_path / "t.csv")
    assert_same_dataset(dataset, load_table(table))
    parquet = tmp_path / "t.parquet"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(InputError) as caught:
        load_table(parquet)
    assert str(caught.value) == (
        f"{parquet}: reading Parquet needs pyarrow (pip install 'cryobench[parquet]'), or save the table as CSV"
    )


# ---- imported by name -----------------------------------------------------------------------------------
@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """A data folder of our own; the environment registry re-read with it, and without it afterwards."""
    from cryobench import registration

    home = tmp_path / "home"
    monkeypatch.setenv("CRYOBENCH_DATA_DIR", str(home))
    registration._load_env_cards.cache_clear()
    yield home
    monkeypatch.delenv("CRYOBENCH_DATA_DIR")
    registration._load_env_cards.cache_clear()
    for env_id in [i for i in gym.registry if i.startswith("cryobench/Handmade")]:
        del gym.registry[env_id]


def test_a_table_imported_by_name_is_an_environment(data_home, tmp_path, monkeypatch):
    from cryobench import registration

    table, dataset = convert_cryorl(make_folder(tmp_path / "cryorl"), tmp_path / "t.csv")
    result = CliRunner().invoke(main, ["datasets", "import-table", str(table), "--name", "handmade-7"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "imported 48 holes (24 train, 24 test; with predictions)",
        f"into {data_home / 'handmade-7'}",
    ]
    registration._load_env_cards.cache_clear()  # what a new process (import cryobench) does
    registration.register_envs()
    assert registration.resolve_env_id("handmade-7") == "cryobench/Handmade7-v0"
    env = gym.make("cryobench/Handmade7-v0")
    assert_same_dataset(dataset, load_dataset(data=env.unwrapped.spec.kwargs["data"]))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    run = ["run", "--agent", "predict-rank", "--env", "handmade-7", "--episodes", "2", "--quiet", "--out", str(out)]
    assert CliRunner().invoke(main, run).exit_code == 0
    direct = evaluate("predict-rank", "cryorl", {"data": str(table)}, episodes=2, progress=False)
    assert json.loads(out.read_text())["episodes"] == direct["episodes"]
    again = CliRunner().invoke(main, ["datasets", "import-table", str(table), "--name", "handmade-7"])
    assert again.exit_code == ExitCode.BAD_INPUT and "is imported already" in again.output
    shown = CliRunner().invoke(main, ["datasets", "show", "handmade-7", "--json"])
    assert json.loads(shown.output)["statistics"]["holes"] == 48
    listed = CliRunner().invoke(main, ["list", "envs"])
    assert re.search(r"handmade-7 +cryobench/Handmade7-v0", listed.output)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--name", "Bad_Name"], "option --name: expected lower-case letters, digits and '-'"),
        (["--name", "aldolase"], "option --name: 'aldolase' is already an environment (cryobench/Aldolase-v1)"),
        ([], "options --out and --name: give one"),
    ],
)
def test_import_names_are_checked(data_home, tmp_path, arguments, message):
    table, _ = convert_cryorl(make_folder(tmp_path / "cryorl"), tmp_path / "t.csv")
    result = CliRunner().invoke(main, ["datasets", "import-table", str(table), *arguments])
    assert result.exit_code == ExitCode.BAD_INPUT
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {message}")
    assert not data_home.exists()


# ---- the catalogue of bad tables ------------------------------------------------------------------------
def _write(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> None:
    header = header or list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[row.get(c, "") for c in header] for row in rows])
    path.write_text(buffer.getvalue())


def _set(rows, line: int, **values) -> None:
    """Change the row on ``line`` of the file (the header is line 1)."""
    rows[line - 2].update(values)


def _drop_column(column: str):
    def edit(rows, header):
        header.remove(column)

    return edit


def _edit(**values_by_line):
    def edit(rows, header):
        for line, values in values_by_line.items():
            _set(rows, int(line.removeprefix("line")), **values)

    return edit


def _other(rows, line: int, column: str) -> str:
    """The value of ``column`` in a row far from ``line`` with a different one."""
    return next(
        r[column] for r in rows if r[column] != rows[line - 2][column] and r["split"] == rows[line - 2]["split"]
    )


# id -> (edit of (rows, header), the one-line message's pattern after "FILE")
BAD_TABLES = {
    "missing column": (_drop_column("split"), r", line 1: missing column\(s\) \['split'\]; a table needs hole, grid"),
    "missing ctf": (_drop_column("ctf_max_res"), r", line 1: missing column\(s\) \['ctf_max_res'\]"),
    "unknown column": (lambda r, h: h.append("colour"), r", line 1: unknown column\(s\) \[\"'colour'\"\]; expected"),
    "repeated column": (lambda r, h: h.append("tile"), r", line 1: column 'tile' appears twice"),
    "patch x without y": (_drop_column("patch_y_um"), r", line 1: column 'patch_x_um' without 'patch_y_um'"),
    "patch in two squares": (
        lambda r, h: _set(r, 5, square=_other(r, 5, "square")),
        r", line \d+, column square: patch '.*' is in square '.*' here but in square '.*' on line \d+; expected one "
        r"square per patch",
    ),
    "square in two tiles": (
        lambda r, h: _set(r, 4, tile=_other(r, 4, "tile")),
        r", line \d+, column tile: square '.*' is in tile '.*' here but in tile '.*' on line \d+; expected one tile",
    ),
    "patch with two positions": (
        lambda r, h: _set(r, 3, patch_x_um="99.0"),
        r", line 3, column patch_x_um: patch '.*' is at 99, .* here but at .* on line 2; expected one position per",
    ),
    "duplicate hole": (
        lambda r, h: _set(r, 7, hole=r[0]["hole"]),
        r", line 7, column hole: duplicate hole '.*' \(first on line 2\)",
    ),
    "same place twice": (
        lambda r, h: _set(r, 3, x_um=r[0]["x_um"], y_um=r[0]["y_um"]),
        r", line 3, column x_um: hole '.*' is at the same place in patch '.*' as '.*' \(line 2\); expected each hole",
    ),
    "two grids": (
        lambda r, h: _set(r, 6, grid="other_grid"),
        r", line 6, column grid: grid 'other_grid', but line 2 is of grid '25jan01a_grid1'; expected one grid",
    ),
    "tile in both splits": (
        lambda r, h: _set(r, 3, split="test"),
        r", line 3, column split: test hole '.*' is in tile '.*', which holds train holes \(e.g. line 2\)",
    ),
    "split val": (
        lambda r, h: _set(r, 4, split="val"),
        r", line 4, column split: expected 'train' or 'test', got 'val'",
    ),
    "x inf": (lambda r, h: _set(r, 3, x_um="inf"), r", line 3, column x_um: expected a decimal number, got 'inf'"),
    "y nan": (lambda r, h: _set(r, 3, y_um="nan"), r", line 3, column y_um: expected a decimal number, got 'nan'"),
    "x far away": (lambda r, h: _set(r, 3, x_um="1e6"), r", line 3, column x_um: expected a finite number between"),
    "ctf 0": (lambda r, h: _set(r, 5, ctf_max_res="0"), r", line 5, column ctf_max_res: .* at least 1, got 0"),
    "ctf 1_0": (lambda r, h: _set(r, 5, ctf_max_res="1_0"), r", line 5, column ctf_max_res: expected a decimal"),
    "ctf empty": (lambda r, h: _set(r, 5, ctf_max_res=""), r", line 5, column ctf_max_res: expected a decimal number"),
    "confidence 2": (lambda r, h: _set(r, 2, confidence="2"), r", line 2, column confidence: .* between 0 and 1"),
    "prediction on some rows": (
        lambda r, h: _set(r, 9, prediction=""),
        r", line 9, column prediction: expected a decimal number, got ''",
    ),
    "bad timestamp": (
        lambda r, h: (h.append("timestamp"), _set(r, 4, timestamp="yesterday")),
        r", line 4, column timestamp: expected an ISO 8601 date and time",
    ),
    "empty hole name": (lambda r, h: _set(r, 4, hole=""), r", line 4, column hole: empty; expected a name"),
    "control character": (lambda r, h: _set(r, 4, patch="a\tb"), r", line 4, column patch: expected a printable name"),
    "no test holes": (
        lambda r, h: [row.update(split="train") for row in r],
        r": no test holes \(column split\); expected holes of both splits",
    ),
    "header only": (lambda r, h: r.clear(), r": no holes \(expected a row per hole below the header\)"),
}


def _raw(data: bytes):
    return lambda path: path.write_bytes(data)


# id -> (what to put at the path, pattern)
BAD_FILES = {
    "empty file": (_raw(b""), r": the table is empty; expected a header line"),
    "UTF-16": (lambda p: p.write_bytes("hole,grid\n".encode("utf-16")), r": the file is UTF-16 text; expected UTF-8"),
    "not UTF-8": (_raw(b"hole,grid\n\xe9,x\n"), r", line 2: not UTF-8 text"),
    "a folder": (lambda p: p.mkdir(), r": is a folder without holes.csv; expected a table file \(.csv or .parquet\)"),
    "symlink loop": (lambda p: p.symlink_to(p.name), r": cannot read the file: .*symbolic link"),
    "short row": (None, r", line 4: expected 15 fields \(the header's\), got 14"),
    "200 kB field": (None, r", line 3: not valid CSV \(field larger than field limit"),
    "not Parquet": (_raw(b"PAR1 but no more"), r": not a readable Parquet file"),
}


@pytest.fixture
def good_rows(tmp_path) -> list[dict[str, str]]:
    table, _ = convert_cryorl(make_folder(tmp_path / "cryorl"), tmp_path / "good.csv")
    return list(csv.DictReader(io.StringIO(table.read_text())))


def _bad_file(case: str, good_rows, tmp_path: Path) -> Path:
    if case in BAD_TABLES:
        edit, _ = BAD_TABLES[case]
        rows, header = [dict(r) for r in good_rows], list(good_rows[0])
        edit(rows, header)
        path = tmp_path / "bad.csv"
        _write(path, rows, header)
        return path
    make, _ = BAD_FILES[case]
    path = tmp_path / ("bad.parquet" if case == "not Parquet" else "bad.csv")
    if make is not None:
        make(path)
        return path
    _write(path, good_rows)
    lines = path.read_text().splitlines()
    if case == "short row":
        lines[3] = lines[3].rsplit(",", 1)[0]
    else:
        lines[2] = "a" * 200_000 + lines[2]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case", [*BAD_TABLES, *BAD_FILES])
def test_a_bad_table_is_one_line_naming_file_line_and_column_and_nothing_is_written(case, good_rows, tmp_path):
    path = _bad_file(case, good_rows, tmp_path)
    pattern = (BAD_TABLES.get(case) or BAD_FILES[case])[1]
    with pytest.raises(InputError) as caught:
        load_table(path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(str(path)) and re.search(pattern, message[len(str(path)) :]), message
    out = tmp_path / "imported"
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["datasets", "import-table", str(path), "--out", str(out)], ["datasets", "validate", str(path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == ExitCode.BAD_INPUT, result.output
        [line] = result.output.strip().splitlines()
        # validate reads a folder as a CryoRL folder first: its own one line
        assert line == f"Error: {message}" or (case == "a folder" and command[1] == "validate"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a half-written folder or a leftover"


def test_an_import_into_a_folder_that_is_not_empty_is_refused(good_rows, tmp_path):
    path = _bad_file("header only", good_rows, tmp_path)
    _write(path, good_rows)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["datasets", "import-table", str(path), "--out", str(out)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip() == f"Error: option --out: {out} exists and is not an empty folder; choose a new name"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_convert_refuses_a_bad_cryorl_folder_with_the_importers_message(tmp_path):
    folder = make_folder(tmp_path / "cryorl")
    val = next(folder.glob("*_val.csv"))
    lines = val.read_text().splitlines()
    fields = lines[2].split(",")
    fields[1] = "inf"
    lines[2] = ",".join(fields)
    val.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["datasets", "convert", str(folder), "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip() == f"Error: {val}, line 3: x (px) must be a decimal number, got 'inf'"
    assert not (tmp_path / "t.csv").exists()


# ---- property tests ---------------------------------------------------------------------------------------
CELL_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "-1", "0", "1e-300", "1e300", "inf", "nan", "100000", "1_0", " 5 ", "train", "test"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    line=st.integers(min_value=1, max_value=49),
    column=st.integers(min_value=0, max_value=14),
    value=CELL_VALUES,
    action=st.sampled_from(["replace", "drop line", "duplicate line", "add field", "bytes"]),
    data=st.binary(max_size=20),
)
def test_random_table_mutations_load_or_are_one_line(good_rows, tmp_path, line, column, value, action, data):
    """Either a dataset with finite positions and CTFs of at least 1 Å, or one InputError naming the file."""
    path = tmp_path / "mutated.csv"
    _write(path, good_rows)
    lines = path.read_text().splitlines()
    fields = next(csv.reader([lines[line - 1]]))
    if action == "replace":
        fields[column % len(fields)] = value
    elif action == "add field":
        fields.append(value)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    lines[line - 1] = buffer.getvalue()
    if action == "drop line":
        del lines[line - 1]
    elif action == "duplicate line":
        lines.insert(line - 1, lines[line - 1])
    content = ("\n".join(lines) + "\n").encode()
    if action == "bytes":
        content = content[: line * 40] + data + content[line * 40 :]
    path.write_bytes(content)
    try:
        dataset = load_table(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        return
    grid = dataset.grid
    assert np.isfinite(grid.x_um).all() and np.isfinite(grid.y_um).all() and (grid.ctf >= 1.0).all()
    assert set(dataset.split) == {"train", "test"}
