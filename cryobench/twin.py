"""Simulated twins: a grid generated from a dataset card and a seed.

Two seeds, two stages, so a training run can draw new worlds on a fixed layout:

1. **Layout** (the card's ``layout_seed``): tiles, squares assigned to tiles, patches per square
   and holes per patch drawn around the card's min/median/max, scaled to the card's exact hole
   count. Holes sit on a square lattice of pitch ``pitch_um``: each patch is a 5 x 5 block of
   lattice sites (holes missing where the patch has fewer), and patches occupy distinct 5 x 5
   slots of a square's lattice, so distances between holes of neighbouring patches are real
   lattice distances. Train and test splits are disjoint tiles (about ``test_fraction`` of the
   holes in test), as the paper split its Aldolase grid.
2. **Quality** (the world seed): a latent Gaussian per hole, the sum of a tile effect, a square
   effect, a patch effect, a smooth field within the square (random Fourier features of a
   Gaussian kernel with length ``field_length_pitches``) and per-hole noise, with the card's
   variances. The latent's empirical ranks are mapped through the card's CTFMaxRes quantiles (a Gaussian
   copula), so the twin has the card's bimodal CTF distribution exactly while its spatial
   correlation comes from the latent. The worst ``failed_fraction`` of holes are failed fits
   (CTFMaxRes 100000, always bad), as empty or broken holes are in real data.

Generator 1 (cards with ``generator: 1``, the ``-v1`` environments; v0 cards generate exactly what
they did): the layout draws holes per square first, spanning the card's ``holes_per_square``
(one square at its min, one at its max); with ``within_class_correlation`` the latent decides
only which holes are good (the card's share below 6 Å), and a second latent (that correlation
with the first, the rest per hole) ranks holes within their class; with ``ctf_per_split`` every
split gets the card's CTF distribution. Fitted to the measured Aldolase grid's statistics from
exact in-patch positions (datasets/README.md, "Twin fidelity").

Predictions are not part of the twin: they come from the card's regressor model
(``cryobench.regressors``) at the environment's ``noise``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryobench.cards import optional_value, value
from cryobench.grid import FAILED_FIT_CTF, Dataset, Grid
from cryobench.rules import PAPER_THRESHOLD_ANGSTROM

PATCH_SIDE = 5  # holes per side of a patch's block of lattice sites (at most 25 holes per patch)
RANDOM_FOURIER_FEATURES = 96


@dataclass(frozen=True, eq=False)
class Layout:
    """Where every hole of a twin is: ids per hierarchy level, lattice positions (µm), split per hole.

    Drawn from the card's ``layout_seed`` alone, before any quality: the generator's intermediate
    step, which :func:`generate_grid` turns into a :class:`cryobench.grid.Grid`.
    """

    tile: np.ndarray
    square: np.ndarray
    patch: np.ndarray
    x_um: np.ndarray
    y_um: np.ndarray
    square_xy_um: np.ndarray
    split: np.ndarray
    hole_names: tuple[str, ...]


def _draw_sizes(rng: np.random.Generator, count: int, sizes: dict, total: int | None = None) -> np.ndarray:
    """``count`` integer sizes in [min, max] around the median (skewed as the card's are), summing
    to ``total`` when given: the draw is rescaled, then single units added or removed at random."""
    low, median, high = sizes["min"], sizes["median"], sizes["max"]
    # Half-normal spreads below and above the median, reaching min / max at about 2.5 sd.
    side = rng.random(count) < 0.5
    spread = np.where(side, median - low, high - median) / 2.5
    draw = median + np.where(side, -1, 1) * np.abs(rng.standard_normal(count)) * spread
    out = np.clip(np.rint(draw), low, high).astype(np.int64)
    if total is not None:
        if not count * low <= total <= count * high:
            raise ValueError(f"cannot split {total} into {count} parts of {low}..{high}")
        while out.sum() != total:
            step = 1 if out.sum() < total else -1
            room = np.flatnonzero(out < high) if step > 0 else np.flatnonzero(out > low)
            picks = rng.choice(room, size=min(len(room), abs(total - int(out.sum()))), replace=False)
            out[picks] += step
    return out


def generator(card: dict[str, Any]) -> int:
    """The card's twin generator: 0 (the v0 cards, unchanged since protocol v1) or 1 (issue 12)."""
    return int(card.get("generator", 0))


def _patch_sizes_v0(rng: np.random.Generator, card: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Generator 0: patches per square around the card's range, then holes per patch summing to the
    card's hole count (squares end up with similar hole counts: 86-202 on the Aldolase twin)."""
    n_squares, n_holes = value(card, "layout", "squares"), value(card, "layout", "holes")
    patch_sizes = value(card, "layout", "holes_per_patch")
    patches_per_square = _draw_sizes(rng, n_squares, value(card, "layout", "patches_per_square"))
    # Enough patches for the hole count at the card's holes-per-patch range.
    while patches_per_square.sum() * patch_sizes["max"] < n_holes:
        patches_per_square[rng.integers(n_squares)] += 1
    while patches_per_square.sum() * patch_sizes["min"] > n_holes:
        patches_per_square[rng.choice(np.flatnonzero(patches_per_square > 1))] -= 1
    holes_per_patch = _draw_sizes(rng, int(patches_per_square.sum()), patch_sizes, total=n_holes)
    return patches_per_square, holes_per_patch


def _patch_sizes_v1(rng: np.random.Generator, card: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Generator 1: holes per square first, spanning the card's ``holes_per_square`` range (one
    square at its min, one at its max, as measured: 29-260 on Aldolase), then as many patches as
    the median patch size implies (within ``patches_per_square``), then holes per patch."""
    n_squares, n_holes = value(card, "layout", "squares"), value(card, "layout", "holes")
    square_sizes = value(card, "layout", "holes_per_square")
    patch_sizes = value(card, "layout", "patches_per_square"), value(card, "layout", "holes_per_patch")
    per_patch = patch_sizes[1]
    holes_per_square = np.empty(n_squares, dtype=np.int64)
    if n_squares >= 3:
        ends = rng.choice(n_squares, size=2, replace=False)
        holes_per_square[ends] = square_sizes["min"], square_sizes["max"]
        rest = np.setdiff1d(np.arange(n_squares), ends)
        left = n_holes - square_sizes["min"] - square_sizes["max"]
        holes_per_square[rest] = _draw_sizes(rng, len(rest), square_sizes, total=left)
    else:
        holes_per_square[:] = _draw_sizes(rng, n_squares, square_sizes, total=n_holes)
    patches_per_square = np.rint(holes_per_square / per_patch["median"]).astype(np.int64)
    patches_per_square = np.clip(patches_per_square, patch_sizes[0]["min"], patch_sizes[0]["max"])
    # Every square's holes must fit its patches' size range.
    patches_per_square = np.maximum(patches_per_square, -(-holes_per_square // per_patch["max"]))
    patches_per_square = np.minimum(patches_per_square, np.maximum(holes_per_square // per_patch["min"], 1))
    holes_per_patch = np.concatenate(
        [
            _draw_sizes(rng, int(k), {**per_patch, "min": min(per_patch["min"], int(h))}, total=int(h))
            for k, h in zip(patches_per_square, holes_per_square, strict=True)
        ]
    )
    return patches_per_square, holes_per_patch


def make_layout(card: dict[str, Any]) -> Layout:
    """The twin's layout from its card and the card's ``layout_seed`` (see module docstring)."""
    rng = np.random.default_rng(card["layout_seed"])
    n_tiles, n_squares, n_holes = (value(card, "layout", k) for k in ("tiles", "squares", "holes"))
    pitch = float(value(card, "layout", "pitch_um"))
    # Squares per tile: one each, the rest at random.
    square_tile = np.concatenate([np.arange(n_tiles), rng.integers(n_tiles, size=n_squares - n_tiles)])
    square_tile = np.sort(square_tile)
    if generator(card) == 0:
        patches_per_square, holes_per_patch = _patch_sizes_v0(rng, card)
    else:
        patches_per_square, holes_per_patch = _patch_sizes_v1(rng, card)
    n_patches = int(patches_per_square.sum())

    patch_square = np.repeat(np.arange(n_squares), patches_per_square)
    # Patch slots: a square's patches take distinct cells of a k x k grid of 5 x 5 lattice blocks.
    slot_xy = np.zeros((n_patches, 2))
    first = np.concatenate([[0], np.cumsum(patches_per_square)[:-1]])
    for start, count in zip(first, patches_per_square, strict=True):
        side = int(np.ceil(np.sqrt(count * 1.6)))  # room to leave gaps, as hole finders skip bad areas
        cells = rng.choice(side * side, size=count, replace=False)
        slot_xy[start : start + count] = np.column_stack([cells % side, cells // side]) - (side - 1) / 2
    # Holes: a random subset of each patch's 25 lattice sites.
    patch = np.repeat(np.arange(n_patches), holes_per_patch)
    site = np.concatenate([rng.choice(PATCH_SIDE * PATCH_SIDE, size=k, replace=False) for k in holes_per_patch])
    offset = np.column_stack([site % PATCH_SIDE, site // PATCH_SIDE]) - (PATCH_SIDE - 1) / 2
    lattice = slot_xy[patch] * PATCH_SIDE + offset
    square = patch_square[patch]
    # Squares in the grid-wide frame: tiles on a coarse grid, a tile's squares around its centre.
    tiles_side = int(np.ceil(np.sqrt(n_tiles)))
    square_span = 12 * PATCH_SIDE * pitch
    tile_xy = np.column_stack([np.arange(n_tiles) % tiles_side, np.arange(n_tiles) // tiles_side]) * 4 * square_span
    square_xy = tile_xy[square_tile] + rng.uniform(-1.2, 1.2, size=(n_squares, 2)) * square_span
    # Splits: whole tiles to test, in a random order, until about test_fraction of the holes.
    holes_per_tile = np.bincount(square_tile[square], minlength=n_tiles)
    order = rng.permutation(n_tiles)
    target = value(card, "layout", "test_fraction") * n_holes
    cumulative = np.cumsum(holes_per_tile[order])
    n_test = int(np.clip(np.searchsorted(cumulative, target) + 1, 1, max(n_tiles - 1, 1)))
    test_tiles = order[:n_test]
    tile = square_tile[square]
    split = np.where(np.isin(tile, test_tiles), "test", "train").astype(object)
    return Layout(
        tile=tile.astype(np.int32),
        square=square.astype(np.int32),
        patch=patch.astype(np.int32),
        x_um=lattice[:, 0] * pitch,
        y_um=lattice[:, 1] * pitch,
        square_xy_um=square_xy,
        split=split,
        hole_names=tuple(
            f"{card['name']}_t{t:02d}_s{s:03d}_p{p:04d}_h{i:05d}"
            for i, (t, s, p) in enumerate(zip(tile, square, patch, strict=True))
        ),
    )


def _smooth_field(rng: np.random.Generator, layout: Layout, pitch: float, length_pitches: float) -> np.ndarray:
    """Unit-variance Gaussian field within each square (independent between squares), with a
    Gaussian kernel of ``length_pitches``, by random Fourier features: O(holes x features)."""
    n_squares = int(layout.square.max()) + 1
    xy = np.column_stack([layout.x_um, layout.y_um]) / (pitch * length_pitches)
    frequencies = rng.standard_normal((n_squares, RANDOM_FOURIER_FEATURES, 2))
    phases = rng.uniform(0, 2 * np.pi, size=(n_squares, RANDOM_FOURIER_FEATURES))
    w, b = frequencies[layout.square], phases[layout.square]
    return np.sqrt(2.0 / RANDOM_FOURIER_FEATURES) * np.cos(np.einsum("nfk,nk->nf", w, xy) + b).sum(axis=1)


def _effects(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """One standard-normal effect per group, standardised to mean 0 and variance 1 over the
    groups: with 16 tiles a plain draw would make some worlds far more clustered than others."""
    effects = rng.standard_normal(int(ids.max()) + 1)
    if len(effects) > 1:
        effects = (effects - effects.mean()) / effects.std()
    return effects[ids]


#: The parts of the latent a generator draws, in the order it draws and sums them.
LATENT_PARTS = ("tile", "square", "patch", "field", "hole")


def latent_parts(card: dict[str, Any], layout: Layout, seed: int) -> dict[str, np.ndarray]:
    """Every part of every hole's latent quality (:data:`LATENT_PARTS`), each scaled by the square
    root of its card variance, not yet standardised: what :func:`quality_latent` sums."""
    rng = np.random.default_rng([int(seed), 1])
    var = value(card, "quality", "variance")
    n = len(layout.patch)
    pitch = float(value(card, "layout", "pitch_um"))
    parts = {
        "tile": np.sqrt(var["tile"]) * _effects(rng, layout.tile),
        "square": np.sqrt(var["square"]) * _effects(rng, layout.square),
        "patch": np.sqrt(var["patch"]) * _effects(rng, layout.patch),
    }
    length = value(card, "quality", "field_length_pitches")
    parts["field"] = np.sqrt(var["field"]) * _smooth_field(rng, layout, pitch, length)
    parts["hole"] = np.sqrt(var["hole"]) * rng.standard_normal(n)
    return parts


def quality_latent(card: dict[str, Any], layout: Layout, seed: int) -> np.ndarray:
    """The latent quality of every hole (higher is worse), variance = sum of the card's parts."""
    parts = latent_parts(card, layout, seed)
    latent = parts["tile"].copy()
    for name in LATENT_PARTS[1:]:  # summed in the generator's order: the same floats as ever
        latent += parts[name]
    return latent / np.sqrt(sum(value(card, "quality", "variance").values()) or 1.0)


def patch_latent_quality(card: dict[str, Any], layout: Layout, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """What an informed upper bound knows: each hole's *patch quality* and the full latent.

    The patch quality is the patch's mean of the latent without the per-hole noise (tile +
    square + patch effects + the patch's mean of the smooth field), standardised as the latent
    is; what it leaves unknown is the hole's own part (the field's deviation within the patch
    and the hole noise). Returns (patch quality per hole, standardised latent per hole).
    """
    parts = latent_parts(card, layout, seed)
    scale = np.sqrt(sum(value(card, "quality", "variance").values()) or 1.0)
    smooth = parts["tile"] + parts["square"] + parts["patch"] + parts["field"]
    patch = np.asarray(layout.patch, dtype=np.int64)
    sizes = np.bincount(patch)
    patch_mean = np.bincount(patch, weights=smooth) / np.maximum(sizes, 1)
    return patch_mean[patch] / scale, quality_latent(card, layout, seed)


def latent_good_probability(patch_quality: np.ndarray, latent: np.ndarray, good: np.ndarray) -> np.ndarray:
    """P(good) of every hole knowing only its patch quality: Phi((cut - quality) / sd).

    ``good`` is the world's true good indicator of the same holes: it fixes the cut on the latent
    at the holes' good share (midway between the last good and the first bad hole in latent
    order), and ``sd`` is the spread of what the patch quality leaves unknown (latent minus
    patch quality). Exact for generator 0 and for generator 1 at 6 Å (good means latent below a
    cut); at other thresholds generator 1's within-class ranks blur the cut, and this is the
    nearest model of the same form.
    """
    from scipy.special import ndtr  # here, not at the top: scipy's import cost (see latent_to_ctf)

    ordered = np.sort(latent)
    n_good = int(np.count_nonzero(good))
    if n_good in (0, len(latent)):
        return np.full(len(latent), float(n_good > 0))
    cut = 0.5 * (ordered[n_good - 1] + ordered[n_good])
    spread = float(np.std(latent - patch_quality)) or 1e-9
    return ndtr((cut - patch_quality) / spread)


def latent_to_ctf(card: dict[str, Any], latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CTFMaxRes from the standardised latent through the card's quantiles; the worst
    ``failed_fraction`` are failed fits. Returns (ctf, failed)."""
    knots = np.asarray(value(card, "quality", "ctf_quantiles"), dtype=float)
    failed_fraction = float(value(card, "quality", "failed_fraction"))
    # Empirical ranks, not the normal CDF: with few tiles and squares the drawn effects would
    # shift the whole grid's quality; ranks keep the card's distribution exact for every seed.
    from scipy.stats import rankdata  # here, not at the top: importing scipy.stats costs 0.45 s

    u = (rankdata(latent, method="ordinal") - 0.5) / len(latent)
    failed = u >= 1.0 - failed_fraction
    ctf = np.interp(u / (1.0 - failed_fraction), knots[:, 0], knots[:, 1])
    return np.where(failed, FAILED_FIT_CTF, ctf), failed


def _ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks (ties by position), the order statistics the copulas use."""
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def two_class_ctf(card: dict[str, Any], latent: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generator 1's CTFMaxRes: ``latent`` decides which holes are good (the card's fraction below
    6 Å, the lowest latents), ``within`` ranks the holes inside each class through the card's
    quantiles; the worst ``failed_fraction`` by ``within`` among the bad are failed fits.

    Measured Aldolase: neighbours agree on good-or-bad (r = 0.52) more than on log CTFMaxRes
    (0.48); a single Gaussian copula gives the opposite order. Returns (ctf, failed)."""
    knots = np.asarray(value(card, "quality", "ctf_quantiles"), dtype=float)
    failed_fraction = float(value(card, "quality", "failed_fraction"))
    n = len(latent)
    good_share = float(np.interp(PAPER_THRESHOLD_ANGSTROM, knots[:, 1], knots[:, 0]))
    n_failed = int(round(failed_fraction * n))
    n_good = int(round(good_share * (n - n_failed)))
    good = _ranks(latent) < n_good
    ctf, failed = np.empty(n), np.zeros(n, dtype=bool)
    # Good: quantile levels [0, good_share); bad: [good_share, 1), the worst n_failed failed fits.
    rank_good = _ranks(within[good])
    ctf[good] = np.interp((rank_good + 0.5) / max(n_good, 1) * good_share, knots[:, 0], knots[:, 1])
    rank_bad = _ranks(within[~good])
    n_bad = n - n_good - n_failed
    bad_failed = rank_bad >= n_bad
    level = good_share + (np.minimum(rank_bad, n_bad - 1) + 0.5) / max(n_bad, 1) * (1.0 - good_share)
    ctf[~good] = np.where(bad_failed, FAILED_FIT_CTF, np.interp(level, knots[:, 0], knots[:, 1]))
    failed[~good] = bad_failed
    return ctf, failed


def world_ctf(card: dict[str, Any], layout: Layout, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CTFMaxRes and failed fits of world ``seed``: generator 0's copula of one latent, or with
    ``quality.within_class_correlation`` generator 1's two classes (per split if ``ctf_per_split``)."""
    latent = quality_latent(card, layout, seed)
    link = optional_value(card, "quality", "within_class_correlation", None)
    if link is None:
        within = None
    else:
        # Correlated with the class latent by ``link``, the rest per hole: neighbours share their
        # class more than their rank within it (measured: good r 0.52 > log-CTF r 0.48 at 1 pitch).
        noise = np.random.default_rng([int(seed), 3]).standard_normal(len(latent))
        within = link * latent + np.sqrt(1.0 - link**2) * noise

    def to_ctf(holes: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        if within is None:
            return latent_to_ctf(card, latent[holes])
        return two_class_ctf(card, latent[holes], within[holes])

    if not optional_value(card, "quality", "ctf_per_split", False):
        return to_ctf(slice(None))
    # Each split gets the card's CTF distribution (e.g. the paper's 12% good on the grid it evaluated).
    ctf, failed = np.empty(len(latent)), np.empty(len(latent), dtype=bool)
    for name in np.unique(layout.split):
        holes = layout.split == name
        ctf[holes], failed[holes] = to_ctf(holes)
    return ctf, failed


_LAYOUTS: OrderedDict[str, Layout] = OrderedDict()
#: Layouts kept: the cards' own and the last few drawn (training draws a new one per world).
_LAYOUTS_KEPT = 32


def layout_for(card: dict[str, Any]) -> Layout:
    """The card's layout, made once per (card contents, layout seed) and reused by every world seed."""
    key = repr(
        (
            card["name"],
            generator(card),
            card["layout_seed"],
            sorted((k, repr(v["value"])) for k, v in card["layout"].items()),
        )
    )
    if key in _LAYOUTS:
        _LAYOUTS.move_to_end(key)
    else:
        _LAYOUTS[key] = make_layout(card)
        if len(_LAYOUTS) > _LAYOUTS_KEPT:
            _LAYOUTS.popitem(last=False)
    return _LAYOUTS[key]


def generate_grid(card: dict[str, Any], seed: int, layout_seed: int | None = None) -> tuple[Grid, np.ndarray]:
    """The twin's grid for world ``seed`` on the layout of ``layout_seed`` (default: the card's),
    and each hole's split. Every layout of a card has the card's numbers of tiles, squares and holes."""
    if layout_seed is not None:
        card = {**card, "layout_seed": int(layout_seed)}
    layout = layout_for(card)
    ctf, failed = world_ctf(card, layout, seed)
    rng = np.random.default_rng([int(seed), 2])
    # CTF-fit confidence: high for good fits, falling with CTFMaxRes; near 0 for failed fits (as measured).
    confidence = np.clip(1.0 - 0.035 * (np.minimum(ctf, 30.0) - 3.0) + rng.normal(0, 0.04, len(ctf)), 0.0, 1.0)
    confidence[failed] = np.abs(rng.normal(0, 0.01, int(failed.sum())))
    grid = Grid(
        name=card["name"],
        tile=layout.tile,
        square=layout.square,
        patch=layout.patch,
        x_um=layout.x_um,
        y_um=layout.y_um,
        ctf=ctf,
        confidence=confidence,
        failed=failed,
        hole_names=layout.hole_names,
        square_xy_um=layout.square_xy_um,
        pitch_um=float(value(card, "layout", "pitch_um")),
        meta={
            "kind": card["kind"],
            "card": card["name"],
            "seed": int(seed),
            "layout_seed": int(card["layout_seed"]),
            "simulated": True,
        },
    )
    return grid, layout.split


def generate_dataset(card: dict[str, Any], seed: int, layout_seed: int | None = None) -> Dataset:
    """A simulated twin Dataset: the layout of ``layout_seed`` (default: the card's) and world
    ``seed``'s quality; no measured predictions."""
    grid, split = generate_grid(card, seed, layout_seed)
    twin_card = dict(card)
    twin_card["default_regressor"] = {
        "model": value(card, "regressor", "model"),
        **value(card, "regressor", "parameters"),
    }
    return Dataset(grid=grid, split=split, measured_predictions=None, card=twin_card)
