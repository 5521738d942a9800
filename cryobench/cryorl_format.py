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
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.grid import FAILED_FIT_CTF, Dataset, Grid, dense_ids

#: A Leginon exposure name: session/grid prefix, tile, square, patch, exposure, optional suffix.
LEGINON_NAME = re.compile(
    r"^(?P<prefix>.+?)_(?P<tile>\d+gr)_(?P<square>\d+sq)(?:_v\d+)?_(?P<patch>\d+hl)(?:_v\d+)?_(?P<hole>\d+en)(?:-\w+)?$"
)
#: Quantifoil / UltrAuFoil 1.2/1.3: hole centre to hole centre (µm).
HOLE_PITCH_UM = 2.5
#: Hole lattice pitch in the patch (hole-magnification) images of the measured Aldolase data (px).
PATCH_PITCH_PX = 182.0


def _read_rows(path: Path, n_fields: int, sep: str | None) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty line; a malformed line is an error naming it."""
    rows = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle) if sep == "," else (line.split() for line in handle)
        for lineno, fields in enumerate(reader, start=1):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != n_fields:
                raise InputError(
                    f"{path}, line {lineno}: expected {n_fields} fields "
                    f"({'name, x, y, CTFMaxRes, confidence' if n_fields == 5 else 'name and predicted CTFMaxRes'}), "
                    f"got {len(fields)}: {sep.join(fields) if sep else ' '.join(fields)!r}"
                )
            rows.append((lineno, [f.strip() for f in fields]))
    return rows


def _number(path: Path, lineno: int, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}, line {lineno}: {field} must be a number, got {text!r}") from None
    if math.isnan(value):
        raise InputError(f"{path}, line {lineno}: {field} is NaN; expected a number")
    return value


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


def read_holes(path: Path) -> dict[str, dict[str, Any]]:
    """The holes of one split file: name -> parsed fields; bad values name the file and line."""
    holes: dict[str, dict[str, Any]] = {}
    for lineno, (name, x, y, ctf, conf) in _read_rows(path, 5, ","):
        match = LEGINON_NAME.match(name)
        if match is None:
            raise InputError(
                f"{path}, line {lineno}: {name!r} is not a Leginon exposure name "
                "(expected ..._<n>gr_<n>sq[_vNN]_<n>hl[_vNN]_<n>en[-a])"
            )
        if name in holes:
            raise InputError(f"{path}, line {lineno}: duplicate hole {name!r} (first on line {holes[name]['line']})")
        ctf_value = _number(path, lineno, "CTFMaxRes", ctf)
        if ctf_value <= 0:
            raise InputError(f"{path}, line {lineno}: CTFMaxRes must be positive (Å), got {ctf_value}")
        conf_value = _number(path, lineno, "confidence", conf)
        holes[name] = {
            "line": lineno,
            "x": _number(path, lineno, "x", x),
            "y": _number(path, lineno, "y", y),
            "ctf": ctf_value,
            "confidence": conf_value if conf_value >= 0 else float("nan"),
            **match.groupdict(),
        }
    if not holes:
        raise InputError(f"{path}: no holes")
    return holes


def read_predictions(path: Path, holes: dict[str, dict]) -> dict[str, float]:
    """Predicted CTFMaxRes per hole name; every name must be a hole of the split, once."""
    predictions: dict[str, float] = {}
    lines: dict[str, int] = {}
    for lineno, (name, value) in _read_rows(path, 2, None):
        if name not in holes:
            raise InputError(f"{path}, line {lineno}: prediction for {name!r}, which matches no hole of the split")
        if name in predictions:
            raise InputError(f"{path}, line {lineno}: duplicate prediction for {name!r} (first on line {lines[name]})")
        predicted = _number(path, lineno, "predicted CTFMaxRes", value)
        if predicted <= 0:
            raise InputError(f"{path}, line {lineno}: predicted CTFMaxRes must be positive (Å), got {predicted}")
        predictions[name] = predicted
        lines[name] = lineno
    missing = [name for name in holes if name not in predictions]
    if missing:
        raise InputError(f"{path}: no prediction for {len(missing)} hole(s) of the split, e.g. {missing[0]!r}")
    return predictions


def _image_offsets(path: Path | None) -> dict[str, tuple[float, float]]:
    """x, y of every image in the all-images file, by name (absent file: no offsets)."""
    if path is None:
        return {}
    return {fields[0]: (float(fields[1]), float(fields[2])) for _, fields in _read_rows(path, 5, ",")}


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
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a CryoRL-format data folder)")
    split_files = {
        "train": _find(folder, "target_CTF_*_train.csv", "training-split ground truth"),
        "test": _find(folder, "target_CTF_*_val.csv", "test-split (val) ground truth"),
    }
    prediction_files = {
        "train": _find(folder, "*_train_by_hl.txt", "training-split predictions", required=False),
        "test": _find(folder, "*_val_by_hl.txt", "test-split predictions", required=False),
    }
    if (prediction_files["train"] is None) != (prediction_files["test"] is None):
        raise InputError(
            f"{folder}: predictions exist for one split only; expected *_train_by_hl.txt and *_val_by_hl.txt"
        )
    all_images = next(
        (p for p in sorted(folder.glob("target_CTF_*.csv")) if not p.stem.endswith(("_train", "_val"))), None
    )

    records: list[dict[str, Any]] = []
    for split, path in split_files.items():
        holes = read_holes(path)
        predictions = read_predictions(prediction_files[split], holes) if prediction_files[split] else None
        for name, hole in holes.items():
            hole.update(name=name, split=split, predicted=predictions[name] if predictions else np.nan)
            records.append(hole)
    names = [r["name"] for r in records]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise InputError(f"{folder}: hole {dup!r} is in both the train and the test split")

    offsets = _image_offsets(all_images)
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

    ctf = np.array([r["ctf"] for r in records])
    failed = ctf >= FAILED_FIT_CTF
    predicted = np.array([r["predicted"] for r in records])
    grid = Grid(
        name=f"measured:{folder.name}",
        tile=tile,
        square=square,
        patch=patch,
        x_um=x_um,
        y_um=y_um,
        ctf=np.where(failed, FAILED_FIT_CTF, ctf),
        confidence=np.array([r["confidence"] for r in records]),
        failed=failed,
        hole_names=tuple(names),
        square_xy_um=square_xy_um,
        pitch_um=HOLE_PITCH_UM,
        meta={
            "source": str(folder.resolve()),
            "kind": "measured",
            "seed": 0,
            "files": {k: str(v.name) for k, v in {**split_files, "all": all_images}.items() if v is not None},
            "um_per_patch_px": um_per_patch_px,
            "um_per_square_px_estimated": um_per_square_px,
            "patches_located": located_patches,
            "approximate": (
                "patch positions within a square use an estimated square-image pixel size; "
                "square and tile placement in the grid-wide frame is schematic (drawing only)"
            ),
        },
    )
    has_predictions = prediction_files["train"] is not None
    card = {
        "name": grid.name,
        "kind": "measured",
        "title": f"measured data from {folder}",
        "default_regressor": {"model": "measured"} if has_predictions else {"model": "perfect"},
    }
    return Dataset(
        grid=grid,
        split=np.array([r["split"] for r in records], dtype=object),
        measured_predictions=predicted if has_predictions else None,
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
    out["predictions"] = "measured" if dataset.measured_predictions is not None else "none (regressor: perfect)"
    out["approximate"] = grid.meta.get("approximate")
    return out
