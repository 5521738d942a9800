"""Facility data in: one table of holes (CSV, or Parquet with the ``parquet`` extra), validated as
strictly as the CryoRL importer, and the converter from the CryoRL format to it.

A facility exports one row per hole (an exposure target) from Leginon, EPU or SmartScope
(``datasets/README.md``, "Facility data", says how); the columns (:data:`COLUMNS`):

========================  ========  ===============================================================
column                    required  what it holds
========================  ========  ===============================================================
hole                      yes       the hole's (exposure's) name, unique in the table
grid                      yes       the session/grid; one per table
tile, square, patch       yes       names of the hole's atlas tile, grid square and patch (the
                                    hole-magnification image); a patch lies in one square, a
                                    square in one tile
x_um, y_um                yes       the hole's position in its patch, from the patch centre (µm)
ctf_max_res               yes       the CTF fit's maximum resolution (Å), at least 1; 100000 or
                                    more: a failed fit (counted bad)
split                     yes       ``train`` or ``test``; the splits share no tile
prediction                no        a regressor's predicted CTFMaxRes (Å): all rows or none
confidence                no        the CTF fit's confidence in [0, 1], empty where unknown
patch_x_um, patch_y_um    no        the patch centre in its square, from the square centre (µm);
                                    one value per patch (absent: 0, patches drawn on top of
                                    each other)
square_x_um, square_y_um  no        the square centre on the grid (µm), one value per square;
                                    used for drawing only
timestamp                 no        when the hole was exposed (ISO 8601), empty where unknown;
                                    kept, not used by the simulator
========================  ========  ===============================================================

A hole's position in the world is ``patch_x_um + x_um`` (from its square's centre), as the
CryoRL importer's. Every problem is one :class:`InputError` naming the file, line (row) and
column: a missing or unknown column, a bad number, a hole listed twice (or the same
position of one patch under two names), a patch in two squares or a square in two tiles,
a patch or square with two positions, two grids, a tile in both splits. An imported
folder (:func:`import_table`) holds the checked table as ``holes.csv`` and ``import.json``;
``data=FOLDER`` reads it like a CryoRL folder.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.cryorl_format import (
    LEGINON_NAME,
    MAX_NAME_CHARS,
    MIN_CTF_RESOLUTION,
    _decode,
    _read_bytes,
    _show,
    is_folder,
    load_cryorl,
    measured_dataset,
)
from cryobench.errors import InputError
from cryobench.files import utc_timestamp, write_atomic
from cryobench.grid import Dataset, Grid, dense_ids

TABLE_FORMAT = "cryobench-holes/1"
#: Column -> required. The order is the order :func:`write_table` writes.
COLUMNS = {
    "hole": True,
    "grid": True,
    "tile": True,
    "square": True,
    "patch": True,
    "x_um": True,
    "y_um": True,
    "ctf_max_res": True,
    "split": True,
    "prediction": False,
    "confidence": False,
    "patch_x_um": False,
    "patch_y_um": False,
    "square_x_um": False,
    "square_y_um": False,
    "timestamp": False,
}
REQUIRED = [column for column, required in COLUMNS.items() if required]
#: Positions further than this from their patch, square or grid centre are typing errors (a grid is 3 mm).
MAX_POSITION_UM = 10_000.0
HOLE_PITCH_UM = 2.5
#: The files of an imported folder.
TABLE_NAME, MANIFEST_NAME = "holes.csv", "import.json"
_DECIMAL = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


@dataclasses.dataclass(frozen=True)
class TableFile:
    """The bytes of a table file; ``digest`` hashes them, so the catalogue caches by content."""

    path: Path
    digest: str
    data: bytes = dataclasses.field(compare=False, hash=False, repr=False)


def is_table_folder(folder: Path) -> bool:
    """A folder written by :func:`import_table` (it holds ``holes.csv``)."""
    return (folder / TABLE_NAME).exists() or (folder / TABLE_NAME).is_symlink()


def is_table_file(path: Path) -> bool:
    """A path naming a table file (by its suffix; whether it exists is read_table_file's to say)."""
    try:
        return path.suffix.lower() in (".csv", ".parquet") and not path.is_dir()
    except (OSError, ValueError):
        return False


def read_table_file(path: str | Path) -> TableFile:
    """The bytes of a table (a ``.csv`` or ``.parquet`` file, or an imported folder's ``holes.csv``)."""
    path = Path(path)
    if is_folder(path):
        if not is_table_folder(path):
            raise InputError(
                f"{path}: is a folder without {TABLE_NAME}; expected a table file (.csv or .parquet) "
                "or a folder written by import-table"
            )
        path = path / TABLE_NAME
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"{path}: expected a table file ending in .csv or .parquet")
    if not (path.exists() or path.is_symlink()):
        raise InputError(f"{path}: no such file")
    data = _read_bytes(path)
    return TableFile(path=path, digest=hashlib.sha256(data).hexdigest(), data=data)


