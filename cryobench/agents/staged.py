"""Staged sessions (``acquisition="staged"``): which square to image next, and when.

In a staged session the agent starts from the atlas: every square's position, a noisy size
class and a noisy good fraction, but no hole and no prediction, except in the square the
session starts in. An agent that can plan over a set of known holes plays it through
:class:`StagedDriver`, which splits the decision in two:

- **Holes.** A copy of the agent (same class, same config) plays the holes of the squares
  imaged so far, through a :class:`ImagedView`: the public layout restricted to those holes
  (dense local ids), the observation restricted to them. The copy is rebuilt each time a
  square is imaged (a new layout: planners replan, learners refit from the revealed holes the
  observation carries).
- **Squares.** When the imaged squares hold fewer than ``min_pool`` unvisited holes worth
  taking (calibrated probability of being good >= 1/2, as the bandits' candidates), the driver
  images one more square, chosen by the ``squares`` option:

  - ``atlas`` (default): the most expected good holes, ``size x good fraction``, where the
    atlas's fraction is corrected by what the imaged squares showed: for every imaged square
    the residual between the share of its holes predicted (or revealed) good and the atlas's
    estimate, on the logit scale; a grid-wide mean of the residuals (shrunk by ``grid_prior``
    pseudo-squares) recalibrates the atlas regressor, and a per-tile mean (``tile_prior``)
    carries what a tile's imaged squares showed to its other squares (squares of a tile share
    ice and quality);
  - ``in-order``: the next square by id after the last one imaged (the baseline: imaging
    squares in the order the atlas lists them);
  - upper bounds (``uses_ground_truth``) always take the square with the most good holes.

Options are given like hyperparameters, ``-h squares=in-order -h min_pool=5``; they are not part
of an agent's Config (they only exist in staged sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cryobench.agents.common import predicted_good_probability
from cryobench.errors import InputError

#: Holes per square standing for each atlas size class (the middles of ``simulator.SIZE_CLASS_EDGES``).
SIZE_CLASS_HOLES = np.array([25.0, 75.0, 125.0, 175.0, 240.0])


@dataclass
class StagedOptions:
    """How a staged session's squares are chosen (see the module docstring)."""

    #: "atlas" (expected good holes from the atlas, corrected by what imaged squares showed) or "in-order"
    squares: str = "atlas"
    #: image another square when fewer unvisited holes worth taking are left in the imaged ones
    min_pool: int = 10
    #: pseudo-squares pulling the grid-wide and per-tile corrections of the atlas to 0
    grid_prior: float = 2.0
    tile_prior: float = 1.0


STAGED_OPTION_NAMES = tuple(f.name for f in fields(StagedOptions))


