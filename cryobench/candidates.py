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


_indexes: weakref.WeakKeyDictionary[World, _CandidateIndex] = weakref.WeakKeyDictionary()


def _index(world: World) -> _CandidateIndex:
    index = _indexes.get(world)
    if index is None:
        n = world.n_holes
        patch, square, tile = world.groups
        order = np.lexsort((np.arange(n), world.predicted_ctf))  # by prediction, ties by hole id
        rank = np.empty(n + 1, dtype=np.int64)
        rank[order], rank[n] = np.arange(n), n
        by_patch = order[np.argsort(patch[order], kind="stable")]  # patch by patch, best first in each
        sizes = world.group_sizes[0]
        column = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        members = np.zeros((len(sizes), sizes.max()), dtype=np.int64)
        padding = np.ones(members.shape, dtype=bool)
        members[patch[by_patch], column], padding[patch[by_patch], column] = by_patch, False
        first = members[:, 0]
        index = _CandidateIndex(
            members=members,
            padding=padding,
            rank=rank,
            by_rank=np.append(order, -1),
            patch_square=square[first],
            patch_tile=tile[first],
        )
        _indexes[world] = index
    return index


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
    levels = move_level(
        index.patch_tile[None] == index.patch_tile[current_patch][:, None],
        index.patch_square[None] == index.patch_square[current_patch][:, None],
        np.arange(len(index.patch_tile))[None] == current_patch[:, None],
    ).astype(np.int64)
    # One sort of (level, rank of the best hole) per session: ranks are unique, so the key
    # names the hole; a used-up patch sorts last in its level (rank n, no hole).
    keys = np.sort(levels * (n + 1) + index.rank[best], axis=1)
    sorted_levels = keys // (n + 1)
    # where each level's patches start in the sorted keys: the count of patches of lower levels
    level_start = (sorted_levels[:, :, None] < np.arange(len(LEVEL_SLOTS))).sum(axis=1)
    position = np.minimum(level_start[:, _SLOT_LEVEL] + _SLOT_POSITION, keys.shape[1] - 1)
    chosen = np.take_along_axis(keys, position, axis=1)
    in_level = np.take_along_axis(sorted_levels, position, axis=1) == _SLOT_LEVEL
    return np.where(in_level, index.by_rank[np.where(in_level, chosen % (n + 1), n)], -1)


def candidate_holes(world: World, visited: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The candidate holes of S sessions, (S, N_CANDIDATES), computed from the masks alone."""
    return select_candidates(world, best_unvisited_holes(world, visited), current)
