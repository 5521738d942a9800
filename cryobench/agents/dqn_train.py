"""Training cryoRL's deep-Q network: n-step double DQN on many sessions stepped in lockstep.

Read top to bottom:

1. :func:`training_worlds`: the worlds to learn on. The training environment's own world plus
   ``extra_worlds`` more of the same layout (twins: new world seeds; measured data: new draws
   of a calibrated regressor on the same holes), so the network does not learn one grid by heart.
   :class:`WorldIndex`: one world's patch contexts rebuilt from compact states (visited and
   revealed masks, current hole, elapsed minutes), what the replay stores instead of feature
   matrices (a test checks them against ``cryobench.features.hole_features``).
2. :class:`CompactReplay`: per parallel session, a ring of compact states (visited and revealed
   masks as packed bits, current hole, elapsed minutes, step in episode, world), actions,
   rewards and ends. Contexts are rebuilt at sampling time (``WorldIndex``): about 330 bytes
   per step on the 1,197-hole Aldolase train split, 7 MB for the paper's 20,000 steps.
   :func:`demonstrations`: another agent's sessions on the same worlds in a replay of their own
   (DQfD, Hester et al. 2018), when ``demonstrator`` is set.
3. :class:`Sessions`: ``num_envs`` simulator sessions (``cryobench.simulator``) stepped together,
   with one batched network call per step.
4. The losses: :func:`td_loss` (n-step double DQN) and :func:`margin_loss` (DQfD's large margin
   on demonstrations), summed per batch by :func:`batch_loss`.
5. Training, in phases that :func:`train_on_worlds` runs top to bottom on one :class:`TrainingRun`:
   :func:`start_run` (seeds, networks, sessions, replays, demonstrations), :func:`pretrain`
   (demonstrations alone), then in a loop :func:`collect` (one epsilon-greedy step of every
   session), :func:`learn` (the :func:`update` steps due: one per ``train_every`` environment
   steps, on own and demonstrated transitions, with the target sync), and every ``validate_every``
   steps :func:`validate` (greedy sessions on seeds and worlds unused in training) and
   :func:`checkpoint` (the best validation network kept), with a CSV log and a progress bar.
   Every hyperparameter is a field of ``DQNConfig``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cryobench import simulator
from cryobench.agents.common import Hierarchy
from cryobench.agents.dqn import (
    PLAN_FEATURE_NAMES,
    DQNConfig,
    HoleQNetwork,
    make_network,
    plan_columns,
    save_checkpoint,
)
from cryobench.errors import InputError
from cryobench.features import (
    N_FEATURES,
    N_RELIABILITY_FEATURES,
    PREDICTED_CTF_COLUMN,
    first_hole_of_each_patch,
    patch_features,
    predicted_ctf_feature,
    reliability_features,
)
from cryobench.grid import CTF_CAP
from cryobench.registration import make_env
from cryobench.seeding import SEED_BOUND, draw_training_seeds, refuse_test_world


# ---- 1. worlds ---------------------------------------------------------------------------------
def training_worlds(env_name: str, env_kwargs: dict[str, Any], config: DQNConfig, seed: int) -> list[simulator.World]:
    """The training environment's world first, then ``extra_worlds`` more with the same holes' layout.

    With ``training_pool`` (environment ``training``): that many worlds drawn by cryobench/Training-v0.
    """
    if config.training_pool > 0:
        if make_env_id(env_name) != TRAINING_ENV_ID:
            raise InputError(
                f"DQN hyperparameter 'training_pool' draws protocol v2's training worlds: train with --env training "
                f"(got --env {env_name}), or add -H training_pool=0 to train on that environment's worlds"
            )
        if env_kwargs:
            raise InputError(
                f"--env training with training_pool draws its worlds and conditions itself; drop -e "
                f"{', '.join(sorted(env_kwargs))} (the twins are hyperparameter 'training_twins')"
            )
        rng = np.random.default_rng([seed, 3])
        return pool_worlds(_twins(config.training_twins), config.training_pool, rng, config.training_regressors)
    env_kwargs = dict(env_kwargs)
    env_kwargs.pop("new_world_each_reset", None)  # the pool below plays that role
    for name in ("world_seed", "layout_seed"):  # the train/test rule (DEVELOPERS.md)
        refuse_test_world(env_kwargs.get(name), f"training argument {name!r}")
    base = make_env(env_name, env_kwargs).unwrapped.world
    worlds = [base]
    rng = np.random.default_rng(seed)
    noise_levels = _noise_levels(config.extra_worlds_noise)
    for i, world_seed in enumerate(draw_training_seeds(rng, config.extra_worlds, low=1)):
        kwargs = dict(env_kwargs, world_seed=int(world_seed))
        if noise_levels:
            kwargs["noise"] = noise_levels[i % len(noise_levels)]
        if "data" in kwargs and "regressor" not in kwargs and config.extra_worlds_regressor:
            kwargs["regressor"] = config.extra_worlds_regressor  # measured predictions are one fixed draw
        world = make_env(env_name, kwargs).unwrapped.world
        if not np.array_equal(world.grid.patch, base.grid.patch):
            raise InputError(f"environment {env_name}: world seeds change the grid's layout; cannot pool them")
        worlds.append(world)
    for world_seed in draw_training_seeds(rng, config.extra_twin_worlds if config.extra_twin else 0, low=1):
        kwargs = {"split": config.extra_twin_split, "world_seed": int(world_seed)}
        try:
            worlds.append(make_env(config.extra_twin, kwargs).unwrapped.world)
        except InputError as exc:
            raise InputError(f"DQN hyperparameters 'extra_twin' / 'extra_twin_split': {exc}") from None
    return worlds


TRAINING_ENV_ID = "cryobench/Training-v0"


def make_env_id(env_name: str) -> str:
    """The registered id of an environment given by id or short name."""
    from cryobench.registration import resolve_env_id

    return resolve_env_id(env_name)


def _twins(text: str) -> list[str]:
    twins = [part.strip() for part in text.split(",") if part.strip()]
    if not twins:
        raise InputError("DQN hyperparameter 'training_twins': expected twin names such as 'aldolase,rnapii', got ''")
    return twins


def pool_worlds(
    twins: list[str], count: int, rng: np.random.Generator, regressors: str = "all"
) -> list[simulator.World]:
    """``count`` worlds drawn by cryobench/Training-v0 (training layouts, quality and conditions), twins in turn.

    Each world is the one a ``TrainingWorldsEnv(dataset=twin)`` reset draws from a seed of ``rng``:
    world and layout seeds below 2**30 (never a test world), conditions from ``draw_conditions``.
    """
    from cryobench.training_env import REGRESSOR_RANGES, TrainingWorldsEnv

    if regressors not in REGRESSOR_RANGES:
        raise InputError(
            f"DQN hyperparameter 'training_regressors': expected one of {', '.join(REGRESSOR_RANGES)}, "
            f"got {regressors!r}"
        )
    try:
        envs = [TrainingWorldsEnv(dataset=twin, regressors=regressors) for twin in twins]
    except InputError as exc:
        raise InputError(f"DQN hyperparameter 'training_twins': {exc}") from None
    worlds = []
    for i, reset_seed in enumerate(rng.integers(SEED_BOUND, size=count)):
        env = envs[i % len(envs)]
        env.reset(seed=int(reset_seed))
        refuse_test_world(env.world_seed, "a drawn training world")
        worlds.append(env.world)
    return worlds


def size_groups(worlds: list[simulator.World]) -> list[list[int]]:
    """Indices of the worlds with the same number of holes (one twin's layouts), first seen first."""
    sizes = list(dict.fromkeys(world.n_holes for world in worlds))
    return [[i for i, world in enumerate(worlds) if world.n_holes == size] for size in sizes]


def _noise_levels(text: str, name: str = "extra_worlds_noise") -> list[float]:
    """A comma-separated list of noise levels (hyperparameter ``name``) as numbers, with a clear error."""
    if not text.strip():
        return []
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(
            f"DQN hyperparameter {name!r}: expected comma-separated numbers such as '1,1.5,2', got {text!r}"
        ) from None


def layout_groups(worlds: list[simulator.World]) -> list[list[int]]:
    """Indices of the worlds that share a layout (the same holes in the same patches), first seen first."""
    groups: list[list[int]] = []
    for i, world in enumerate(worlds):
        for group in groups:
            if np.array_equal(worlds[group[0]].grid.patch, world.grid.patch):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers, the larger ones first."""
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]


def validation_worlds(config: DQNConfig) -> list[simulator.World]:
    """Held-out worlds for checkpoint selection (a split of ``validation_twin``, or the validation pool), never
    trained on; every one a training world (the train/test rule: selection never sees a test world)."""
    if config.validation_pool > 0:
        rng = np.random.default_rng([config.validation_seed, 5])  # the same worlds for every training seed
        return pool_worlds(_twins(config.training_twins), config.validation_pool, rng, config.training_regressors)
    if not config.validation_twin:
        return []
    levels = _noise_levels(config.validation_twin_noise, "validation_twin_noise")
    kwargs = [{"split": config.validation_twin_split, "noise": level} for level in levels] or [
        {"split": config.validation_twin_split}
    ]
    try:
        envs = [make_env(config.validation_twin, k).unwrapped for k in kwargs]
    except InputError as exc:
        raise InputError(f"DQN hyperparameters 'validation_twin' / 'validation_twin_split': {exc}") from None
    for env in envs:
        refuse_test_world(getattr(env, "world_seed", None), "DQN hyperparameter 'validation_twin'")
        if env.world.grid.meta.get("kind") == "measured" and config.validation_twin_split != "train":
            raise InputError(
                f"DQN hyperparameter 'validation_twin_split': {config.validation_twin!r} is measured data, whose "
                f"{config.validation_twin_split!r} split holds test holes; select on its 'train' split only"
            )
    return [env.world for env in envs]


class WorldIndex:
    """One world's patch contexts for many sessions at once, and the candidates of the target's maximum.

    The contexts are ``cryobench.features.patch_features`` of the group tables that
    ``simulator.recount_tables`` rebuilds from the masks a replay stores: the features are
    computed in one place, the environment's.
    """

    def __init__(self, world: simulator.World, reliability: bool = False, plan: bool = False) -> None:
        self.world = world
        # With the reliability or plan feature set the contexts carry its columns after the environment's.
        self.reliability = reliability
        self.plan = None
        if plan:  # the agent's columns from the environment's public layout, computed once per world
            from cryobench.env import CryoEMSessionEnv

            self.plan = plan_columns(Hierarchy.from_layout(CryoEMSessionEnv.from_world(world).layout))
        extra = N_RELIABILITY_FEATURES if reliability else len(PLAN_FEATURE_NAMES) if plan else 0
        self.n_features = N_FEATURES + extra
        grid = world.grid
        self.n_holes = world.n_holes
        self.hole_patch = grid.patch.astype(np.int64)
        self.n_patches = int(grid.patch.max()) + 1
        self.hole_pred = predicted_ctf_feature(world)
        self.patch_representative = first_hole_of_each_patch(self.hole_patch)
        self.patch_square = grid.square.astype(np.int64)[self.patch_representative]
        # What a revealed hole's revealed-CTF column reads (as cryobench.features writes it).
        self.ctf_feature = (np.minimum(grid.ctf, CTF_CAP) / CTF_CAP).astype(np.float32)
        # Holes sorted by patch, then predicted CTF: candidates for the target's maximum.
        self.sorted_holes = np.lexsort((world.predicted_ctf, grid.patch))
        self.sorted_patch = grid.patch[self.sorted_holes].astype(np.int64)
        self.segment_start = np.searchsorted(self.sorted_patch, self.sorted_patch, side="left")

    def candidates(self, visited: np.ndarray, per_patch: int) -> np.ndarray:
        """(S, P * per_patch) the ``per_patch`` unvisited holes of lowest predicted CTF of every patch; -1 pads."""
        unvisited = ~visited[:, self.sorted_holes]
        seen = np.cumsum(unvisited, axis=1)
        rank = seen - (seen[:, self.segment_start] - unvisited[:, self.segment_start]) - 1
        state, position = np.nonzero(unvisited & (rank < per_patch))
        out = np.full((len(visited), self.n_patches, per_patch), -1, dtype=np.int64)
        out[state, self.sorted_patch[position], rank[state, position]] = self.sorted_holes[position]
        return out.reshape(len(visited), -1)

    def context_of_masks(
        self, visited: np.ndarray, revealed: np.ndarray, current: np.ndarray, elapsed: np.ndarray
    ) -> np.ndarray:
        """Patch contexts (S, P, n_features) of sessions given by their masks (S, n_holes), current holes, minutes."""
        tables = simulator.recount_tables(self.world, visited, revealed)
        return self._with_reliability(patch_features(self.world, tables, current, elapsed), revealed)

    def context_of_state(self, state: simulator.SessionState) -> np.ndarray:
        """(P, n_features) context of one live session, from its incrementally kept tables."""
        tables = tuple(t[None] for t in state.tables)
        context = patch_features(self.world, tables, np.array([state.current]), np.array([state.elapsed]))
        return self._with_reliability(context, state.revealed[None])[0]

    def _with_reliability(self, context: np.ndarray, revealed: np.ndarray) -> np.ndarray:
        """The environment's context columns, then the reliability or plan columns when the network reads them."""
        if self.plan is not None:
            plan = np.broadcast_to(self.plan, (*context.shape[:2], self.plan.shape[1]))
            return np.concatenate([context, plan], axis=2)
        if not self.reliability:
            return context
        extra = reliability_features(
            self.hole_pred,
            revealed,
            np.broadcast_to(self.ctf_feature, revealed.shape),  # read at revealed holes only
            self.hole_patch,
            self.patch_square,
            self.world.threshold,
        )
        return np.concatenate([context, extra], axis=2)


# ---- 2. replay -----------------------------------------------------------------------------------
class CompactReplay:
    """Ring buffers of compact session states, one per parallel session (all written in lockstep)."""

    def __init__(self, capacity: int, num_envs: int, n_holes: int) -> None:
        self.length = max(capacity // num_envs, 64)
        self.num_envs = num_envs
        n_bytes = (n_holes + 7) // 8
        shape = (num_envs, self.length)
        self.visited = np.zeros(shape + (n_bytes,), dtype=np.uint8)
        self.revealed = np.zeros(shape + (n_bytes,), dtype=np.uint8)
        self.current = np.zeros(shape, dtype=np.int32)
        self.elapsed = np.zeros(shape, dtype=np.float32)
        self.episode_step = np.zeros(shape, dtype=np.int32)
        self.world = np.zeros(shape, dtype=np.int16)
        self.action = np.zeros(shape, dtype=np.int32)
        self.reward = np.zeros(shape, dtype=np.float32)
        self.minutes = np.zeros(shape, dtype=np.float32)  # the step's move minutes (discounting)
        self.done = np.zeros(shape, dtype=bool)
        self.n_holes = n_holes
        self.steps = 0  # steps written per session
        self.demonstrators: list[str] = []  # demonstrations: the agent that played each world

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))

    def add(
        self,
        states: list[simulator.SessionState],
        episode_step: np.ndarray,
        world_ids: np.ndarray,
        actions: np.ndarray,
    ) -> int:
        """Record one state per session before ``actions``; returns the position (see :meth:`outcome`)."""
        pos = self.steps % self.length
        for e, state in enumerate(states):
            self.visited[e, pos] = np.packbits(state.visited)
            self.revealed[e, pos] = np.packbits(state.revealed)
            self.current[e, pos] = state.current
            self.elapsed[e, pos] = state.elapsed
        self.episode_step[:, pos] = episode_step
        self.world[:, pos] = world_ids
        self.action[:, pos] = actions
        self.steps += 1
        return pos

    def outcome(self, pos: int, rewards: np.ndarray, dones: np.ndarray, minutes: np.ndarray) -> None:
        """What the actions recorded at ``pos`` earned, whether they ended the episode, and their minutes."""
        self.reward[:, pos], self.done[:, pos], self.minutes[:, pos] = rewards, dones, minutes

    def can_sample(self, config: DQNConfig) -> bool:
        return self.steps - 1 - config.n_step >= max(0, self.steps - self.length + config.history)

    def sample(self, batch_size: int, config: DQNConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n-step transitions: indices of the state histories at t and t + n, returns, bootstrap flags."""
        n, history = config.n_step, config.history
        low = max(0, self.steps - self.length + history)
        env = rng.integers(self.num_envs, size=batch_size)
        step = rng.integers(low, self.steps - n, size=batch_size)  # step + n is written
        ahead = step[:, None] + np.arange(n)[None]
        rewards = self.reward[env[:, None], ahead % self.length]
        dones = self.done[env[:, None], ahead % self.length]
        # alive[j]: no episode end among the first j steps; clock[j]: minutes or steps before step j.
        alive = np.concatenate([np.ones((batch_size, 1)), np.cumprod(1.0 - dones, axis=1)], axis=1)
        durations = (
            self.minutes[env[:, None], ahead % self.length] if config.discount_per_minute else np.ones((batch_size, n))
        )
        clock = np.concatenate([np.zeros((batch_size, 1)), np.cumsum(durations, axis=1)], axis=1)
        discount = config.gamma**clock * alive
        returns = (rewards * discount[:, :n]).sum(axis=1)
        back = np.arange(history - 1, -1, -1)[None]  # oldest first

        def history_of(s: np.ndarray) -> np.ndarray:
            offsets = np.minimum(back, self.episode_step[env, s % self.length][:, None])
            return (s[:, None] - offsets) % self.length

        return {
            "env": env,
            "now": history_of(step),
            "next": history_of(step + n),
            "action": self.action[env, step % self.length],
            "world": self.world[env, step % self.length],
            "returns": returns.astype(np.float32),
            "bootstrap": discount[:, n].astype(np.float32),  # discount of the state n steps on (0 after an end)
        }

    def contexts(self, env: np.ndarray, positions: np.ndarray, indexes: list[WorldIndex]) -> np.ndarray:
        """Contexts (len, P, N_FEATURES) of stored states, rebuilt from their compact form."""
        visited = np.unpackbits(self.visited[env, positions], axis=-1, count=self.n_holes).astype(bool)
        revealed = np.unpackbits(self.revealed[env, positions], axis=-1, count=self.n_holes).astype(bool)
        worlds = self.world[env, positions]
        current, elapsed = self.current[env, positions], self.elapsed[env, positions]
        n_features = indexes[0].n_features
        out = np.zeros((len(env), max(index.n_patches for index in indexes), n_features), dtype=np.float32)
        for w in np.unique(worlds):
            rows = np.flatnonzero(worlds == w)
            context = indexes[w].context_of_masks(visited[rows], revealed[rows], current[rows], elapsed[rows])
            out[rows, : indexes[w].n_patches] = context  # layouts with fewer patches: zero rows no hole uses
        return out, visited


def demonstrations(
    worlds: list[simulator.World], config: DQNConfig, seed: int, progress: bool = False, stream: int = 0
) -> CompactReplay | None:
    """The demonstrators' sessions on every training world as one replay (DQfD); None without one.

    With several demonstrators (comma-separated) each plays the world's episodes from the same seeds
    and the one with the most good exposures there is replayed into the demonstrations (ties: the
    first named); ``replay.demonstrators`` names the one chosen per world.
    """
    names = [name.strip() for name in config.demonstrator.split(",") if name.strip()]
    if not names:
        return None
    agents = [_demonstrator(name) for name in names]
    longest = max(int(w.duration / min(w.profile.minutes)) + 2 for w in worlds)  # exposures a session can hold
    demos = CompactReplay(len(worlds) * config.demo_episodes_per_world * longest, 1, worlds[0].n_holes)
    # apart from the stream that drives training; one stream per layout
    rng = np.random.default_rng([seed, 1] if stream == 0 else [seed, 1, stream])
    from tqdm.auto import tqdm

    from cryobench.env import CryoEMSessionEnv

    label = f"{config.demonstrator} demonstrations"
    for world_id, world in enumerate(tqdm(worlds, desc=label, unit="world", disable=not progress)):
        env = CryoEMSessionEnv.from_world(world)
        episode_seeds = [int(s) for s in rng.integers(SEED_BOUND, size=config.demo_episodes_per_world)]
        best = 0
        if len(agents) > 1:  # scored on this world first, then the best one's sessions recorded
            reveals = world.feedback.reveals  # an agent that learns from feedback cannot run without it
            goods = [
                sum(_play(env, agent, seed, episode_seeds)) if reveals or not agent.needs_feedback else -1
                for agent in agents
            ]
            best = int(np.argmax(goods))
        demos.demonstrators.append(names[best])
        _play(env, agents[best], seed, episode_seeds, demos, world_id)
    return demos


def _demonstrator(name: str):
    from cryobench.agents.registry import load_agent

    try:
        agent, _ = load_agent(name)
    except InputError as exc:
        raise InputError(f"DQN hyperparameter 'demonstrator': {exc}") from None
    if agent.uses_ground_truth:
        raise InputError(
            f"DQN demonstrator {name!r} reads the ground truth (an upper bound); "
            "a real agent may only learn from agents that see what it sees"
        )
    return agent


def _play(
    env, agent, seed: int, episode_seeds: list[int], demos: CompactReplay | None = None, world_id: int = 0
) -> list[int]:
    """``agent``'s episodes on ``env`` from ``episode_seeds`` (recorded in ``demos`` if given); their good exposures."""
    agent.fit(env, seed=seed)
    goods = []
    for episode_seed in episode_seeds:
        obs, info = env.reset(seed=episode_seed)
        agent.reset(env, episode_seed)
        step, over = 0, False
        while not over:
            action = int(agent.act(obs, info))
            if demos is None:
                obs, _, over, _, info = env.step(action)
                continue
            elapsed = env.state.elapsed
            pos = demos.add([env.state], np.array([step]), np.array([world_id]), np.array([action]))
            obs, reward, over, _, info = env.step(action)
            demos.outcome(pos, np.array([reward]), np.array([over]), np.array([env.state.elapsed - elapsed]))
            step += 1
        goods.append(int(env.unwrapped.world.true_good[env.state.exposures].sum()))
    return goods


# ---- 3. sessions in lockstep -----------------------------------------------------------------
class Sessions:
    """``num_envs`` simulator sessions on worlds drawn from a pool, each with its context history."""

    def __init__(self, indexes: list[WorldIndex], num_envs: int, history: int, rng: np.random.Generator) -> None:
        self.indexes, self.history, self.rng = indexes, history, rng
        self.world_ids = np.zeros(num_envs, dtype=np.int64)
        self.episode_step = np.zeros(num_envs, dtype=np.int64)
        self.states: list[simulator.SessionState] = [None] * num_envs  # type: ignore[list-item]
        # Layouts of one twin differ in their patches: contexts are padded to the most patches (zero rows).
        self.n_patches = max(index.n_patches for index in indexes)
        self.context = np.zeros((num_envs, history, self.n_patches, indexes[0].n_features), dtype=np.float32)
        for e in range(num_envs):
            self.start(e)

    def start(self, e: int, world_id: int | None = None, start_hole: int | None = None) -> None:
        if world_id is None:
            world_id = int(self.rng.integers(len(self.indexes)))
        index = self.indexes[world_id]
        if start_hole is None:
            start_hole = int(self.rng.integers(index.n_holes))
        self.world_ids[e], self.episode_step[e] = world_id, 0
        self.states[e] = simulator.start_session(index.world, start_hole)
        self.context[e] = 0.0
        self.context[e, :, : index.n_patches] = index.context_of_state(self.states[e])  # repeated over the history

    def stacked_context(self) -> torch.Tensor:
        s = self.context
        return torch.from_numpy(s.transpose(0, 2, 1, 3).reshape(s.shape[0], s.shape[2], -1))

    def q_values(self, network: HoleQNetwork) -> np.ndarray:
        """(num_envs, n_holes) Q-values, -inf on visited holes."""
        pred = torch.from_numpy(np.stack([self.indexes[w].hole_pred for w in self.world_ids]))
        with torch.inference_mode():
            q = network.unvisited_q(self.stacked_context(), self.hole_patch, pred).numpy()
        visited = np.stack([s.visited for s in self.states])
        return np.where(visited, -np.inf, q)

    @property
    def hole_patch(self) -> torch.Tensor:
        """(num_envs, n_holes) every session's holes' patch ids (layouts of one twin differ)."""
        return torch.from_numpy(np.stack([self.indexes[w].hole_patch for w in self.world_ids]))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expose one hole per session; returns rewards and episode ends (sessions are not restarted)."""
        rewards, dones = np.zeros(len(actions), dtype=np.float32), np.zeros(len(actions), dtype=bool)
        for e, action in enumerate(actions):
            index, state = self.indexes[self.world_ids[e]], self.states[e]
            rewards[e] = simulator.expose(index.world, state, int(action)).reward
            dones[e] = simulator.is_over(index.world, state)
            self.episode_step[e] += 1
            self.context[e, :-1] = self.context[e, 1:]
            self.context[e, -1, : index.n_patches] = index.context_of_state(state)
        return rewards, dones


def greedy_good_exposures(network: HoleQNetwork, index: WorldIndex, seeds: list[int], history: int) -> np.ndarray:
    """Good exposures of greedy sessions on one world, one per seed (start hole from the seed)."""
    sessions = Sessions([index], len(seeds), history, np.random.default_rng(0))
    for e, seed in enumerate(seeds):
        sessions.start(e, 0, int(np.random.default_rng(seed).integers(index.n_holes)))
    running = np.ones(len(seeds), dtype=bool)
    while running.any():
        actions = np.argmax(sessions.q_values(network), axis=1)
        for e in np.flatnonzero(running):
            state = sessions.states[e]
            simulator.expose(index.world, state, int(actions[e]))
            running[e] = not simulator.is_over(index.world, state)
            sessions.context[e, :-1] = sessions.context[e, 1:]
            sessions.context[e, -1] = index.context_of_state(state)
    return np.array([int(index.world.true_good[s.exposures].sum()) for s in sessions.states])


# ---- 4. the losses ---------------------------------------------------------------------------------
def _state_action_input(
    context: torch.Tensor, patch: torch.Tensor, pred: torch.Tensor, n_features: int
) -> torch.Tensor:
    """Plain network input (B, history * n_features) of one unvisited hole per sample."""
    x = context[torch.arange(len(patch)), patch].clone()
    x[:, PREDICTED_CTF_COLUMN::n_features] = pred[:, None]
    return x


def transition_batch(
    replay: CompactReplay, batch_size: int, indexes: list[WorldIndex], config: DQNConfig, rng: np.random.Generator
) -> dict[str, Any]:
    """An n-step batch with the patch contexts of its states and of the states n steps on, as tensors."""
    batch = replay.sample(batch_size, config, rng)
    history = config.history
    positions = np.concatenate([batch["now"], batch["next"]], axis=1)  # (B, 2 * history)
    env = np.repeat(batch["env"], 2 * history)
    contexts, visited = replay.contexts(env, positions.ravel(), indexes)
    contexts = torch.from_numpy(contexts.reshape(batch_size, 2 * history, -1, indexes[0].n_features))
    stacked = contexts.permute(0, 2, 1, 3)  # (B, P, 2 * history, F)
    visited = visited.reshape(batch_size, 2 * history, -1)
    all_pred = torch.from_numpy(np.stack([index.hole_pred for index in indexes]))
    all_patch = torch.from_numpy(np.stack([index.hole_patch for index in indexes]))
    world = torch.from_numpy(batch["world"]).long()
    return {
        "world": batch["world"],
        "hole_patch": all_patch[world],  # (B, n_holes)
        "now": stacked[:, :, :history].reshape(batch_size, stacked.shape[1], -1),
        "next": stacked[:, :, history:].reshape(batch_size, stacked.shape[1], -1),
        "now_visited": visited[:, history - 1],
        "next_visited": visited[:, -1],
        "pred": all_pred[world],  # (B, n_holes)
        "action": torch.from_numpy(batch["action"]).long(),
        "returns": torch.from_numpy(batch["returns"]),
        "bootstrap": torch.from_numpy(batch["bootstrap"]),
    }


def td_loss(
    online: HoleQNetwork, target: HoleQNetwork, batch: dict[str, Any], indexes: list[WorldIndex], config: DQNConfig
) -> torch.Tensor:
    """Double-DQN n-step loss: the online network picks the next hole, the target network values it."""
    hole_patch, pred, action = batch["hole_patch"], batch["pred"], batch["action"]
    candidates = _target_candidates(batch["next_visited"], batch["world"], indexes, config.target_candidates_per_patch)
    valid = torch.from_numpy(candidates >= 0)
    candidates = torch.from_numpy(np.maximum(candidates, 0))
    with torch.no_grad():
        next_q = online.unvisited_q(batch["next"], hole_patch.gather(1, candidates), pred.gather(1, candidates))
        best = candidates.gather(1, next_q.masked_fill(~valid, -torch.inf).argmax(dim=1, keepdim=True))
        x_next = _state_action_input(
            batch["next"], hole_patch.gather(1, best)[:, 0], pred.gather(1, best)[:, 0], online.n_features
        )
        y = batch["returns"] + batch["bootstrap"] * valid.any(dim=1) * target(x_next)
    now = action[:, None]
    x_now = _state_action_input(
        batch["now"], hole_patch.gather(1, now)[:, 0], pred.gather(1, now)[:, 0], online.n_features
    )
    return torch.nn.functional.smooth_l1_loss(online(x_now), y)


def margin_loss(
    online: HoleQNetwork, batch: dict[str, Any], indexes: list[WorldIndex], config: DQNConfig
) -> torch.Tensor:
    """DQfD's large-margin loss on demonstrations: max_a [Q(s, a) + margin * (a != a_E)] - Q(s, a_E).

    The maximum runs over the same per-patch candidates as the target's (plus the demonstrator's hole).
    """
    action = batch["action"]
    candidates = _target_candidates(batch["now_visited"], batch["world"], indexes, config.target_candidates_per_patch)
    candidates = torch.cat([torch.from_numpy(candidates), action[:, None]], dim=1)
    valid = candidates >= 0
    candidates = candidates.clamp(min=0)
    q = online.unvisited_q(batch["now"], batch["hole_patch"].gather(1, candidates), batch["pred"].gather(1, candidates))
    margins = torch.where(candidates == action[:, None], 0.0, config.margin)
    best = (q + margins).masked_fill(~valid, -torch.inf).max(dim=1).values
    return (best - q[:, -1]).mean()


def batch_loss(
    online: HoleQNetwork,
    target: HoleQNetwork,
    replay: CompactReplay | None,
    batch_size: int,
    indexes: list[WorldIndex],
    config: DQNConfig,
    rng: np.random.Generator,
    demos: CompactReplay | None = None,
    demo_batch_size: int = 0,
) -> torch.Tensor:
    """TD loss on ``batch_size`` own transitions, TD and margin losses on ``demo_batch_size`` demonstrated ones."""
    loss = torch.zeros(())
    if replay is not None and batch_size > 0:
        loss = loss + td_loss(
            online, target, transition_batch(replay, batch_size, indexes, config, rng), indexes, config
        )
    if demos is not None and demo_batch_size > 0:
        batch = transition_batch(demos, demo_batch_size, indexes, config, rng)
        loss = loss + td_loss(online, target, batch, indexes, config)
        loss = loss + config.margin_weight * margin_loss(online, batch, indexes, config)
    return loss


def _target_candidates(
    visited: np.ndarray, worlds: np.ndarray, indexes: list[WorldIndex], per_patch: int
) -> np.ndarray:
    """Holes over which the target's maximum runs, (B, C) with -1 pads (see ``target_candidates_per_patch``)."""
    if per_patch <= 0:
        return np.where(visited, -1, np.arange(visited.shape[1])[None])
    out = np.full((len(visited), max(index.n_patches for index in indexes) * per_patch), -1, dtype=np.int64)
    for w in np.unique(worlds):
        rows = np.flatnonzero(worlds == w)
        out[rows, : indexes[w].n_patches * per_patch] = indexes[w].candidates(visited[rows], per_patch)
    return out


