"""Import measured data in the CryoRL file format (the paper's authors' IBM/CryoRL-pytorch layout).

A CryoRL folder holds (names as in the authors' repository; ``Y1`` is the dataset's tag):

- ``target_CTF_<tag>.csv``: every image of the session, no header: Leginon name, x, y,
  CTFMaxRes (Å), CTF-fit confidence; ``-1`` where a value is absent, ``100000`` for a failed fit.
- ``target_CTF_<tag>_train.csv`` / ``target_CTF_<tag>_val.csv``: the holes of each split
  (same columns). cryobench calls the ``val`` split ``test``, as the paper's text does.
- ``*_train_by_hl.txt`` / ``*_val_by_hl.txt`` (optional): ``name predicted_CTFMaxRes``, one
  line per hole: the regressor's predictions, joined to the holes by name.

The hierarchy comes from the Leginon names, parsed with :data:`LEGINON_NAME`:
``21mar02c_grid1c_00008gr_00011sq_v01_00003hl_v01_00007en-a`` is tile ``00008gr``, square
``00011sq``, patch (hole-magnification image) ``00003hl``, exposure ``00007en``.

Positions. x, y of an image are pixel offsets from the centre of its parent image: a hole
in its patch image, a patch in its square image. The patch image's pixel size follows from
the hole lattice (pitch about 182 px for Quantifoil 1.2/1.3's 2.5 µm). **Approximate:** the
square image's pixel size is not in the files; it is estimated so that neighbouring patches'
hole footprints just touch (median nearest-neighbour patch distance = one patch footprint),
and square centres in the grid-wide frame are laid out from the atlas offsets of their tiles
and their offsets in the tile (atlas and tile scales are unknown too; only used for drawing).
Costs never depend on positions (as in the paper).

Validation. Every file is read once as bytes (:func:`read_folder`; the catalogue caches the
parsed dataset by a hash of those bytes) and every problem is an :class:`InputError` of one
line naming the file and line: text that is not UTF-8 (a leading byte-order mark is fine),
folders, broken links and oversized files or fields where files are expected, numbers that
are not finite decimals in range (CTFMaxRes at least 1 Å; offsets within 100,000 px;
confidence in [-1, 1]), names that are not Leginon's, the same exposure listed twice (under
another version or suffix too), holes of more than one session/grid, and an atlas tile shared
by the train and val splits. A folder without prediction files loads, but has no default
regressor: whoever builds a world from it chooses one (``regressor=perfect``, ...).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.grid import FAILED_FIT_CTF, Dataset, Grid, dense_ids

#: A Leginon exposure name: session/grid prefix, tile, square, patch, exposure, optional suffix.
LEGINON_NAME = re.compile(
    r"^(?P<prefix>[\w.+-]+?)_(?P<tile>\d+gr)_(?P<square>\d+sq)(?:_v\d+)?_(?P<patch>\d+hl)(?:_v\d+)?_(?P<hole>\d+en)(?:-\w+)?$"
)
#: Quantifoil / UltrAuFoil 1.2/1.3: hole centre to hole centre (µm).
HOLE_PITCH_UM = 2.5
#: Hole lattice pitch in the patch (hole-magnification) images of the measured Aldolase data (px).
PATCH_PITCH_PX = 182.0

# Limits of plausible values. A CTF fit cannot resolve beyond Nyquist, 1 Å even at 0.5 Å/px;
# image offsets are a few thousand pixels (the measured files: at most 2745).
MIN_CTF_RESOLUTION = 1.0
MAX_OFFSET_PX = 100_000.0
MAX_NAME_CHARS = 200
MAX_FILE_BYTES = 256 * 2**20
#: A decimal number as the CryoRL files write them: no "inf", "nan", "1_000" or hex.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

#: The files of a CryoRL folder, by role: (glob pattern, what it holds, required).
FILE_ROLES = {
    "train": ("target_CTF_*_train.csv", "training-split ground truth", True),
    "test": ("target_CTF_*_val.csv", "test-split (val) ground truth", True),
    "train_predictions": ("*_train_by_hl.txt", "training-split predictions", False),
    "test_predictions": ("*_val_by_hl.txt", "test-split predictions", False),
}
_SPLIT_NAMES = {"train": "training", "test": "test (val)"}


def _show(text: str, limit: int = 60) -> str:
    """``repr`` of a piece of a file, cut short: error messages stay one short line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


