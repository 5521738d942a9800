"""The grid model: a cryo-EM grid as a table of holes held in plain numpy arrays.

Every simulator, environment, agent and metric in cryobench reads this one structure.
The hierarchy is atlas tile > square > patch > hole. Ids are dense integers
(``0 .. n - 1`` at each level) so per-level tables are indexed directly by them;
a patch id is global (unique across squares), as is a square id.

Positions are micrometres in one frame per square: ``x_um``, ``y_um`` are a hole's
offset from the centre of its square. ``square_xy_um`` places every square's centre in
one common grid-wide frame, used only for drawing and for distance-aware agents.
``pitch_um`` is the hole lattice pitch (hole centre to hole centre), so
``x_um / pitch_um`` is a position in lattice units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: CTFMaxRes value the CTF-fitting programs write when the fit failed.
FAILED_FIT_CTF = 100000.0
#: Cap the cryoRL regressor and its features use for CTFMaxRes (Å).
CTF_CAP = 20.0
#: The paper's CTF bins (Å) for reporting: < 4, 4-5, 5-6, 6-8, > 8.
CTF_BIN_EDGES = (0.0, 4.0, 5.0, 6.0, 8.0, np.inf)
CTF_BIN_LABELS = ("<4", "4-5", "5-6", "6-8", ">8")


def _read_only(obj: Any, attrs: tuple[str, ...]) -> None:
    """Hand out read-only views of a frozen dataclass's arrays: datasets are cached and shared,
    so a consumer writing into one would silently change every later world built from it."""
    for attr in attrs:
        array = getattr(obj, attr)
        if isinstance(array, np.ndarray) and array.flags.writeable:
            view = array.view()
            view.flags.writeable = False
            object.__setattr__(obj, attr, view)


def ctf_bin_counts(ctf: np.ndarray) -> dict[str, int]:
    """Counts of CTFMaxRes values in the dataset bins (< 4, 4-5, 5-6, 6-8, > 8 Å)."""
    counts = np.histogram(ctf, bins=CTF_BIN_EDGES)[0]
    return {label: int(c) for label, c in zip(CTF_BIN_LABELS, counts, strict=True)}


def dense_ids(values: np.ndarray) -> np.ndarray:
    """Map arbitrary labels to dense int32 ids ``0..k-1`` in order of first sorted value."""
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int32).reshape(-1)


@dataclass(frozen=True, eq=False)
class Grid:
    """The holes of one grid (or one split of it), one array entry per hole, ground truth included.

    The data model datasets load into. The grid's hierarchy appears in three other classes, each
    for one reader: ``twin.Layout`` (a twin's hole placement before any quality is drawn),
    ``env.PublicLayout`` (what an agent may read: no ground truth) and ``agents.common.Hierarchy``
    (an agent's derived tables: parents of groups, grid-wide positions).

    Attributes:
        name: dataset name, e.g. ``"aldolase"``.
        tile, square, patch: dense int32 ids of each hole's atlas tile, square and patch.
            Every patch lies in one square, every square in one tile.
        x_um, y_um: hole position relative to its square's centre (µm).
        ctf: true CTFMaxRes (Å); ``FAILED_FIT_CTF`` where the CTF fit failed.
        confidence: CTF-fit confidence in [0, 1], NaN where unknown.
        failed: True where the CTF fit failed (such holes are always bad).
        hole_names: one name per hole (Leginon names for measured data).
        square_xy_um: (n_squares, 2) square centres in one grid-wide frame (µm).
        pitch_um: hole lattice pitch (µm).
        meta: provenance (source, card, what is approximate).
    """

    name: str
    tile: np.ndarray
    square: np.ndarray
    patch: np.ndarray
    x_um: np.ndarray
    y_um: np.ndarray
    ctf: np.ndarray
    confidence: np.ndarray
    failed: np.ndarray
    hole_names: tuple[str, ...]
    square_xy_um: np.ndarray
    pitch_um: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ctf)
        for attr in ("tile", "square", "patch", "x_um", "y_um", "confidence", "failed"):
            if len(getattr(self, attr)) != n:
                raise ValueError(f"Grid {self.name!r}: {attr} has {len(getattr(self, attr))} entries, expected {n}")
        if len(self.hole_names) != n:
            raise ValueError(f"Grid {self.name!r}: hole_names has {len(self.hole_names)} entries, expected {n}")
        if n == 0:
            raise ValueError(f"Grid {self.name!r} has no holes")
        for attr in ("tile", "square", "patch"):
            ids = getattr(self, attr)
            if ids.min() != 0 or len(np.unique(ids)) != ids.max() + 1:
                raise ValueError(f"Grid {self.name!r}: {attr} ids must be dense 0..k-1")
        # Each patch in exactly one square, each square in exactly one tile.
        if np.any(self.patch_square[self.patch] != self.square):
            raise ValueError(f"Grid {self.name!r}: a patch spans several squares")
        if np.any(self.square_tile[self.square] != self.tile):
            raise ValueError(f"Grid {self.name!r}: a square spans several tiles")
        if np.any(np.isnan(self.ctf)) or np.any(self.ctf <= 0):
            raise ValueError(f"Grid {self.name!r}: CTFMaxRes must be positive numbers")
        if self.square_xy_um.shape != (self.n_squares, 2):
            raise ValueError(f"Grid {self.name!r}: square_xy_um must have shape ({self.n_squares}, 2)")
        _read_only(self, ("tile", "square", "patch", "x_um", "y_um", "ctf", "confidence", "failed", "square_xy_um"))

    # ---- sizes and parent tables -------------------------------------------------
    @property
    def n_holes(self) -> int:
        return len(self.ctf)

    @property
    def n_patches(self) -> int:
        return int(self.patch.max()) + 1

    @property
    def n_squares(self) -> int:
        return int(self.square.max()) + 1

    @property
    def n_tiles(self) -> int:
        return int(self.tile.max()) + 1

    @property
    def patch_square(self) -> np.ndarray:
        """(n_patches,) the square of each patch."""
        out = np.empty(int(self.patch.max()) + 1, dtype=np.int32)
        out[self.patch] = self.square
        return out

    @property
    def square_tile(self) -> np.ndarray:
        """(n_squares,) the tile of each square."""
        out = np.empty(int(self.square.max()) + 1, dtype=np.int32)
        out[self.square] = self.tile
        return out

    def ctf_capped(self) -> np.ndarray:
        """True CTFMaxRes capped at ``CTF_CAP`` (failed fits become the cap)."""
        return np.minimum(self.ctf, CTF_CAP)

    def select(self, mask: np.ndarray, name: str | None = None) -> Grid:
        """The sub-grid of the holes where ``mask`` is True, with ids made dense again."""
        mask = np.asarray(mask, dtype=bool)
        squares_kept = np.unique(self.square[mask])
        return Grid(
            name=name or self.name,
            tile=dense_ids(self.tile[mask]),
            square=dense_ids(self.square[mask]),
            patch=dense_ids(self.patch[mask]),
            x_um=self.x_um[mask],
            y_um=self.y_um[mask],
            ctf=self.ctf[mask],
            confidence=self.confidence[mask],
            failed=self.failed[mask],
            hole_names=tuple(np.asarray(self.hole_names, dtype=object)[mask]),
            square_xy_um=self.square_xy_um[squares_kept],
            pitch_um=self.pitch_um,
            meta=dict(self.meta),
        )

    def level_sizes(self) -> dict[str, np.ndarray]:
        """Holes per patch, per square and per tile."""
        return {
            "patch": np.bincount(self.patch),
            "square": np.bincount(self.square),
            "tile": np.bincount(self.tile),
        }


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset: all its holes, their split, and (where measured) a regressor's predictions.

    Attributes:
        grid: every hole of the dataset.
        split: per hole, ``"train"`` or ``"test"`` (object array of str).
        measured_predictions: per hole, the real regressor's predicted CTFMaxRes (Å), or
            None where the dataset has no measured predictions (simulated twins).
        card: the dataset card (a twin's YAML card, or a short one for measured data), plus
            ``default_regressor``: the regressor spec used at ``noise`` 1 unless one is given.
    """

    grid: Grid
    split: np.ndarray
    measured_predictions: np.ndarray | None
    card: dict[str, Any]

    def __post_init__(self) -> None:
        _read_only(self, ("split", "measured_predictions"))

    @property
    def name(self) -> str:
        return self.grid.name

    def split_mask(self, split: str) -> np.ndarray:
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if split == "all":
            return np.ones(self.grid.n_holes, dtype=bool)
        return self.split == split

    def select_split(self, split: str) -> tuple[Grid, np.ndarray | None]:
        """The holes of one split, with their measured predictions (or None)."""
        mask = self.split_mask(split)
        grid = self.grid.select(mask, name=self.grid.name)
        preds = None if self.measured_predictions is None else self.measured_predictions[mask]
        return grid, preds
