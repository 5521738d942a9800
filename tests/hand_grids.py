"""Tiny grids built hole by hole, for tests that assert an agent's exact choices."""

from __future__ import annotations

import numpy as np

from cryobench.env import CryoEMSessionEnv
from cryobench.grid import Grid
from cryobench.profiles import get_profile
from cryobench.rules import Feedback
from cryobench.simulator import World


def hand_env(
    patch: list[int],
    patch_square: list[int],
    square_tile: list[int],
    predicted: list[float],
    true: list[float] | None = None,
    duration: float = 480.0,
    feedback: str = "inspection",
    x_um: list[float] | None = None,
) -> CryoEMSessionEnv:
    """An environment on a grid given per hole (patch, predicted and true CTF) and per group (parents).

    Holes of a patch sit on a row 2.5 µm apart unless ``x_um`` is given; squares 100 µm apart.
    The paper's profile: moves of 1, 2, 6 and 8 minutes (patch, square, tile, grid level).
    """
    patch = np.asarray(patch, dtype=np.int32)
    square = np.asarray(patch_square, dtype=np.int32)[patch]
    tile = np.asarray(square_tile, dtype=np.int32)[square]
    n = len(patch)
    rank = np.array([np.sum(patch[:i] == patch[i]) for i in range(n)], dtype=np.float64)
    ctf = np.asarray(true if true is not None else predicted, dtype=np.float64)
    grid = Grid(
        name="hand",
        tile=tile,
        square=square,
        patch=patch,
        x_um=np.asarray(x_um, dtype=np.float64) if x_um is not None else 2.5 * rank,
        y_um=np.zeros(n),
        ctf=ctf,
        confidence=np.full(n, np.nan),
        failed=np.zeros(n, dtype=bool),
        hole_names=tuple(f"h{i}" for i in range(n)),
        square_xy_um=np.column_stack([np.arange(len(square_tile)) * 100.0, np.zeros(len(square_tile))]),
        pitch_um=2.5,
    )
    world = World(
        grid,
        np.asarray(predicted, dtype=np.float64),
        get_profile("paper"),
        duration=duration,
        feedback=Feedback.parse(feedback),
    )
    return CryoEMSessionEnv.from_world(world)


def play_from(agent, env: CryoEMSessionEnv, start_hole: int, steps: int | None = None, seed: int = 0) -> list[int]:
    """The holes ``agent`` chooses from ``start_hole`` (all of the session, or the first ``steps``)."""
    obs, info = env.reset(seed=seed, options={"start_hole": start_hole})
    agent.reset(env, seed)
    actions, done = [], False
    while not done and (steps is None or len(actions) < steps):
        action = agent.act(obs, info)
        assert obs["action_mask"][action] == 1, f"{agent.name} chose visited hole {action}"
        actions.append(int(action))
        obs, _, done, _, info = env.step(action)
    return actions
