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

Staged acquisition: the rows of holes in squares not imaged yet are all zero (their
predictions, patches and even their squares are unknown; the group tables count only the
holes of imaged squares). After a square is imaged the stage sits at the square, not at a
hole: columns 29-31 and 40 are then measured from the square (no patch shared).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from cryobench.grid import CTF_CAP
from cryobench.rules import SHARED_GROUPS_BY_LEVEL, move_level
from cryobench.simulator import (
    COL_HIST,
    COL_REVEALED,
    COL_REVEALED_GOOD,
    COL_UNVISITED_PRED_GOOD,
    COL_VISITED,
    COL_VISITED_PRED_GOOD,
    HIERARCHY_LEVELS,
    N_BINS,
    SessionState,
    World,
    blank_session,
    time_left,
)

PATCH_CAP, SQUARE_CAP, TILE_CAP = 32.0, 320.0, 1600.0
GROUP_CAPS = (PATCH_CAP, SQUARE_CAP, TILE_CAP)

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
#: Column of each feature by name: the one place the layout's positions are written down.
COLUMN: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
PREDICTED_CTF_COLUMN = COLUMN["pred_ctf"]
VISITED_COLUMN = COLUMN["visited"]
REVEALED_COLUMN = COLUMN["revealed"]
REVEALED_CTF_COLUMN = COLUMN["revealed_ctf"]
#: The columns that are the hole's own; every other column is shared by all holes of a patch.
HOLE_OWN_COLUMNS = (PREDICTED_CTF_COLUMN, VISITED_COLUMN, REVEALED_COLUMN, REVEALED_CTF_COLUMN)
#: same tile, same square, same patch as the current hole (the order of SHARED_GROUPS_BY_LEVEL's columns)
SHARED_GROUP_COLUMNS = slice(COLUMN["same_tile"], COLUMN["same_patch"] + 1)
MOVE_MINUTES_COLUMN = COLUMN["move_minutes"]
TIME_LEFT_COLUMN = COLUMN["time_left"]
#: The first columns reproduce the cryoRL paper's feature layout.
N_CRYORL_FEATURES = 32
#: Identifies this layout in checkpoints: a network trained on another layout is refused.
FEATURE_LAYOUT_VERSION = "cryobench-features-v1"

_PER_LEVEL = N_BINS + 4  # histogram + four counts
#: Per hierarchy level (patch, square, tile), the columns of its group's values, in the order
#: :func:`_group_values` computes them: histogram and four counts, revealed-good fraction, revealed.
GROUP_COLUMNS = tuple(
    np.r_[
        COLUMN[f"{level}_hist_0_4"] : COLUMN[f"{level}_visited_pred_good"] + 1,
        COLUMN[f"{level}_revealed_good_frac"],
        COLUMN[f"{level}_revealed"],
    ]
    for level in HIERARCHY_LEVELS
)


def _group_values(table: np.ndarray, cap: float | np.ndarray) -> np.ndarray:
    """Normalised per-group features (..., n_groups, 9 + 2) from count table rows (..., n_groups, N_COLS).

    ``cap`` is a number or, for rows of several levels at once, an (n_groups, 1) float32 array.
    """
    hist = table[..., COL_HIST].astype(np.float32)
    unvisited = hist.sum(axis=-1, keepdims=True)
    counts = np.stack(
        [
            unvisited[..., 0],
            table[..., COL_UNVISITED_PRED_GOOD],
            table[..., COL_VISITED],
            table[..., COL_VISITED_PRED_GOOD],
        ],
        axis=-1,
    ).astype(np.float32)
    revealed = table[..., COL_REVEALED : COL_REVEALED + 1].astype(np.float32)
    good_frac = table[..., COL_REVEALED_GOOD : COL_REVEALED_GOOD + 1] / np.maximum(revealed, 1.0)
    return np.concatenate(
        [
            hist / np.maximum(unvisited, 1.0),
            np.minimum(counts / cap, 1.0),
            good_frac.astype(np.float32),
            np.minimum(revealed / cap, 1.0),
        ],
        axis=-1,
    )


def predicted_ctf_feature(world: World) -> np.ndarray:
    """Column 0 of every hole, (n_holes,) float32: its predicted CTFMaxRes / 20, capped at 1."""
    return (np.minimum(world.predicted_ctf, CTF_CAP) / CTF_CAP).astype(np.float32)


