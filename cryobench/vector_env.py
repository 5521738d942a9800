"""B sessions on one grid stepped in one numpy call: ``gym.make_vec(id, num_envs=B)``.

:class:`CryoEMVectorEnv` keeps the sessions' state as (B, ...) arrays and applies the
simulator's rules (``cryobench.simulator``, rules 1-6) to all of them at once, so a step costs
a few dozen numpy calls whatever B is. Session ``i`` follows exactly the trajectory of a
single ``CryoEMSessionEnv`` with the same arguments reset with seed ``seed + i`` (tested):
the same start holes, minutes, rewards and observations, bit for bit.

Paper acquisition on one grid, one fixed world (the environments of the leaderboards and of
training on a card's world); staged sessions, cassettes and ``new_world_each_reset`` use
``vectorization_mode="sync"`` or ``"async"`` of the single environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cryobench.candidates import N_CANDIDATES, best_unvisited_holes, select_candidates
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.features import group_values, hole_groups, hole_rows, session_features
from cryobench.grid import CTF_CAP
from cryobench.rules import move_level


class CryoEMVectorEnv(VectorEnv):
    """``num_envs`` sessions of one cryobench environment, stepped together.

    Takes the single environment's arguments (``cryobench.env.CryoEMSessionEnv``), with
    ``observation="compact"`` the fast choice (a full observation copies N x 42 floats per
    session and step). Spaces are the single environment's, batched. Autoreset as gymnasium
    1.x's default (``AutoresetMode.NEXT_STEP``): the step after a session's end resets it
    (its action is ignored, reward 0, not terminated) and returns its first observation.

    ``info`` holds per session ``elapsed_minutes``, ``exposures``, ``invalid_action`` and,
    compact, ``hole`` (the hole exposed; -1 for an empty slot and an autoreset), each with its ``_`` mask.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise InputError(f"argument 'num_envs': expected a positive integer, got {num_envs!r}")
        single = CryoEMSessionEnv(**kwargs)
        world = single.world
        if world.staged or world.cassette is not None or single._new_world_each_reset:
            raise InputError(
                "the batched environment runs paper sessions on one fixed world (no acquisition='staged', "
                "grids or new_world_each_reset); use gym.make_vec(..., vectorization_mode='sync') for those"
            )
        if kwargs.get("render_mode") is not None:
            raise InputError(
                "argument 'render_mode': the batched environment does not render; use a single environment"
            )
        self.world, self.num_envs = world, int(num_envs)
        self.observation_mode, self._mask_type = single.observation_mode, single._mask_type
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._minutes = np.asarray(world.profile.minutes, dtype=np.float64)
        self._ctf = world.grid.ctf.astype(np.float64)
        self._sessions = np.arange(self.num_envs)
        b, n = self.num_envs, world.n_holes
        self.visited = np.zeros((b, n), dtype=bool)
        self.revealed = np.zeros((b, n), dtype=bool)
        self.revealed_ctf = np.zeros((b, n), dtype=np.float64)
        self.current = np.zeros(b, dtype=np.int64)
        self.elapsed = np.zeros(b, dtype=np.float64)
        self.exposures = np.zeros(b, dtype=np.int64)
        # The group tables of every level in one array (patches, then squares, then tiles), and a view per level.
        self._initial_table = np.concatenate(world.initial_tables)
        self._table = np.repeat(self._initial_table[None], b, axis=0)
        bounds = np.cumsum([len(table) for table in world.initial_tables])[:-1]
        self.tables = tuple(np.split(self._table, bounds, axis=1))
        self._hole_groups = hole_groups(world)
        self._values = group_values(world, self._table)  # compact: kept up to date group by group
        batch = world.feedback.batch if world.feedback.mode == "queue" else 1
        self.pending = np.zeros((b, batch), dtype=np.int64)
        self.n_pending = np.zeros(b, dtype=np.int64)
        self._best = np.zeros((b, len(world.group_sizes[0])), dtype=np.int64)
        self._candidates = np.zeros((b, N_CANDIDATES), dtype=np.int64)
        self._over = np.zeros(b, dtype=bool)
        self._rngs: list[np.random.Generator | None] = [None] * b
        self._started = False

    # ---- gymnasium API --------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every session (or those of ``options["reset_mask"]``); ``seed`` an int (session
        ``i`` gets ``seed + i``, as gymnasium's vector environments) or one seed per session."""
        if seed is None or isinstance(seed, int | np.integer):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        elif len(seed) != self.num_envs:
            raise InputError(f"argument 'seed': expected an integer or {self.num_envs} seeds, got {len(seed)}")
        else:
            seeds = list(seed)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise InputError(f"option 'reset_mask': expected {self.num_envs} booleans, got shape {mask.shape}")
        for i in np.flatnonzero(mask):
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        self._reset_sessions(np.flatnonzero(mask))
        self._started = True
        return self._observation(), self._info(np.zeros(self.num_envs, dtype=bool), None)

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = self._actions(actions)
        restart = np.flatnonzero(self._over)
        if self.observation_mode == "compact":
            holes = self._candidates[self._sessions, actions]
            target = np.where(holes >= 0, holes, self.current)  # an empty slot: the current hole, a costed no-op
        else:
            holes = target = actions
        rewards, invalid = self._expose(target)
        if len(restart):  # NEXT_STEP autoreset: these sessions ignore their action and start again
            rewards[restart], invalid[restart] = 0.0, False
            if self.observation_mode == "compact":
                holes = np.where(self._over, -1, holes)  # nothing exposed
            self._reset_sessions(restart)
        terminated = (self.elapsed > self.world.duration) | (self.exposures + 1 >= self.world.n_holes)
        self._over = terminated.copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._observation(), rewards, terminated, truncated, self._info(invalid, holes)

    # ---- the rules, on every session at once -------------------------------------------
    def _actions(self, actions) -> np.ndarray:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise InputError(
                f"actions: expected {self.num_envs} integers (one per session), got {actions.dtype} of shape "
                f"{actions.shape}"
            )
        high = self.single_action_space.n
        if actions.min() < 0 or actions.max() >= high:
            bad = actions[(actions < 0) | (actions >= high)][0]
            raise InputError(f"action {bad} out of range: actions are 0..{high - 1}")
        return actions.astype(np.int64, copy=False)

    def _reset_sessions(self, sessions: np.ndarray) -> None:
        """Start the sessions ``sessions`` afresh, each at a hole drawn from its own generator
        (rule 1: visited, free, not an exposure), as ``CryoEMSessionEnv.reset``."""
        world = self.world
        starts = np.array([int(self._rngs[i].integers(world.n_holes)) for i in sessions], dtype=np.int64)
        self.visited[sessions] = False
        self.revealed[sessions] = False
        self.revealed_ctf[sessions] = 0.0
        self.elapsed[sessions] = 0.0
        self.exposures[sessions] = 0
        self.n_pending[sessions] = 0
        self._over[sessions] = False
        self._table[sessions] = self._initial_table
        self.current[sessions] = starts
        self._mark_visited(sessions, starts)
        if self.observation_mode == "compact":
            self._best[sessions] = best_unvisited_holes(world, self.visited[sessions])
            self._values[sessions] = group_values(world, self._table[sessions])

    def _mark_visited(self, sessions: np.ndarray, holes: np.ndarray) -> None:
        """Visit ``holes`` (one per session of ``sessions``): its patch, square and tile rows in one update."""
        self.visited[sessions, holes] = True
        self._table[sessions[:, None], self._hole_groups[holes]] += self.world.visit_delta[holes][:, None]

    def _reveal(self, sessions: np.ndarray, holes: np.ndarray) -> None:
        """Reveal ``holes`` (one per entry of ``sessions``; a session may repeat: np.add.at)."""
        self.revealed[sessions, holes] = True
        self.revealed_ctf[sessions, holes] = self._ctf[holes]
        np.add.at(self._table, (sessions[:, None], self._hole_groups[holes]), self.world.reveal_delta[holes][:, None])

    def _expose(self, holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``simulator.expose`` on every session (rules 2-6); returns rewards and invalid flags."""
        world, sessions = self.world, self._sessions
        patch, square, tile = world.groups
        invalid = self.visited[sessions, holes]
        current = self.current
        same_tile, same_square = tile[current] == tile[holes], square[current] == square[holes]
        level = move_level(same_tile, same_square, patch[current] == patch[holes])
        level = np.where(invalid, 0, level)
        self.elapsed += self._minutes[level]
        rewards = np.where(invalid, 0.0, world.exposure_reward[holes, level])
        valid = np.flatnonzero(~invalid)
        exposed = holes[valid]
        self.current[valid] = exposed
        self.exposures[valid] += 1
        self._mark_visited(valid, exposed)
        mode = world.feedback.mode
        if mode == "inspection":
            self._reveal(valid, exposed)
        elif mode == "queue":
            self.pending[valid, self.n_pending[valid]] = exposed
            self.n_pending[valid] += 1
            full = np.flatnonzero(self.n_pending == self.pending.shape[1])
            if len(full):
                self._reveal(np.repeat(full, self.pending.shape[1]), self.pending[full].ravel())
                self.n_pending[full] = 0
                if self.observation_mode == "compact":  # the revealed holes' groups changed too
                    groups = self._hole_groups[self.pending[full]].reshape(len(full), -1)
                    self._values[full[:, None], groups] = group_values(world, self._table[full], groups)
        if self.observation_mode == "compact":  # the exposed hole's groups and patch's best hole changed
            touched = patch[holes]
            self._best[sessions, touched] = best_unvisited_holes(world, self.visited, touched[:, None])[:, 0]
            groups = self._hole_groups[holes]
            self._values[sessions[:, None], groups] = group_values(world, self._table, groups)
        return rewards, invalid

    # ---- observations ------------------------------------------------------------------
    def _time_left(self) -> np.ndarray:
        return np.maximum(self.world.duration - self.elapsed, 0.0).astype(np.float32)[:, None]

    def _observation(self) -> dict[str, np.ndarray]:
        world = self.world
        if self.observation_mode == "compact":
            holes = select_candidates(world, self._best, self.current)
            self._candidates = holes
            filled = holes >= 0
            features = hole_rows(
                world,
                self._values,
                self.current,
                self.elapsed,
                self.visited,
                self.revealed,
                self.revealed_ctf,
                np.where(filled, holes, 0),
            )
            features[~filled] = 0.0
            return {
                "candidate_features": features,
                "candidate_holes": holes,
                "time_left": self._time_left(),
                "current_hole": self.current.copy(),
                "action_mask": filled.astype(self._mask_type),
            }
        features = session_features(
            world, self.tables, self.current, self.elapsed, self.visited, self.revealed, self.revealed_ctf
        )
        return {
            "features": features,
            "revealed": self.revealed.astype(np.int8),
            "revealed_ctf": np.minimum(self.revealed_ctf, CTF_CAP).astype(np.float32),
            "time_left": self._time_left(),
            "current_hole": self.current.copy(),
            "action_mask": (~self.visited).astype(self._mask_type),
        }

    def _info(self, invalid: np.ndarray, holes: np.ndarray | None) -> dict[str, np.ndarray]:
        info = {
            "elapsed_minutes": self.elapsed.copy(),
            "exposures": self.exposures.copy(),
            "invalid_action": invalid,
        }
        if self.observation_mode == "compact" and holes is not None:
            info["hole"] = holes
        every = np.ones(self.num_envs, dtype=bool)
        info.update({f"_{key}": every for key in list(info)})
        return info
