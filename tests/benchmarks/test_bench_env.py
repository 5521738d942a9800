"""Speed of the environment (pytest-benchmark; run with --benchmark-enable).

Sizes: the measured Aldolase test split's 2341 holes (the aldolase twin's test split where
the data is absent), the whole AldolaseAu twin (5822 holes) and the 100,000-hole synthetic
card ``synthetic100k``. Where a twin cannot be built (its card or generator missing) a
stand-in grid of the same number of holes with a realistic hierarchy is used instead, and
the benchmark's ``extra_info["grid"]`` says so: compare only runs on the same grids.

Targets (issue 2): a step with the full observation <= 0.2 ms at 2341 holes, a full
random-policy episode <= 0.1 s at 5822 holes, cost linear in the number of holes.
In the default test run (``--benchmark-disable``) every benchmark runs once, as a smoke test.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401
from cryobench.env import CryoEMSessionEnv
from cryobench.grid import Grid
from cryobench.profiles import get_profile
from cryobench.simulator import World
from tests.conftest import ALDOLASE_DATA

SIZES = ["2341", "5822", "100000"]


def stand_in_world(n_holes: int, seed: int = 0) -> World:
    """A grid of exactly ``n_holes`` holes shaped like the measured data (5-25 holes per patch,
    about 7 patches per square, 3 squares per tile, a third of the holes good) with noisy
    predictions; used only where the twin of that size cannot be built."""
    rng = np.random.default_rng(seed)
    patch_sizes = rng.integers(5, 26, size=n_holes // 5 + 1)
    patch_sizes = patch_sizes[: int(np.searchsorted(np.cumsum(patch_sizes), n_holes)) + 1]
    patch_sizes[-1] -= patch_sizes.sum() - n_holes
    patch = np.repeat(np.arange(len(patch_sizes)), patch_sizes).astype(np.int32)
    square = (patch // 7).astype(np.int32)
    tile = (square // 3).astype(np.int32)
    ctf = np.where(rng.random(n_holes) < 0.35, rng.uniform(2.5, 6.0, n_holes), rng.uniform(6.0, 20.0, n_holes))
    n_squares = int(square.max()) + 1
    grid = Grid(
        name=f"stand-in-{n_holes}",
        tile=tile,
        square=square,
        patch=patch,
        x_um=rng.normal(size=n_holes),
        y_um=rng.normal(size=n_holes),
        ctf=ctf,
        confidence=np.full(n_holes, np.nan),
        failed=np.zeros(n_holes, dtype=bool),
        hole_names=tuple(f"h{i}" for i in range(n_holes)),
        square_xy_um=np.column_stack([np.arange(n_squares) * 100.0, np.zeros(n_squares)]),
        pitch_um=2.5,
        meta={"seed": seed},
    )
    predicted = np.clip(ctf + rng.normal(0.0, 2.0, n_holes), 0.5, 20.0)
    return World(grid, predicted, get_profile("paper"))


@functools.cache
def _env(size: str) -> tuple[CryoEMSessionEnv, str]:
    """The environment of one size and the name of the grid it runs on."""
    if size == "2341" and (ALDOLASE_DATA / "target_CTF_Y1_val.csv").is_file():
        env = gym.make("cryobench/CryoRL-v0", data=str(ALDOLASE_DATA), split="test").unwrapped
        return env, "measured aldolase test"
    make_args = {
        "2341": ("cryobench/Aldolase-v0", {"split": "test"}),
        "5822": ("cryobench/AldolaseAu-v0", {"split": "all"}),
        "100000": ("cryobench/AldolaseAu-v0", {"dataset": "synthetic100k", "split": "all"}),
    }[size]
    try:
        env = gym.make(make_args[0], **make_args[1]).unwrapped
        return env, f"{make_args[1].get('dataset', make_args[0])} twin"
    except Exception as exc:  # noqa: BLE001  (the twin generator or its card is missing: say so, go on)
        reason = f"{type(exc).__name__}: {exc}"[:120]
        return CryoEMSessionEnv.from_world(stand_in_world(int(size))), f"stand-in {size} ({reason})"


def _setup(benchmark, size: str) -> CryoEMSessionEnv:
    env, grid_name = _env(size)
    benchmark.extra_info["grid"] = grid_name
    benchmark.extra_info["n_holes"] = env.world.n_holes
    return env


def _rounds(size: str, small: int) -> int:
    """Fewer rounds on the big grid, so each benchmark takes a few seconds."""
    return max(small * 2341 // int(size), 5)


@pytest.mark.parametrize("size", SIZES)
def test_bench_reset(benchmark, size):
    env = _setup(benchmark, size)
    seeds = iter(range(10**9))
    obs, _ = benchmark.pedantic(lambda: env.reset(seed=next(seeds)), rounds=_rounds(size, 300), warmup_rounds=1)
    assert obs["features"].shape[0] == env.world.n_holes


@pytest.mark.parametrize("size", SIZES)
def test_bench_step(benchmark, size):
    """One ``env.step`` with the full observation (features of every hole); choosing the
    random action and resetting a finished session are set-up, not timed."""
    env = _setup(benchmark, size)
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def choose_action():
        if env.state.elapsed > env.world.duration:
            env.reset(seed=int(rng.integers(1000)))
        candidates = np.flatnonzero(~env.state.visited)
        return (int(candidates[rng.integers(len(candidates))]),), {}

    obs, *_ = benchmark.pedantic(env.step, setup=choose_action, rounds=_rounds(size, 3000), warmup_rounds=10)
    assert obs["features"].shape == (env.world.n_holes, obs["features"].shape[1])


@pytest.mark.parametrize("size", SIZES)
def test_bench_random_episode(benchmark, size):
    """A full 480-minute session under a uniformly random masked policy (reset included)."""
    env = _setup(benchmark, size)
    seeds = iter(range(10**9))

    def episode():
        seed = next(seeds)
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            mask = obs["action_mask"]
            obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
            done = terminated or truncated
        return env.state

    state = benchmark.pedantic(episode, rounds=_rounds(size, 50), warmup_rounds=1)
    assert state.elapsed > env.world.duration
