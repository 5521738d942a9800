"""A catalogue of bad data folders, cards and environment cards: each gives a one-line InputError
naming the file (and line or field) and what was expected; never a traceback, never a silently
wrong dataset. Built from small hand-made CryoRL folders and from copies of the measured Aldolase
folder, mutated."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryobench.catalog import build_world, load_dataset
from cryobench.cli import main
from cryobench.cryorl_format import load_cryorl
from cryobench.errors import ExitCode, InputError

REPO = Path(__file__).resolve().parents[1]
ALDOLASE_FILES = (
    "target_CTF_Y1.csv",
    "target_CTF_Y1_train.csv",
    "target_CTF_Y1_val.csv",
    "Y1_2_regress_8bit_res50_train_by_hl.txt",
    "Y1_2_regress_8bit_res50_val_by_hl.txt",
)
GRID_ARRAYS = ("tile", "square", "patch", "x_um", "y_um", "ctf", "confidence", "failed", "square_xy_um")


# ---- folders ----------------------------------------------------------------------------
def make_folder(folder: Path, seed: int = 0) -> Path:
    """A small valid CryoRL folder by hand: 4 tiles (2 train, 2 val) x 2 squares x 2 patches x 3 holes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    session = "25jan01a_grid1"
    split_lines: dict[str, list[str]] = {"train": [], "val": []}
    predictions: dict[str, list[str]] = {"train": [], "val": []}
    images = [f"{session}_{t:05d}gr,{915 * t},0,-1,-1" for t in range(1, 5)]
    for t in range(1, 5):
        split = "train" if t <= 2 else "val"
        for s in range(1, 3):
            square = f"{session}_{t:05d}gr_{10 * t + s:05d}sq_v01"
            images.append(f"{session}_{t:05d}gr_{10 * t + s:05d}sq,{100 * s},{50 * s},-1,-1")
            for p in range(1, 3):
                images.append(f"{square}_{p:05d}hl,{400 * p - 600},{-300 * p},-1,-1")
                for h in range(1, 4):
                    name = f"{square}_{p:05d}hl_v01_{h:05d}en-a"
                    ctf = 100000.0 if (t, s, p, h) == (3, 1, 1, 1) else round(float(rng.uniform(2.5, 15)), 4)
                    conf = -1 if h == 3 else round(float(rng.uniform(0, 1)), 4)
                    x, y = (h - 2) * 182.0, float(p * 10)
                    split_lines[split].append(f"{name},{x},{y},{ctf},{conf}")
                    predictions[split].append(f"{name} {round(min(ctf, 20.0) + float(rng.normal(0, 1)), 2)}")
    (folder / "target_CTF_T1.csv").write_text("\n".join(images) + "\n")
    for split in ("train", "val"):
        (folder / f"target_CTF_T1_{split}.csv").write_text("\n".join(split_lines[split]) + "\n")
        (folder / f"T1_regress_{split}_by_hl.txt").write_text("\n".join(predictions[split]) + "\n")
    return folder


