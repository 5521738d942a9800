"""The compact observation's candidates: a few patches worth moving to, each by its best hole.

Within a patch every move costs the same and every feature but the hole's own is shared, so
the unvisited hole with the lowest predicted CTFMaxRes stands for its patch (ties: the lowest
hole id); the other holes of the patch become candidates as it is used up. The
``N_CANDIDATES`` = 32 slots hold, per move level from the stage, the patches whose best hole
is predicted best: the current patch (1 slot), then up to 8 other patches of the current
square, 8 of other squares of the current tile and 15 of other tiles, each level's in order
of prediction. Slots with no patch left at their level are empty (hole -1, masked). The
patch holding the best-predicted unvisited hole of the grid is therefore always a candidate.

Everything works on S sessions at once ((S, ...) arrays), for the single environment (S = 1)
and the batched one alike.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from cryobench.rules import move_level
from cryobench.simulator import World

#: Slots per move level (same patch, same square, same tile, other tile).
LEVEL_SLOTS = (1, 8, 8, 15)
N_CANDIDATES = sum(LEVEL_SLOTS)
#: Each slot's move level and its position among that level's slots.
_SLOT_LEVEL = np.repeat(np.arange(len(LEVEL_SLOTS)), LEVEL_SLOTS)
_SLOT_POSITION = np.concatenate([np.arange(n) for n in LEVEL_SLOTS])


@dataclass(frozen=True, eq=False)
class _CandidateIndex:
    """What every session of a world shares."""

    members: np.ndarray  # (n_patches, largest patch) each patch's holes, best predicted first (0 as padding)
    padding: np.ndarray  # (n_patches, largest patch) True where ``members`` is padding
    rank: np.ndarray  # (n_holes + 1,) each hole's position in the order by (prediction, id); [-1] = n_holes
    by_rank: np.ndarray  # (n_holes + 1,) the hole of each rank; [n_holes] = -1 (no hole)
    patch_square: np.ndarray  # (n_patches,)
    patch_tile: np.ndarray  # (n_patches,)
    level_starts: np.ndarray  # (n_patches, 5) from each patch, where each move level's patches start in sorted keys
    level_keys: np.ndarray | None  # (n_patches, n_patches) level * (n_holes + 1) from each patch; None on huge grids


#: Up to this many patches, the move levels between every two patches are kept (4 bytes each).
_LEVEL_TABLE_PATCHES = 2048


_indexes: weakref.WeakKeyDictionary[World, _CandidateIndex] = weakref.WeakKeyDictionary()


def _index(world: World) -> _CandidateIndex:
    index = _indexes.get(world)
    if index is None:
        n = world.n_holes
        patch, square, tile = world.groups
        order = np.lexsort((np.arange(n), world.predicted_ctf))  # by prediction, ties by hole id
        rank = np.empty(n + 1, dtype=np.int32 if 4 * (n + 1) < 2**31 else np.int64)  # int32 keys sort faster
        rank[order], rank[n] = np.arange(n), n
        by_patch = order[np.argsort(patch[order], kind="stable")]  # patch by patch, best first in each
        sizes = world.group_sizes[0]
        column = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        members = np.zeros((len(sizes), sizes.max()), dtype=np.int64)
        padding = np.ones(members.shape, dtype=bool)
        members[patch[by_patch], column], padding[patch[by_patch], column] = by_patch, False
        first = members[:, 0]
        patch_square, patch_tile = square[first], tile[first]
        patches = np.arange(len(sizes))
        levels = _levels(patch_square, patch_tile, patches, patches)
        counts = (levels[:, :, None] == np.arange(len(LEVEL_SLOTS))).sum(axis=1)
        index = _CandidateIndex(
            members=members,
            padding=padding,
            rank=rank,
            by_rank=np.append(order, -1),
            patch_square=patch_square,
            patch_tile=patch_tile,
            level_starts=np.concatenate([np.zeros((len(sizes), 1), np.int64), np.cumsum(counts, axis=1)], axis=1),
            level_keys=(levels * (n + 1)).astype(rank.dtype) if len(sizes) <= _LEVEL_TABLE_PATCHES else None,
        )
        _indexes[world] = index
    return index


def _levels(patch_square: np.ndarray, patch_tile: np.ndarray, current: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """The move level from each patch of ``current`` (S,) to every patch, (S, n_patches) int64."""
    return move_level(
        patch_tile[patches][None] == patch_tile[current][:, None],
        patch_square[patches][None] == patch_square[current][:, None],
        patches[None] == current[:, None],
    ).astype(np.int64)


def best_unvisited_holes(world: World, visited: np.ndarray, patches: np.ndarray | None = None) -> np.ndarray:
    """The best-predicted unvisited hole of each patch (-1 when none is left): (S, n_patches),
    or (S, M) for ``patches`` (S, M). ``visited`` is (S, n_holes) bool."""
    index = _index(world)
    sessions = np.arange(len(visited))[:, None, None]
    if patches is None:
        members, padding = index.members[None], index.padding[None]
    else:
        members, padding = index.members[patches], index.padding[patches]
    taken = visited[sessions, members] | padding
    first = taken.argmin(axis=-1)
    best = np.take_along_axis(np.broadcast_to(members, taken.shape), first[..., None], axis=-1)[..., 0]
    return np.where(taken.all(axis=-1), -1, best)


def select_candidates(world: World, best: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The candidate holes, (S, N_CANDIDATES), -1 in empty slots, from each patch's best hole
    (``best``, (S, n_patches), as :func:`best_unvisited_holes`) and the stage's hole (S,)."""
    index, n = _index(world), world.n_holes
    current_patch = world.groups[0][current]
    if index.level_keys is not None:
        level_keys = index.level_keys[current_patch]
    else:
        patches = np.arange(len(index.patch_tile))
        level_keys = _levels(index.patch_square, index.patch_tile, current_patch, patches) * (n + 1)
    # One sort of (level, rank of the best hole) per session: ranks are unique, so the key
    # names the hole; a used-up patch sorts last in its level (rank n, no hole).
    keys = np.sort(level_keys + index.rank[best], axis=1)
    # Each level's patches start where the (static) counts of the lower levels end.
    starts = index.level_starts[current_patch]
    position = starts[:, _SLOT_LEVEL] + _SLOT_POSITION
    in_level = position < starts[:, _SLOT_LEVEL + 1]
    chosen = np.take_along_axis(keys, np.minimum(position, keys.shape[1] - 1), axis=1)
    return index.by_rank[np.where(in_level, chosen % (n + 1), n)]


def candidate_holes(world: World, visited: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The candidate holes of S sessions, (S, N_CANDIDATES), computed from the masks alone."""
    return select_candidates(world, best_unvisited_holes(world, visited), current)
