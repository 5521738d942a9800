"""Statistics of a grid's holes: sizes per level, CTF bins, and the spatial structure of quality.

These are the numbers of facts §5 that a simulated twin must reproduce (tested against the
measured Aldolase data): good fraction, CTF bins, the share of the "good" indicator's variance
between tiles, squares, patches and within patches, the correlation of log CTFMaxRes between
holes one lattice pitch apart and four or more apart (same square), and the rich patches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cryobench.grid import CTF_CAP, Grid
from cryobench.metrics import ctf_bin_counts
from cryobench.rules import PAPER_THRESHOLD_ANGSTROM

#: A patch is "rich" when more than this fraction of its holes is good.
RICH_PATCH_FRACTION = 0.5


def _size_summary(sizes: np.ndarray) -> dict[str, float]:
    return {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())}


def variance_shares(values: np.ndarray, grid: Grid) -> dict[str, float]:
    """Nested decomposition of ``values``' variance: between tiles, between squares of a tile,
    between patches of a square, within patches (shares of the total, summing to 1)."""
    values = np.asarray(values, dtype=float)
    total = values.var()
    if total == 0:
        return {"tile": 0.0, "square": 0.0, "patch": 0.0, "within_patch": 0.0}
    means = {}
    for level in ("tile", "square", "patch"):
        ids = getattr(grid, level)
        means[level] = (np.bincount(ids, weights=values) / np.bincount(ids))[ids]
    tile = np.mean((means["tile"] - values.mean()) ** 2)
    square = np.mean((means["square"] - means["tile"]) ** 2)
    patch = np.mean((means["patch"] - means["square"]) ** 2)
    within = np.mean((values - means["patch"]) ** 2)
    return {
        "tile": float(tile / total),
        "square": float(square / total),
        "patch": float(patch / total),
        "within_patch": float(within / total),
    }


def distance_correlations(grid: Grid, max_pairs_per_square: int = 40_000, seed: int = 0) -> dict[str, float]:
    """Correlation of log CTFMaxRes (capped) between holes of one square at about one lattice
    pitch (0.5-1.5) and at four or more pitches; and between holes of different squares."""
    log_ctf = np.log(grid.ctf_capped())
    near_a, near_b, far_a, far_b = [], [], [], []
    rng = np.random.default_rng(seed)
    xy = np.column_stack([grid.x_um, grid.y_um]) / grid.pitch_um
    for square in range(grid.n_squares):
        holes = np.flatnonzero(grid.square == square)
        if len(holes) < 2:
            continue
        i, j = np.triu_indices(len(holes), k=1)
        if len(i) > max_pairs_per_square:
            keep = rng.choice(len(i), max_pairs_per_square, replace=False)
            i, j = i[keep], j[keep]
        d = np.linalg.norm(xy[holes[i]] - xy[holes[j]], axis=1)
        near, far = (d >= 0.5) & (d <= 1.5), d >= 4.0
        near_a.append(holes[i[near]])
        near_b.append(holes[j[near]])
        far_a.append(holes[i[far]])
        far_b.append(holes[j[far]])

    def corr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        a_, b_ = np.concatenate(a) if a else np.array([], int), np.concatenate(b) if b else np.array([], int)
        if len(a_) < 3:
            return float("nan")
        # Symmetrise the pairs so the correlation does not depend on pair order.
        x, y = np.concatenate([log_ctf[a_], log_ctf[b_]]), np.concatenate([log_ctf[b_], log_ctf[a_]])
        return float(np.corrcoef(x, y)[0, 1])

    n = grid.n_holes
    a, b = rng.integers(n, size=20_000), rng.integers(n, size=20_000)
    other = grid.square[a] != grid.square[b]
    return {
        "one_pitch": corr(near_a, near_b),
        "four_or_more_pitches": corr(far_a, far_b),
        "across_squares": corr([a[other]], [b[other]]),
    }


def grid_statistics(grid: Grid, threshold: float = PAPER_THRESHOLD_ANGSTROM) -> dict[str, Any]:
    """The summary `cryobench datasets show` prints and the twin tests compare (see module)."""
    good = grid.ctf < threshold
    sizes = grid.level_sizes()
    patch_good = np.bincount(grid.patch, weights=good) / sizes["patch"]
    rich = patch_good > RICH_PATCH_FRACTION
    square_holes = sizes["square"]
    patches_per_square = np.bincount(grid.patch_square)
    return {
        "holes": grid.n_holes,
        "patches": grid.n_patches,
        "squares": grid.n_squares,
        "tiles": grid.n_tiles,
        "holes_per_patch": _size_summary(sizes["patch"]),
        "patches_per_square": _size_summary(patches_per_square),
        "holes_per_square": _size_summary(square_holes),
        "good": int(good.sum()),
        "good_fraction": float(good.mean()),
        "failed_fits": int(grid.failed.sum()),
        "ctf_bins": ctf_bin_counts(grid.ctf),
        "ctf_bin_fractions": {k: v / grid.n_holes for k, v in ctf_bin_counts(grid.ctf).items()},
        "good_variance_shares": variance_shares(good.astype(float), grid),
        "log_ctf_correlation": distance_correlations(grid),
        "rich_patches": int(rich.sum()),
        "good_in_rich_patches": int(good[rich[grid.patch]].sum()),
        "ctf_cap": CTF_CAP,
    }