@dataclass(frozen=True, eq=False)
class _PatchIndex:
    """Each patch's square and tile, for :func:`patch_features`, and what every session of a world shares."""

    square: np.ndarray
    tile: np.ndarray
    move_values: np.ndarray  # (4, 4) float32 per move level: the shared-group columns, then the move-minutes column
    predicted_ctf_feature: np.ndarray  # (n_holes,) float32, column 0 of every hole


_patch_indexes: weakref.WeakKeyDictionary[World, _PatchIndex] = weakref.WeakKeyDictionary()


def first_hole_of_each_patch(hole_patch: np.ndarray) -> np.ndarray:
    """(n_patches,) the lowest hole id of every patch: the hole that stands for its patch."""
    first = np.full(int(hole_patch.max()) + 1, len(hole_patch), dtype=np.int64)
    np.minimum.at(first, hole_patch, np.arange(len(hole_patch)))
    return first


def _patch_index(world: World) -> _PatchIndex:
    index = _patch_indexes.get(world)
    if index is None:
        patch, square, tile = world.groups
        first = first_hole_of_each_patch(patch)
        minutes = np.asarray(world.profile.minutes, dtype=np.float32)
        move_values = np.column_stack([SHARED_GROUPS_BY_LEVEL, minutes / minutes[-1]]).astype(np.float32)
        index = _PatchIndex(
            square=square[first],
            tile=tile[first],
            move_values=move_values,
            predicted_ctf_feature=predicted_ctf_feature(world),
        )
        _patch_indexes[world] = index
    return index


def patch_features(
    world: World,
    tables: tuple[np.ndarray, ...],
    current: np.ndarray,
    elapsed: np.ndarray,
    stage_square: np.ndarray | None = None,
) -> np.ndarray:
    """The feature columns a patch's holes share, for S sessions at once: (S, n_patches, N_FEATURES).

    ``tables`` are the sessions' group tables per level, (S, n_groups, N_COLS) (see
    ``simulator.recount_tables``); ``current`` and ``elapsed`` are (S,). Every column but the
    hole's own (``HOLE_OWN_COLUMNS``, left 0 here) is the same for all holes of a patch, so a
    hole's row is its patch's row plus those four. ``stage_square`` (S,) (staged sessions):
    the square the stage sits at after imaging it, -1 where it is at ``current``.
    """
    index = _patch_index(world)
    current = np.asarray(current, dtype=np.int64)
    n_sessions, n_patches = len(current), len(index.square)
    out = np.zeros((n_sessions, n_patches, N_FEATURES), dtype=np.float32)
    patch_groups = (np.arange(n_patches), index.square, index.tile)
    for table, cap, groups, columns in zip(tables, GROUP_CAPS, patch_groups, GROUP_COLUMNS, strict=True):
        out[..., columns] = _group_values(table, cap)[:, groups]  # each patch's row of this level
    current_patch = world.groups[0][current]
    current_square, current_tile = index.square[current_patch], index.tile[current_patch]
    if stage_square is not None:  # at a square just imaged: its square and tile, no patch
        at_square = np.asarray(stage_square) >= 0
        current_square = np.where(at_square, stage_square, current_square)
        current_tile = np.where(at_square, world.square_tile[np.maximum(stage_square, 0)], current_tile)
        current_patch = np.where(at_square, -1, current_patch)
    levels = move_level(
        index.tile[None] == current_tile[:, None],
        index.square[None] == current_square[:, None],
        np.arange(n_patches)[None] == current_patch[:, None],
    )
    out[..., SHARED_GROUP_COLUMNS] = index.move_values[levels, :3]
    out[..., MOVE_MINUTES_COLUMN] = index.move_values[levels, 3]
    left = np.maximum(world.duration - np.asarray(elapsed, dtype=np.float64), 0.0)  # as simulator.time_left
    out[..., TIME_LEFT_COLUMN] = (left / world.duration)[:, None]
    return out