@dataclasses.dataclass(frozen=True)
class CryoRLFiles:
    """The bytes of every file a CryoRL folder's import reads; ``digest`` hashes names and bytes.

    Two reads of unchanged files compare equal (folder and digest), so the catalogue caches
    datasets by content: an edit on disk is a new digest, whatever the file times say. The
    bytes are decoded only when parsed (a cache hit costs a read and a hash).
    """

    folder: Path
    digest: str
    paths: dict[str, Path] = dataclasses.field(compare=False, hash=False)
    data: dict[str, bytes] = dataclasses.field(compare=False, hash=False)

    def text(self, role: str) -> str:
        """The text of one file (``""`` for an absent optional one); not UTF-8 is an error naming it."""
        return _decode(self.paths[role], self.data[role]) if role in self.data else ""


def _find(folder: Path, pattern: str, what: str, required: bool = True) -> Path | None:
    matches = sorted(folder.glob(pattern))
    if len(matches) > 1:
        found = ", ".join(m.name for m in matches)
        raise InputError(f"{folder}: several files match {pattern!r} ({found}); expected one")
    if not matches:
        if required:
            raise InputError(f"{folder}: no {what} (a file matching {pattern!r}); is this a CryoRL-format folder?")
        return None
    return matches[0]


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark allowed, as spreadsheets write it), else a clear error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(data) > 1 and data.count(0) > len(data) // 4):
        raise InputError(f"{path}: the file is UTF-16 text; expected UTF-8 (save it as UTF-8 or plain ASCII)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "expected a UTF-8 or ASCII text file"
        ) from None


def _read_bytes(path: Path) -> bytes:
    """The bytes of one file; what is not a readable file of sensible size is an InputError naming it."""
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a folder; expected a file")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        hint = " (a broken or looping symbolic link?)" if path.is_symlink() else ""
        raise InputError(f"{path}: cannot read the file: {reason}{hint}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB; expected a CryoRL text file")
    return data


def is_folder(path: Path) -> bool:
    """``path.is_dir()``, False for names the system refuses (too long, a NUL byte)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def read_folder(folder: str | Path) -> CryoRLFiles:
    """Find and read the files of a CryoRL folder (no parsing yet); missing or unreadable files are errors."""
    folder = Path(folder)
    if not is_folder(folder):
        raise InputError(f"{_show(str(folder), 200)}: not a folder (expected a CryoRL-format data folder)")
    if not any(folder.iterdir()):
        raise InputError(f"{folder}: the folder is empty; expected a CryoRL-format folder (target_CTF_<tag>_*.csv)")
    paths = {role: _find(folder, pattern, what, required) for role, (pattern, what, required) in FILE_ROLES.items()}
    if (paths["train_predictions"] is None) != (paths["test_predictions"] is None):
        raise InputError(
            f"{folder}: predictions exist for one split only; expected *_train_by_hl.txt and *_val_by_hl.txt"
        )
    tags = {
        role: paths[role].name[len("target_CTF_") : -len(suffix)]
        for role, suffix in (("train", "_train.csv"), ("test", "_val.csv"))
    }
    if tags["train"] != tags["test"]:
        raise InputError(
            f"{folder}: the split files are of two datasets ({paths['train'].name}, {paths['test'].name}); "
            "expected target_CTF_<tag>_train.csv and target_CTF_<tag>_val.csv with one tag"
        )
    all_images = folder / f"target_CTF_{tags['train']}.csv"
    paths["all"] = all_images if all_images.exists() or all_images.is_symlink() else None
    digest = hashlib.sha256()
    present = {role: path for role, path in paths.items() if path is not None}
    data = {role: _read_bytes(path) for role, path in present.items()}
    for role, path in present.items():
        digest.update(f"{role}\0{path.name}\0{len(data[role])}\0".encode())
        digest.update(data[role])
    return CryoRLFiles(folder=folder, digest=digest.hexdigest(), paths=present, data=data)


def _read_rows(path: Path, text: str, n_fields: int, sep: str | None) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty line; a malformed line is an error naming it."""
    rows = []
    handle = io.StringIO(text, newline="" if sep == "," else None)
    reader = csv.reader(handle) if sep == "," else (line.split() for line in handle)
    lineno = 0
    try:
        for lineno, fields in enumerate(reader, start=1):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != n_fields:
                got = (sep or " ").join(fields)
                raise InputError(
                    f"{path}, line {lineno}: expected {n_fields} fields "
                    f"({'name, x, y, CTFMaxRes, confidence' if n_fields == 5 else 'name and predicted CTFMaxRes'}), "
                    f"got {len(fields)}: {_show(got)}"
                )
            rows.append((lineno, [f.strip() for f in fields]))
    except csv.Error as exc:
        raise InputError(
            f"{path}, line {lineno + 1}: not valid CSV ({exc}); expected {n_fields} short fields"
        ) from None
    return rows


