"""Per-hole features: cryoRL's 32 (facts §4) followed by what feedback and time add.

Columns 0-31 follow cryoRL's layout; their count normalisations use caps above any
real grid's group sizes (patches hold up to 25 holes, squares up to 260, tiles up to
about 1,000), where the original's 25/150/500 saturate on real squares and tiles.
The histograms are not Gaussian-smoothed (the original's smoothing is optional).

=====  ====================================================================
cols   feature
=====  ====================================================================
0      the hole's predicted CTFMaxRes / 20 (capped at 1)
1      visited flag
2-6    patch histogram of unvisited holes' predicted CTF, bins [0,4,6,8,10,inf) Å,
       divided by its sum (0 when the patch has no unvisited hole)
7-10   patch counts: unvisited, unvisited predicted good, visited, visited predicted
       good; each / ``PATCH_CAP``
11-19  the same for the hole's square (caps ``SQUARE_CAP``)
20-28  the same for the hole's tile (caps ``TILE_CAP``)
29-31  same tile / same square / same patch as the current hole
32     the hole's true CTFMaxRes is revealed (0/1)
33     its revealed CTFMaxRes / 20 (0 until revealed)
34-36  revealed-good fraction of the hole's patch / square / tile (0 if none revealed)
37-39  revealed holes in the patch / square / tile, / the level's cap
40     minutes to move there from the current hole / the profile's largest move
41     time left / duration (the same for every hole)
=====  ====================================================================
"""

from __future__ import annotations

import numpy as np

from cryobench.grid import CTF_CAP
from cryobench.simulator import (
    COL_HIST,
    COL_REVEALED,
    COL_REVEALED_GOOD,
    COL_UNVISITED_PRED_GOOD,
    COL_VISITED,
    COL_VISITED_PRED_GOOD,
    N_BINS,
    SessionState,
    World,
    move_levels,
    time_left,
)

PATCH_CAP, SQUARE_CAP, TILE_CAP = 32.0, 320.0, 1600.0
LEVEL_CAPS = (PATCH_CAP, SQUARE_CAP, TILE_CAP)

_LEVEL_FEATURES = [f"hist_{lo}_{hi}" for lo, hi in (("0", "4"), ("4", "6"), ("6", "8"), ("8", "10"), ("10", "inf"))] + [
    "unvisited",
    "unvisited_pred_good",
    "visited",
    "visited_pred_good",
]
FEATURE_NAMES: tuple[str, ...] = tuple(
    ["pred_ctf", "visited"]
    + [f"{level}_{name}" for level in ("patch", "square", "tile") for name in _LEVEL_FEATURES]
    + ["same_tile", "same_square", "same_patch", "revealed", "revealed_ctf"]
    + [f"{level}_revealed_good_frac" for level in ("patch", "square", "tile")]
    + [f"{level}_revealed" for level in ("patch", "square", "tile")]
    + ["move_minutes", "time_left"]
)
N_FEATURES = len(FEATURE_NAMES)
#: The first columns reproduce the cryoRL paper's feature layout.
N_CRYORL_FEATURES = 32
#: Identifies this layout in checkpoints: a network trained on another layout is refused.
FEATURE_LAYOUT_VERSION = "cryobench-features-v1"

_PER_LEVEL = N_BINS + 4  # histogram + four counts
_SAME_COL = 2 + 3 * _PER_LEVEL  # 29


def _level_table(table: np.ndarray, cap: float) -> np.ndarray:
    """Normalised per-group features (n_groups, 9 + 2) from one count table."""
    hist = table[:, COL_HIST].astype(np.float32)
    unvisited = hist.sum(axis=1, keepdims=True)
    counts = np.column_stack(
        [unvisited[:, 0], table[:, COL_UNVISITED_PRED_GOOD], table[:, COL_VISITED], table[:, COL_VISITED_PRED_GOOD]]
    ).astype(np.float32)
    revealed = table[:, COL_REVEALED].astype(np.float32)
    good_frac = table[:, COL_REVEALED_GOOD] / np.maximum(revealed, 1.0)
    return np.column_stack(
        [
            hist / np.maximum(unvisited, 1.0),
            np.minimum(counts / cap, 1.0),
            good_frac,
            np.minimum(revealed / cap, 1.0),
        ]
    ).astype(np.float32)


def hole_features(world: World, state: SessionState) -> np.ndarray:
    """The (n_holes, N_FEATURES) float32 feature matrix of the session's current state."""
    n = world.n_holes
    out = np.empty((n, N_FEATURES), dtype=np.float32)
    out[:, 0] = np.minimum(world.predicted_ctf, CTF_CAP) / CTF_CAP
    out[:, 1] = state.visited
    for i, (ids, table, cap) in enumerate(zip(world.groups, state.tables, LEVEL_CAPS, strict=True)):
        per_hole = _level_table(table, cap)[ids]
        start = 2 + i * _PER_LEVEL
        out[:, start : start + _PER_LEVEL] = per_hole[:, :_PER_LEVEL]
        out[:, 34 + i] = per_hole[:, _PER_LEVEL]
        out[:, 37 + i] = per_hole[:, _PER_LEVEL + 1]
    levels = move_levels(world, state.current)
    # same tile: level <= 2, same square: level <= 1, same patch: level == 0
    out[:, _SAME_COL] = levels <= 2
    out[:, _SAME_COL + 1] = levels <= 1
    out[:, _SAME_COL + 2] = levels == 0
    out[:, 32] = state.revealed
    out[:, 33] = np.minimum(state.revealed_ctf, CTF_CAP) / CTF_CAP
    minutes = np.asarray(world.profile.minutes, dtype=np.float32)
    out[:, 40] = minutes[levels] / minutes[-1]
    out[:, 41] = time_left(world, state) / world.duration
    return out