def staged_options(values: dict[str, Any], source: str) -> StagedOptions:
    """Options from a mapping, refusing unknown names and bad values in one line."""
    unknown = set(values) - set(STAGED_OPTION_NAMES)
    if unknown:
        raise InputError(f"{source}: unknown staged option(s) {sorted(unknown)}; expected {list(STAGED_OPTION_NAMES)}")
    options = StagedOptions(**values)
    if options.squares not in ("atlas", "in-order"):
        raise InputError(f"{source}: staged option 'squares': expected 'atlas' or 'in-order', got {options.squares!r}")
    if isinstance(options.min_pool, bool) or not isinstance(options.min_pool, int) or options.min_pool < 1:
        raise InputError(f"{source}: staged option 'min_pool': expected a positive integer, got {options.min_pool!r}")
    for name in ("grid_prior", "tile_prior"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InputError(f"{source}: staged option {name!r}: expected a positive number, got {value!r}")
    return options


class ImagedView:
    """What the agent copy sees: the imaged squares' holes as a grid of their own (local ids).

    Stands in for the environment (``unwrapped``, ``layout``, ``ground_truth_ctf``) in the copy's
    ``reset``; :meth:`observation` restricts each observation to these holes.
    """

    def __init__(self, env: Any, layout: Any, truth_allowed: bool) -> None:
        self._env, self._truth_allowed = env, truth_allowed
        self.holes = np.flatnonzero(np.asarray(layout.square) >= 0)
        self.local = np.full(len(layout.square), -1, dtype=np.int64)
        self.local[self.holes] = np.arange(len(self.holes))
        squares, square_ids = np.unique(np.asarray(layout.square)[self.holes], return_inverse=True)
        arrays = {
            "tile": np.unique(np.asarray(layout.tile)[self.holes], return_inverse=True)[1],
            "square": square_ids,
            "patch": np.unique(np.asarray(layout.patch)[self.holes], return_inverse=True)[1],
            "x_um": np.asarray(layout.x_um)[self.holes],
            "y_um": np.asarray(layout.y_um)[self.holes],
            "square_xy_um": np.asarray(layout.square_xy_um)[squares],
            "predicted_ctf": np.asarray(layout.predicted_ctf)[self.holes],
        }
        for array in arrays.values():
            array.flags.writeable = False
        # The copy plans as in a paper session over these holes: no atlas, nothing hidden.
        self.layout = replace(
            layout,
            acquisition="paper",
            square_tile=None,
            atlas_size_class=None,
            atlas_good_fraction=None,
            imaged=None,
            **arrays,
        )
        self.feature_names = getattr(env, "feature_names", ())

    @property
    def unwrapped(self) -> ImagedView:
        return self

    def ground_truth_ctf(self) -> np.ndarray:
        if not self._truth_allowed:
            raise InputError("only upper-bound agents (uses_ground_truth) may read the ground truth")
        return self._env.ground_truth_ctf()[self.holes]

    def observation(self, obs: dict) -> dict:
        holes = self.holes
        current = int(self.local[int(obs["current_hole"])])
        return {
            "features": obs["features"][holes],
            "revealed": obs["revealed"][holes],
            "revealed_ctf": obs["revealed_ctf"][holes],
            "time_left": obs["time_left"],
            "current_hole": np.int64(max(current, 0)),
            "action_mask": obs["action_mask"][holes],
        }


class StagedDriver:
    """Plays a staged session for ``agent``: squares by :class:`StagedOptions`, holes by a copy of the agent."""

    def __init__(self, agent: Any, env: Any, seed: int) -> None:
        self.agent, self.env = agent, env.unwrapped
        self.options: StagedOptions = getattr(agent, "staged_options", None) or StagedOptions()
        self.seeds = np.random.SeedSequence(int(seed))
        self.layout = self.env.layout
        self.n_holes = len(self.layout.square)
        self.n_squares = len(self.layout.square_tile)
        c = getattr(agent.config, "offset", 0.5), getattr(agent.config, "scale", 0.8)
        self.calibration = c
        self.truth_good: np.ndarray | None = None
        if agent.uses_ground_truth:
            self.truth_good = self.env.ground_truth_ctf() < self.layout.threshold
        self.last_square = int(np.flatnonzero(np.asarray(self.layout.imaged))[-1])
        self._rebuild()

    # ---- the copy that plays the holes -------------------------------------------------------
    def _rebuild(self) -> None:
        layout = self.layout
        self.view = ImagedView(self.env, layout, self.agent.uses_ground_truth)
        inner = type(self.agent)(self.agent.config)
        inner._driven = True
        inner.reset(self.view, int(self.seeds.spawn(1)[0].generate_state(1)[0]))
        self.inner = inner
        predicted = np.nan_to_num(np.asarray(layout.predicted_ctf), nan=np.inf)
        offset, scale = self.calibration
        self.worth = predicted_good_probability(predicted, layout.threshold, offset, scale, 0.0, 1.0) >= 0.5
        if self.truth_good is not None:
            self.worth = self.truth_good & (np.asarray(layout.square) >= 0)

    # ---- squares -----------------------------------------------------------------------------
    def square_scores(self, obs: dict) -> np.ndarray:
        """Expected good holes of every square from the atlas, corrected by what imaged squares showed."""
        layout, o = self.layout, self.options
        imaged = np.asarray(layout.imaged, dtype=bool)
        if self.truth_good is not None:  # upper bound: the true good holes of each square
            return np.bincount(self.env.world.grid.square, weights=self.truth_good, minlength=self.n_squares)
        atlas_logit = _logit(np.asarray(layout.atlas_good_fraction))
        square = np.asarray(layout.square)
        shown = square >= 0
        # What each imaged square showed: revealed holes count as their truth, the rest as predicted.
        revealed = obs["revealed"].astype(bool) & shown
        good = np.where(revealed, obs["revealed_ctf"] < layout.threshold, self.worth)
        seen = np.bincount(square[shown], weights=good[shown], minlength=self.n_squares)
        size = np.bincount(square[shown], minlength=self.n_squares)
        residual = np.where(imaged, _logit((seen + 0.5) / (size + 1.0)) - atlas_logit, 0.0)
        grid_shift = residual.sum() / (imaged.sum() + o.grid_prior)
        tiles = np.asarray(layout.square_tile)
        tile_residual = np.bincount(tiles, weights=np.where(imaged, residual - grid_shift, 0.0))
        tile_count = np.bincount(tiles, weights=imaged.astype(float))
        tile_shift = tile_residual / (tile_count + o.tile_prior)
        fraction = _sigmoid(atlas_logit + grid_shift + tile_shift[tiles])
        return fraction * SIZE_CLASS_HOLES[np.asarray(layout.atlas_size_class)]

    def next_square(self, obs: dict) -> int:
        unimaged = ~np.asarray(self.layout.imaged, dtype=bool)
        if self.options.squares == "in-order" and self.truth_good is None:
            after = np.roll(np.arange(self.n_squares), -(self.last_square + 1))  # grid by grid in a cassette
            return int(after[unimaged[after]][0])
        expected = self.square_scores(obs)
        scores = np.where(unimaged, expected, -np.inf)
        layout = self.layout
        if layout.square_grid is not None:  # cassettes: another grid costs an exchange first
            here = _stage_grid(layout, obs)
            cost = layout.square_minutes + np.where(layout.square_grid != here, layout.grid_exchange_minutes, 0.0)
            scores = np.where(unimaged, expected / (cost + expected * layout.minutes[0]), -np.inf)
        return int(np.argmax(scores))

    # ---- one decision ------------------------------------------------------------------------
    def act(self, obs: dict, info: dict) -> int:
        if "layout" in info and info["layout"] is not self.layout:
            self.layout = info["layout"]
            self._rebuild()
        mask = obs["action_mask"]
        available = mask[: self.n_holes].astype(bool)
        pool = int(np.count_nonzero(available & self.worth))
        if pool < self.options.min_pool and mask[self.n_holes :].any():
            square = self.next_square(obs)
            self.last_square = square
            return self.n_holes + square
        if not available.any():  # nothing left to expose here and no square left: the env ends the session
            return int(np.argmax(mask))
        local = self.inner.act(self.view.observation(obs), info)
        return int(self.view.holes[int(local)])


def _stage_grid(layout: Any, obs: dict) -> int:
    """The grid the stage is on: the square it sits at, else the current hole's."""
    if int(obs["stage_square"]) > 0:
        return int(layout.square_grid[int(obs["stage_square"]) - 1])
    return int(layout.grid[int(obs["current_hole"])])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
