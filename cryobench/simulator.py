"""The session simulator: the functional core every environment, agent, metric and CLI shares.

A :class:`World` is everything fixed during one session (the grid, the predictions shown to
the agent, the instrument profile, the rules). A :class:`SessionState` is plain numpy state
(current hole, visited and revealed masks, elapsed minutes, per-level counts kept
incrementally). :func:`start_session` and :func:`expose` are the only functions that
change a session; everything else reads.

Episode rules (as the original cryoRL environment, so numbers compare with the paper):

1. The session starts at a hole (chosen by the caller, at random in the environments).
   The start costs nothing, is marked visited and is not an exposure.
2. Each action names a hole to expose. The stage move costs the profile's minutes for the
   move's level (same patch, other patch, other square, other tile). Only the hierarchy
   sets the cost, not the distance, as in the paper.
3. The reward of an exposure is ``exp(-beta (t - t0))`` when the hole is good
   (CTFMaxRes < threshold, the paper's "< 6 Å"), optionally a partial reward just above the
   threshold, else 0.
4. Choosing a visited hole is not an error: it costs the in-patch minutes, earns nothing,
   and leaves the stage where it was (``invalid`` in the step's result).
5. The session is over when the elapsed minutes exceed the duration; the move that crosses
   the limit still counts (so sessions end at 481-487 min with the paper's costs), or when
   every hole has been visited.
6. Feedback: ``inspection`` reveals an exposed hole's true CTFMaxRes at once, ``queue:K``
   reveals exposures in batches of K (as the paper's simulator's queueing mode), ``none``
   never reveals (as the original code).

Staged acquisition (``World.acquisition == "staged"``), as facilities run sessions: the agent
starts from the atlas, and a square's holes are found and predicted only once the square is
imaged at medium magnification.

7. The session starts at a hole as in rule 1, and that hole's square is imaged for free (the
   square the operator set the session up in). Every other square starts unimaged.
8. Actions ``0 .. N-1`` are holes, ``N .. N+S-1`` image square ``action - N``
   (:func:`image_square`): it costs the profile's ``square_minutes`` (the stage move there
   included), earns nothing, and leaves the stage at the square, not at a hole: the next hole
   of that square costs an other-patch move, of its tile an other-square move, else an
   other-tile move (:func:`rules.move_level` with no shared patch).
9. Imaging a square again, or exposing a hole of a square not imaged yet, is a costed no-op
   like rule 4 (the in-patch minutes, ``invalid``, the stage stays). A square action in a
   paper session is an ``InputError``.
10. The group tables count only the holes of imaged squares (predictions of unimaged squares
    are not known to anyone but the simulator).

Cassettes (``World.cassette``: the grid of every hole, :func:`cassette_world`): several grids
in one session, a level above the tile.

11. A move to a hole (or, staged, a square) on another grid is a grid exchange: it costs the
    profile's ``grid_exchange_minutes`` (instead of the move's level; a square's imaging is
    added to it), and a good hole reached by it earns ``exp(-beta (exchange - t0))``.
12. Every action's minutes count for the grid it ends on (``SessionState.grid_minutes``;
    costed no-ops for the grid the stage is on).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from cryobench.errors import InputError
from cryobench.grid import Grid
from cryobench.profiles import InstrumentProfile, partial_reward_factor
from cryobench.rules import PAPER_SESSION_MINUTES, PAPER_THRESHOLD_ANGSTROM, Feedback
from cryobench.rules import move_level as move_level_of

#: ``World.acquisition``: every prediction known at minute 0 (the paper), or squares imaged on demand.
ACQUISITIONS = ("paper", "staged")
#: ``StepResult.level`` of a square-imaging action (move levels are 0-3) and of an exposure
#: reached by a grid exchange (cassettes).
IMAGE_SQUARE_LEVEL = 4
GRID_EXCHANGE_LEVEL = 5

#: Bin edges (Å) of the cryoRL feature histograms of predicted CTFMaxRes.
FEATURE_BIN_EDGES = np.array([0.0, 4.0, 6.0, 8.0, 10.0, np.inf])
N_BINS = len(FEATURE_BIN_EDGES) - 1
#: The hierarchy's levels with per-group count tables, finest first ("level" alone means a move level).
HIERARCHY_LEVELS = ("patch", "square", "tile")

# Columns of the per-group count tables.
COL_HIST = slice(0, N_BINS)  # unvisited holes per predicted-CTF bin
COL_UNVISITED_PRED_GOOD = N_BINS  # unvisited holes predicted good
COL_VISITED = N_BINS + 1
COL_VISITED_PRED_GOOD = N_BINS + 2
COL_REVEALED = N_BINS + 3  # holes whose true CTF the agent has seen
COL_REVEALED_GOOD = N_BINS + 4
N_COLS = N_BINS + 5


@dataclass(frozen=True, eq=False)
class World:
    """Everything fixed during a session.

    Attributes:
        grid: the holes, with their ground truth (the agent never sees ``grid.ctf`` directly).
        predicted_ctf: the regressor's prediction per hole (Å), what the agent is told.
        profile: minutes per move level and reward decay.
        threshold: a hole is good when its CTFMaxRes is below this (Å).
        duration: session length (minutes).
        partial_reward: give the paper's partial reward just above the threshold.
        feedback: when exposed holes' true CTFMaxRes are revealed.
        acquisition: ``"paper"`` or ``"staged"`` (rules 7-10 of the module docstring).
        cassette: the grid (0..G-1) of every hole of a cassette session (rules 11-12), or None.
    """

    grid: Grid
    predicted_ctf: np.ndarray
    profile: InstrumentProfile
    threshold: float = PAPER_THRESHOLD_ANGSTROM
    duration: float = PAPER_SESSION_MINUTES
    partial_reward: bool = False
    feedback: Feedback = field(default_factory=lambda: Feedback("inspection"))
    acquisition: str = "paper"
    cassette: np.ndarray | None = None
    # Derived per-hole arrays, set in __post_init__.
    groups: tuple[np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False)
    group_sizes: tuple[np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False)
    true_good: np.ndarray = field(init=False, repr=False)
    exposure_reward: np.ndarray = field(init=False, repr=False)
    visit_delta: np.ndarray = field(init=False, repr=False)
    reveal_delta: np.ndarray = field(init=False, repr=False)
    initial_tables: tuple[np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False)
    # Staged acquisition: each square's holes, each square's tile, and the rows a square's imaging
    # adds to the group tables (its holes counted as unvisited); None in paper sessions.
    square_holes: tuple[np.ndarray, ...] | None = field(init=False, repr=False)
    square_tile: np.ndarray = field(init=False, repr=False)
    image_delta: np.ndarray | None = field(init=False, repr=False)
    square_minutes: float | None = field(init=False, repr=False)
    # Cassettes: each square's grid, the exchange's minutes and the reward of a good hole reached by it.
    square_grid: np.ndarray | None = field(init=False, repr=False)
    exchange_minutes: float | None = field(init=False, repr=False)
    exchange_reward: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grid = self.grid
        pred = np.asarray(self.predicted_ctf, dtype=np.float64)
        if pred.shape != (grid.n_holes,) or not np.all(np.isfinite(pred)):
            raise InputError(f"predicted_ctf must be {grid.n_holes} finite numbers, one per hole")
        if not np.isfinite(self.threshold) or self.threshold <= 0:
            raise InputError(f"argument 'threshold': expected a positive number of Å, got {self.threshold!r}")
        if not np.isfinite(self.duration) or self.duration <= 0:
            raise InputError(f"argument 'duration': expected a positive number of minutes, got {self.duration!r}")
        if self.acquisition not in ACQUISITIONS:
            raise InputError(f"argument 'acquisition': expected 'paper' or 'staged', got {self.acquisition!r}")
        set_ = object.__setattr__
        set_(self, "predicted_ctf", pred)
        set_(self, "groups", (grid.patch, grid.square, grid.tile))
        set_(self, "group_sizes", tuple(np.bincount(g) for g in self.groups))
        true_good = grid.ctf < self.threshold
        set_(self, "true_good", true_good)
        # Reward of exposing each hole, by move level: (n_holes, 4).
        quality = true_good.astype(np.float64)
        if self.partial_reward:
            above = ~true_good & ~grid.failed
            quality[above] = partial_reward_factor(grid.ctf[above], self.threshold)
        set_(self, "exposure_reward", quality[:, None] * self.profile.rewards()[None, :])
        # Rows added to a hole's group tables when it is visited / revealed.
        pred_bin = np.searchsorted(FEATURE_BIN_EDGES, pred, side="right") - 1
        pred_good = (pred < self.threshold).astype(np.int32)
        visit = np.zeros((grid.n_holes, N_COLS), dtype=np.int32)
        visit[np.arange(grid.n_holes), pred_bin] = -1
        visit[:, COL_UNVISITED_PRED_GOOD] = -pred_good
        visit[:, COL_VISITED] = 1
        visit[:, COL_VISITED_PRED_GOOD] = pred_good
        reveal = np.zeros((grid.n_holes, N_COLS), dtype=np.int32)
        reveal[:, COL_REVEALED] = 1
        reveal[:, COL_REVEALED_GOOD] = true_good
        set_(self, "visit_delta", visit)
        set_(self, "reveal_delta", reveal)
        # Every session starts from these counts (copied), so a reset does not recount the grid.
        set_(self, "initial_tables", _unvisited_tables(self.groups, self.group_sizes, pred_bin, pred_good))
        set_(self, "square_tile", grid.square_tile)
        set_(self, "square_holes", None)
        set_(self, "image_delta", None)
        set_(self, "square_minutes", None)
        for name in ("square_grid", "exchange_minutes", "exchange_reward"):
            set_(self, name, None)
        if self.cassette is not None:
            cassette = np.asarray(self.cassette, dtype=np.int64)
            tile_grid = np.zeros(grid.n_tiles, dtype=np.int64)
            tile_grid[grid.tile] = cassette if cassette.shape == (grid.n_holes,) else 0
            if cassette.shape != (grid.n_holes,) or np.any(tile_grid[grid.tile] != cassette):
                raise InputError("a cassette names one grid per hole, the same for every hole of a tile")
            exchange = self.profile.require("grid_exchange_minutes", "a cassette")
            square_grid = np.zeros(len(self.group_sizes[1]), dtype=np.int64)
            square_grid[grid.square] = cassette
            set_(self, "cassette", cassette)
            set_(self, "square_grid", square_grid)
            set_(self, "exchange_minutes", exchange)
            set_(self, "exchange_reward", quality * np.exp(-self.profile.beta * (exchange - self.profile.t0)))
        if self.acquisition == "staged":
            set_(self, "square_minutes", self.profile.require("square_minutes", "staged acquisition"))
            # Nothing is imaged before the session: the tables start empty; imaging adds the square's rows.
            # (a hole's unvisited columns: the negative part of its visit row)
            set_(self, "image_delta", -np.minimum(visit, 0))
            order = np.argsort(grid.square, kind="stable")
            set_(self, "square_holes", tuple(np.split(order, np.cumsum(self.group_sizes[1])[:-1])))
            set_(self, "initial_tables", tuple(np.zeros_like(table) for table in self.initial_tables))
        for table in self.initial_tables:
            table.flags.writeable = False

    @property
    def n_holes(self) -> int:
        return self.grid.n_holes

    @property
    def n_squares(self) -> int:
        return len(self.group_sizes[1])

    @property
    def staged(self) -> bool:
        return self.acquisition == "staged"

    @property
    def n_grids(self) -> int:
        return 1 if self.cassette is None else int(self.cassette.max()) + 1

    @property
    def n_actions(self) -> int:
        """Holes, then (staged) one square-imaging action per square."""
        return self.n_holes + (self.n_squares if self.staged else 0)


@dataclass(eq=False)
class SessionState:
    """The mutable state of one session; change it only through :func:`expose`.

    ``tables`` holds, per level (patch, square, tile), one row per group with the columns
    ``COL_*`` of this module, kept incrementally at every step.
    """

    start: int
    current: int
    elapsed: float
    visited: np.ndarray
    revealed: np.ndarray
    revealed_ctf: np.ndarray
    pending: list[int]
    exposures: list[int]
    exposure_minutes: list[float]
    rewards: list[float]
    moves: np.ndarray
    invalid_moves: int
    tables: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: Staged acquisition (None / -1 / empty in paper sessions): which squares are imaged, which holes
    #: they show, the square the stage sits at after imaging it (-1: at ``current``), the imaging order.
    imaged: np.ndarray | None = None
    shown: np.ndarray | None = None
    stage_square: int = -1
    squares_imaged: list[int] = field(default_factory=list)
    #: Cassettes (None otherwise): minutes spent per grid (rule 12) and grid exchanges made.
    grid_minutes: np.ndarray | None = None
    grid_exchanges: int = 0
    #: Owned by :func:`cryobench.features.hole_features`: the last feature matrix and the masks
    #: it was computed from, so the next call updates only the rows that changed. Anything else
    #: leaves it alone; a stale or foreign cache is detected and rebuilt, never trusted.
    feature_cache: Any = field(default=None, repr=False)

    @property
    def n_exposures(self) -> int:
        return len(self.exposures)


class StepResult(NamedTuple):
    """What one exposure did: its minutes, move level (0-3, -1 if invalid), reward."""

    minutes: float
    level: int
    reward: float
    invalid: bool
    newly_revealed: tuple[int, ...]


def _unvisited_tables(
    groups: tuple[np.ndarray, ...], group_sizes: tuple[np.ndarray, ...], pred_bin: np.ndarray, pred_good: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group tables where nothing is visited or revealed: every hole counted as unvisited."""
    per_hole = np.zeros((len(pred_bin), N_COLS), dtype=np.int32)
    per_hole[np.arange(len(pred_bin)), pred_bin] = 1
    per_hole[:, COL_UNVISITED_PRED_GOOD] = pred_good
    return tuple(_sum_rows_by_group(ids, per_hole, len(sizes)) for ids, sizes in zip(groups, group_sizes, strict=True))