def session_features(
    world: World,
    tables: tuple[np.ndarray, ...],
    current: np.ndarray,
    elapsed: np.ndarray,
    visited: np.ndarray,
    revealed: np.ndarray,
    revealed_ctf: np.ndarray,
    holes: np.ndarray | None = None,
    stage_square: np.ndarray | None = None,
) -> np.ndarray:
    """Feature rows of S sessions at once, from their count tables and masks, with no cache.

    Every hole's rows, (S, n_holes, N_FEATURES), or only those of ``holes`` (S, K): (S, K,
    N_FEATURES), computed for those holes alone (the compact observation's candidates, the
    batched environment). ``visited``, ``revealed``, ``revealed_ctf`` are (S, n_holes); the
    other arguments as :func:`patch_features`. A hole's row is its patch's row plus the hole's
    own columns, bit for bit the row :func:`hole_features` gives.
    """
    if holes is not None:  # paper sessions: the stage is at a hole
        values = group_values(world, np.concatenate(tables, axis=1))
        return hole_rows(world, values, current, elapsed, visited, revealed, revealed_ctf, holes)
    rows = patch_features(world, tables, current, elapsed, stage_square)
    out = np.empty((len(rows), world.n_holes, N_FEATURES), dtype=np.float32)
    predicted = _patch_index(world).predicted_ctf_feature
    revealed_ctf = np.minimum(revealed_ctf, CTF_CAP) / CTF_CAP
    for session, session_out in enumerate(out):  # one session at a time: its matrix stays in the cache
        np.take(rows[session], world.groups[0], axis=0, out=session_out)
        session_out[:, PREDICTED_CTF_COLUMN] = predicted
        session_out[:, VISITED_COLUMN] = visited[session]
        session_out[:, REVEALED_COLUMN] = revealed[session]
        session_out[:, REVEALED_CTF_COLUMN] = revealed_ctf[session]
    return out


def hole_groups(world: World) -> np.ndarray:
    """(n_holes, 3) each hole's patch, square and tile in :func:`group_values`' numbering."""
    return _world_index(world).hole_groups


#: The columns :func:`hole_rows` writes as blocks: every level's histogram and counts (patch,
#: square, tile), and the revealed-good fractions followed by the revealed counts.
_HISTOGRAMS_AND_COUNTS = slice(COLUMN["patch_hist_0_4"], COLUMN["tile_visited_pred_good"] + 1)
_REVEALED_GROUP_VALUES = slice(COLUMN["patch_revealed_good_frac"], COLUMN["tile_revealed"] + 1)


