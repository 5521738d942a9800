"""Hierarchical Bayes: an online model of hole quality that learns from every revealed CTF.

The paper's Limitations ask for "an online model" whose decisions improve with the data
just collected. This agent keeps, for every hole, the probability that it is good:

    logit p(hole) = logit p0(prediction) + grid + tile + square + patch + neighbours

- ``p0``: the regressor's prediction through a logistic calibration (hyperparameters).
- ``grid``, ``tile``, ``square``, ``patch``: random effects (logit scale) shared by the
  holes of a group, each with a zero-mean Gaussian prior (variance ``*_variance``). They
  are fitted from the revealed holes by one penalised Newton step per level, coarse to
  fine, each level on the residuals of the levels above: a group with few revealed holes
  is shrunk to its parent (partial pooling); a group with many follows its own data. The
  ``grid`` level learns the regressor's overall bias on this grid (its calibration).
- ``neighbours``: the same estimate from revealed holes of the same patch near the hole,
  weighted by a Gaussian of their distance (hole quality is spatially correlated within a
  patch, about 0.5 at one lattice pitch on the measured Aldolase data).
- With ``empirical_bayes``, each level's prior variance is re-estimated online by the
  method of moments from its groups' raw effects (floored at a tenth of the card's value,
  capped at ten times), so the pooling adapts to how much groups differ on this grid.

Planning: as ``greedy`` (``cryobench.agents.common.PatchPlanner``: best-prefix rates of
patches and squares, stay while the next hole beats the shadow price of a minute), on the
posterior probabilities. A full decision fits the effects on the revealed holes (O(revealed),
plus one bincount for the neighbours). While the stage stays in a patch (most steps) the
beliefs are updated incrementally: only the patch's own effect and its holes' neighbour
effects are recomputed (O(patch), ``patch_probabilities``); the coarser effects wait for the
planner's next full decision (at the latest ``replan_every`` decisions later). The neighbour
pairs are built once per episode in ``reset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent
from cryobench.agents.common import Hierarchy, PatchPlanner, predicted_good_probability
from cryobench.agents.greedy import GreedyConfig


@dataclass
class HierarchicalBayesConfig(GreedyConfig):
    """Hyperparameters of the hierarchical Bayesian agent: the greedy agent's prior calibration and
    planner settings (inherited: offset, scale, floor, ceiling, shadow_price, price_scale,
    replan_every), and the model's own below."""

    #: prior variances (logit scale) of the grid-wide, tile, square, patch and neighbour effects
    grid_variance: float = 1.0
    tile_variance: float = 0.3
    square_variance: float = 0.5
    patch_variance: float = 0.5
    neighbour_variance: float = 0.5
    #: neighbours: holes of the same patch within this many lattice pitches
    neighbour_radius: float = 1.6
    #: re-estimate the tile/square/patch variances from the revealed data
    empirical_bayes: bool = True


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def neighbour_pairs(hierarchy: Hierarchy, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, weight) of distinct holes of one patch within ``radius`` lattice pitches.

    The pitch is the median distance from a hole to its nearest neighbour in its patch.
    Built once per episode: one small dense block per patch (at most ~25 x 25 holes).
    """
    h = hierarchy
    order = np.argsort(h.patch, kind="stable")
    starts = np.searchsorted(h.patch[order], np.arange(h.n_patches + 1))
    blocks, nearest = [], []
    for p in range(h.n_patches):
        members = order[starts[p] : starts[p + 1]]
        if len(members) < 2:
            continue
        d = np.hypot(*(h.xy[members, None, :] - h.xy[None, members, :]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        nearest.append(d.min(axis=1))
        blocks.append((members, d))
    if not blocks:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    pitch = float(np.median(np.concatenate(nearest)))
    pitch = pitch if pitch > 0 else 1.0
    rows, cols, weights = [], [], []
    for members, d in blocks:
        i, j = np.nonzero(d <= radius * pitch)
        rows.append(members[i])
        cols.append(members[j])
        weights.append(np.exp(-0.5 * (d[i, j] / pitch) ** 2))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)


class HierarchicalBayesAgent(Agent):
    """Online hierarchical model (grid > tile > square > patch > neighbours) + expected-good-per-minute planning."""

    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    name = "hierarchical-bayes"
    Config = HierarchicalBayesConfig
    plays_staged = True
    needs_feedback = True

    def reset(self, env, seed: int) -> None:
        super().reset(env, seed)
        c = self.config
        h = self.hierarchy = Hierarchy.from_layout(self.layout)
        self.planner = PatchPlanner(h, c.shadow_price, c.price_scale, c.replan_every, keep_visited_moves=True)
        prior = predicted_good_probability(h.predicted_ctf, h.threshold, c.offset, c.scale, c.floor, c.ceiling)
        self.prior_logit = _logit(prior)
        # Per level: the group of every hole, of every patch (a patch lies in one group of each
        # level, so the four level effects add up to one shift per patch), groups, prior variance.
        self.levels = [
            (np.zeros(h.n_holes, dtype=np.int64), np.zeros(h.n_patches, dtype=np.int64), 1, c.grid_variance, False),
            (h.tile, h.patch_tile, h.n_tiles, c.tile_variance, c.empirical_bayes),
            (h.square, h.patch_square, h.n_squares, c.square_variance, c.empirical_bayes),
            (h.patch, np.arange(h.n_patches), h.n_patches, c.patch_variance, c.empirical_bayes),
        ]
        pair_i, pair_j, pair_w = neighbour_pairs(h, c.neighbour_radius)
        by_source = np.argsort(pair_j, kind="stable")
        self.pair_i, self.pair_w = pair_i[by_source], pair_w[by_source]
        self.pair_start = np.searchsorted(pair_j[by_source], np.arange(h.n_holes + 1))
        # The same pairs as one small dense matrix per patch (target x source, in the order of
        # planner.patch_members), for the fast path that updates only the current patch.
        local = np.zeros(h.n_holes, dtype=np.int64)
        for p in range(h.n_patches):
            local[self.planner.slots[p, : self.planner.patch_sizes[p]]] = np.arange(self.planner.patch_sizes[p])
        self.patch_weights = [np.zeros((size, size)) for size in self.planner.patch_sizes]
        for i, j, w in zip(pair_i, pair_j, pair_w, strict=True):
            self.patch_weights[h.patch[i]][local[i], local[j]] = w
        self.coarse_shift = np.zeros(h.n_patches)  # grid + tile + square effects of the last full fit
        self.patch_level_variance = c.patch_variance
        self.p_good = prior

    def fit_effects(self, shown: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's effects from the revealed holes ``shown`` (indices) with outcomes ``y`` (0/1).

        Returns (logit shift of every patch from the grid/tile/square/patch effects, logit
        shift of every hole from its revealed neighbours). O(revealed) apart from one bincount
        over the holes; the levels are fitted on the revealed holes only.
        """
        h = self.hierarchy
        patch_shift = np.zeros(h.n_patches)
        neighbour = np.zeros(h.n_holes)
        if len(shown) == 0:
            return patch_shift, neighbour
        logit_shown = self.prior_logit[shown]
        for level, (ids, patch_group, n_groups, variance, adapt) in enumerate(self.levels):
            p = _sigmoid(logit_shown)
            group = ids[shown]
            residual = np.bincount(group, weights=y - p, minlength=n_groups)
            information = np.bincount(group, weights=p * (1.0 - p), minlength=n_groups)
            if adapt:
                variance = self._moment_variance(residual, information, variance)
            if level == len(self.levels) - 1:
                self.coarse_shift = patch_shift.copy()
                self.patch_level_variance = variance
            effect = residual / (information + 1.0 / variance)
            logit_shown += effect[group]
            patch_shift += effect[patch_group]
        # Neighbours: the same penalised step on the residuals of revealed nearby holes. Only
        # the pairs whose source is revealed are gathered (pairs are sorted by source).
        lengths = self.pair_start[shown + 1] - self.pair_start[shown]
        total = int(lengths.sum())
        if total:
            offsets = np.repeat(self.pair_start[shown] - np.cumsum(lengths) + lengths, lengths)
            pairs = offsets + np.arange(total)
            source_p = np.repeat(_sigmoid(logit_shown), lengths)
            source_y = np.repeat(y, lengths)
            i, w = self.pair_i[pairs], self.pair_w[pairs]
            residual = np.bincount(i, weights=w * (source_y - source_p), minlength=h.n_holes)
            information = np.bincount(i, weights=w * source_p * (1.0 - source_p), minlength=h.n_holes)
            neighbour = residual / (information + 1.0 / self.config.neighbour_variance)
        return patch_shift, neighbour

    def posterior(self, revealed: np.ndarray, good: np.ndarray) -> np.ndarray:
        """P(good) of every hole given the revealed holes (bool mask) and their outcomes."""
        shown = np.flatnonzero(revealed)
        patch_shift, neighbour = self.fit_effects(shown, good[shown].astype(np.float64))
        return _sigmoid(self.prior_logit + patch_shift[self.hierarchy.patch] + neighbour)

    @staticmethod
    def _moment_variance(residual: np.ndarray, information: np.ndarray, card: float) -> float:
        """Between-group variance of the effects by the method of moments (clipped around the card's)."""
        seen = information > 0.5  # groups with about two revealed holes or more
        if seen.sum() < 3:
            return card
        raw = residual[seen] / information[seen]  # unpenalised effect, sampling variance 1/information
        estimate = float((raw @ raw - np.sum(1.0 / information[seen])) / len(raw))
        return min(max(estimate, 0.1 * card), 10.0 * card)

    def patch_probabilities(self, obs: dict, current_hole: int) -> np.ndarray:
        """P(good) of the current patch's holes, updating only the patch and neighbour effects.

        The incremental belief update of the steps spent in one patch: a revealed hole changes
        its patch's effect and its neighbours' (recomputed here from the patch's revealed holes,
        O(patch)); the grid, tile and square effects (and the patch-level variance) move little
        with one more hole and are refitted at the planner's next full decision.
        """
        patch = self.hierarchy.patch[current_hole]
        members = self.planner.patch_members(current_hole)
        base = self.prior_logit[members] + self.coarse_shift[patch]
        shown = obs["revealed"][members].astype(bool)
        if not shown.any():
            return _sigmoid(base)
        y = (obs["revealed_ctf"][members[shown]] < self.layout.threshold).astype(np.float64)
        p = _sigmoid(base[shown])
        logit = base + np.sum(y - p) / (np.sum(p * (1.0 - p)) + 1.0 / self.patch_level_variance)
        p = _sigmoid(logit[shown])
        weights = self.patch_weights[patch][:, shown]
        neighbour = (weights @ (y - p)) / (weights @ (p * (1.0 - p)) + 1.0 / self.config.neighbour_variance)
        return _sigmoid(logit + neighbour)

    def stay_in_patch(self, obs: dict, current: int) -> int | None:
        """The planner's cheap decision to stay in the current patch, or None when it needs a full one.

        Most steps stay in the patch: only its holes' probabilities are needed for that.
        """
        if not self.planner.has_price(current):
            return None
        members = self.planner.patch_members(current)
        return self.planner.try_stay(current, self.patch_probabilities(obs, current), obs["action_mask"][members])

    def refit_beliefs(self, obs: dict) -> None:
        """Refit every effect to the revealed holes and update ``p_good`` (a full decision's belief)."""
        shown = np.flatnonzero(obs["revealed"])
        y = (obs["revealed_ctf"][shown] < self.layout.threshold).astype(np.float64)
        patch_shift, neighbour = self.fit_effects(shown, y)
        self.p_good = _sigmoid(self.prior_logit + patch_shift[self.hierarchy.patch] + neighbour)

    def act(self, obs: dict, info: dict) -> int:
        current = int(obs["current_hole"])
        hole = self.stay_in_patch(obs, current)
        if hole is not None:
            return hole
        self.refit_beliefs(obs)
        mask = obs["action_mask"].astype(bool)
        return self.planner.next_hole(self.p_good, mask, current, float(obs["time_left"][0]))