def _sum_rows_by_group(ids: np.ndarray, per_hole: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, N_COLS) int32 column sums of the per-hole rows by group (bincount: exact for counts,
    and much faster than ``np.add.at``)."""
    sums = [np.bincount(ids, weights=per_hole[:, col], minlength=n_groups) for col in range(per_hole.shape[1])]
    return np.column_stack(sums).round().astype(np.int32)


def empty_tables(world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group tables of a session where nothing is visited or revealed (fresh, writable copies)."""
    return tuple(table.copy() for table in world.initial_tables)


def recount_tables(world: World, visited: np.ndarray, revealed: np.ndarray) -> tuple[np.ndarray, ...]:
    """The group tables recomputed from the masks alone.

    ``visited`` and ``revealed`` are (n_holes,) for one session, giving (n_groups, N_COLS) tables
    per level, or (S, n_holes) for S sessions at once, giving (S, n_groups, N_COLS): how a replay
    buffer that stores only masks gets its sessions' counts back.
    """
    visited, revealed = np.asarray(visited, dtype=bool), np.asarray(revealed, dtype=bool)
    one = visited.ndim == 1
    visit_matrix, reveal_matrix = _membership_matrices(world)
    # One sparse product per mask type; float32 sums of small integers are exact.
    counts = visit_matrix.T.dot(np.atleast_2d(visited).T.astype(np.float32)).T
    counts = counts + reveal_matrix.T.dot(np.atleast_2d(revealed).T.astype(np.float32)).T
    counts = np.rint(np.asarray(counts)).astype(np.int32)
    tables, start = [], 0
    for initial in world.initial_tables:
        stop = start + initial.size
        table = initial[None] + counts[:, start:stop].reshape(-1, *initial.shape)
        tables.append(table[0] if one else table)
        start = stop
    return tuple(tables)


