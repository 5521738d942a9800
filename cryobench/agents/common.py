"""Helpers shared by the built-in agents: the grid's hierarchy as numpy tables, move costs,
calibrated probabilities from predictions, and the "expected good per minute" of a group.

Everything here is computed once per episode (in an agent's ``reset``) or in O(N) numpy
per step: no Python loop over holes on a hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """The public hierarchy of a grid (from ``env.unwrapped.layout``) as compact numpy tables.

    Attributes:
        patch, square, tile: group id of every hole (ids 0..n-1 at each level).
        patch_square, patch_tile, square_tile: parent of every patch / square.
        minutes: minutes of a move within a patch, to another patch, square, tile.
        xy: every hole's position in one grid-wide frame (µm).
        predicted_ctf: the regressor's prediction per hole (Å).
        threshold: good means CTFMaxRes below this (Å).
    """

    patch: np.ndarray
    square: np.ndarray
    tile: np.ndarray
    patch_square: np.ndarray
    patch_tile: np.ndarray
    square_tile: np.ndarray
    minutes: np.ndarray
    xy: np.ndarray
    predicted_ctf: np.ndarray
    threshold: float

    @classmethod
    def from_layout(cls, layout) -> Hierarchy:
        patch = np.asarray(layout.patch, dtype=np.int64)
        square = np.asarray(layout.square, dtype=np.int64)
        tile = np.asarray(layout.tile, dtype=np.int64)
        n_patches, n_squares = int(patch.max()) + 1, int(square.max()) + 1
        patch_square = np.zeros(n_patches, dtype=np.int64)
        patch_tile = np.zeros(n_patches, dtype=np.int64)
        square_tile = np.zeros(n_squares, dtype=np.int64)
        patch_square[patch] = square  # every hole of a patch shares its square and tile
        patch_tile[patch] = tile
        square_tile[square] = tile
        square_xy = np.asarray(layout.square_xy_um, dtype=np.float64)
        xy = square_xy[square] + np.column_stack([layout.x_um, layout.y_um])
        return cls(
            patch=patch,
            square=square,
            tile=tile,
            patch_square=patch_square,
            patch_tile=patch_tile,
            square_tile=square_tile,
            minutes=np.asarray(layout.minutes, dtype=np.float64),
            xy=xy,
            predicted_ctf=np.asarray(layout.predicted_ctf, dtype=np.float64),
            threshold=float(layout.threshold),
        )

    @property
    def n_holes(self) -> int:
        return len(self.patch)

    @property
    def n_patches(self) -> int:
        return len(self.patch_square)

    @property
    def n_squares(self) -> int:
        return len(self.square_tile)

    @property
    def n_tiles(self) -> int:
        return int(self.square_tile.max()) + 1

    def hole_minutes(self, hole: int) -> np.ndarray:
        """Minutes to move from ``hole`` to every hole (N,): the simulator's hierarchy rule."""
        same = (
            (self.tile == self.tile[hole]).astype(np.int8)
            + (self.square == self.square[hole])
            + (self.patch == self.patch[hole])
        )
        return self.minutes[3 - same]

    def patch_minutes(self, hole: int) -> np.ndarray:
        """Minutes to move from ``hole`` to any hole of every patch (n_patches,)."""
        same = (
            (self.patch_tile == self.tile[hole]).astype(np.int8)
            + (self.patch_square == self.square[hole])
            + (np.arange(self.n_patches) == self.patch[hole])
        )
        return self.minutes[3 - same]

    def distances(self, hole: int) -> np.ndarray:
        """Euclidean distance (µm) from ``hole`` to every hole."""
        return np.hypot(*(self.xy - self.xy[hole]).T)