def copy_aldolase(aldolase: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ALDOLASE_FILES:
        shutil.copy(aldolase / name, folder / name)
        (folder / name).chmod(0o644)
    return folder


@pytest.fixture(params=["handmade", "aldolase"])
def folder(request, tmp_path) -> Path:
    """A valid folder to break: hand-made, or a copy of the measured Aldolase data (skipped where absent)."""
    if request.param == "handmade":
        return make_folder(tmp_path / "handmade")
    return copy_aldolase(request.getfixturevalue("aldolase_data"), tmp_path / "aldolase")


def role_path(folder: Path, role: str) -> Path:
    """The file of one role: train, val (the CSVs), train_pred, val_pred, all (the all-images CSV)."""
    pattern = {
        "train": "target_CTF_*_train.csv",
        "val": "target_CTF_*_val.csv",
        "train_pred": "*_train_by_hl.txt",
        "val_pred": "*_val_by_hl.txt",
    }.get(role)
    if pattern is None:
        return next(p for p in folder.glob("target_CTF_*.csv") if not p.stem.endswith(("_train", "_val")))
    return next(iter(folder.glob(pattern)))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def set_line(folder: Path, role: str, number: int, text: str) -> None:
    path = role_path(folder, role)
    content = lines(path)
    content[number - 1] = text
    path.write_text("\n".join(content) + "\n")


def set_field(folder: Path, role: str, number: int, index: int, value: str) -> None:
    sep = " " if role.endswith("_pred") else ","
    fields = lines(role_path(folder, role))[number - 1].split(sep)
    fields[index] = value
    set_line(folder, role, number, sep.join(fields))


def rename_hole(folder: Path, split: str, number: int, rename: Callable[[str], str]) -> str:
    """Rename the hole on line ``number`` of a split file, in its prediction file too."""
    old = lines(role_path(folder, split))[number - 1].split(",")[0]
    new = rename(old)
    set_field(folder, split, number, 0, new)
    pred = role_path(folder, f"{split}_pred")
    pred.write_text(pred.read_text().replace(f"{old} ", f"{new} "))
    return new


def add_hole(folder: Path, split: str, line: str) -> None:
    """Append a hole (a split-file line) and a prediction for it."""
    path = role_path(folder, split)
    path.write_text(path.read_text().rstrip("\n") + "\n" + line + "\n")
    pred = role_path(folder, f"{split}_pred")
    pred.write_text(pred.read_text().rstrip("\n") + f"\n{line.split(',')[0]} 5.0\n")


def replace_with(folder: Path, role: str, make: Callable[[Path], None]) -> None:
    path = role_path(folder, role)
    path.unlink()
    make(path)


def insert_bytes(folder: Path, role: str, number: int, data: bytes) -> None:
    """Put raw bytes at the start of the second field of line ``number``."""
    path = role_path(folder, role)
    content = path.read_bytes().split(b"\n")
    sep = b" " if role.endswith("_pred") else b","
    name, rest = content[number - 1].split(sep, 1)
    content[number - 1] = name + sep + data + rest
    path.write_bytes(b"\n".join(content))


def change_tile(old: str, tile: str) -> str:
    return re.sub(r"_\d+gr_\d+sq", f"_{tile}_99999sq", old)


def tile_of(folder: Path, split: str, number: int) -> str:
    return re.search(r"\d+gr", lines(role_path(folder, split))[number - 1]).group(0)


# ---- the catalogue ----------------------------------------------------------------------
@dataclass
class Case:
    id: str
    mutate: Callable[[Path], object]
    role: str | None  # the file the message must name (None: the folder)
    pattern: str


def _utf16(folder: Path, role: str) -> None:
    path = role_path(folder, role)
    path.write_bytes(path.read_text().encode("utf-16"))


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


BAD_FOLDERS = [
    Case("empty folder", _empty, None, "the folder is empty; expected a CryoRL-format folder"),
    Case("val file missing", lambda f: role_path(f, "val").unlink(), None, r"no test-split \(val\) ground truth"),
    Case("val file empty", lambda f: role_path(f, "val").write_text(""), "val", "no holes"),
    Case("non-UTF-8 byte", lambda f: insert_bytes(f, "val", 3, b"\xe9"), "val", r"line 3: not UTF-8 text"),
    Case("non-UTF-8 prediction", lambda f: insert_bytes(f, "val_pred", 2, b"\xff"), "val_pred", "line 2: not UTF-8"),
    Case("non-UTF-8 all-images", lambda f: insert_bytes(f, "all", 4, b"\xc3("), "all", "line 4: not UTF-8"),
    Case("UTF-16 val", lambda f: _utf16(f, "val"), "val", "UTF-16 text; expected UTF-8"),
    Case("UTF-16 predictions", lambda f: _utf16(f, "train_pred"), "train_pred", "UTF-16"),
    Case("folder for a file", lambda f: replace_with(f, "val", Path.mkdir), "val", "is a folder; expected a file"),
    Case(
        "symlink loop",
        lambda f: replace_with(f, "val", lambda p: p.symlink_to(p.name)),
        "val",
        "cannot read the file: .*symbolic link",
    ),
    Case(
        "broken symlink",
        lambda f: replace_with(f, "train_pred", lambda p: p.symlink_to("nowhere.txt")),
        "train_pred",
        "cannot read the file: .*symbolic link",
    ),
    Case("bad x in all-images", lambda f: set_field(f, "all", 2, 1, "12..5"), "all", r"line 2: x \(px\) must be a dec"),
    Case("bad CTF in all-images", lambda f: set_field(f, "all", 3, 3, "abc"), "all", r"line 3: CTFMaxRes \(Å\) must"),
    Case(
        "duplicate image in all-images",
        lambda f: set_line(f, "all", 2, lines(role_path(f, "all"))[0]),
        "all",
        r"line 2: duplicate image .* \(first on line 1\)",
    ),
    Case("200 kB field", lambda f: set_field(f, "val", 4, 0, "a" * 200_000), "val", r"line 4: not valid CSV \(field"),
    Case(
        "200 kB name in predictions",
        lambda f: set_field(f, "val_pred", 2, 0, "a" * 200_000),
        "val_pred",
        r"line 2: prediction for 'a+'\.\.\. \(200000 characters\)",
    ),
    Case(
        "NUL byte",
        lambda f: insert_bytes(f, "train", 2, b"\x00"),
        "train",
        r"line 2: x \(px\) must be a decimal number, got '\\x00",
    ),
    Case("x = inf", lambda f: set_field(f, "val", 3, 1, "inf"), "val", r"line 3: x \(px\) must be a decimal number"),
    Case("y = nan", lambda f: set_field(f, "train", 3, 2, "nan"), "train", r"line 3: y \(px\) must be a decimal"),
    Case("x = 1e300", lambda f: set_field(f, "val", 3, 1, "1e300"), "val", r"line 3: x \(px\) must be a finite number"),
    Case("x = 1e400", lambda f: set_field(f, "val", 3, 1, "1e400"), "val", r"line 3: x \(px\) must be a finite number"),
    Case("CTF 1e-300", lambda f: set_field(f, "val", 5, 3, "1e-300"), "val", r"line 5: CTFMaxRes .* at least 1, got"),
    Case("CTF 0", lambda f: set_field(f, "val", 5, 3, "0"), "val", r"line 5: CTFMaxRes \(Å\) must be .* at least 1"),
    Case("CTF negative", lambda f: set_field(f, "train", 2, 3, "-3"), "train", r"line 2: CTFMaxRes .* at least 1"),
    Case("CTF 1_0", lambda f: set_field(f, "val", 2, 3, "1_0"), "val", r"line 2: CTFMaxRes \(Å\) must be a decimal"),
    Case("CTF hex", lambda f: set_field(f, "val", 2, 3, "0x10"), "val", r"line 2: CTFMaxRes \(Å\) must be a decimal"),
    Case("confidence 7", lambda f: set_field(f, "val", 2, 4, "7"), "val", r"line 2: confidence must be .* -1 and 1"),
    Case("prediction 0", lambda f: set_field(f, "val_pred", 4, 1, "0"), "val_pred", r"line 4: predicted CTFMaxRes"),
    Case("prediction inf", lambda f: set_field(f, "val_pred", 4, 1, "inf"), "val_pred", "line 4: predicted CTFMax"),
    Case("four fields", lambda f: _drop_field(f), "val", r"line 6: expected 5 fields .* got 4"),
    Case(
        "BOM in the middle of the val file",
        lambda f: rename_hole(f, "val", 3, lambda n: "\ufeff" + n),
        "val",
        r"line 3: '\\ufeff.*' is not a Leginon exposure name",
    ),
    Case(
        "same exposure twice under another name",
        lambda f: add_hole(f, "val", lines(role_path(f, "val"))[0].replace("en-a,", "en,", 1)),
        "val",
        r"line \d+: '.*en' is the same exposure as '.*en-a' \(line 1",
    ),
    Case(
        "same exposure in both splits",
        lambda f: add_hole(f, "val", lines(role_path(f, "train"))[0].replace("en-a,", "en-b,", 1)),
        "val",
        r"line \d+: '.*en-b' is the same exposure as '.*en-a' \(.*_train.csv, line 1\)",
    ),
    Case(
        "hole from another session",
        lambda f: rename_hole(f, "val", 3, lambda n: re.sub(r"^.*?(?=_\d+gr_)", "22feb02b_grid7", n)),
        "val",
        r"line 3: hole '22feb02b_grid7_.*' is from session/grid '22feb02b_grid7', but \d+ holes are from",
    ),
    Case(
        "test hole inside a training tile",
        lambda f: rename_hole(f, "val", 3, lambda n: change_tile(n, tile_of(f, "train", 1))),
        "val",
        r"line 3: test \(val\) hole .* is in tile \d+gr, which holds \d+ training holes \(e\.g\. .*_train\.csv",
    ),
    Case(
        "training hole inside a test tile",
        lambda f: rename_hole(f, "train", 2, lambda n: change_tile(n, tile_of(f, "val", 1))),
        "train",
        r"line 2: training hole .* is in tile \d+gr, which holds \d+ test \(val\) holes",
    ),
    Case(
        "predictions for one split only",
        lambda f: role_path(f, "train_pred").unlink(),
        None,
        "predictions exist for one split only",
    ),
    Case(
        "splits of two datasets",
        lambda f: role_path(f, "val").rename(f / "target_CTF_Z9_val.csv"),
        None,
        r"the split files are of two datasets",
    ),
    Case(
        "two val files",
        lambda f: shutil.copy(role_path(f, "val"), f / "target_CTF_Z9_val.csv"),
        None,
        r"several files match 'target_CTF_\*_val.csv'",
    ),
    Case(
        "prediction for no hole",
        lambda f: set_field(f, "val_pred", 5, 0, "25jan01a_grid1_00099gr_00001sq_v01_00001hl_v01_00001en-a"),
        "val_pred",
        "line 5: prediction for .* matches no hole",
    ),
]


def _drop_field(folder: Path) -> None:
    set_line(folder, "val", 6, ",".join(lines(role_path(folder, "val"))[5].split(",")[:4]))


def assert_one_line_error(exc: InputError, path: Path, pattern: str) -> None:
    message = str(exc)
    assert "\n" not in message and len(message) < 600, message
    assert str(path) in message, f"the message does not name {path}: {message}"
    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


@pytest.mark.parametrize("case", BAD_FOLDERS, ids=[c.id for c in BAD_FOLDERS])
def test_bad_folder_gives_a_one_line_error_naming_the_file(folder, case):
    path = folder if case.role is None else role_path(folder, case.role)
    case.mutate(folder)
    with pytest.raises(InputError) as caught:
        load_dataset(data=folder)
    assert_one_line_error(caught.value, path, case.pattern)


def test_the_handmade_folder_loads_as_built(tmp_path):
    dataset = load_cryorl(make_folder(tmp_path / "f"))
    grid, test = dataset.grid, dataset.split == "test"
    assert (grid.n_holes, int(test.sum())) == (48, 24)
    assert (grid.n_tiles, grid.n_squares, grid.n_patches) == (4, 8, 16)
    assert set(grid.tile[test]) == {2, 3} and set(grid.tile[~test]) == {0, 1}
    assert grid.failed.sum() == 1 and np.isnan(grid.confidence).sum() == 16
    assert grid.meta["patches_located"] == 16


# ---- what must still load, and load the same ---------------------------------------------
def _arrays(dataset) -> dict[str, np.ndarray]:
    out = {name: getattr(dataset.grid, name) for name in GRID_ARRAYS}
    out["split"] = dataset.split.astype(str)
    out["names"] = np.asarray(dataset.grid.hole_names)
    if dataset.measured_predictions is not None:
        out["predicted"] = dataset.measured_predictions
    return out


def _assert_same(a, b) -> None:
    for key, value in _arrays(a).items():
        np.testing.assert_array_equal(value, _arrays(b)[key], err_msg=key, strict=True)


def _with_bom(folder: Path) -> None:
    for role in ("val", "val_pred", "all"):
        path = role_path(folder, role)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _crlf(folder: Path) -> None:
    for role in ("train", "val", "train_pred", "val_pred"):
        path = role_path(folder, role)
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def _blank_lines(folder: Path) -> None:
    path = role_path(folder, "val")
    path.write_text("\n" + path.read_text() + "\n\n")


@pytest.mark.parametrize("edit", [_with_bom, _crlf, _blank_lines], ids=["UTF-8 BOM", "CRLF", "blank lines"])
def test_harmless_differences_load_bit_identical(folder, tmp_path, edit):
    """A spreadsheet's byte-order mark, Windows line ends and blank lines change nothing."""
    original = load_cryorl(folder)
    edited = shutil.copytree(folder, tmp_path / "edited")
    edit(edited)
    _assert_same(original, load_cryorl(edited))


def test_measured_aldolase_loads_as_before(aldolase_data):
    """Validation refuses nothing in the measured data: the facts' counts of holes, failed fits and located patches."""
    dataset = load_dataset(data=aldolase_data)
    test = dataset.split == "test"
    assert (int(test.sum()), int((~test).sum()), int(dataset.grid.failed.sum())) == (2341, 1197, 52)
    assert dataset.grid.meta["patches_located"] == 172


# ---- no prediction files: no silent 'perfect' regressor ---------------------------------
def test_no_prediction_files_needs_an_explicit_regressor(folder):
    for role in ("train_pred", "val_pred"):
        role_path(folder, role).unlink()
    dataset = load_dataset(data=folder)
    assert dataset.measured_predictions is None and dataset.card["default_regressor"] is None
    with pytest.raises(InputError) as caught:
        build_world(dataset)
    assert_one_line_error(caught.value, folder.resolve(), r"has no prediction files.*-e regressor=NAME.*perfect")
    with pytest.raises(InputError, match="has no prediction files"):
        gym.make("cryobench/CryoRL-v0", data=str(folder))
    world = build_world(dataset, regressor="perfect")
    np.testing.assert_array_equal(world.predicted_ctf, np.minimum(world.grid.ctf, 20.0))
    env = gym.make("cryobench/CryoRL-v0", data=str(folder), regressor="perfect")
    assert env.action_space.n == int((dataset.split == "test").sum())


def test_import_of_a_folder_without_predictions_says_so(tmp_path):
    folder = make_folder(tmp_path / "f")
    for role in ("train_pred", "val_pred"):
        role_path(folder, role).unlink()
    result = CliRunner().invoke(main, ["datasets", "import-cryorl", str(folder)])
    assert result.exit_code == 0, result.output
    assert "none: choose a regressor model" in result.output and "regressor {'model': 'perfect'}" in result.output


# ---- command line -----------------------------------------------------------------------
def test_cryorl_env_without_data_says_to_pass_data():
    result = CliRunner().invoke(main, ["run", "--env", "cryorl", "--agent", "random", "--episodes", "1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip().splitlines() == [
        "Error: argument 'data': no data given; pass data=PATH, a folder in the CryoRL format "
        "(on the command line: -e data=PATH), or dataset=NAME for a simulated twin"
    ]


def test_bad_folder_on_the_command_line_is_one_line(tmp_path):
    folder = make_folder(tmp_path / "f")
    set_field(folder, "val", 3, 1, "inf")
    result = CliRunner().invoke(main, ["datasets", "import-cryorl", str(folder)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip().splitlines() == [
        f"Error: {role_path(folder, 'val')}, line 3: x (px) must be a decimal number, got 'inf'"
    ]


# ---- caches keyed by content ------------------------------------------------------------
def _keep_times(path: Path, edit: Callable[[], None]) -> None:
    """Edit a file, then put its old modification time back (as a copy with `cp -p` or a fast edit may)."""
    stat = path.stat()
    edit()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_folder_edited_on_disk_is_read_again(tmp_path):
    folder = make_folder(tmp_path / "f")
    first = load_dataset(data=folder)
    assert load_dataset(data=folder) is first, "unchanged files: the cached dataset"
    val = role_path(folder, "val")
    old_ctf = lines(val)[0].split(",")[3]
    new_ctf = "3.1415" if old_ctf != "3.1415" else "4.1415"
    _keep_times(val, lambda: set_field(folder, "val", 1, 3, new_ctf.ljust(len(old_ctf), "0")))
    second = load_dataset(data=folder)
    name = lines(val)[0].split(",")[0]
    index = second.grid.hole_names.index(name)
    assert second.grid.ctf[index] == float(new_ctf.ljust(len(old_ctf), "0"))
    assert first.grid.ctf[first.grid.hole_names.index(name)] == float(old_ctf)


def test_a_card_edited_on_disk_is_read_again(tmp_path):
    card = tmp_path / "card.yaml"
    card.write_text((REPO / "datasets" / "aldolase.yaml").read_text())
    assert load_dataset(dataset=str(card)).grid.n_holes == 3538
    _keep_times(card, lambda: card.write_text(card.read_text().replace("value: 3538", "value: 1000")))
    assert load_dataset(dataset=str(card)).grid.n_holes == 1000


# ---- read-only public arrays ------------------------------------------------------------
@pytest.mark.parametrize("source", ["twin", "measured"])
def test_dataset_arrays_are_read_only(source, tmp_path):
    dataset = load_dataset(dataset="aldolase") if source == "twin" else load_dataset(data=make_folder(tmp_path / "f"))
    grid, _ = dataset.select_split("test")
    world = build_world(dataset, regressor="perfect" if source == "measured" else None)
    arrays = {f"grid.{a}": getattr(dataset.grid, a) for a in GRID_ARRAYS}
    arrays |= {f"test.{a}": getattr(grid, a) for a in GRID_ARRAYS} | {"split": dataset.split}
    arrays |= {f"world.grid.{a}": getattr(world.grid, a) for a in GRID_ARRAYS}
    for name, array in arrays.items():
        assert not array.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            array[0] = array[0]
    # A whole episode in an environment on the same (cached) dataset changes none of them.
    before = {name: array.copy() for name, array in arrays.items()}
    kwargs = {"dataset": "aldolase"} if source == "twin" else {"data": str(tmp_path / "f"), "regressor": "perfect"}
    env = gym.make("cryobench/CryoRL-v0" if source == "measured" else "cryobench/Aldolase-v0", **kwargs)
    obs, _ = env.reset(seed=0)
    rng, done = np.random.default_rng(0), False
    while not done:
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        done = terminated or truncated
    again = load_dataset(**{k: v for k, v in kwargs.items() if k != "regressor"})
    assert again is dataset, "the cached dataset is handed out again"
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, before[name], err_msg=name, strict=True)


# ---- dataset cards ----------------------------------------------------------------------
def _card(tmp_path: Path, edit: Callable[[str], str], data: bytes | None = None) -> Path:
    path = tmp_path / "card.yaml"
    if data is not None:
        path.write_bytes(data)
    else:
        path.write_text(edit((REPO / "datasets" / "aldolase.yaml").read_text()))
    return path


# Nine levels of nine aliases in one flow list: 9**9 leaves if anything walked it as a tree.
YAML_BOMB = "[" + ", ".join(f"&b{i} [{', '.join([f'*b{i - 1}' if i else 'lol'] * 9)}]" for i in range(9)) + "]"
BAD_CARDS = [
    ("non-UTF-8", None, b"name: \xe9\n", r"card.yaml, line 1: not UTF-8 text"),
    ("pitch inf", lambda t: t.replace("value: 2.5,", "value: .inf,"), None, r"layout.pitch_um must hold finite"),
    ("pitch 0", lambda t: t.replace("value: 2.5,", "value: 0,"), None, r"layout.pitch_um must be positive, got 0"),
    ("variance inf", lambda t: t.replace("hole: 1.1", "hole: .inf"), None, r"quality.variance must hold finite"),
    ("holes 10**9", lambda t: t.replace("value: 3538", "value: 1000000000"), None, r"layout.holes must be from 1 to"),
    ("quantile nan", lambda t: t.replace("[1.0, 28.12]", "[1.0, .nan]"), None, "quality.ctf_quantiles must hold"),
    (
        "patches per square 10**12",
        lambda t: t.replace("max: 13}", "max: 1000000000000}"),
        None,
        r"layout.patches_per_square needs 1 <= min <= median <= max <= 1,000,000",
    ),
    ("holes 1", lambda t: t.replace("value: 3538", "value: 1"), None, r"layout.holes is 1, but 25 squares .* hold 250"),
    (
        "patches too small",
        lambda t: t.replace("{min: 5, median: 21, max: 25}", "{min: 1, median: 1, max: 1}"),
        None,
        r"layout.holes is 3538, but 25 squares of 2-13 patches of 1-1 holes hold 50 to 325",
    ),
    (
        "30 holes per patch",
        lambda t: t.replace("{min: 5, median: 21, max: 25}", "{min: 5, median: 21, max: 30}"),
        None,
        r"holes_per_patch max must be at most 25",
    ),
    (
        "a square of a million patches",
        lambda t: t.replace("{min: 2, median: 7, max: 13}", "{min: 2, median: 7, max: 1000000}"),
        None,
        r"one square up to 5e\+06",
    ),
    ("one tile", lambda t: t.replace("value: 16,", "value: 1,"), None, r"layout.tiles must be at least 2"),
    ("unknown model", lambda t: t.replace("value: resnet50-aldolase", "value: psychic"), None, "regressor: unknown"),
    (
        "measured model",
        lambda t: t.replace("value: resnet50-aldolase", "value: measured"),
        None,
        r"card.yaml, line \d+: regressor.model: 'measured' reads a data folder's prediction files",
    ),
    (
        "parameter out of range",
        lambda t: t.replace("parameters: {value: {}", "parameters: {value: {spread: -1}"),
        None,
        r"line \d+: regressor: regressor 'resnet50-aldolase': 'spread' must be a number in \[0.0, 10.0\], got -1",
    ),
    (
        "parameter of another model",
        lambda t: t.replace("parameters: {value: {}", "parameters: {value: {sigma: 2}"),
        None,
        r"regressor: model 'resnet50-aldolase' takes \['patch_context', 'patch_share', 'spread'\], not \['sigma'\]",
    ),
    (
        "parameter named by a number",
        lambda t: t.replace("parameters: {value: {}", "parameters: {value: {1: 2}"),
        None,
        r"regressor.parameters: expected parameter names with finite numbers, got 1: 2",
    ),
    ("a note that is no text", lambda t: t.replace("source: paper}", "source: paper, note: [1]}", 1), None, "note"),
    ("an extra key", lambda t: t.replace("source: paper}", "source: paper, units: um}", 1), None, r"\['units'\]"),
    (
        "a YAML alias bomb",
        lambda t: t.replace(
            "holes: {value: 3538, source: paper}", f"holes: {{value: 3538, source: paper, note: {YAML_BOMB}}}"
        ),
        None,
        r"layout.holes: note must be a text, got a list",
    ),
]


@pytest.mark.parametrize("case", BAD_CARDS, ids=[c[0] for c in BAD_CARDS])
def test_bad_dataset_cards(tmp_path, case):
    _, edit, data, pattern = case
    path = _card(tmp_path, edit, data)
    with pytest.raises(InputError) as caught:
        load_dataset(dataset=str(path))
    assert_one_line_error(caught.value, path, pattern)


def test_card_limits_match_the_twin_generator():
    from cryobench.cards import MAX_HOLES_PER_PATCH
    from cryobench.twin import PATCH_SIDE

    assert PATCH_SIDE**2 == MAX_HOLES_PER_PATCH


def test_a_folder_given_as_card_is_refused(tmp_path):
    (tmp_path / "card.yaml").mkdir()
    with pytest.raises(InputError, match=r"argument 'dataset': dataset card '.*card.yaml' not found"):
        load_dataset(dataset=str(tmp_path / "card.yaml"))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"dataset": "a\0b"}, r"argument 'dataset': unknown dataset 'a\\x00b'"),
        ({"dataset": "x\0.yaml"}, r"argument 'dataset': dataset card 'x\\x00.yaml' not found"),
        ({"dataset": "a" * 5000}, r"argument 'dataset': unknown dataset 'a+\.\.\.a+'"),
        ({"dataset": "../datasets/aldolase"}, r"argument 'dataset': unknown dataset '\.\./datasets/aldolase'"),
        ({"dataset": 3}, r"argument 'dataset': expected a dataset name or card path, got 3"),
        ({"data": "a\0b"}, r"argument 'data': 'a\\x00b' is not a folder"),
        ({"data": "a" * 5000}, r"argument 'data': 'a+'\.\.\. is not a folder"),
        ({"data": 3}, r"argument 'data': expected the path of a CryoRL-format folder, got int"),
    ],
    ids=["NUL in name", "NUL in path", "5000-character name", "relative path", "int", "NUL", "5000 chars", "int"],
)
def test_bad_dataset_arguments(kwargs, pattern):
    with pytest.raises(InputError) as caught:
        load_dataset(**kwargs)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400
    assert re.search(pattern, str(caught.value)), str(caught.value)


