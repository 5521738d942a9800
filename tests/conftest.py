"""Shared fixtures: a small hand-built grid, and the measured Aldolase data where present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cryobench.grid import Grid
from cryobench.profiles import get_profile
from cryobench.simulator import Feedback, World

ALDOLASE_DATA = Path(
    os.environ.get("CRYOBENCH_ALDOLASE_DATA", Path(__file__).resolve().parents[2] / "shared/datasets/cryorl-aldolase")
)


@pytest.fixture
def aldolase_data() -> Path:
    """The measured Aldolase folder, or a skip that says where it was looked for."""
    if not (ALDOLASE_DATA / "target_CTF_Y1_val.csv").is_file():
        pytest.skip(f"measured Aldolase data not found at {ALDOLASE_DATA} (set CRYOBENCH_ALDOLASE_DATA)")
    return ALDOLASE_DATA


def make_grid(
    seed: int = 0, tiles: int = 2, squares_per_tile: int = 2, patches_per_square: int = 3, holes_per_patch: int = 5
) -> Grid:
    """A small regular grid with random CTFs, built by hand (independent of the twin generator)."""
    rng = np.random.default_rng(seed)
    n_squares = tiles * squares_per_tile
    n_patches = n_squares * patches_per_square
    n = n_patches * holes_per_patch
    patch = np.repeat(np.arange(n_patches), holes_per_patch).astype(np.int32)
    square = (patch // patches_per_square).astype(np.int32)
    tile = (square // squares_per_tile).astype(np.int32)
    ctf = rng.choice([3.0, 3.5, 4.5, 5.5, 7.0, 9.0, 12.0], size=n)
    failed = np.zeros(n, dtype=bool)
    failed[rng.integers(n)] = True
    ctf[failed] = 100000.0
    return Grid(
        name="toy",
        tile=tile,
        square=square,
        patch=patch,
        x_um=rng.normal(size=n),
        y_um=rng.normal(size=n),
        ctf=ctf,
        confidence=np.full(n, np.nan),
        failed=failed,
        hole_names=tuple(f"h{i}" for i in range(n)),
        square_xy_um=np.column_stack([np.arange(n_squares) * 100.0, np.zeros(n_squares)]),
        pitch_um=2.5,
    )


def make_world(
    seed: int = 0,
    feedback: str = "inspection",
    profile: str = "paper",
    partial: bool = False,
    duration: float = 480.0,
    **grid_kwargs,
) -> World:
    grid = make_grid(seed, **grid_kwargs)
    rng = np.random.default_rng(seed + 1)
    predicted = np.clip(np.minimum(grid.ctf, 20.0) + rng.normal(0, 1.5, grid.n_holes), 0.5, 20.0)
    return World(
        grid,
        predicted,
        get_profile(profile),
        duration=duration,
        partial_reward=partial,
        feedback=Feedback.parse(feedback),
    )