# ---- reading rows ---------------------------------------------------------------------------------
def _csv_rows(path: Path, data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    text = _decode(path, data)
    reader = csv.reader(io.StringIO(text, newline=""))
    lineno = 0

    def rows() -> Iterator[tuple[int, list[str]]]:
        nonlocal lineno
        try:
            for fields in reader:
                lineno = reader.line_num
                if fields and any(f.strip() for f in fields):
                    yield lineno, [f.strip() for f in fields]
        except csv.Error as exc:
            raise InputError(f"{path}, line {lineno + 1}: not valid CSV ({exc})") from None

    found = rows()
    header = next(found, None)
    if header is None:
        raise InputError(f"{path}: the table is empty; expected a header line ({', '.join(COLUMNS)}) and holes")
    return header[1], found


def _parquet_rows(path: Path, data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow (pip install 'cryobench[parquet]'), or save the table as CSV"
        ) from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises its own errors for every kind of broken file
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {str(exc)[:120]})") from None
    header = list(table.column_names)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]

    def cell(value: Any) -> str:
        # Cells go through the same checks as CSV text: numbers as exact decimal text, text as is.
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value)  # refused where a number or a split is expected
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, datetime.datetime):
            return value.isoformat()
        return str(value).strip()

    rows = ((number + 2, [cell(column[number]) for column in columns]) for number in range(table.num_rows))
    return header, rows


# ---- checking values ------------------------------------------------------------------------------
def _number(where: str, text: str, low: float = -math.inf, high: float = math.inf) -> float:
    if not re.fullmatch(_DECIMAL, text):
        raise InputError(f"{where}: expected a decimal number, got {_show(text)}")
    value = float(text)
    if not math.isfinite(value) or not low <= value <= high:
        expected = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise InputError(f"{where}: expected a finite number {expected}, got {text}")
    return value


def _name(where: str, text: str) -> str:
    if not text:
        raise InputError(f"{where}: empty; expected a name")
    if len(text) > MAX_NAME_CHARS or not text.isprintable():
        raise InputError(
            f"{where}: expected a printable name of at most {MAX_NAME_CHARS} characters, got {_show(text)}"
        )
    return text


def _timestamp(where: str, text: str) -> str:
    if not text:
        return ""
    try:
        return datetime.datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise InputError(
            f"{where}: expected an ISO 8601 date and time (2021-03-06T02:34:32), got {_show(text)}"
        ) from None