# ---- environment cards ------------------------------------------------------------------
GOOD_ENV_CARD = (REPO / "envs" / "aldolase.yaml").read_text()
BAD_ENV_CARDS = [
    ("not a mapping", b"- a\n- b\n", r"an environment card must be a mapping of fields"),
    ("bad YAML", b"id: [oops\n", r"line \d+: not valid YAML"),
    ("not UTF-8", b"id: \xe9\n", r"not UTF-8 text \(byte offset 4\)"),
    ("UTF-16", GOOD_ENV_CARD.encode("utf-16"), r"not UTF-8 text"),
    ("bad id", GOOD_ENV_CARD.replace("cryobench/Aldolase-v0", "Aldolase v0").encode(), r"field 'id' must look like"),
    ("duplicate id", GOOD_ENV_CARD.encode(), r"field 'id': 'cryobench/Aldolase-v0' is already the id of .*a.yaml"),
    ("unknown field", (GOOD_ENV_CARD + "colour: blue\n").encode(), r"unknown field\(s\) \['colour'\]"),
    ("integer key", (GOOD_ENV_CARD + "7: blue\n").encode(), r"unknown field\(s\) \['7'\]"),
    (
        "alias bomb",
        GOOD_ENV_CARD.replace("kwargs:\n  dataset: aldolase", f"kwargs: {YAML_BOMB}").encode(),
        r"field 'kwargs' must be a dict, got \[\['lol', 'lol', 'lol', 'lol', \.\.\.\], \[\[\.\.\.\]",
    ),
]


