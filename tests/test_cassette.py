"""Cassettes: several grids in one session, a grid exchange above the tile (simulator rules 11-12)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cryobench  # noqa: F401  (registers the environments)
from cryobench.errors import InputError


def cassette(**kwargs) -> gym.Env:
    return gym.make("cryobench/Aldolase-v0", grids=3, duration=1440.0, **kwargs)


@pytest.mark.parametrize("acquisition", ["paper", "staged"])
def test_a_cassette_passes_check_env_without_warnings(acquisition):
    env = cassette(acquisition=acquisition)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_the_grids_are_different_worlds_side_by_side():
    env = cassette().unwrapped
    world = env.world
    assert world.n_grids == 3 and np.array_equal(np.unique(env.layout.grid), [0, 1, 2])
    sizes = np.bincount(world.cassette)
    single = gym.make("cryobench/Aldolase-v0").unwrapped.world
    assert sizes[0] == single.n_holes
    np.testing.assert_array_equal(world.grid.ctf[: sizes[0]], single.grid.ctf)  # the card's world first
    second = world.grid.ctf[sizes[0] : sizes[0] + sizes[1]]
    assert len(second) != sizes[0] or not np.array_equal(second, single.grid.ctf)
    # every tile lies on one grid, and ids stay dense across grids
    tile_grid = np.zeros(world.grid.n_tiles, dtype=int)
    tile_grid[world.grid.tile] = world.cassette
    assert np.array_equal(tile_grid[world.grid.tile], world.cassette)
    # the same seeds give the same cassette
    np.testing.assert_array_equal(cassette().unwrapped.world.grid.ctf, world.grid.ctf)


def test_a_move_to_another_grid_is_an_exchange_counted_for_that_grid():
    env = cassette()
    env.reset(seed=0, options={"start_hole": 0})
    u = env.unwrapped
    other = int(np.flatnonzero(u.world.cassette == 2)[0])
    _, reward, _, _, info = env.step(other)
    assert info["level"] == "grid_exchange" and info["elapsed_minutes"] == 15.0
    good = u.world.true_good[other]
    assert reward == pytest.approx(good * np.exp(-0.1 * (15.0 - 1.0)))
    assert info["grid"] == 2 and info["grid_minutes"].tolist() == [0.0, 0.0, 15.0]
    assert info["grid_good_exposures"].tolist() == [0, 0, int(good)]
    # back on grid 2, an ordinary move; the minutes per grid always add up to the elapsed minutes
    near = int(np.flatnonzero(u.world.grid.patch == u.world.grid.patch[other])[1])
    _, _, _, _, info = env.step(near)
    assert info["level"] == "patch" and info["grid_minutes"].sum() == info["elapsed_minutes"]


def test_staged_cassette_images_squares_of_other_grids_after_an_exchange():
    env = cassette(acquisition="staged")
    env.reset(seed=1)
    u = env.unwrapped
    here = int(u.world.cassette[u.state.current])
    square = int(np.flatnonzero(u.world.square_grid != here)[0])
    _, _, _, _, info = env.step(u.world.n_holes + square)
    assert info["level"] == "image_square" and info["elapsed_minutes"] == 15.0 + 4.3
    assert info["grid"] == int(u.world.square_grid[square])


@pytest.mark.parametrize(
    ("grids", "message"),
    [
        (1, "a cassette holds 2 grids or more"),
        (["aldolase", "rnapii"], "go into one microscope; these were not: aldolase \\(Talos Arctica\\), rnapii"),
        (["apoferritin", "aldolase"], "the first grid is the environment's dataset 'aldolase'"),
        ("four", "expected a number of grids"),
        (True, "expected a number of grids"),
    ],
)
def test_bad_cassettes_are_refused_in_one_line(grids, message):
    with pytest.raises(InputError, match=message) as error:
        gym.make("cryobench/Aldolase-v0", grids=grids)
    assert "\n" not in str(error.value)


def test_a_cassette_of_compatible_twins_and_its_profile():
    env = gym.make("cryobench/Aldolase-v0", grids=["aldolase", "apoferritin"]).unwrapped  # both Talos Arctica
    assert env.world.n_grids == 2 and env.world.grid.name == "cassette:aldolase+apoferritin"
    with pytest.raises(InputError, match="a cassette needs the profile's 'grid_exchange_minutes'"):
        gym.make("cryobench/Aldolase-v0", grids=2, profile="arxiv")
    with pytest.raises(InputError, match="no data=, no new_world_each_reset"):
        gym.make("cryobench/Aldolase-v0", grids=2, new_world_each_reset=True)


def test_results_name_minutes_and_good_exposures_per_grid():
    from cryobench.agents.registry import load_agent
    from cryobench.evaluate import play_episode

    env = gym.make("cryobench/Aldolase-v0", grids=2, duration=200.0, acquisition="staged")
    agent, _ = load_agent("greedy")
    row = play_episode(env, agent, seed=3)
    grids = row["grids"]
    assert sum(grids["good_exposures"]) == row["good_exposures"]
    assert sum(grids["minutes"]) == pytest.approx(row["minutes"])
    assert row["squares_imaged"][0] == int(env.unwrapped.world.grid.square[row["start"]])