def group_sum(ids: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of ``weights`` per group (a float bincount)."""
    return np.bincount(ids, weights=weights, minlength=n_groups)


def group_max(ids: np.ndarray, values: np.ndarray, n_groups: int, empty: float = -np.inf) -> np.ndarray:
    """Largest value per group (``empty`` for groups without members)."""
    out = np.full(n_groups, empty, dtype=np.float64)
    np.maximum.at(out, ids, values)
    return out


def predicted_good_probability(
    predicted_ctf: np.ndarray, threshold: float, offset: float, scale: float, floor: float, ceiling: float
) -> np.ndarray:
    """P(hole good | prediction): a logistic curve in (threshold + offset - prediction) / scale.

    ``offset`` > 0 says the regressor reads high (a hole predicted a little above the
    threshold is still often good, as on the measured Aldolase data); ``floor`` and
    ``ceiling`` keep a little doubt at both ends (regressors miss some holes either way).
    """
    z = (threshold + offset - np.asarray(predicted_ctf, dtype=np.float64)) / scale
    return floor + (ceiling - floor) / (1.0 + np.exp(-z))


#: Acceptance levels at which a group's rate is evaluated (see :func:`group_rates`).
RATE_CUTOFFS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def group_rates(
    ids: np.ndarray,
    p_good: np.ndarray,
    available: np.ndarray,
    entry_minutes: np.ndarray,
    step_minutes: float,
    n_groups: int,
    cutoffs: tuple[float, ...] = RATE_CUTOFFS,
) -> np.ndarray:
    """Expected good exposures per minute of moving into each group and collecting its best holes.

    Collecting the ``n`` available holes of a group whose probability is at least a cut-off
    costs ``entry + (n - 1) * step`` minutes and yields the sum of their probabilities. The
    rate is the best over a few cut-offs: a cheap O(N) stand-in for the best prefix of the
    group's holes sorted by probability (which would need a sort per step). Groups with
    nothing to collect get rate 0. Two bincounts in all: holes are binned by cut-off, and
    the "at least this cut-off" totals are suffix sums over the bins.
    """
    edges = np.asarray(cutoffs, dtype=np.float64)
    n_bins = len(edges) + 1
    level = np.searchsorted(edges, p_good, side="right")  # 0: below every cut-off
    cell = ids * n_bins + level
    weights = available.astype(np.float64)
    count = np.bincount(cell, weights=weights, minlength=n_groups * n_bins).reshape(n_groups, n_bins)
    value = np.bincount(cell, weights=weights * p_good, minlength=n_groups * n_bins).reshape(n_groups, n_bins)
    # Column k (k >= 1) of the suffix sums: holes at or above cut-off k - 1.
    count = np.cumsum(count[:, ::-1], axis=1)[:, ::-1][:, 1:]
    value = np.cumsum(value[:, ::-1], axis=1)[:, ::-1][:, 1:]
    minutes = entry_minutes[:, None] + (count - 1) * step_minutes
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, value / minutes, 0.0)
    return rate.max(axis=1)


def square_rates(
    hierarchy: Hierarchy,
    patch_value: np.ndarray,
    patch_count: np.ndarray,
    current_hole: int,
) -> np.ndarray:
    """Expected good per minute of moving into each square and collecting its patches' groups.

    ``patch_value`` / ``patch_count`` are what each patch would yield (expected good, holes);
    a square costs one entry move (from the current hole), one patch move per further patch
    used and one in-patch move per further hole. The current square gets rate 0: it is
    valued patch by patch instead.
    """
    h = hierarchy
    used = patch_count > 0
    value = group_sum(h.patch_square, patch_value, h.n_squares)
    holes = group_sum(h.patch_square, patch_count, h.n_squares)
    patches = group_sum(h.patch_square, used.astype(np.float64), h.n_squares)
    entry = np.where(h.square_tile == h.tile[current_hole], h.minutes[2], h.minutes[3])
    minutes = entry + np.maximum(patches - 1, 0) * h.minutes[1] + np.maximum(holes - patches, 0) * h.minutes[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(holes > 0, value / minutes, 0.0)
    rate[h.square[current_hole]] = 0.0
    return rate


def nearest(hierarchy: Hierarchy, current_hole: int, candidates: np.ndarray) -> int:
    """The candidate hole (bool mask) nearest to the current hole; ties: lowest index."""
    index = np.flatnonzero(candidates)
    d = np.hypot(*(hierarchy.xy[index] - hierarchy.xy[current_hole]).T)
    return int(index[np.argmin(d)])


def rate_greedy_hole(hierarchy: Hierarchy, p_good: np.ndarray, available: np.ndarray, current_hole: int) -> int:
    """The next hole of the plan "most expected good per minute", valuing the group moved into.

    - Staying: the best available hole of the current patch, one in-patch move.
    - Another patch: its rate (:func:`group_rates`) from the move into it.
    - Another square: the better of the patch's own rate and its square's rate
      (:func:`square_rates`), so a square rich in several patches is worth its entry move.

    The best-valued patch wins (ties: the current patch, then the lower id); in it the hole
    with the highest probability (ties: the lowest index). O(N) numpy.
    """
    h = hierarchy
    entry = h.patch_minutes(current_hole)
    rates = group_rates(h.patch, p_good, available, entry, h.minutes[0], h.n_patches)
    # What each patch would yield at the rate-maximising cut-off is approximated by the
    # holes at or above one fixed acceptance level (cheap, and the same for every patch).
    take = available & (p_good >= 0.5)
    patch_value = group_sum(h.patch[take], p_good[take], h.n_patches)
    patch_count = np.bincount(h.patch[take], minlength=h.n_patches).astype(np.float64)
    square_rate = square_rates(h, patch_value, patch_count, current_hole)
    rates = np.maximum(rates, square_rate[h.patch_square])
    current_patch = h.patch[current_hole]
    in_patch = available & (h.patch == current_patch)
    rates[current_patch] = p_good[in_patch].max() / h.minutes[0] if in_patch.any() else -1.0
    has_holes = np.bincount(h.patch[available], minlength=h.n_patches) > 0
    rates[~has_holes] = -np.inf
    best = np.flatnonzero(rates == rates.max())
    patch = current_patch if current_patch in best else best[0]
    return int(np.argmax(np.where(available & (h.patch == patch), p_good, -np.inf)))