@pytest.fixture
def env_card_folder(tmp_path, monkeypatch):
    """An envs/ folder of our own for the registry (its cache cleared before and after)."""
    from cryobench import registration

    folder = tmp_path / "envs"
    folder.mkdir()
    monkeypatch.setattr(registration, "card_dir", lambda kind: folder)
    registration._load_env_cards.cache_clear()
    yield folder
    registration._load_env_cards.cache_clear()


@pytest.mark.parametrize("case", BAD_ENV_CARDS, ids=[c[0] for c in BAD_ENV_CARDS])
def test_bad_environment_cards_are_left_out_with_their_error(env_card_folder, case):
    from cryobench.registration import env_card_errors, env_cards, register_envs, resolve_env_id

    _, data, pattern = case
    (env_card_folder / "a.yaml").write_text(GOOD_ENV_CARD)
    (env_card_folder / "z.yaml").write_bytes(data)
    register_envs()  # what import does: no error
    assert list(env_cards()) == ["cryobench/Aldolase-v0"]
    [message] = env_card_errors()
    assert_one_line_error(InputError(message), env_card_folder / "z.yaml", pattern)
    with pytest.raises(InputError) as caught:
        resolve_env_id("z")
    assert str(caught.value) == message
    assert resolve_env_id("aldolase-v0") == "cryobench/Aldolase-v0"


