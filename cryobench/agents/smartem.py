"""SmartEM-style Bayesian model averaging: the field's deployed method, as a baseline agent.

Diamond Light Source's SmartEM (``smartem-decisions``) keeps, per grid, a weight for each of
several quality predictors; each predictor gives every hole (or square) a probability that its
micrograph is good. When a micrograph's quality ``q`` (0 or 1) is measured, every predictor's
weight is multiplied by the likelihood it gave that outcome, ``q p + (1 - q)(1 - p)``, and the
weights are renormalised; the grid's overall prediction is the weighted average of the
predictors. That is Bayesian model averaging with each predictor a model. This module
re-implements the method from that description (no code is taken from SmartEM) over the
predictors an agent may legitimately build in cryobench:

- ``regressor``: the predicted CTF through a logistic calibration (as ``greedy``);
- ``square``: the square's atlas-level prior (mean calibrated prediction of its holes);
- ``grid``, ``square-revealed``, ``patch-revealed``: the good fraction of the revealed holes of
  the grid, of the hole's square and of its patch, each a Beta-smoothed mean shrunk toward the
  level above (the grid's toward the mean calibrated prediction), so an unvisited group falls
  back to what is known around it;
- ``neighbours``: the revealed holes of the same patch near the hole (Gaussian weights of their
  distance, within ``neighbour_radius`` lattice pitches), shrunk toward the patch's estimate.

A predictor is scored only on outcomes it had not seen: the likelihood of a newly revealed hole
uses the probabilities computed *before* its CTF was revealed (the last decision's), so the
revealed-data predictors cannot score themselves on their own data. ``tempering`` raises every
likelihood to a power (1: SmartEM's update; < 1: slower, less prone to collapse on one model);
``weight_floor`` keeps every model a minimum share so a predictor that was wrong early can come
back. Feedback ``none`` reveals nothing: the weights stay at their priors.

Planning is the house's expected-good-per-minute planner (``common.PatchPlanner``: best-prefix
rates of patches and squares, stay while the next hole beats the shadow price), the same as
``greedy`` and ``hierarchical-bayes``, so scores compare belief models, not planners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent
from cryobench.agents.common import Hierarchy, PatchPlanner, predicted_good_probability
from cryobench.agents.greedy import GreedyConfig
from cryobench.agents.hierarchical import neighbour_pairs

PREDICTORS = ("regressor", "square", "grid", "square-revealed", "patch-revealed", "neighbours")


@dataclass
class SmartEMConfig(GreedyConfig):
    """Hyperparameters: greedy's calibration and planner (inherited), and the model averaging's own."""

    #: prior weight of the regressor; the other predictors share the rest equally
    regressor_prior_weight: float = 0.5
    #: power on every likelihood (1: SmartEM's Bayes update; < 1 tempers it)
    tempering: float = 1.0
    #: smallest share any predictor keeps after an update
    weight_floor: float = 0.01
    #: Beta pseudo-counts: how many revealed holes outweigh the level above (grid, square, patch, neighbours)
    grid_pseudo_count: float = 10.0
    square_pseudo_count: float = 4.0
    patch_pseudo_count: float = 2.0
    neighbour_pseudo_count: float = 1.0
    #: neighbours: holes of the same patch within this many lattice pitches
    neighbour_radius: float = 1.6


class SmartEMAgent(Agent):
    """Per-grid Bayesian model averaging of quality predictors re-weighted by outcomes (SmartEM), greedy planning."""

    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    name = "smartem-bma"
    Config = SmartEMConfig

    def reset(self, env, seed: int) -> None:
        super().reset(env, seed)
        c = self.config
        h = self.hierarchy = Hierarchy.from_layout(self.layout)
        self.planner = PatchPlanner(h, c.shadow_price, c.price_scale, c.replan_every, keep_visited_moves=True)
        self.regressor = predicted_good_probability(h.predicted_ctf, h.threshold, c.offset, c.scale, c.floor, c.ceiling)
        square_size = np.maximum(np.bincount(h.square, minlength=h.n_squares), 1)
        self.square_prior = (np.bincount(h.square, self.regressor, h.n_squares) / square_size)[h.square]
        self.prior_mean = float(self.regressor.mean())
        self.pair_i, self.pair_j, self.pair_w = neighbour_pairs(h, c.neighbour_radius)
        others = (1.0 - c.regressor_prior_weight) / (len(PREDICTORS) - 1)
        self.log_weights = np.log(np.array([c.regressor_prior_weight] + [others] * (len(PREDICTORS) - 1)))
        self.seen = np.zeros(h.n_holes, dtype=bool)  # revealed holes already scored
        self.predictions = self.predict(self.seen, np.zeros(h.n_holes))

    @property
    def weights(self) -> np.ndarray:
        """The predictors' current weights (sum 1), in the order of ``PREDICTORS``."""
        w = np.exp(self.log_weights - self.log_weights.max())
        w /= w.sum()
        floor = self.config.weight_floor
        return floor + (1.0 - floor * len(w)) * w if floor * len(w) < 1 else np.full(len(w), 1.0 / len(w))

    def predict(self, revealed: np.ndarray, good: np.ndarray) -> np.ndarray:
        """(predictors, holes): every predictor's P(good) for every hole, from the holes revealed so far."""
        c, h = self.config, self.hierarchy
        y = np.where(revealed, good, 0.0)
        n = revealed.astype(np.float64)
        grid = (y.sum() + c.grid_pseudo_count * self.prior_mean) / (n.sum() + c.grid_pseudo_count)
        square = (np.bincount(h.square, y, h.n_squares) + c.square_pseudo_count * grid) / (
            np.bincount(h.square, n, h.n_squares) + c.square_pseudo_count
        )
        patch = (np.bincount(h.patch, y, h.n_patches) + c.patch_pseudo_count * square[h.patch_square]) / (
            np.bincount(h.patch, n, h.n_patches) + c.patch_pseudo_count
        )
        patch_hole = patch[h.patch]
        # Neighbours: pairs (target i, source j) whose source is revealed.
        source_shown = revealed[self.pair_j]
        w = self.pair_w * source_shown
        near = np.bincount(self.pair_i, w * y[self.pair_j], h.n_holes)
        weight = np.bincount(self.pair_i, w, h.n_holes)
        neighbours = (near + c.neighbour_pseudo_count * patch_hole) / (weight + c.neighbour_pseudo_count)
        return np.stack(
            [
                self.regressor,
                self.square_prior,
                np.full(h.n_holes, grid),
                square[h.square],
                patch_hole,
                neighbours,
            ]
        )

    def update_weights(self, obs: dict) -> None:
        """Score every predictor on the holes revealed since the last decision (its earlier predictions)."""
        revealed = obs["revealed"].astype(bool)
        new = revealed & ~self.seen
        if not new.any():
            return
        good = (obs["revealed_ctf"] < self.layout.threshold).astype(np.float64)
        p = np.clip(self.predictions[:, new], 1e-6, 1 - 1e-6)
        likelihood = np.where(good[new] > 0, p, 1.0 - p)
        self.log_weights += self.config.tempering * np.log(likelihood).sum(axis=1)
        self.seen = revealed
        self.predictions = self.predict(revealed, good)

    def act(self, obs: dict, info: dict) -> int:
        self.update_weights(obs)
        p_good = self.weights @ self.predictions
        current = int(obs["current_hole"])
        members = self.planner.patch_members(current)
        available = obs["action_mask"]
        hole = self.planner.try_stay(current, p_good[members], available[members])
        if hole is not None:
            return hole
        return self.planner.next_hole(p_good, available.astype(bool), current, float(obs["time_left"][0]))
