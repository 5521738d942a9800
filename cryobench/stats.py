"""Statistics of a grid's holes: sizes per level, CTF bins, and the spatial structure of quality.

These are the numbers of facts §5 that a simulated twin must reproduce (tested against the
measured Aldolase data): good fraction, CTF bins, the share of the "good" indicator's variance
between tiles, squares, patches and within patches, the correlation of log CTFMaxRes between
holes one lattice pitch apart and four or more apart (same square), and the rich patches; and
:func:`twin_statistics`, the statistics of issue 12 from exact in-patch positions, with their
bootstrap intervals over a grid's patches (:func:`bootstrap_intervals`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cryobench.grid import CTF_CAP, Grid, ctf_bin_counts, dense_ids
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


# ---- twin fidelity (issue 12): statistics from exact in-patch positions ----------------------
#
# Within a patch, hole positions are exact in the measured data (offsets in the patch image at a
# known lattice pitch) and in a twin (lattice sites); positions *between* patches of the measured
# data rest on an estimated pixel size. So distance-dependent statistics use same-patch pairs only.

#: Pair distances (in lattice pitches) counted as "one pitch" (nearest neighbours on the lattice,
#: not the diagonal ones at 1.41) and as "four or more".
ONE_PITCH = (0.5, 1.2)
FAR_PITCHES = 4.0


def same_patch_pairs(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of holes of one patch, and its distance in lattice pitches: (a, b, d).

    Vectorised over patches: holes are sorted by patch and paired within a padded block of the
    largest patch's size (25 holes per patch: a few hundred pairs per patch)."""
    order = np.argsort(grid.patch, kind="stable")
    sizes = np.bincount(grid.patch, minlength=grid.n_patches)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    width = int(sizes.max())
    i, j = np.triu_indices(width, k=1)
    rank_a, rank_b = np.broadcast_arrays(i[None, :], j[None, :])
    valid = rank_b < sizes[:, None]  # rank_a < rank_b, so both exist
    a = order[(starts[:, None] + rank_a)[valid]]
    b = order[(starts[:, None] + rank_b)[valid]]
    distance = np.hypot(grid.x_um[a] - grid.x_um[b], grid.y_um[a] - grid.y_um[b]) / grid.pitch_um
    return a, b, distance