def _number(path: Path, lineno: int, field: str, text: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite decimal number in [low, high]; anything else names the file, line and field."""
    if not _NUMBER.fullmatch(text):
        raise InputError(f"{path}, line {lineno}: {field} must be a decimal number, got {_show(text)}")
    value = float(text)
    if not math.isfinite(value) or not low <= value <= high:
        expected = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise InputError(f"{path}, line {lineno}: {field} must be a finite number {expected}, got {text}")
    return value


def _ctf(path: Path, lineno: int, field: str, text: str) -> float:
    """A CTF resolution (Å): at least MIN_CTF_RESOLUTION; 100000 (a failed fit) and above count as failed."""
    return _number(path, lineno, f"{field} (Å)", text, low=MIN_CTF_RESOLUTION)


def _exposure(hole: dict[str, Any]) -> tuple[str, ...]:
    """What identifies an exposure: its session, tile, square, patch and number (not image versions or suffixes)."""
    return hole["prefix"], hole["tile"], hole["square"], hole["patch"], hole["hole"]


def read_holes(path: Path, text: str) -> dict[str, dict[str, Any]]:
    """The holes of one split file: name -> parsed fields; bad values name the file and line."""
    holes: dict[str, dict[str, Any]] = {}
    exposures: dict[tuple[str, ...], str] = {}
    for lineno, (name, x, y, ctf, conf) in _read_rows(path, text, 5, ","):
        match = LEGINON_NAME.match(name) if len(name) <= MAX_NAME_CHARS else None
        if match is None:
            raise InputError(
                f"{path}, line {lineno}: {_show(name)} is not a Leginon exposure name "
                "(expected <session>_<n>gr_<n>sq[_vNN]_<n>hl[_vNN]_<n>en[-a])"
            )
        if name in holes:
            raise InputError(f"{path}, line {lineno}: duplicate hole {name!r} (first on line {holes[name]['line']})")
        hole = {
            "line": lineno,
            "x": _number(path, lineno, "x (px)", x, -MAX_OFFSET_PX, MAX_OFFSET_PX),
            "y": _number(path, lineno, "y (px)", y, -MAX_OFFSET_PX, MAX_OFFSET_PX),
            "ctf": _ctf(path, lineno, "CTFMaxRes", ctf),
            **match.groupdict(),
        }
        # -1: no confidence; the measured fits also give slightly negative ones (read as unknown).
        conf_value = _number(path, lineno, "confidence", conf, -1.0, 1.0)
        hole["confidence"] = conf_value if conf_value >= 0 else float("nan")
        first = exposures.setdefault(_exposure(hole), name)
        if first != name:
            raise InputError(
                f"{path}, line {lineno}: {name!r} is the same exposure as {first!r} "
                f"(line {holes[first]['line']}: same session, tile, square, patch and exposure number); "
                "expected each exposure once"
            )
        holes[name] = hole
    if not holes:
        raise InputError(f"{path}: no holes (expected lines of name, x, y, CTFMaxRes, confidence)")
    return holes


def read_predictions(path: Path, text: str, holes: dict[str, dict]) -> dict[str, float]:
    """Predicted CTFMaxRes per hole name; every name must be a hole of the split, once."""
    predictions: dict[str, float] = {}
    lines: dict[str, int] = {}
    for lineno, (name, value) in _read_rows(path, text, 2, None):
        if name not in holes:
            raise InputError(f"{path}, line {lineno}: prediction for {_show(name)}, which matches no hole of the split")
        if name in predictions:
            raise InputError(f"{path}, line {lineno}: duplicate prediction for {name!r} (first on line {lines[name]})")
        predictions[name] = _ctf(path, lineno, "predicted CTFMaxRes", value)
        lines[name] = lineno
    missing = [name for name in holes if name not in predictions]
    if missing:
        raise InputError(f"{path}: no prediction for {len(missing)} hole(s) of the split, e.g. {missing[0]!r}")
    return predictions


def _image_offsets(path: Path | None, text: str) -> dict[str, tuple[float, float]]:
    """x, y of every image in the all-images file, by name (absent file: no offsets)."""
    if path is None:
        return {}
    offsets: dict[str, tuple[float, float]] = {}
    lines: dict[str, int] = {}
    for lineno, (name, x, y, ctf, conf) in _read_rows(path, text, 5, ","):
        if name in offsets:
            raise InputError(f"{path}, line {lineno}: duplicate image {_show(name)} (first on line {lines[name]})")
        # -1 marks an absent CTF or confidence here (atlas, square and patch images have none).
        _number(path, lineno, "CTFMaxRes (Å)", ctf, low=-1.0)
        _number(path, lineno, "confidence", conf, -1.0, 1.0)
        offsets[name] = (
            _number(path, lineno, "x (px)", x, -MAX_OFFSET_PX, MAX_OFFSET_PX),
            _number(path, lineno, "y (px)", y, -MAX_OFFSET_PX, MAX_OFFSET_PX),
        )
        lines[name] = lineno
    return offsets


def _where(hole: dict[str, Any]) -> str:
    return f"{hole['path']}, line {hole['line']}"


def _check_one_session(records: list[dict[str, Any]]) -> None:
    """Every hole comes from one session and grid: the name prefix is part of a hole's identity."""
    prefixes = Counter(r["prefix"] for r in records)
    if len(prefixes) > 1:
        session = prefixes.most_common(1)[0][0]
        stray = next(r for r in records if r["prefix"] != session)
        raise InputError(
            f"{_where(stray)}: hole {stray['name']!r} is from session/grid {stray['prefix']!r}, but "
            f"{prefixes[session]} holes are from {session!r}; expected one session's grid per folder"
        )


def _check_split_by_tile(records: list[dict[str, Any]]) -> None:
    """The train and test splits share no atlas tile (cryobench's splits, as in the measured data)."""
    splits_of_tile: dict[str, Counter] = {}
    for r in records:
        splits_of_tile.setdefault(r["tile"], Counter())[r["split"]] += 1
    for tile, counts in splits_of_tile.items():
        if len(counts) > 1:
            minority = min(counts, key=lambda s: (counts[s], s))
            majority = next(s for s in counts if s != minority)
            stray = next(r for r in records if r["tile"] == tile and r["split"] == minority)
            other = next(r for r in records if r["tile"] == tile and r["split"] == majority)
            raise InputError(
                f"{_where(stray)}: {_SPLIT_NAMES[minority]} hole {stray['name']!r} is in tile {tile}, which holds "
                f"{counts[majority]} {_SPLIT_NAMES[majority]} holes (e.g. {_where(other)}); "
                "expected the train and val splits to share no atlas tile"
            )


def _check_across_splits(records: list[dict[str, Any]]) -> None:
    """No hole, and no exposure under another name, in both splits."""
    first: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in records:
        seen = first.setdefault(_exposure(r), r)
        if seen is r:
            continue
        if seen["name"] == r["name"]:
            raise InputError(
                f"{_where(r)}: hole {r['name']!r} is in both the train and the test split ({_where(seen)})"
            )
        raise InputError(
            f"{_where(r)}: {r['name']!r} is the same exposure as {seen['name']!r} ({_where(seen)}); "
            "expected each exposure once"
        )


def _patch_scale_um(patch_xy_px: np.ndarray, patch_square: np.ndarray, footprint_um: float) -> float:
    """µm per square-image pixel: median nearest-neighbour patch distance = one patch footprint."""
    distances = []
    for square in np.unique(patch_square):
        xy = patch_xy_px[patch_square == square]
        if len(xy) < 2:
            continue
        d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
        np.fill_diagonal(d, np.inf)
        distances.extend(d.min(axis=1))
    positive = [d for d in distances if d > 0]
    return footprint_um / float(np.median(positive)) if positive else 0.1


def load_cryorl(folder: str | Path) -> Dataset:
    """A measured Dataset from a CryoRL-format folder (see the module docstring)."""
    return parse_cryorl(read_folder(folder))


def parse_cryorl(files: CryoRLFiles) -> Dataset:
    """The Dataset of a folder's files read by :func:`read_folder`; every bad value names its file and line."""
    folder, paths = files.folder, files.paths
    has_predictions = "train_predictions" in paths
    records: list[dict[str, Any]] = []
    for split in ("train", "test"):
        holes = read_holes(paths[split], files.text(split))
        predictions = (
            read_predictions(paths[f"{split}_predictions"], files.text(f"{split}_predictions"), holes)
            if has_predictions
            else None
        )
        for name, hole in holes.items():
            hole.update(name=name, split=split, path=paths[split])
            hole["predicted"] = predictions[name] if predictions else np.nan
            records.append(hole)
    _check_one_session(records)
    _check_across_splits(records)
    _check_split_by_tile(records)
    names = [r["name"] for r in records]
    split_files = {split: paths[split] for split in ("train", "test")}
    all_images = paths.get("all")

    offsets = _image_offsets(all_images, files.text("all"))
    tile_key = np.array([r["tile"] for r in records])
    square_key = np.array([f"{r['tile']}_{r['square']}" for r in records])
    patch_key = np.array([f"{r['tile']}_{r['square']}_{r['patch']}" for r in records])
    tile, square, patch = dense_ids(tile_key), dense_ids(square_key), dense_ids(patch_key)

    # Positions: hole in patch (patch pixels), patch in square (square pixels), square in tile, tile in atlas.
    um_per_patch_px = HOLE_PITCH_UM / PATCH_PITCH_PX
    hole_xy_um = np.array([(r["x"], r["y"]) for r in records]) * um_per_patch_px
    prefix = {r["tile"]: r["prefix"] for r in records}
    n_patches = int(patch.max()) + 1
    patch_xy_px = np.zeros((n_patches, 2))
    patch_square = np.zeros(n_patches, dtype=np.int32)
    located_patches = 0
    for r, p, s in zip(records, patch, square, strict=True):
        key = f"{r['prefix']}_{r['tile']}_{r['square']}"
        xy = offsets.get(f"{key}_v01_{r['patch']}") or offsets.get(f"{key}_v02_{r['patch']}")
        if xy is not None and not patch_xy_px[p].any():
            patch_xy_px[p] = xy
            located_patches += 1
        patch_square[p] = s
    footprint_um = float(np.ptp(hole_xy_um, axis=0).max()) if len(hole_xy_um) > 1 else HOLE_PITCH_UM
    um_per_square_px = _patch_scale_um(patch_xy_px, patch_square, footprint_um)
    x_um = patch_xy_px[patch, 0] * um_per_square_px + hole_xy_um[:, 0]
    y_um = patch_xy_px[patch, 1] * um_per_square_px + hole_xy_um[:, 1]

    n_squares = int(square.max()) + 1
    square_xy_um = np.zeros((n_squares, 2))
    # Atlas tiles are laid out on their own offsets; a tile's span is taken as 10 square spans (assumed).
    square_span_um = max(float(np.ptp(x_um)) if len(x_um) else 1.0, 100.0)
    atlas_um_per_px = 10 * square_span_um / 915.0  # 915 px: the atlas tile spacing in these files
    for s in range(n_squares):
        r = records[int(np.flatnonzero(square == s)[0])]
        tile_xy = offsets.get(f"{prefix[r['tile']]}_{r['tile']}", (0.0, 0.0))
        sq_xy = offsets.get(f"{prefix[r['tile']]}_{r['tile']}_{r['square']}", (0.0, 0.0))
        square_xy_um[s] = np.asarray(tile_xy) * atlas_um_per_px + np.asarray(sq_xy) * (square_span_um / 100.0)

    return measured_dataset(
        name=f"measured:{folder.name}",
        title=f"measured data from {folder}",
        records=records,
        tile=tile,
        square=square,
        patch=patch,
        x_um=x_um,
        y_um=y_um,
        square_xy_um=square_xy_um,
        hole_names=tuple(names),
        predictions=np.array([r["predicted"] for r in records]) if has_predictions else None,
        meta={
            "source": str(folder.resolve()),
            "kind": "measured",
            "seed": 0,
            "files": {k: str(v.name) for k, v in {**split_files, "all": all_images}.items() if v is not None},
            "um_per_patch_px": um_per_patch_px,
            "um_per_square_px_estimated": um_per_square_px,
            "patches_located": located_patches,
            # The two terms of x_um, y_um (the facility table's x_um and patch_x_um columns; see convert).
            "in_patch_um": hole_xy_um,
            "patch_offset_um": patch_xy_px * um_per_square_px,
            "approximate": (
                "patch positions within a square use an estimated square-image pixel size; "
                "square and tile placement in the grid-wide frame is schematic (drawing only)"
            ),
        },
    )


def measured_dataset(
    *,
    name: str,
    title: str,
    records: list[dict[str, Any]],
    tile: np.ndarray,
    square: np.ndarray,
    patch: np.ndarray,
    x_um: np.ndarray,
    y_um: np.ndarray,
    square_xy_um: np.ndarray,
    hole_names: tuple[str, ...],
    predictions: np.ndarray | None,
    meta: dict[str, Any],
) -> Dataset:
    """A measured Dataset from parsed hole records (``ctf``, ``confidence``, ``split`` per hole) and
    their placed hierarchy; shared by the CryoRL importer and the facility-table importer."""
    ctf = np.array([r["ctf"] for r in records])
    failed = ctf >= FAILED_FIT_CTF
    grid = Grid(
        name=name,
        tile=tile,
        square=square,
        patch=patch,
        x_um=x_um,
        y_um=y_um,
        ctf=np.where(failed, FAILED_FIT_CTF, ctf),
        confidence=np.array([r["confidence"] for r in records], dtype=float),
        failed=failed,
        hole_names=hole_names,
        square_xy_um=square_xy_um,
        pitch_um=HOLE_PITCH_UM,
        meta=meta,
    )
    card = {
        "name": grid.name,
        "kind": "measured",
        "title": title,
        # Without predictions there is no regressor to assume: the user chooses one (catalog.regressor_spec).
        "default_regressor": {"model": "measured"} if predictions is not None else None,
    }
    return Dataset(
        grid=grid,
        split=np.array([r["split"] for r in records], dtype=object),
        measured_predictions=predictions,
        card=card,
    )


def summarize_import(dataset: Dataset) -> dict[str, Any]:
    """What the importer found: sizes per split and level, failed fits, what is approximate."""
    grid = dataset.grid
    out: dict[str, Any] = {"source": grid.meta.get("source"), "files": grid.meta.get("files"), "splits": {}}
    for split in ("train", "test"):
        mask = dataset.split == split
        out["splits"][split] = {
            "holes": int(mask.sum()),
            "tiles": len(np.unique(grid.tile[mask])),
            "squares": len(np.unique(grid.square[mask])),
            "patches": len(np.unique(grid.patch[mask])),
            "good (<6 Å)": int((grid.ctf[mask] < 6.0).sum()),
            "failed fits (100000, counted bad)": int(grid.failed[mask].sum()),
        }
    out["failed_fits"] = int(grid.failed.sum())
    out["predictions"] = (
        "measured"
        if dataset.measured_predictions is not None
        else "none: choose a regressor model (regressor=NAME; on the command line -e regressor=NAME)"
    )
    out["approximate"] = grid.meta.get("approximate")
    return out