def group_values(world: World, table: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Per-group feature values of S sessions: (S, n_groups, 11), or (S, M, 11) for ``groups`` (S, M).

    ``table`` is the sessions' group tables of every level in one, (S, n_groups, N_COLS),
    groups numbered patches, then squares, then tiles (``np.concatenate(tables, axis=1)``);
    the values are :func:`_group_values`' of each group's level, bit for bit.
    """
    index = _world_index(world)
    if groups is None:
        return _group_values(table, index.group_caps[index.group_hierarchy_level])
    rows = table[np.arange(len(table))[:, None], groups]
    return _group_values(rows, index.group_caps[index.group_hierarchy_level[groups]])


def hole_rows(
    world: World,
    values: np.ndarray,
    current: np.ndarray,
    elapsed: np.ndarray,
    visited: np.ndarray,
    revealed: np.ndarray,
    revealed_ctf: np.ndarray,
    holes: np.ndarray,
) -> np.ndarray:
    """The feature rows of ``holes`` (S, K) in paper sessions, (S, K, N_FEATURES), from the
    sessions' :func:`group_values` (S, n_groups, 11): the rows :func:`hole_features` gives."""
    index = _world_index(world)
    n_sessions, n_groups, n_values = values.shape
    # Gathers through flat indices (one index array) are several times faster than (session, hole) pairs.
    flat_holes = (np.arange(n_sessions)[:, None] * world.n_holes + holes).ravel()
    flat_groups = (np.arange(n_sessions)[:, None, None] * n_groups + index.hole_groups[holes]).ravel()
    rows = np.take(values.reshape(-1, n_values), flat_groups, axis=0).reshape(*holes.shape, 3, n_values)
    shape = (*holes.shape, 1)
    visited = np.take(visited, flat_holes).reshape(shape)
    revealed = np.take(revealed, flat_holes).reshape(shape)
    revealed_ctf = np.minimum(np.take(revealed_ctf, flat_holes).reshape(shape), CTF_CAP) / CTF_CAP
    patch, square, tile = world.groups
    current = current[:, None]
    levels = move_level(tile[current] == tile[holes], square[current] == square[holes], patch[current] == patch[holes])
    move_values = index.move_values[levels]
    left = np.maximum(world.duration - np.asarray(elapsed, dtype=np.float64), 0.0)  # as simulator.time_left
    out = np.empty((*holes.shape, N_FEATURES), dtype=np.float32)
    # Each run of adjacent columns written at once, the group values through views split by level.
    out[..., :2] = np.concatenate([_patch_index(world).predicted_ctf_feature[holes][..., None], visited], axis=-1)
    out[..., _HISTOGRAMS_AND_COUNTS].reshape(*holes.shape, 3, _PER_LEVEL)[...] = rows[..., :_PER_LEVEL]
    out[..., SHARED_GROUP_COLUMNS] = move_values[..., :3]
    out[..., REVEALED_COLUMN : REVEALED_CTF_COLUMN + 1] = np.concatenate([revealed, revealed_ctf], axis=-1)
    # revealed-good fractions, then revealed counts, of patch, square, tile
    out[..., _REVEALED_GROUP_VALUES].reshape(*holes.shape, 2, 3)[...] = rows[..., _PER_LEVEL:].swapaxes(-1, -2)
    out[..., MOVE_MINUTES_COLUMN] = move_values[..., 3]
    out[..., TIME_LEFT_COLUMN] = (left / world.duration)[:, None]
    return out


def hole_features_from_scratch(world: World, state: SessionState) -> np.ndarray:
    """The feature matrix computed from the count tables alone, with no cache: the reference
    :func:`hole_features` must equal bit for bit (tests compare them at every step).

    It is :func:`patch_features` spread to the holes plus the holes' own columns.
    """
    out = session_features(
        world,
        tuple(table[None] for table in state.tables),
        np.array([state.current]),
        np.array([state.elapsed]),
        state.visited[None],
        state.revealed[None],
        state.revealed_ctf[None],
        stage_square=np.array([state.stage_square]),
    )[0]
    if state.shown is not None:
        out[~state.shown] = 0.0  # holes of squares not imaged yet are unknown
    return out


# ---- the incremental path ------------------------------------------------------------
#
# A step changes few feature values: the rows of the groups (one patch, square and tile per
# level) whose count tables changed, the "same tile/square/patch" and move-minutes columns of
# the rows whose move level from the current hole changed, and the time-left column. The
# cache keeps the last matrix with the masks and current hole it describes; each call finds
# what differs from the state by comparing masks (cheap, vectorised, and robust to states
# changed in any way, e.g. copied by a planner), updates those rows, and returns a copy.
#
# The cached matrix holds the holes sorted by (tile, square, patch), so every group's rows
# are one contiguous slice: writing a slice costs a fraction of a scattered write. The copy
# handed out is put back in hole order (a plain copy when the grid is already sorted).
# Groups of the three levels are numbered in one sequence (patches, then squares, then
# tiles) so that one numpy call computes the values of every touched group.

_NOWHERE = -1  # the cache's "current hole" before the first update: every move level is 3


@dataclass(frozen=True, eq=False)
class _WorldIndex:
    """What the incremental path precomputes once per world."""

    sorted_position: np.ndarray  # (n_holes,) each hole's row in the cached (sorted) matrix
    hole_order: np.ndarray | None  # the sorted rows' hole ids, None when already in hole order
    hole_groups: np.ndarray  # (n_holes, 3) each hole's patch, square, tile in the joint numbering
    group_hierarchy_level: np.ndarray  # (n_groups,) 0 patch, 1 square, 2 tile
    group_rows: np.ndarray  # (n_groups, 2) first and last + 1 row of each group in the sorted matrix
    square_groups: np.ndarray  # (n_squares, 3) a stage at each square: no patch (-1), its square, its tile
    group_caps: np.ndarray  # (3, 1) float32, the count caps per level
    move_values: np.ndarray  # (4, 4) float32: same tile, same square, same patch, minutes; per move level
    unvisited: np.ndarray  # sorted features with nothing visited or revealed, stage nowhere, no time left


@dataclass(eq=False)
class _FeatureCache:
    world: World
    index: _WorldIndex
    sorted_features: np.ndarray
    visited: np.ndarray
    revealed: np.ndarray
    current: int  # the hole the stage is at, _NOWHERE, or (staged) -2 - s at square s
    squares_imaged: int = 0  # staged: how many squares the cached values count
    visible_runs: list[tuple[int, int]] | None = None  # staged: [start, stop) runs of shown rows, sorted order


_world_indexes: weakref.WeakKeyDictionary[World, _WorldIndex] = weakref.WeakKeyDictionary()


def _world_index(world: World) -> _WorldIndex:
    index = _world_indexes.get(world)
    if index is None:
        index = _build_world_index(world)
        _world_indexes[world] = index
    return index


def _build_world_index(world: World) -> _WorldIndex:
    n = world.n_holes
    patch, square, tile = world.groups
    order = np.lexsort((patch, square, tile))
    position = np.empty(n, dtype=np.intp)
    position[order] = np.arange(n)
    first_group = np.cumsum([0] + [len(sizes) for sizes in world.group_sizes])
    hole_groups = np.column_stack([ids + first for ids, first in zip(world.groups, first_group, strict=False)])
    # Sorted by tile, square, patch, each group's holes are contiguous: its rows start at its first hole.
    first_row = np.concatenate([np.unique(ids[order], return_index=True)[1] for ids in world.groups])
    group_size = np.concatenate(world.group_sizes)
    move_values = _patch_index(world).move_values
    # A session before its start, from the reference code: nothing visited, the stage nowhere.
    blank = blank_session(world, elapsed=world.duration)
    blank.shown = None  # staged: every row's own values; the rows of unimaged squares are hidden on output
    unvisited = hole_features_from_scratch(world, blank)[order]
    unvisited[:, SHARED_GROUP_COLUMNS] = move_values[3, :3]
    unvisited[:, MOVE_MINUTES_COLUMN] = move_values[3, 3]
    unvisited.flags.writeable = False
    return _WorldIndex(
        sorted_position=position,
        hole_order=None if np.array_equal(order, np.arange(n)) else order,
        hole_groups=hole_groups,
        group_hierarchy_level=np.repeat(np.arange(3), [len(sizes) for sizes in world.group_sizes]),
        group_rows=np.column_stack([first_row, first_row + group_size]),
        square_groups=np.column_stack(
            [
                np.full(len(world.square_tile), -1),
                np.arange(len(world.square_tile)) + first_group[1],
                world.square_tile + first_group[2],
            ]
        ),
        group_caps=np.array(GROUP_CAPS, dtype=np.float32)[:, None],
        move_values=move_values,
        unvisited=unvisited,
    )


def _touched_group_values(table: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The values of :func:`_group_values` (bit for bit) in fewer numpy calls, for the few rows
    a step touches: each float32 operation is the reference's, on the same operands."""
    counts = table.astype(np.float32)
    unvisited = counts[:, :N_BINS].sum(axis=1, keepdims=True)
    out = np.empty((len(table), _PER_LEVEL + 2), dtype=np.float32)
    np.divide(counts[:, :N_BINS], np.maximum(unvisited, 1.0), out=out[:, :N_BINS])
    out[:, N_BINS : N_BINS + 1] = unvisited
    out[:, N_BINS + 1 : N_BINS + 4] = counts[:, COL_UNVISITED_PRED_GOOD : COL_VISITED_PRED_GOOD + 1]
    out[:, N_BINS + 4] = 0.0  # set below; zeroed so the division by the cap never sees uninitialised memory
    out[:, N_BINS + 5] = counts[:, COL_REVEALED]
    np.minimum(out[:, N_BINS:] / cap, 1.0, out=out[:, N_BINS:])
    # the revealed-good fraction is divided in float64 by the reference (int32 / float32)
    out[:, N_BINS + 4] = table[:, COL_REVEALED_GOOD] / np.maximum(counts[:, COL_REVEALED], 1.0)
    return out


def _update_count_rows(cache: _FeatureCache, state: SessionState, touched: np.ndarray) -> None:
    """Recompute the per-group columns of every hole sharing a patch, square or tile with ``touched``."""
    index, out = cache.index, cache.sorted_features
    groups = index.hole_groups[touched].ravel()
    if len(touched) > 1:
        groups = np.unique(groups)
    level = index.group_hierarchy_level[groups]
    # Bit-identical to the reference: the float32 caps are exact, so x / cap rounds the same.
    values = _touched_group_values(np.concatenate(state.tables)[groups], index.group_caps[level])
    for (first, stop), lvl, value in zip(index.group_rows[groups].tolist(), level.tolist(), values, strict=True):
        out[first:stop, GROUP_COLUMNS[lvl]] = value


def _set_move_level(cache: _FeatureCache, group: int, level: int) -> None:
    if group < 0:  # a stage at a square has no patch
        return
    first, stop = cache.index.group_rows[group].tolist()
    cache.sorted_features[first:stop, SHARED_GROUP_COLUMNS] = cache.index.move_values[level, :3]
    cache.sorted_features[first:stop, MOVE_MINUTES_COLUMN] = cache.index.move_values[level, 3]


def _position_groups(index: _WorldIndex, position: int) -> list[int]:
    """The joint group ids (patch, square, tile) of a stage position: a hole, or -2 - s at square s."""
    if position >= 0:
        return index.hole_groups[position].tolist()
    return index.square_groups[-2 - position].tolist()


def _update_move_rows(cache: _FeatureCache, current: int) -> None:
    """Recompute the same-tile/square/patch and move-minutes columns after the stage moved
    to another patch (``current``: a hole, or -2 - s for the stage at square s).

    Only holes whose move level changed need it. With ``L`` the coarsest level where the old
    and the new current hole differ, the old hole's group at ``L`` is now ``L + 1`` away, and
    the new hole's nested groups at levels ``L, L - 1, .., 0`` are ``L, .., 0`` away (written
    from the outside in, each overwriting its part of the previous).
    """
    new_groups = _position_groups(cache.index, current)
    if cache.current == _NOWHERE:
        coarsest = 2
    else:
        old_groups = _position_groups(cache.index, cache.current)
        coarsest = max(level for level in range(3) if old_groups[level] != new_groups[level])
        _set_move_level(cache, old_groups[coarsest], coarsest + 1)
    for level in range(coarsest, -1, -1):
        _set_move_level(cache, new_groups[level], level)


def _up_to_date_cache(world: World, state: SessionState) -> _FeatureCache:
    cache = state.feature_cache
    if (
        not isinstance(cache, _FeatureCache)
        or cache.world is not world
        or (state.shown is not None and cache.squares_imaged > len(state.squares_imaged))
    ):
        index = _world_index(world)
        cache = _FeatureCache(
            world=world,
            index=index,
            sorted_features=index.unvisited.copy(),
            visited=np.zeros(world.n_holes, dtype=bool),
            revealed=np.zeros(world.n_holes, dtype=bool),
            current=_NOWHERE,
        )
        state.feature_cache = cache
    out, position = cache.sorted_features, cache.index.sorted_position
    # holes whose visited or revealed flag changed (usually one: the hole just exposed)
    touched = np.flatnonzero((state.visited != cache.visited) | (state.revealed != cache.revealed))
    if state.shown is not None and len(state.squares_imaged) != cache.squares_imaged:
        touched = _newly_imaged(world, state, cache, touched)
    if len(touched):
        _update_count_rows(cache, state, touched)
        rows = position[touched]
        out[rows, VISITED_COLUMN] = state.visited[touched]
        out[rows, REVEALED_COLUMN] = state.revealed[touched]
        out[rows, REVEALED_CTF_COLUMN] = np.minimum(state.revealed_ctf[touched], CTF_CAP) / CTF_CAP
        np.copyto(cache.visited, state.visited)
        np.copyto(cache.revealed, state.revealed)
    current = int(state.current)
    patch = world.groups[0]
    if state.stage_square >= 0:  # staged: the stage sits at a square it just imaged
        current = -2 - state.stage_square
        if cache.current != current:
            _update_move_rows(cache, current)
    elif cache.current < 0 or patch[current] != patch[cache.current]:
        _update_move_rows(cache, current)
    cache.current = current
    out[:, TIME_LEFT_COLUMN] = time_left(world, state) / world.duration
    return cache


def hole_features(world: World, state: SessionState) -> np.ndarray:
    """The (n_holes, N_FEATURES) float32 feature matrix of the session's current state.

    Returns a new array the caller owns. Internally the last matrix is kept in
    ``state.feature_cache`` and only the rows a step changed are recomputed; the values are
    bit-identical to :func:`hole_features_from_scratch`.
    """
    cache = _up_to_date_cache(world, state)
    if cache.visible_runs is not None:  # staged: the rows of imaged squares copied, the others zero
        if cache.index.hole_order is None:
            return _copy_runs(cache.sorted_features, cache.visible_runs)
        out = np.take(cache.sorted_features, cache.index.sorted_position, axis=0)
        out[~state.shown] = 0.0
        return out
    if cache.index.hole_order is None:
        return cache.sorted_features.copy()
    return np.take(cache.sorted_features, cache.index.sorted_position, axis=0)


def _copy_runs(rows: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
    """A new array with ``rows``' runs ``[start, stop)`` copied and every other row zero: one pass
    over contiguous slices (as fast as a plain copy; a masked multiply is 3x slower)."""
    out = np.empty_like(rows)
    done = 0
    for start, stop in runs:
        out[done:start] = 0.0
        out[start:stop] = rows[start:stop]
        done = stop
    out[done:] = 0.0
    return out


def _newly_imaged(world: World, state: SessionState, cache: _FeatureCache, touched: np.ndarray) -> np.ndarray:
    """Staged: the squares imaged since the cache was last updated change their groups' counts
    (every hole of theirs is touched) and which rows are shown."""
    new = state.squares_imaged[cache.squares_imaged :]
    cache.squares_imaged = len(state.squares_imaged)
    holes = np.concatenate([world.square_holes[square] for square in new])
    # Rows of the sorted matrix shown now, as runs of consecutive rows (a square's rows are one run).
    visible = np.zeros(world.n_holes + 2, dtype=np.int8)
    visible[1:-1][cache.index.sorted_position[state.shown]] = 1
    edges = np.flatnonzero(np.diff(visible))
    cache.visible_runs = [(int(a), int(b)) for a, b in edges.reshape(-1, 2)]
    return np.union1d(touched, holes)


# ---- reliability: how far this session's revealed CTFs bear out the predictions ----------------
#
# The 42 columns above describe the predictions and what has been visited, but nothing about how
# good the regressor has proven in this session: with perfect predictions and with uninformative
# ones a network sees the same inputs and must behave the same. These columns (a learned agent's
# optional second feature set; the environment's observation is unchanged) are computed from the
# observation's own columns (predicted CTF, revealed flag, revealed CTF) and the public layout, so
# an agent and its trainer compute them the same way. Every one is shared by all holes of a patch
# (the DQN's patch decomposition stays exact).

RELIABILITY_FEATURE_NAMES: tuple[str, ...] = (
    "session_revealed",  # revealed holes in the session / SESSION_REVEALED_CAP (capped at 1)
    "session_abs_residual",  # mean |revealed - predicted| CTF over revealed holes / RESIDUAL_SCALE (capped at 1)
    "session_residual",  # mean (revealed - predicted) / RESIDUAL_SCALE, clipped to [-1, 1]
    "session_agreement",  # 2 * (share of revealed holes whose good/bad verdict the prediction got right) - 1
    "session_correlation",  # Pearson correlation of revealed and predicted CTF (0 below 3 reveals or no spread)
    "patch_residual",  # mean (revealed - predicted) over the patch's revealed holes / RESIDUAL_SCALE, clipped
    "square_residual",  # the same over the square's revealed holes
    # The session's threshold / 20, the scale of the pred_ctf column: with it a first layer can weigh a
    # hole's prediction against the threshold (drawn 5-7 Å in training), not only against a fixed value.
    "threshold",
)
N_RELIABILITY_FEATURES = len(RELIABILITY_FEATURE_NAMES)
#: The feature set of a network that reads the environment's columns followed by the reliability columns.
RELIABILITY_LAYOUT_VERSION = FEATURE_LAYOUT_VERSION + "+reliability-1"
RELIABILITY_LAYOUT_NAMES: tuple[str, ...] = FEATURE_NAMES + RELIABILITY_FEATURE_NAMES
RESIDUAL_SCALE = 4.0  # Å: a residual of this size is a whole unit
SESSION_REVEALED_CAP = 100.0
_MIN_CORRELATION_REVEALS = 3


def reliability_features(
    predicted: np.ndarray,
    revealed: np.ndarray,
    revealed_ctf: np.ndarray,
    hole_patch: np.ndarray,
    patch_square: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """The reliability columns of S sessions per patch, (S, n_patches, N_RELIABILITY_FEATURES) float32.

    ``predicted`` (n_holes,) and ``revealed_ctf`` (S, n_holes) are the feature values (CTF / 20,
    capped at 1: columns ``pred_ctf`` and ``revealed_ctf``), ``revealed`` (S, n_holes) the revealed
    flags; ``hole_patch`` (n_holes,) each hole's patch and ``patch_square`` (n_patches,) each patch's
    square; ``threshold`` the session's threshold in Å. Vectorised over the revealed holes only;
    :class:`RevealedSums` gives the same columns for one live session in O(new reveals) a step.
    (The last column, the threshold, is no reliability measure but belongs to the same feature set.)
    """
    revealed = np.asarray(revealed, dtype=bool)
    n_sessions, n_patches = revealed.shape[0], len(patch_square)
    n_squares = int(patch_square.max()) + 1 if n_patches else 0
    session, hole = np.nonzero(revealed)
    truth, guess = _revealed_pair(predicted, revealed_ctf[session, hole], hole)
    values = _moment_terms(truth, guess, threshold)
    moments = np.stack([np.bincount(session, v, minlength=n_sessions) for v in values], axis=1)
    residual = truth - guess

    def group_sums(group_of_hole: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
        key = session * n_groups + group_of_hole[hole]
        total = np.bincount(key, residual, minlength=n_sessions * n_groups).reshape(n_sessions, n_groups)
        seen = np.bincount(key, minlength=n_sessions * n_groups).reshape(n_sessions, n_groups)
        return total, seen

    patch_sums = group_sums(hole_patch, n_patches)
    square_sums = group_sums(patch_square[hole_patch], n_squares)
    return _columns(moments, patch_sums, square_sums, patch_square, threshold)


def _revealed_pair(predicted: np.ndarray, revealed_ctf: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Revealed and predicted CTF (Å, float64) of revealed holes from their feature values."""
    return revealed_ctf.astype(np.float64) * CTF_CAP, predicted[hole].astype(np.float64) * CTF_CAP


def _moment_terms(truth: np.ndarray, guess: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Per revealed hole, the terms whose sums make a session's moments (see :func:`_columns`)."""
    agree = ((truth < threshold) == (guess < threshold)).astype(np.float64)
    return [
        np.ones_like(truth),
        truth,
        guess,
        truth * truth,
        guess * guess,
        truth * guess,
        np.abs(truth - guess),
        agree,
    ]


def _columns(
    moments: np.ndarray,
    patch_sums: tuple[np.ndarray, np.ndarray],
    square_sums: tuple[np.ndarray, np.ndarray],
    patch_square: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """The columns from the sums: ``moments`` (S, 8) of :func:`_moment_terms`, per-group residual sums and counts."""
    count, truth, guess, truth2, guess2, cross, absolute, agree = (moments / np.maximum(moments[:, :1], 1.0)).T
    count = moments[:, 0]
    variance = np.maximum(truth2 - truth * truth, 0.0) * np.maximum(guess2 - guess * guess, 0.0)
    spread = np.sqrt(variance)
    has_correlation = (count >= _MIN_CORRELATION_REVEALS) & (spread > 1e-9)
    correlation = np.where(has_correlation, (cross - truth * guess) / np.where(has_correlation, spread, 1.0), 0.0)
    n_sessions, n_patches = len(moments), len(patch_square)
    out = np.empty((n_sessions, n_patches, N_RELIABILITY_FEATURES), dtype=np.float32)
    session_columns = np.stack(
        [
            np.minimum(count / SESSION_REVEALED_CAP, 1.0),
            np.minimum(absolute / RESIDUAL_SCALE, 1.0),
            np.clip((truth - guess) / RESIDUAL_SCALE, -1.0, 1.0),
            np.where(count > 0, 2.0 * agree - 1.0, 0.0),
            np.clip(correlation, -1.0, 1.0),
        ],
        axis=1,
    )
    out[..., :5] = session_columns[:, None, :]
    total, seen = patch_sums
    out[..., 5] = np.clip(total / np.maximum(seen, 1) / RESIDUAL_SCALE, -1.0, 1.0)
    total, seen = square_sums
    out[..., 6] = np.clip(total / np.maximum(seen, 1) / RESIDUAL_SCALE, -1.0, 1.0)[:, patch_square]
    out[..., 7] = min(threshold, CTF_CAP) / CTF_CAP
    return out


class RevealedSums:
    """One live session's reliability columns, kept up to date from the holes revealed since the last call.

    Equal to :func:`reliability_features` of the same session (up to the order of float64 sums), at the
    cost of the new reveals instead of every revealed hole: an agent calls it once per decision.
    """

    def __init__(self, hole_patch: np.ndarray, patch_square: np.ndarray, threshold: float) -> None:
        self.hole_patch, self.patch_square = hole_patch, patch_square
        self.hole_square = patch_square[hole_patch]
        self.threshold = threshold
        self.seen = np.zeros(len(hole_patch), dtype=bool)
        self.moments = np.zeros((1, 8))
        n_squares = int(patch_square.max()) + 1 if len(patch_square) else 0
        self.patch_sums = (np.zeros((1, len(patch_square))), np.zeros((1, len(patch_square))))
        self.square_sums = (np.zeros((1, n_squares)), np.zeros((1, n_squares)))

    def columns(self, predicted: np.ndarray, revealed: np.ndarray, revealed_ctf: np.ndarray) -> np.ndarray:
        """(n_patches, N_RELIABILITY_FEATURES) after the reveals in ``revealed`` (n_holes,), given as in
        :func:`reliability_features` for one session."""
        new = np.flatnonzero(revealed & ~self.seen)
        if len(new):
            self.seen[new] = True
            truth, guess = _revealed_pair(predicted, revealed_ctf[new], new)
            self.moments[0] += [v.sum() for v in _moment_terms(truth, guess, self.threshold)]
            for (total, seen), group in ((self.patch_sums, self.hole_patch), (self.square_sums, self.hole_square)):
                np.add.at(total[0], group[new], truth - guess)
                np.add.at(seen[0], group[new], 1.0)
        return _columns(self.moments, self.patch_sums, self.square_sums, self.patch_square, self.threshold)[0]