def _header(path: Path, header: list[str]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for index, column in enumerate(header):
        if column in seen:
            raise InputError(f"{path}, line 1: column {column!r} appears twice")
        seen[column] = index
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise InputError(
            f"{path}, line 1: unknown column(s) {[_show(c, 40) for c in unknown]}; expected {', '.join(COLUMNS)}"
        )
    missing = [c for c, required in COLUMNS.items() if required and c not in seen]
    if missing:
        raise InputError(f"{path}, line 1: missing column(s) {missing}; a table needs {', '.join(REQUIRED)}")
    for x, y in (("patch_x_um", "patch_y_um"), ("square_x_um", "square_y_um")):
        if (x in seen) != (y in seen):
            raise InputError(f"{path}, line 1: column {x if x in seen else y!r} without {y if x in seen else x!r}")
    return seen


class _Consistent:
    """One value per key (a patch's square, a square's position, ...): a second value names both lines."""

    def __init__(self, what: str, column: str, expected: str) -> None:
        self.what, self.column, self.expected, self.first = what, column, expected, {}

    def check(self, path: Path, lineno: int, key: str, value: Any, shown: str) -> None:
        first = self.first.setdefault(key, (value, lineno, shown))
        if first[0] != value:
            raise InputError(
                f"{path}, line {lineno}, column {self.column}: {self.what} {_show(key, 80)} is {shown} here but "
                f"{first[2]} on line {first[1]}; expected {self.expected}"
            )


def parse_table(table: TableFile, name: str | None = None) -> Dataset:
    """The Dataset of a table (see the module docstring); every problem names the file, line and column."""
    path = table.path
    header, rows = (_parquet_rows if path.suffix.lower() == ".parquet" else _csv_rows)(path, table.data)
    index = _header(path, header)
    has = {column: column in index for column in COLUMNS}
    records: list[dict[str, Any]] = []
    holes: dict[str, int] = {}
    grids: dict[str, int] = {}
    square_of_patch = _Consistent("patch", "square", "one square per patch")
    tile_of_square = _Consistent("square", "tile", "one tile per square")
    patch_position = _Consistent("patch", "patch_x_um", "one position per patch")
    square_position = _Consistent("square", "square_x_um", "one position per square")
    positions: dict[tuple[str, float, float], tuple[str, int]] = {}
    for lineno, fields in rows:
        if len(fields) != len(header):
            raise InputError(f"{path}, line {lineno}: expected {len(header)} fields (the header's), got {len(fields)}")
        cell = {column: fields[i] for column, i in index.items()}

        def where(column: str, lineno: int = lineno) -> str:
            return f"{path}, line {lineno}, column {column}"

        hole = _name(where("hole"), cell["hole"])
        if hole in holes:
            raise InputError(f"{where('hole')}: duplicate hole {_show(hole)} (first on line {holes[hole]})")
        holes[hole] = lineno
        grid = _name(where("grid"), cell["grid"])
        grids.setdefault(grid, lineno)
        if len(grids) > 1:
            first = next(iter(grids))
            raise InputError(
                f"{where('grid')}: grid {_show(grid)}, but line {grids[first]} is of grid {_show(first)}; "
                "expected one grid per table"
            )
        tile, square, patch = (_name(where(c), cell[c]) for c in ("tile", "square", "patch"))
        square_of_patch.check(path, lineno, patch, square, f"in square {_show(square)}")
        tile_of_square.check(path, lineno, square, tile, f"in tile {_show(tile)}")
        x = _number(where("x_um"), cell["x_um"], -MAX_POSITION_UM, MAX_POSITION_UM)
        y = _number(where("y_um"), cell["y_um"], -MAX_POSITION_UM, MAX_POSITION_UM)
        same = positions.setdefault((patch, x, y), (hole, lineno))
        if same[0] != hole:
            raise InputError(
                f"{where('x_um')}: hole {_show(hole)} is at the same place in patch {_show(patch)} as "
                f"{_show(same[0])} (line {same[1]}); expected each hole once"
            )
        split = cell["split"]
        if split not in ("train", "test"):
            raise InputError(f"{where('split')}: expected 'train' or 'test', got {_show(split)}")
        record = {
            "line": lineno,
            "hole": hole,
            "tile": tile,
            "square": square,
            "patch": patch,
            "x": x,
            "y": y,
            "ctf": _number(where("ctf_max_res"), cell["ctf_max_res"], low=MIN_CTF_RESOLUTION),
            "split": split,
            "prediction": np.nan,
            "confidence": np.nan,
            "patch_xy": (0.0, 0.0),
            "square_xy": (0.0, 0.0),
            "timestamp": _timestamp(where("timestamp"), cell["timestamp"]) if has["timestamp"] else "",
        }
        if has["prediction"]:
            record["prediction"] = _number(where("prediction"), cell["prediction"], low=MIN_CTF_RESOLUTION)
        if has["confidence"] and cell["confidence"]:
            record["confidence"] = _number(where("confidence"), cell["confidence"], 0.0, 1.0)
        for level, check in (("patch", patch_position), ("square", square_position)):
            if has[f"{level}_x_um"]:
                xy = tuple(
                    _number(where(f"{level}_{axis}_um"), cell[f"{level}_{axis}_um"], -MAX_POSITION_UM, MAX_POSITION_UM)
                    for axis in "xy"
                )
                check.check(path, lineno, record[level], xy, f"at {xy[0]:g}, {xy[1]:g}")
                record[f"{level}_xy"] = xy
        records.append(record)
    if not records:
        raise InputError(f"{path}: no holes (expected a row per hole below the header)")
    _check_splits(path, records)
    return _dataset(table, records, has["prediction"], name)


def _check_splits(path: Path, records: list[dict[str, Any]]) -> None:
    """Both splits have holes and share no atlas tile (as the CryoRL importer asks)."""
    for split in ("train", "test"):
        if not any(r["split"] == split for r in records):
            raise InputError(f"{path}: no {split} holes (column split); expected holes of both splits, by tile")
    first: dict[str, dict[str, Any]] = {}
    for r in records:
        seen = first.setdefault(r["tile"], r)
        if seen["split"] != r["split"]:
            raise InputError(
                f"{path}, line {r['line']}, column split: {r['split']} hole {_show(r['hole'])} is in tile "
                f"{_show(r['tile'])}, which holds {seen['split']} holes (e.g. line {seen['line']}); "
                "expected the train and test splits to share no tile"
            )


def _dataset(table: TableFile, records: list[dict[str, Any]], has_predictions: bool, name: str | None) -> Dataset:
    tile = dense_ids(np.array([r["tile"] for r in records]))
    square = dense_ids(np.array([r["square"] for r in records]))
    patch = dense_ids(np.array([r["patch"] for r in records]))
    patch_xy = np.array([r["patch_xy"] for r in records], dtype=float)
    # From the square centre: the patch's offset plus the hole's (the CryoRL importer's sum, in its order).
    x_um = patch_xy[:, 0] + np.array([r["x"] for r in records])
    y_um = patch_xy[:, 1] + np.array([r["y"] for r in records])
    square_xy_um = np.zeros((int(square.max()) + 1, 2))
    square_xy_um[square] = np.array([r["square_xy"] for r in records], dtype=float)
    folder = table.path.parent if table.path.name == TABLE_NAME else table.path
    label = name or (folder.name if table.path.name == TABLE_NAME else table.path.stem)
    stamps = [r["timestamp"] for r in records if r["timestamp"]]
    return measured_dataset(
        name=f"measured:{label}",
        title=f"measured data from {table.path}",
        records=records,
        tile=tile,
        square=square,
        patch=patch,
        x_um=x_um,
        y_um=y_um,
        square_xy_um=square_xy_um,
        hole_names=tuple(r["hole"] for r in records),
        predictions=np.array([r["prediction"] for r in records]) if has_predictions else None,
        meta={
            "source": str(table.path.resolve()),
            "kind": "measured",
            "format": TABLE_FORMAT,
            "seed": 0,
            "sha256": table.digest,
            "timestamps": {"holes": len(stamps), "first": min(stamps), "last": max(stamps)} if stamps else None,
        },
    )


def load_table(path: str | Path) -> Dataset:
    """A measured Dataset from a table file or an imported folder."""
    return parse_table(read_table_file(path))


# ---- writing --------------------------------------------------------------------------------------
def table_rows(dataset: Dataset, timestamps: dict[str, str] | None = None) -> list[dict[str, str]]:
    """A dataset as table rows; names of tile, square and patch from the holes' Leginon names.

    Squares and patches are named by their whole path (``00008gr_00011sq_00003hl``): Leginon
    numbers a patch within its square, and the table's names are grid-wide.
    """
    grid = dataset.grid
    names = [LEGINON_NAME.match(name) for name in grid.hole_names]
    bad = next((name for name, match in zip(grid.hole_names, names, strict=True) if match is None), None)
    if bad is not None:
        raise InputError(f"{grid.meta.get('source')}: hole {_show(bad)} has no Leginon name to take its hierarchy from")
    rows = []
    for i, match in enumerate(names):
        tile = match["tile"]
        square = f"{tile}_{match['square']}"
        row = {
            "hole": grid.hole_names[i],
            "grid": match["prefix"],
            "tile": tile,
            "square": square,
            "patch": f"{square}_{match['patch']}",
            "split": str(dataset.split[i]),
            "ctf_max_res": repr(float(grid.ctf[i])),
            "confidence": "" if np.isnan(grid.confidence[i]) else repr(float(grid.confidence[i])),
            "square_x_um": repr(float(grid.square_xy_um[grid.square[i], 0])),
            "square_y_um": repr(float(grid.square_xy_um[grid.square[i], 1])),
        }
        if dataset.measured_predictions is not None:
            row["prediction"] = repr(float(dataset.measured_predictions[i]))
        if timestamps is not None:
            row["timestamp"] = timestamps.get(grid.hole_names[i], "")
        rows.append(row)
    hole_xy, patch_xy = _split_positions(grid)
    for row, (x, y), (px, py) in zip(rows, hole_xy, patch_xy, strict=True):
        row.update(x_um=repr(float(x)), y_um=repr(float(y)), patch_x_um=repr(float(px)), patch_y_um=repr(float(py)))
    return rows


def _split_positions(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(in-patch, patch-in-square) positions whose float sum is exactly the grid's x_um, y_um."""
    hole_xy = np.asarray(grid.meta["in_patch_um"], dtype=float)
    patch_xy = np.asarray(grid.meta["patch_offset_um"], dtype=float)[grid.patch]
    total = patch_xy + hole_xy
    if not (np.array_equal(total[:, 0], grid.x_um) and np.array_equal(total[:, 1], grid.y_um)):
        raise AssertionError("the table's positions do not add up to the dataset's")  # a bug, not bad input
    return hole_xy, patch_xy


def write_table(rows: list[dict[str, str]], path: str | Path) -> Path:
    """Rows as a CSV table (atomically): the header of the columns they hold, in :data:`COLUMNS` order."""
    present = [c for c in COLUMNS if any(c in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=present, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())


def read_timestamps(folder: Path) -> dict[str, str] | None:
    """``timestamps.csv`` beside CryoRL files (name, date and time), if there: name -> ISO 8601."""
    path = folder / "timestamps.csv"
    if not path.exists():
        return None
    out = {}
    for lineno, fields in enumerate(csv.reader(io.StringIO(_decode(path, _read_bytes(path)))), start=1):
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"{path}, line {lineno}: expected 2 fields (name, date and time), got {len(fields)}")
        out[fields[0].strip()] = _timestamp(f"{path}, line {lineno}", fields[1].strip())
    return out


def convert_cryorl(folder: str | Path, out: str | Path) -> tuple[Path, Dataset]:
    """The table of a CryoRL-format folder (checked by the CryoRL importer first), written to ``out``."""
    dataset = load_cryorl(folder)
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise InputError(f"option --out: {out}: expected a .csv file name")
    return write_table(table_rows(dataset, read_timestamps(Path(folder))), out), dataset


def import_table(source: str | Path, out: str | Path) -> tuple[Path, Dataset]:
    """Check a table and write an imported folder ``out`` (``holes.csv``, ``import.json``) in one step:
    the folder appears whole or not at all."""
    table = read_table_file(source)
    if Path(source).is_dir():
        raise InputError(f"{source}: is an imported folder already; give the table file")
    out = Path(out)
    dataset = parse_table(table, name=out.name)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"option --out: {out} exists and is not an empty folder; choose a new name")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rows = _rows_of(dataset, table)
        write_table(rows, staging / TABLE_NAME)
        manifest = {
            "format": TABLE_FORMAT,
            "source": str(table.path.resolve()),
            "source_sha256": table.digest,
            "imported": utc_timestamp(),
            "holes": dataset.grid.n_holes,
            "splits": {s: int((dataset.split == s).sum()) for s in ("train", "test")},
            "predictions": dataset.measured_predictions is not None,
        }
        write_atomic(staging / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out, load_table(out)


def _rows_of(dataset: Dataset, table: TableFile) -> list[dict[str, str]]:
    """The checked table, normalised: the source's rows re-read, in CSV form (Parquet's too)."""
    path = table.path
    header, rows = (_parquet_rows if path.suffix.lower() == ".parquet" else _csv_rows)(path, table.data)
    out = []
    for _lineno, fields in rows:
        row = dict(zip(header, fields, strict=True))
        if "timestamp" in row:
            row["timestamp"] = _timestamp("", row["timestamp"])
        out.append(row)
    assert len(out) == dataset.grid.n_holes
    return out


# ---- imported datasets by name ----------------------------------------------------------------------
#: The name of an imported dataset: its short environment name (``--env NAME``).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def data_home() -> Path:
    """Where ``import-table --name`` puts imported datasets: ``$CRYOBENCH_DATA_DIR``, else
    ``$XDG_DATA_HOME/cryobench/datasets`` (``~/.local/share/cryobench/datasets``)."""
    if os.environ.get("CRYOBENCH_DATA_DIR"):
        return Path(os.environ["CRYOBENCH_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "cryobench" / "datasets"


def env_id_of(name: str) -> str:
    """The gymnasium id of an imported dataset: ``krios-2024`` -> ``cryobench/Krios2024-v0``."""
    return "cryobench/" + "".join(part.capitalize() for part in name.split("-")) + "-v0"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or len(name) > 40:
        raise InputError(
            f"option --name: expected lower-case letters, digits and '-' (starting with a letter, at most 40), "
            f"got {_show(name)}"
        )
    return name


def imported_datasets() -> dict[str, Path]:
    """Name -> folder of every dataset imported by name (folders of :func:`data_home` holding a table)."""
    home = data_home()
    if not is_folder(home):
        return {}
    return {
        folder.name: folder
        for folder in sorted(home.iterdir())
        if NAME_PATTERN.fullmatch(folder.name) and is_folder(folder) and is_table_folder(folder)
    }
