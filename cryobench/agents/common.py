"""Helpers shared by the built-in agents: the grid's hierarchy as numpy tables, move costs,
calibrated probabilities from predictions, and the "expected good per minute" of a group.

Everything here is computed once per episode (in an agent's ``reset``) or in O(N) numpy
per step: no Python loop over holes on a hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.rules import move_level


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """The public hierarchy of a grid (from ``env.unwrapped.layout``) as compact numpy tables.

    Derived once per episode from :class:`cryobench.env.PublicLayout` (never from the ground
    truth): each group's parents and every hole's grid-wide position, for planning.

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
        return self.minutes[
            move_level(self.tile == self.tile[hole], self.square == self.square[hole], self.patch == self.patch[hole])
        ]

    def patch_minutes(self, hole: int) -> np.ndarray:
        """Minutes to move from ``hole`` to any hole of every patch (n_patches,)."""
        return self.minutes[
            move_level(
                self.patch_tile == self.tile[hole],
                self.patch_square == self.square[hole],
                np.arange(self.n_patches) == self.patch[hole],
            )
        ]

    def distances(self, hole: int) -> np.ndarray:
        """Euclidean distance (µm) from ``hole`` to every hole."""
        return np.hypot(*(self.xy - self.xy[hole]).T)


def group_sum(ids: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of ``weights`` per group (a float bincount)."""
    return np.bincount(ids, weights=weights, minlength=n_groups)


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


class PatchPlanner:
    """Where to expose next: "most expected good per minute", valuing the group moved into.

    Built once per episode (``reset``); each decision is a handful of numpy operations on a
    (patches x largest patch) table, no Python loop over holes or groups:

    - Every patch is valued by its best *prefix*: its available holes sorted by probability,
      the first ``k`` cost the move into the patch plus ``k - 1`` in-patch moves; the patch's
      rate is the best expected good per minute over ``k`` (the exact best prefix, not a few
      cut-offs).
    - Every other square is valued by its best prefix of patches (sorted by their own rate
      from a patch move), counting one square move, one patch move per further patch and the
      in-patch moves: a square rich in several patches is worth its 6-8 minute entry.
    - Staying: the best available hole of the current patch, worth its probability per
      in-patch move. The planner stays while that hole beats the *price of a minute*: the
      smaller of the best rate elsewhere and the rate of the marginal group the remaining
      minutes can still afford (``shadow_price``). With far more good holes on a grid than a
      session can collect, a minute at the end of the session is worth that marginal rate,
      so a hole above it is worth taking now rather than paying a move to come back for it
      (the marginal value theorem with a finite session).
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        shadow_price: bool = True,
        price_scale: float = 1.0,
        replan_every: int = 8,
        skip_exhausted: bool = False,
        keep_visited_moves: bool = False,
    ) -> None:
        h = self.hierarchy = hierarchy
        self.use_shadow_price = shadow_price
        # A square's rate is shared by all its patches, so the first patch of the best square can be
        # one with no hole left: the move then goes to a visited hole (an invalid move, a minute lost;
        # hundreds of them in 16 h sessions). With skip_exhausted the planner moves to the square's
        # best patch that still has holes. Off by default: the agents of v1's results keep their decisions.
        self.skip_exhausted = skip_exhausted
        # Even so, the planned patch can have no hole left (with skip_exhausted: when no patch has
        # a hole worth anything); the planner then chooses again (``open_hole``) rather than move to a
        # visited hole, a costed no-op it would repeat until the session ends. keep_visited_moves
        # keeps those moves: the decisions recorded in protocol v1/v2 results of greedy, smartem-bma
        # and hierarchical-bayes include them (their next versions drop it).
        self.keep_visited_moves = keep_visited_moves
        self.price_scale = price_scale
        self.replan_every = replan_every
        # The price of staying found by the last full decision: (patch, price, decisions it stays valid).
        self.cached_price: tuple[int, float, int] = (-1, np.inf, 0)
        self.last_price = np.inf
        order = np.argsort(h.patch, kind="stable")
        sizes = np.bincount(h.patch, minlength=h.n_patches)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        width = int(sizes.max())
        # slots[p, j]: the j-th hole of patch p; padding points at a sentinel hole (index N)
        # whose probability is always 0.
        self.slots = np.full((h.n_patches, width), h.n_holes, dtype=np.int64)
        rank = np.arange(h.n_holes) - starts[h.patch[order]]
        self.slots[h.patch[order], rank] = order
        self.patch_sizes = sizes
        self.values = np.zeros(h.n_holes + 1)  # probabilities of available holes, sentinel 0
        self.prefix_steps = np.arange(width, dtype=np.float64) * h.minutes[0]  # (k - 1) in-patch moves
        self.patch_ids = np.arange(h.n_patches)

    def patch_table(self, p_good: np.ndarray, available: np.ndarray) -> np.ndarray:
        """(patches, width): each patch's available holes' probabilities, best first, 0-padded."""
        np.multiply(p_good, available, out=self.values[:-1])
        table = self.values[self.slots]
        table.sort(axis=1)
        return table[:, ::-1]

    @staticmethod
    def best_prefix(cumulative: np.ndarray, minutes: np.ndarray, usable: np.ndarray):
        """Per row, the prefix with the most value per minute: (rate, index of its last hole)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(usable, cumulative / minutes, 0.0)
        last = rate.argmax(axis=1)
        return rate[np.arange(len(rate)), last], last

    def next_hole(self, p_good: np.ndarray, available: np.ndarray, current_hole: int, time_left: float) -> int:
        m = self.hierarchy.minutes
        table, usable, rates, price, shadow = self.rates(p_good, available, current_hole, time_left)
        self.last_price = price  # the price of staying in the current patch, for agents that look ahead
        current_patch = int(self.hierarchy.patch[current_hole])
        stay_value = table[current_patch, 0] / m[0]
        self.cached_price = (current_patch, price, self.replan_every)
        if usable[current_patch, 0] and stay_value >= price:
            patch = current_patch
        else:
            patch = int(np.argmax(rates))
            if self.skip_exhausted:
                open_rates = np.where(usable[:, 0], rates, -np.inf)
                tied = open_rates >= open_rates.max()
                patch = int(np.argmax(np.where(tied, self.last_patch_rate, -np.inf)))
            if self.use_shadow_price:
                # In the patch moved into, the price of staying is almost always the shadow price
                # (its best alternative is at least as good): reuse it rather than replan on arrival.
                self.cached_price = (patch, min(shadow, rates.max()), self.replan_every)
        members = self.slots[patch]
        hole = int(members[np.argmax(self.values[members])])
        if not (available[hole] or self.keep_visited_moves) and available.any():
            hole = self.open_hole(rates, usable, available, current_hole)
        return hole

    def open_hole(self, rates: np.ndarray, usable: np.ndarray, available: np.ndarray, current_hole: int) -> int:
        """The hole to move to when the planned patch has none left (its holes all visited).

        A square's rate is shared by all its patches, so the best rate can fall on a patch with
        no hole left: the move would go to a visited hole, a costed no-op repeated until the
        session ends. Only then: the best other patch with a hole worth something (ties: its own
        rate, as with ``skip_exhausted``), else the nearest available hole. Every decision that
        was an available hole stays as it was.
        """
        open_rates = np.where(usable[:, 0], rates, -np.inf)
        if not np.isfinite(open_rates.max()):
            return nearest(self.hierarchy, current_hole, available)
        tied = open_rates >= open_rates.max()
        patch = int(np.argmax(np.where(tied, self.last_patch_rate, -np.inf)))
        if self.use_shadow_price:
            self.cached_price = (patch, self.cached_price[1], self.replan_every)
        members = self.slots[patch]
        return int(members[np.argmax(self.values[members])])

    def rates(self, p_good: np.ndarray, available: np.ndarray, current_hole: int, time_left: float):
        """Every patch's best rate (expected good per minute) from here and the price of a minute.

        Returns (the patch table, its usable entries, the rate of every other patch (the
        current one -inf), the price of staying, the shadow price).
        """
        h, m = self.hierarchy, self.hierarchy.minutes
        table = self.patch_table(p_good, available)
        cumulative = np.cumsum(table, axis=1)
        usable = table > 0
        # Every patch from here (its own entry move) and from a patch move (inside a square plan).
        entry = h.patch_minutes(current_hole)
        horizon = time_left + m[0]  # the move that crosses the session's end still counts
        reachable = usable & (entry[:, None] + self.prefix_steps <= horizon)
        patch_rate, _ = self.best_prefix(cumulative, entry[:, None] + self.prefix_steps, reachable)
        self.last_patch_rate = patch_rate
        inner_minutes = m[1] + self.prefix_steps
        inner_rate, inner_last = self.best_prefix(cumulative, inner_minutes, usable)
        inner_value = cumulative[self.patch_ids, inner_last]
        inner_cost = inner_minutes[inner_last]
        square_rate = self.square_rates(inner_rate, inner_value, inner_cost, current_hole, horizon)
        other_square = h.patch_square != h.square[current_hole]
        rates = np.where(other_square, np.maximum(patch_rate, square_rate[h.patch_square]), patch_rate)
        current_patch = int(h.patch[current_hole])
        rates[current_patch] = -np.inf
        price = shadow = rates.max()
        if self.use_shadow_price:
            shadow = self.price_scale * self.shadow_price(inner_rate, inner_cost, time_left)
            price = min(price, shadow)
        return table, usable, rates, price, shadow

    def patch_members(self, hole: int) -> np.ndarray:
        """The holes of ``hole``'s patch (ascending index)."""
        patch = self.hierarchy.patch[hole]
        return self.slots[patch, : self.patch_sizes[patch]]

    def has_price(self, current_hole: int) -> bool:
        """True when the last full decision's price of staying still holds for this patch."""
        patch, _, valid = self.cached_price
        return patch == self.hierarchy.patch[current_hole] and valid > 0

    def try_stay(self, current_hole: int, p_members: np.ndarray, available_members: np.ndarray) -> int | None:
        """The fast path of most steps: the current patch's best hole if it still beats the price
        of the last full decision in this patch (reused for ``replan_every`` decisions: what the
        other groups offer barely changes while the stage stays in one patch); None: replan."""
        if not self.has_price(current_hole):
            return None
        patch, price, valid = self.cached_price
        self.cached_price = (patch, price, valid - 1)
        values = np.where(available_members, p_members, 0.0)
        best = int(np.argmax(values))
        if values[best] <= 0 or values[best] / self.hierarchy.minutes[0] < price:
            return None
        return int(self.patch_members(current_hole)[best])

    def square_rates(
        self, inner_rate: np.ndarray, inner_value: np.ndarray, inner_cost: np.ndarray, current_hole: int, horizon: float
    ) -> np.ndarray:
        """Each square's best expected good per minute over its best-first prefixes of patches."""
        h, m = self.hierarchy, self.hierarchy.minutes
        order = np.lexsort((-inner_rate, h.patch_square))  # by square, best patch first
        square = h.patch_square[order]
        value = np.cumsum(inner_value[order])
        cost = np.cumsum(inner_cost[order])
        first = np.searchsorted(square, np.arange(h.n_squares))
        offset_value = np.concatenate([[0.0], value])[first]
        offset_cost = np.concatenate([[0.0], cost])[first]
        entry = np.where(h.square_tile == h.tile[current_hole], m[2], m[3])[square] - m[1]
        value = value - offset_value[square]
        cost = cost - offset_cost[square] + entry
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where((inner_rate[order] > 0) & (cost <= horizon), value / cost, 0.0)
        best = np.zeros(h.n_squares)
        np.maximum.at(best, square, rate)
        return best

    @staticmethod
    def shadow_price(inner_rate: np.ndarray, inner_cost: np.ndarray, time_left: float) -> float:
        """The rate of the last patch the remaining minutes can afford, patches best first."""
        order = np.argsort(-inner_rate)
        spent = np.cumsum(inner_cost[order])
        last = min(int(np.searchsorted(spent, time_left)), len(order) - 1)
        return float(inner_rate[order[last]])


def nearest(hierarchy: Hierarchy, current_hole: int, candidates: np.ndarray) -> int:
    """The candidate hole (bool mask) nearest to the current hole; ties: lowest index."""
    index = np.flatnonzero(candidates)
    d = np.hypot(*(hierarchy.xy[index] - hierarchy.xy[current_hole]).T)
    return int(index[np.argmin(d)])