_membership_cache: weakref.WeakKeyDictionary[World, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _membership_matrices(world: World) -> tuple[Any, Any]:
    """Sparse (n_holes, sum of n_groups * N_COLS) matrices putting each hole's ``visit_delta`` /
    ``reveal_delta`` row into its patch's, square's and tile's table columns."""
    cached = _membership_cache.get(world)
    if cached is None:
        import scipy.sparse as sp

        n = world.n_holes
        offsets = np.cumsum([0] + [t.size for t in world.initial_tables])
        rows = np.tile(np.repeat(np.arange(n), N_COLS), 3)
        cols = np.concatenate(
            [(ids[:, None] * N_COLS + np.arange(N_COLS)).ravel() + offsets[i] for i, ids in enumerate(world.groups)]
        )

        def membership(delta: np.ndarray) -> Any:
            values = np.tile(delta.ravel(), 3).astype(np.float32)
            matrix = sp.csr_matrix((values, (rows, cols)), shape=(n, offsets[-1]))
            matrix.eliminate_zeros()
            return matrix

        cached = (membership(world.visit_delta), membership(world.reveal_delta))
        _membership_cache[world] = cached
    return cached


def blank_session(world: World, hole: int = 0, elapsed: float = 0.0) -> SessionState:
    """A session with nothing visited or revealed (nor imaged), the stage at ``hole``: the state before the start."""
    n = world.n_holes
    staged = world.staged
    return SessionState(
        start=int(hole),
        current=int(hole),
        elapsed=float(elapsed),
        visited=np.zeros(n, dtype=bool),
        revealed=np.zeros(n, dtype=bool),
        revealed_ctf=np.zeros(n, dtype=np.float64),
        pending=[],
        exposures=[],
        exposure_minutes=[],
        rewards=[],
        moves=np.zeros(4, dtype=np.int64),
        invalid_moves=0,
        tables=empty_tables(world),
        imaged=np.zeros(world.n_squares, dtype=bool) if staged else None,
        shown=np.zeros(n, dtype=bool) if staged else None,
        grid_minutes=None if world.cassette is None else np.zeros(world.n_grids),
    )


def start_session(world: World, start_hole: int) -> SessionState:
    """A new session at ``start_hole``: visited, free, not an exposure."""
    if not 0 <= start_hole < world.n_holes:
        raise InputError(f"start hole {start_hole} out of range 0..{world.n_holes - 1}")
    state = blank_session(world, start_hole)
    if world.staged:  # rule 7: the start hole's square is imaged, for free
        _show_square(world, state, int(world.groups[1][start_hole]))
    _mark_visited(world, state, start_hole)
    return state


def _show_square(world: World, state: SessionState, square: int) -> None:
    holes = world.square_holes[square]
    state.imaged[square] = True
    state.shown[holes] = True
    state.squares_imaged.append(square)
    rows = world.image_delta[holes]
    for ids, table in zip(world.groups, state.tables, strict=True):
        np.add.at(table, ids[holes], rows)


def _mark_visited(world: World, state: SessionState, hole: int) -> None:
    state.visited[hole] = True
    for ids, table in zip(world.groups, state.tables, strict=True):
        table[ids[hole]] += world.visit_delta[hole]


def _reveal(world: World, state: SessionState, holes: list[int]) -> None:
    for hole in holes:
        state.revealed[hole] = True
        state.revealed_ctf[hole] = world.grid.ctf[hole]
        for ids, table in zip(world.groups, state.tables, strict=True):
            table[ids[hole]] += world.reveal_delta[hole]


def move_level(world: World, from_hole: int, to_hole: int) -> int:
    """0 same patch, 1 other patch same square, 2 other square same tile, 3 other tile
    (:func:`cryobench.profiles.move_level`)."""
    patch, square, tile = world.groups
    return int(
        move_level_of(
            tile[from_hole] == tile[to_hole], square[from_hole] == square[to_hole], patch[from_hole] == patch[to_hole]
        )
    )


def move_levels(world: World, from_hole: int) -> np.ndarray:
    """Move level from ``from_hole`` to every hole, (n_holes,) int8."""
    patch, square, tile = world.groups
    return move_level_of(tile == tile[from_hole], square == square[from_hole], patch == patch[from_hole])


def move_minutes(world: World, from_hole: int) -> np.ndarray:
    """Minutes to move from ``from_hole`` to every hole (n_holes,)."""
    return world.profile.move_minutes(move_levels(world, from_hole))


def _costed_no_op(world: World, state: SessionState) -> StepResult:
    """Rules 4 and 9: the in-patch minutes, nothing earned, the stage where it was."""
    minutes = world.profile.minutes[0]
    state.elapsed += minutes
    state.invalid_moves += 1
    if state.grid_minutes is not None:
        state.grid_minutes[stage_grid(world, state)] += minutes
    return StepResult(minutes, -1, 0.0, True, ())


def stage_grid(world: World, state: SessionState) -> int:
    """The grid the stage is on (cassettes; 0 otherwise)."""
    if world.cassette is None:
        return 0
    if state.stage_square >= 0:
        return int(world.square_grid[state.stage_square])
    return int(world.cassette[state.current])


def step(world: World, state: SessionState, action: int) -> StepResult:
    """One action: a hole to expose (``0 .. N-1``) or, staged, a square to image (``N .. N+S-1``)."""
    if action >= world.n_holes:  # a square, or out of range (image_square says which)
        return image_square(world, state, action - world.n_holes)
    return expose(world, state, action)


def image_square(world: World, state: SessionState, square: int) -> StepResult:
    """Move the stage to ``square`` and image it (rules 8-9): its holes and predictions become known."""
    if not world.staged:
        raise InputError(
            f"action {world.n_holes + square}: square actions exist only with acquisition='staged' "
            f"(this session's actions are holes 0..{world.n_holes - 1})"
        )
    if not 0 <= square < world.n_squares:
        raise InputError(
            f"action {world.n_holes + square} out of range: squares are actions {world.n_holes}.."
            f"{world.n_holes + world.n_squares - 1}"
        )
    if state.imaged[square]:
        return _costed_no_op(world, state)
    minutes = world.square_minutes
    if world.cassette is not None:  # rule 11: on another grid, the exchange first
        grid = int(world.square_grid[square])
        if grid != stage_grid(world, state):
            minutes += world.exchange_minutes
            state.grid_exchanges += 1
        state.grid_minutes[grid] += minutes
    state.elapsed += minutes
    state.stage_square = int(square)
    _show_square(world, state, int(square))
    return StepResult(minutes, IMAGE_SQUARE_LEVEL, 0.0, False, ())


def expose(world: World, state: SessionState, hole: int) -> StepResult:
    """Move to ``hole`` and expose it; update ``state`` in place (see the module's rules)."""
    if not 0 <= hole < world.n_holes:
        raise InputError(f"action {hole} out of range: holes are 0..{world.n_holes - 1}")
    if state.visited[hole] or (state.shown is not None and not state.shown[hole]):
        return _costed_no_op(world, state)
    if state.stage_square < 0:
        level = move_level(world, state.current, hole)
    else:  # rule 8: from a square just imaged, no patch is shared
        patch, square, tile = world.groups
        square_from = state.stage_square
        level = int(move_level_of(world.square_tile[square_from] == tile[hole], square_from == square[hole], False))
        state.stage_square = -1
    minutes = world.profile.minutes[level]
    reward = float(world.exposure_reward[hole, level])
    if world.cassette is not None:
        minutes, level, reward = _cassette_move(world, state, hole, minutes, level, reward)
    state.elapsed += minutes
    state.current = int(hole)
    if level < len(state.moves):
        state.moves[level] += 1
    state.exposures.append(int(hole))
    state.exposure_minutes.append(state.elapsed)
    state.rewards.append(reward)
    _mark_visited(world, state, hole)
    revealed: list[int] = []
    if world.feedback.mode == "inspection":
        revealed = [int(hole)]
    elif world.feedback.mode == "queue":
        state.pending.append(int(hole))
        if len(state.pending) >= world.feedback.batch:
            revealed, state.pending = state.pending, []
    _reveal(world, state, revealed)
    return StepResult(minutes, level, reward, False, tuple(revealed))


def _cassette_move(
    world: World, state: SessionState, hole: int, minutes: float, level: int, reward: float
) -> tuple[float, int, float]:
    """Rules 11-12: a move to another grid is an exchange; the minutes count for the hole's grid."""
    grid = int(world.cassette[hole])
    if grid != stage_grid(world, state):
        minutes, level, reward = world.exchange_minutes, GRID_EXCHANGE_LEVEL, float(world.exchange_reward[hole])
        state.grid_exchanges += 1
    state.grid_minutes[grid] += minutes
    return minutes, level, reward


def cassette_world(worlds: list[World]) -> World:
    """One session over several grids (a cassette): the worlds' grids side by side, ids offset,
    each grid a level above its tiles (rules 11-12). The worlds share the profile and the rules
    (threshold, duration, feedback, partial reward) of the first; the session is the first's."""
    if len(worlds) < 2:
        raise InputError(f"a cassette holds 2 grids or more, got {len(worlds)}")
    first = worlds[0]
    for world in worlds[1:]:
        for name in ("threshold", "partial_reward", "feedback", "acquisition"):
            if getattr(world, name) != getattr(first, name):
                raise InputError(f"a cassette's grids must share their rules; {name!r} differs between its grids")
    grids = [world.grid for world in worlds]
    offsets = {
        name: np.cumsum([0] + [int(getattr(g, name).max()) + 1 for g in grids])[:-1]
        for name in ("tile", "square", "patch")
    }
    # Square centres side by side for drawing: each grid's frame shifted right of the previous one.
    shift, squares_xy = 0.0, []
    for g in grids:
        xy = np.asarray(g.square_xy_um, dtype=np.float64)
        squares_xy.append(xy + [shift - xy[:, 0].min(), 0.0])
        shift += float(np.ptp(xy[:, 0])) + 500.0
    cat = np.concatenate
    grid = Grid(
        name=f"cassette of {len(grids)} {grids[0].name}"
        if len({g.name for g in grids}) == 1
        else "cassette:" + "+".join(g.name for g in grids),
        tile=cat([g.tile + offsets["tile"][i] for i, g in enumerate(grids)]).astype(np.int32),
        square=cat([g.square + offsets["square"][i] for i, g in enumerate(grids)]).astype(np.int32),
        patch=cat([g.patch + offsets["patch"][i] for i, g in enumerate(grids)]).astype(np.int32),
        x_um=cat([g.x_um for g in grids]),
        y_um=cat([g.y_um for g in grids]),
        ctf=cat([g.ctf for g in grids]),
        confidence=cat([g.confidence for g in grids]),
        failed=cat([g.failed for g in grids]),
        hole_names=tuple(f"g{i}:{name}" for i, g in enumerate(grids) for name in g.hole_names),
        square_xy_um=cat(squares_xy),
        pitch_um=first.grid.pitch_um,
        meta={"cassette": [dict(g.meta) for g in grids], "seed": first.grid.meta.get("seed", 0)},
    )
    return World(
        grid=grid,
        predicted_ctf=cat([world.predicted_ctf for world in worlds]),
        profile=first.profile,
        threshold=first.threshold,
        duration=first.duration,
        partial_reward=first.partial_reward,
        feedback=first.feedback,
        acquisition=first.acquisition,
        cassette=np.repeat(np.arange(len(grids)), [g.n_holes for g in grids]),
    )


def is_over(world: World, state: SessionState) -> bool:
    """True when the elapsed minutes exceed the duration or every hole is visited."""
    return state.elapsed > world.duration or len(state.exposures) + 1 >= world.n_holes


def time_left(world: World, state: SessionState) -> float:
    """Minutes left in the session (0 once over)."""
    return max(world.duration - state.elapsed, 0.0)


# ---- the atlas (staged acquisition) ------------------------------------------------------------

#: Square size classes of the atlas, by holes per square: < 50, 50-100, 100-150, 150-200, >= 200.
SIZE_CLASS_EDGES = np.array([50.0, 100.0, 150.0, 200.0])
#: At ``atlas_noise`` 1: the atlas regressor's error on a square's good fraction (logit scale) and on
#: its hole count (log scale). Assumptions: no measured square-level regressor is public.
ATLAS_LOGIT_ERROR = 0.8
ATLAS_LOG_SIZE_ERROR = 0.25


@dataclass(frozen=True, eq=False)
class Atlas:
    """What the atlas shows of every square before it is imaged (staged acquisition).

    Attributes:
        square_tile: (S,) the tile of each square.
        size_class: (S,) int8, a noisy size class (``SIZE_CLASS_EDGES``: 0 smallest .. 4 largest).
        good_fraction: (S,) a noisy estimate of the share of the square's holes that are good,
            from a square-level "atlas regressor" whose error grows with ``noise``.
    """

    square_tile: np.ndarray
    size_class: np.ndarray
    good_fraction: np.ndarray


def make_atlas(world: World, noise: float, seed: int) -> Atlas:
    """The atlas of ``world``'s squares, its errors drawn from ``seed`` (0 noise: exact classes and fractions)."""
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not np.isfinite(noise) or not 0 <= noise <= 5:
        raise InputError(f"argument 'atlas_noise': expected a number from 0 (exact) to 5, got {noise!r}")
    rng = np.random.default_rng([int(seed), 0xA71A5])
    square = world.groups[1]
    holes = world.group_sizes[1].astype(np.float64)
    good = np.bincount(square, weights=world.true_good, minlength=len(holes)) / holes
    logit = np.log(np.clip(good, 0.01, 0.99) / (1.0 - np.clip(good, 0.01, 0.99)))
    logit = logit + rng.normal(0.0, ATLAS_LOGIT_ERROR * noise, size=len(holes))
    estimate = np.where(noise > 0, 1.0 / (1.0 + np.exp(-logit)), good)
    size = holes * np.exp(rng.normal(0.0, ATLAS_LOG_SIZE_ERROR * noise, size=len(holes)))
    arrays = (world.square_tile.copy(), np.searchsorted(SIZE_CLASS_EDGES, size, side="right").astype(np.int8), estimate)
    for array in arrays:
        array.flags.writeable = False
    return Atlas(*arrays)