def pair_correlation(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of ``values`` over the pairs (a, b), symmetrised (order-free); NaN under 3 pairs."""
    if len(a) < 3:
        return float("nan")
    x, y = np.concatenate([values[a], values[b]]), np.concatenate([values[b], values[a]])
    if np.ptp(x) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def other_square_same_tile_correlation(values: np.ndarray, grid: Grid) -> float:
    """Correlation of ``values`` over every (ordered) pair of holes in the same tile but different
    squares, from group sums (no pair list): a hole's weight is its number of such partners."""
    values = np.asarray(values, dtype=float)
    tile_sum = np.bincount(grid.tile, weights=values)
    square_sum = np.bincount(grid.square, weights=values)
    tile_n, square_n = np.bincount(grid.tile), np.bincount(grid.square)
    weight = (tile_n[grid.tile] - square_n[grid.square]).astype(float)
    pairs = weight.sum()
    if pairs < 3:
        return float("nan")
    mean = float(weight @ values) / pairs
    variance = float(weight @ (values - mean) ** 2) / pairs
    # Sum over ordered pairs of x_i x_j: same tile minus same square (the i == j terms cancel).
    cross = float((tile_sum**2).sum() - (square_sum**2).sum())
    covariance = cross / pairs - mean**2
    return covariance / variance if variance > 0 else float("nan")


def error_patch_share(error: np.ndarray, patch: np.ndarray) -> float:
    """Share of a regressor's error shared by the holes of a patch: the variance of the error's
    patch means over the total (patch means + within patches), about the grand mean."""
    error = np.asarray(error, dtype=float)
    patch_mean = (np.bincount(patch, weights=error) / np.bincount(patch))[patch]
    between = np.mean((patch_mean - error.mean()) ** 2)
    within = np.mean((error - patch_mean) ** 2)
    return float(between / (between + within)) if between + within > 0 else float("nan")


def twin_statistics(
    grid: Grid, predicted: np.ndarray | None = None, threshold: float = PAPER_THRESHOLD_ANGSTROM
) -> dict[str, float]:
    """The statistics a faithful twin must reproduce (issue 12, datasets/README.md), flat:

    log-CTF correlation of same-patch pairs at one pitch and at four or more; log-CTF correlation
    between holes of different squares of one tile; the good indicator's correlation at one pitch
    (same patch); the good indicator's variance shares per level; holes and patches per square;
    and, given the regressor's ``predicted`` CTFMaxRes, the share of its (log) error shared within a patch.
    """
    log_ctf = np.log(grid.ctf_capped())
    good = (grid.ctf < threshold).astype(float)
    a, b, distance = same_patch_pairs(grid)
    near = (distance >= ONE_PITCH[0]) & (distance <= ONE_PITCH[1])
    far = distance >= FAR_PITCHES
    shares = variance_shares(good, grid)
    holes_per_square = np.bincount(grid.square)
    patches_per_square = np.bincount(grid.patch_square)
    out = {
        "log_ctf_r_one_pitch": pair_correlation(log_ctf, a[near], b[near]),
        "log_ctf_r_four_pitches": pair_correlation(log_ctf, a[far], b[far]),
        "log_ctf_r_other_square_same_tile": other_square_same_tile_correlation(log_ctf, grid),
        "good_r_one_pitch": pair_correlation(good, a[near], b[near]),
        **{f"good_share_{level}": shares[level] for level in ("tile", "square", "patch", "within_patch")},
        "holes_per_square_min": float(holes_per_square.min()),
        "holes_per_square_median": float(np.median(holes_per_square)),
        "holes_per_square_max": float(holes_per_square.max()),
        "patches_per_square_min": float(patches_per_square.min()),
        "patches_per_square_max": float(patches_per_square.max()),
    }
    if predicted is not None:
        # The error on the log scale (a ratio of CTFMaxRes), as the CTF correlations are.
        log_error = np.log(np.asarray(predicted, dtype=float)) - log_ctf
        out["error_patch_share"] = error_patch_share(log_error, grid.patch)
    return out


def resample_patches(grid: Grid, rng: np.random.Generator) -> tuple[Grid, np.ndarray]:
    """A bootstrap copy of ``grid``: as many patches as it has, drawn with replacement (a patch
    drawn twice appears as two patches of its square; squares and tiles drawn nowhere drop out),
    and the index of each new hole's original hole (to carry predictions along)."""
    order = np.argsort(grid.patch, kind="stable")
    sizes = np.bincount(grid.patch)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    drawn = np.sort(rng.integers(grid.n_patches, size=grid.n_patches))
    counts = sizes[drawn]
    new_patch = np.repeat(np.arange(len(drawn)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    holes = order[starts[drawn][new_patch] + within]
    squares_kept = np.unique(grid.square[holes])
    resampled = Grid(
        name=grid.name,
        tile=dense_ids(grid.tile[holes]),
        square=dense_ids(grid.square[holes]),
        patch=new_patch.astype(np.int32),
        x_um=grid.x_um[holes],
        y_um=grid.y_um[holes],
        ctf=grid.ctf[holes],
        confidence=grid.confidence[holes],
        failed=grid.failed[holes],
        hole_names=tuple(np.asarray(grid.hole_names, dtype=object)[holes]),
        square_xy_um=grid.square_xy_um[squares_kept],
        pitch_um=grid.pitch_um,
    )
    return resampled, holes


def bootstrap_intervals(
    grid: Grid, predicted: np.ndarray | None = None, resamples: int = 500, level: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval (``level``) of every :func:`twin_statistics` value, over
    ``resamples`` draws of the grid's patches with replacement (:func:`resample_patches`)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        resampled, holes = resample_patches(grid, rng)
        stats = twin_statistics(resampled, None if predicted is None else np.asarray(predicted)[holes])
        for key, number in stats.items():
            draws.setdefault(key, []).append(number)
    tail = 100 * (1 - level) / 2
    return {key: (float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))) for key, v in draws.items()}