BAD_ENV_CARD_SCRIPT = textwrap.dedent(
    """
    import gymnasium as gym
    import cryobench
    from cryobench.errors import InputError
    from cryobench.registration import env_card_errors, env_cards, resolve_env_id

    assert "cryobench/Broken-v0" not in env_cards() and "cryobench/Aldolase-v0" in env_cards()
    print("errors:", env_card_errors())
    for name in ("broken", "cryobench/Broken-v0"):
        try:
            resolve_env_id(name) if "/" not in name else gym.make(name)
        except InputError as exc:
            print("refused:", exc)
    print("good:", gym.make(resolve_env_id("aldolase-v0")).action_space.n)
    """
)


@pytest.mark.slow  # copies the package and imports it in a fresh interpreter
def test_a_bad_environment_card_does_not_break_import(tmp_path):
    """A copy of the package whose envs/ holds a bad card: import works, the card's error shows where it is used."""
    shutil.copytree(REPO / "cryobench", tmp_path / "cryobench", ignore=shutil.ignore_patterns("__pycache__"))
    for kind in ("envs", "datasets", "agents"):
        shutil.copytree(REPO / kind, tmp_path / kind, ignore=shutil.ignore_patterns("checkpoints"))
    bad = tmp_path / "envs" / "broken.yaml"
    bad.write_text(
        (REPO / "envs" / "aldolase.yaml")
        .read_text()
        .replace("Aldolase-v0", "Broken-v0")
        .replace("short_name: aldolase", "short_name: broken")
        .replace("simulated: true", "simulated: maybe")
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", BAD_ENV_CARD_SCRIPT], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    message = f"{bad}: field 'simulated' must be a bool, got 'maybe'"
    assert run.stdout.splitlines() == [
        f"errors: [{message!r}]",
        f"refused: {message}",
        f"refused: {message}",
        f"good: {gym.make('cryobench/Aldolase-v0').action_space.n}",
    ]
    listing = subprocess.run(
        [sys.executable, "-m", "cryobench.cli", "list", "envs"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert listing.returncode == 0 and "cryobench/Aldolase-v0" in listing.stdout
    assert listing.stderr.splitlines() == [f"not loaded: {message}"]


# ---- property tests ---------------------------------------------------------------------
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _load_or_input_error(folder: Path) -> None:
    """Either a clean load with finite arrays or a one-line InputError; anything else fails the test."""
    try:
        dataset = load_cryorl(folder)
    except InputError as exc:
        assert "\n" not in str(exc) and str(folder) in str(exc)
        return
    grid = dataset.grid
    assert np.isfinite(grid.x_um).all() and np.isfinite(grid.y_um).all() and np.isfinite(grid.square_xy_um).all()
    assert (grid.ctf >= 1.0).all() and set(dataset.split) <= {"train", "test"}


@PROPERTY_SETTINGS
@given(
    role=st.sampled_from(["train", "val", "train_pred", "val_pred", "all"]),
    data=st.binary(max_size=400),
    keep=st.integers(min_value=0, max_value=2000),
)
def test_random_bytes_in_a_file(tmp_path_factory, role, data, keep):
    folder = make_folder(tmp_path_factory.mktemp("bytes"))
    path = role_path(folder, role)
    original = path.read_bytes()
    path.write_bytes(original[:keep] + data + original[keep:])
    _load_or_input_error(folder)


FIELD_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "-1", "0", "1e-300", "1e300", "inf", "-inf", "nan", "100000", "1_0", " 5 ", '"5"', "5,5"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
)


@PROPERTY_SETTINGS
@given(
    role=st.sampled_from(["train", "val", "train_pred", "val_pred", "all"]),
    line=st.integers(min_value=1, max_value=24),
    field=st.integers(min_value=0, max_value=4),
    value=FIELD_VALUES,
    action=st.sampled_from(["replace", "drop line", "duplicate line", "add field"]),
)
def test_random_csv_mutations(tmp_path_factory, role, line, field, value, action):
    folder = make_folder(tmp_path_factory.mktemp("csv"))
    path = role_path(folder, role)
    content = lines(path)
    number = min(line, len(content)) - 1
    sep = " " if role.endswith("_pred") else ","
    fields = content[number].split(sep)
    if action == "replace":
        fields[field % len(fields)] = value
        content[number] = sep.join(fields)
    elif action == "drop line":
        del content[number]
    elif action == "duplicate line":
        content.insert(number, content[number])
    else:
        content[number] = sep.join([*fields, value])
    path.write_text("\n".join(content) + "\n")
    _load_or_input_error(folder)


@PROPERTY_SETTINGS
@given(data=st.binary(min_size=1, max_size=40), at=st.integers(min_value=0, max_value=4000))
def test_random_bytes_in_a_dataset_card(tmp_path_factory, data, at):
    from cryobench.cards import load_dataset_card

    text = (REPO / "datasets" / "aldolase.yaml").read_bytes()
    path = tmp_path_factory.mktemp("card") / "card.yaml"
    path.write_bytes(text[:at] + data + text[at:])
    try:
        load_dataset_card(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


CARD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=6000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.floats(min_value=0, max_value=30), max_size=3),
    st.dictionaries(st.sampled_from(["min", "median", "max", "tile", "sigma", "x"]), st.integers(0, 30), max_size=5),
    st.lists(st.lists(st.floats(min_value=0, max_value=30), min_size=2, max_size=2), min_size=2, max_size=4),
)
CARD_ENTRIES = [
    (section, key)
    for section, keys in {
        "layout": (
            "tiles",
            "squares",
            "holes",
            "patches_per_square",
            "holes_per_patch",
            "pitch_um",
            "test_fraction",
        ),
        "quality": ("ctf_quantiles", "failed_fraction", "variance", "field_length_pitches"),
        "regressor": ("model", "parameters"),
    }.items()
    for key in keys
]


@PROPERTY_SETTINGS
@given(entry=st.sampled_from(CARD_ENTRIES), new=CARD_VALUES)
def test_a_card_either_is_refused_or_makes_worlds(tmp_path_factory, entry, new):
    """Any value in any entry: a one-line error naming the card, or a twin whose both splits make worlds."""
    import yaml

    from cryobench.cards import load_dataset_card
    from cryobench.twin import generate_dataset

    card = yaml.safe_load((REPO / "datasets" / "aldolase.yaml").read_text())
    card[entry[0]][entry[1]]["value"] = new
    path = tmp_path_factory.mktemp("card") / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    try:
        valid = load_dataset_card(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    dataset = generate_dataset(valid, 0)
    for split in ("train", "test"):
        world = build_world(dataset, split=split)
        assert np.isfinite(world.predicted_ctf).all() and world.grid.n_holes > 0