# ---- 5. training, phase by phase ------------------------------------------------------------------
#: Windows of the running means in the log and the progress bar (display only).
RECENT_EPISODES, RECENT_LOSSES = 50, 200


def train(
    config: DQNConfig,
    env_name: str,
    env_kwargs: dict[str, Any],
    seed: int,
    out: str | Path,
    log_dir: str | Path | None = None,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """``cryobench train --agent dqn``: train on an environment's worlds (see :func:`training_worlds`)."""
    worlds = training_worlds(env_name, env_kwargs, config, seed)
    meta = {"env": env_name, "env_kwargs": {k: str(v) for k, v in env_kwargs.items()}, "command": command}
    return train_on_worlds(config, worlds, seed, out, log_dir, progress, meta)


def train_on_worlds(
    config: DQNConfig,
    worlds: list[simulator.World],
    seed: int,
    out: str | Path,
    log_dir: str | Path | None = None,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on a pool of worlds; validate greedily on ``worlds[0]`` (and ``validation_twin``) with unused seeds.

    Worlds of several layouts are trained on together: each layout has its own sessions, replay and
    demonstrations, and ``num_envs`` and the batch sizes are shared out between them.
    Keeps the checkpoint with the best validation score at ``out``; returns a summary.
    """
    _warn_if_no_update_would_happen(config)
    run = start_run(config, worlds, seed, progress)
    out = Path(out)
    log_path = Path(log_dir) / "train_log.csv" if log_dir else out.with_suffix(".csv")
    with TrainingLog(log_path, log_dir) as log:
        if run.has_demonstrations and config.pretrain_steps > 0:
            pretrain(run, progress)
            validate_and_checkpoint(run, log, out, meta)
        bar = tqdm(total=config.total_steps, desc="dqn training", unit="step", disable=not progress)
        next_validation = config.validate_every
        while run.env_steps < config.total_steps:
            epsilon = collect(run)
            learn(run)
            if run.env_steps >= next_validation or run.env_steps >= config.total_steps:
                next_validation += config.validate_every
                validate_and_checkpoint(run, log, out, meta)
            bar.update(config.num_envs)
            bar.set_postfix(
                reward=_recent(run.episode_rewards, RECENT_EPISODES, ".1f"),
                loss=_recent(run.losses, RECENT_LOSSES, ".4f"),
                eps=f"{epsilon:.3f}",
                best_validation_good=validation_figure(run.best["validation_good"]) if run.validated else "-",
            )
        bar.close()
    return {
        "checkpoint": str(out),
        "log": str(log_path),
        "best": run.best,
        # How ``cryobench train`` prints the best score: the log's figure and what it measures.
        "best_figure": validation_figure(run.best["validation_good"]),
        "validation_unit": "mean over worlds of good exposures / predict-rank's"
        if config.validation_pool > 0
        else "mean good exposures",
        "env_steps": run.env_steps,
        "gradient_steps": run.updates,
        "seconds": run.seconds(),
        "replay_bytes": sum(g.replay.nbytes + (g.demos.nbytes if g.demos is not None else 0) for g in run.groups),
        "training_layouts": len(run.groups),
        "demonstrated_by": run.demonstrated_by(),
        "hyperparameters": dataclasses.asdict(config),
    }


def _warn_if_no_update_would_happen(config: DQNConfig) -> None:
    """A run whose steps never pass ``learning_starts`` makes no gradient step on its own experience."""
    if config.total_steps <= 0:
        return  # asked for on purpose: pre-training on demonstrations alone
    last_step = -(-config.total_steps // config.num_envs) * config.num_envs  # sessions step in lockstep
    if last_step > config.learning_starts:
        return
    if config.demonstrator and config.pretrain_steps > 0:
        what = (
            f"it gets only the {config.pretrain_steps} pre-training updates on {config.demonstrator!r} demonstrations"
        )
    else:
        what = "it stays as initialised"
    warnings.warn(
        f"DQN total_steps {config.total_steps} (--steps) does not pass learning_starts {config.learning_starts}: "
        f"the network makes no gradient step on its own experience ({what}); "
        "train longer or lower -H learning_starts",
        UserWarning,
        stacklevel=3,
    )


@dataclass
class LayoutGroup:
    """Training worlds that share one layout, with their sessions, own replay and demonstrations."""

    indexes: list[WorldIndex]
    sessions: Sessions
    replay: CompactReplay
    demos: CompactReplay | None
    batch_size: int  # of own transitions per gradient step
    demo_batch_size: int
    running_reward: np.ndarray


@dataclass
class TrainingRun:
    """What the phases of a training run share: networks, optimiser, layouts, counters and recent figures."""

    config: DQNConfig
    seed: int
    online: HoleQNetwork
    target: HoleQNetwork
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator  # every random choice of collection and sampling
    groups: list[LayoutGroup]
    validation_indexes: list[WorldIndex]  # the training environment's own world first (unless pooled)
    started: float  # time.perf_counter() at the start
    # Per validation world, predict-rank's mean good exposures from the validation seeds (pooled
    # validation scores relative to it: sessions of 4 and 16 hours weigh the same); None: raw means.
    validation_baseline: list[float | None] = field(default_factory=list)
    env_steps: int = 0
    updates: int = 0  # gradient steps, pre-training included
    pretrain_updates: int = 0
    validated: bool = False
    episode_rewards: list[float] = field(default_factory=list)
    episode_goods: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"validation_good": -1.0, "env_steps": 0})

    @property
    def has_demonstrations(self) -> bool:
        return self.groups[0].demos is not None

    @property
    def n_worlds(self) -> int:
        return sum(len(group.indexes) for group in self.groups)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def demonstrated_by(self) -> dict[str, int]:
        """How many training worlds each demonstrator was chosen for (several demonstrators: the best per world)."""
        names = [name for group in self.groups if group.demos is not None for name in group.demos.demonstrators]
        return {name: names.count(name) for name in dict.fromkeys(names)}


def start_run(config: DQNConfig, worlds: list[simulator.World], seed: int, progress: bool = False) -> TrainingRun:
    """Seeds, networks and optimiser; per layout its sessions, replay and demonstrations; the validation worlds."""
    started = time.perf_counter()
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    all_indexes = [WorldIndex(w, config.reliability_features, config.plan_features) for w in worlds]
    online = make_network(config)
    target = copy.deepcopy(online)
    optimizer = torch.optim.Adam(online.parameters(), lr=config.learning_rate)
    # Pooled training worlds: one group per twin (its layouts differ, its number of holes does not).
    members = size_groups(worlds) if config.training_pool > 0 else layout_groups(worlds)
    n_layouts = len(members)
    groups = []
    for ids, envs, batch, demo_batch in zip(
        members,
        shares(config.num_envs, n_layouts),
        shares(config.batch_size, n_layouts),
        shares(config.demo_batch_size, n_layouts),
        strict=True,
    ):
        if envs == 0:
            raise InputError(f"num_envs {config.num_envs} is fewer than the training worlds' {n_layouts} layouts")
        indexes = [all_indexes[i] for i in ids]
        sessions = Sessions(indexes, envs, config.history, rng)
        replay = CompactReplay(config.buffer_size // n_layouts, envs, indexes[0].n_holes)
        groups.append(LayoutGroup(indexes, sessions, replay, None, batch, demo_batch, np.zeros(envs)))
    if config.validation_pool > 0:
        validation_indexes = [
            WorldIndex(w, config.reliability_features, config.plan_features) for w in validation_worlds(config)
        ]
    else:
        validation_indexes = [all_indexes[0]] + [
            WorldIndex(w, config.reliability_features, config.plan_features) for w in validation_worlds(config)
        ]
    baseline = [baseline_good_exposures(index.world, config) for index in validation_indexes]
    for stream, (group, ids) in enumerate(zip(groups, members, strict=True)):
        group.demos = demonstrations([worlds[i] for i in ids], config, seed, progress, stream=stream)
    run = TrainingRun(config, seed, online, target, optimizer, rng, groups, validation_indexes, started)
    run.validation_baseline = baseline
    return run


def pretrain(run: TrainingRun, progress: bool = False) -> None:
    """DQfD's first phase: ``pretrain_steps`` gradient steps on demonstrations alone."""
    steps = tqdm(range(run.config.pretrain_steps), desc="dqn pre-training", unit="update", disable=not progress)
    for _ in steps:
        update(run, pretraining=True)
        if run.updates % 50 == 0:
            steps.set_postfix(loss=_recent(run.losses, 50, ".4f"))
    run.pretrain_updates = run.updates


def epsilon_at(step: int, config: DQNConfig) -> float:
    """Exploration rate after ``step`` environment steps: linear from ``epsilon_start`` to ``epsilon_end``."""
    span = max(config.epsilon_decay_end - config.epsilon_decay_start, 1)
    fraction = min(max((step - config.epsilon_decay_start) / span, 0.0), 1.0)
    return config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)


def collect(run: TrainingRun) -> float:
    """One epsilon-greedy step of every session, recorded in its layout's replay; returns the epsilon used."""
    epsilon = epsilon_at(run.env_steps, run.config)
    for group in run.groups:
        sessions = group.sessions
        actions = np.argmax(sessions.q_values(run.online), axis=1)
        for e in np.flatnonzero(run.rng.random(len(sessions.states)) < epsilon):
            actions[e] = run.rng.choice(np.flatnonzero(~sessions.states[e].visited))
        rewards, dones = _step_and_record(sessions, group.replay, actions)
        group.running_reward += rewards
        for e in np.flatnonzero(dones):  # an episode ended: note its figures, start the next one
            state, world = sessions.states[e], sessions.indexes[sessions.world_ids[e]].world
            run.episode_rewards.append(group.running_reward[e])
            run.episode_goods.append(int(world.true_good[state.exposures].sum()))
            group.running_reward[e] = 0.0
            sessions.start(e)
    run.env_steps += run.config.num_envs
    return epsilon


def learn(run: TrainingRun) -> None:
    """The gradient steps now due: one per ``train_every`` environment steps past ``learning_starts``."""
    config = run.config
    if run.env_steps < config.learning_starts or not all(group.replay.can_sample(config) for group in run.groups):
        return
    while (run.updates - run.pretrain_updates) * config.train_every < run.env_steps - config.learning_starts:
        update(run)


def update(run: TrainingRun, pretraining: bool = False) -> float:
    """One gradient step over every layout (each weighted by its share of the batch), then the target sync.

    Pre-training draws a whole batch of demonstrations; afterwards each batch holds own transitions
    and ``demo_batch_size`` demonstrated ones. Returns the loss.
    """
    config = run.config
    loss = torch.zeros(())
    for group in run.groups:
        if pretraining:
            replay, own, demo = None, 0, group.batch_size
        else:
            replay, own, demo = group.replay, group.batch_size, group.demo_batch_size
        part = batch_loss(run.online, run.target, replay, own, group.indexes, config, run.rng, group.demos, demo)
        loss = loss + part * (group.batch_size / config.batch_size)
    run.losses.append(optimise(run.online, run.optimizer, loss, config))
    run.updates += 1
    sync_target(run)
    return run.losses[-1]


def optimise(online: HoleQNetwork, optimizer: torch.optim.Optimizer, loss: torch.Tensor, config: DQNConfig) -> float:
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(online.parameters(), config.grad_clip)
    optimizer.step()
    return float(loss.detach())


def sync_target(run: TrainingRun) -> None:
    """Soft updates after every gradient step (``target_tau`` > 0), else a copy every ``target_update`` steps."""
    if run.config.target_tau > 0:
        with torch.no_grad():
            for t, o in zip(run.target.parameters(), run.online.parameters(), strict=True):
                t.lerp_(o, run.config.target_tau)
    elif run.updates % run.config.target_update == 0:
        run.target.load_state_dict(run.online.state_dict())


def validation_seeds(config: DQNConfig) -> list[int]:
    return [config.validation_seed + i for i in range(config.validation_episodes)]


def baseline_good_exposures(world: simulator.World, config: DQNConfig) -> float | None:
    """Predict-rank's mean good exposures on a pooled validation world from the validation seeds (else None)."""
    if config.validation_pool <= 0:
        return None
    from cryobench.agents.registry import load_agent
    from cryobench.env import CryoEMSessionEnv

    agent, _ = load_agent("predict-rank")
    env = CryoEMSessionEnv.from_world(world)
    agent.fit(env, seed=0)
    goods = []
    for seed in validation_seeds(config):
        start = int(np.random.default_rng(seed).integers(world.n_holes))  # as greedy_good_exposures starts
        obs, info = env.reset(seed=seed, options={"start_hole": start})
        agent.reset(env, seed)
        over = False
        while not over:
            obs, _, over, _, info = env.step(int(agent.act(obs, info)))
        goods.append(int(world.true_good[env.state.exposures].sum()))
    return float(np.mean(goods))


def validate(run: TrainingRun) -> float:
    """Greedy sessions on the validation worlds, from seeds never used in training: the mean good exposures,
    or with a validation pool the mean over worlds of good exposures relative to predict-rank's (1 = equal)."""
    config = run.config
    seeds = validation_seeds(config)
    run.online.eval()
    scores = [
        greedy_good_exposures(run.online, index, seeds, config.history).mean() for index in run.validation_indexes
    ]
    run.online.train()
    run.validated = True
    if config.validation_pool > 0:
        scores = [score / max(base, 1.0) for score, base in zip(scores, run.validation_baseline, strict=True)]
    return float(np.mean(scores))


def validation_figure(score: float) -> str:
    """The validation score as the log, the progress bar and ``cryobench train`` all print it
    (good exposures to 2 decimals; a score relative to predict-rank, near 1, to 4)."""
    return f"{score:.2f}" if abs(score) >= 10 else f"{score:.4f}"


def checkpoint(run: TrainingRun, score: float, out: Path, meta: dict[str, Any] | None) -> bool:
    """Save the online network at ``out`` if ``score`` beats every earlier validation; True if it did."""
    if score <= run.best["validation_good"]:
        return False
    config = run.config
    run.best = {"validation_good": score, "env_steps": run.env_steps}
    validation = f"greedy, {config.validation_episodes} seeds from {config.validation_seed}, "
    if config.validation_pool > 0:
        validation += (
            f"{config.validation_pool} training worlds and conditions of cryobench/Training-v0 drawn from "
            f"validation_seed (twins {config.training_twins}), good exposures relative to predict-rank's"
        )
    else:
        validation += "the training environment's own world"
    if config.validation_twin and config.validation_pool <= 0:
        validation += f" and {config.validation_twin} split={config.validation_twin_split}"
        if config.validation_twin_noise:
            validation += f" noise {config.validation_twin_noise}"
    checkpoint_meta = {
        **(meta or {}),
        "seed": run.seed,
        "env_steps": run.env_steps,
        "gradient_steps": run.updates,
        "validation_good": score,
        "validation": validation,
        "training_worlds": run.n_worlds,
        "training_layouts": len(run.groups),
        "demonstrator": config.demonstrator,
        "demonstrated_by": run.demonstrated_by(),
        "seconds": round(run.seconds(), 1),
    }
    save_checkpoint(out, run.online, config, checkpoint_meta)
    return True


def validate_and_checkpoint(run: TrainingRun, log: TrainingLog, out: Path, meta: dict[str, Any] | None) -> None:
    score = validate(run)
    log.write(run, score)
    checkpoint(run, score, out, meta)


class TrainingLog:
    """One CSV row per validation (and TensorBoard scalars when it is installed and ``log_dir`` is given)."""

    COLUMNS = (
        "env_steps",
        "episodes",
        "episode_reward",
        "episode_good",
        "loss",
        "epsilon",
        "validation_good",
        "seconds",
    )

    def __init__(self, path: Path, log_dir: str | Path | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("w", newline="")
        self.csv = csv.writer(self.file)
        self.csv.writerow(self.COLUMNS)
        self.tensorboard = _tensorboard(log_dir)

    def write(self, run: TrainingRun, validation_good: float) -> None:
        row = {
            "env_steps": run.env_steps,
            "episodes": len(run.episode_rewards),
            "episode_reward": _mean(run.episode_rewards[-RECENT_EPISODES:]),
            "episode_good": _mean(run.episode_goods[-RECENT_EPISODES:]),
            "loss": _mean(run.losses[-RECENT_LOSSES:]),
            "epsilon": round(epsilon_at(run.env_steps, run.config), 4),
            "validation_good": validation_figure(validation_good),
            "seconds": round(run.seconds(), 1),
        }
        self.csv.writerow(row[column] for column in self.COLUMNS)
        self.file.flush()
        if self.tensorboard is not None:
            for name in ("episode_reward", "episode_good", "loss", "validation_good"):
                self.tensorboard.add_scalar(name, float(row[name]), run.env_steps)

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *_exc_info) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _step_and_record(sessions: Sessions, replay: CompactReplay, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write the pre-step compact states, step, then fill in rewards and ends."""
    pos = replay.add(sessions.states, sessions.episode_step, sessions.world_ids, actions)
    elapsed_before = np.array([state.elapsed for state in sessions.states])
    rewards, dones = sessions.step(actions)
    replay.outcome(pos, rewards, dones, np.array([state.elapsed for state in sessions.states]) - elapsed_before)
    return rewards, dones


def _mean(values: list) -> float:
    return round(float(np.mean(values)), 4) if values else float("nan")


def _recent(values: list, window: int, spec: str) -> str:
    """Mean of the last ``window`` values for the progress bar ("-" before the first)."""
    return format(float(np.mean(values[-window:])), spec) if values else "-"


def _tensorboard(log_dir: str | Path | None):
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(str(log_dir))
