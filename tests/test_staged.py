"""Staged acquisition: the atlas first, squares imaged on demand (simulator rules 7-10)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cryobench  # noqa: F401  (registers the environments)
from cryobench import simulator
from cryobench.agents.registry import agent_class, list_agents, load_agent
from cryobench.errors import InputError
from cryobench.features import hole_features, hole_features_from_scratch
from cryobench.simulator import recount_tables
from tests.conftest import make_grid


def staged_env(**kwargs) -> gym.Env:
    return gym.make("cryobench/AldolaseAu-v0", acquisition="staged", **kwargs)


def small_world(**kwargs) -> simulator.World:
    from cryobench.profiles import get_profile

    grid = make_grid(seed=3)
    return simulator.World(grid, grid.ctf + 0.5, get_profile("paper"), acquisition="staged", **kwargs)


@pytest.mark.parametrize("env_id", ["cryobench/AldolaseAu-v0", "cryobench/Aldolase-v0"])
def test_staged_env_passes_check_env_without_warnings(env_id):
    env = gym.make(env_id, acquisition="staged")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_the_start_shows_only_the_start_square():
    env = staged_env()
    obs, info = env.reset(seed=4)
    u = env.unwrapped
    start_square = int(u.world.grid.square[u.state.start])
    assert obs["imaged"].tolist() == [int(s == start_square) for s in range(u.world.n_squares)]
    layout = u.layout
    shown = u.world.grid.square == start_square
    assert np.array_equal(layout.square >= 0, shown)
    assert np.isnan(layout.predicted_ctf[~shown]).all() and np.isnan(layout.x_um[~shown]).all()
    assert (layout.patch[~shown] == -1).all() and (layout.tile[~shown] == -1).all()
    np.testing.assert_array_equal(layout.predicted_ctf[shown], u.world.predicted_ctf[shown])
    assert not layout.predicted_ctf.flags.writeable and not layout.imaged.flags.writeable
    # holes of unimaged squares and imaged squares are masked; the start hole is visited
    n = u.world.n_holes
    assert np.array_equal(obs["action_mask"][:n].astype(bool), shown & ~u.state.visited)
    assert np.array_equal(obs["action_mask"][n:].astype(bool), ~shown_squares(u))
    assert not obs["features"][~shown].any()


def shown_squares(u) -> np.ndarray:
    return np.asarray(u.state.imaged)


def test_imaging_a_square_costs_its_minutes_and_publishes_a_new_layout():
    env = staged_env()
    obs, _ = env.reset(seed=1)
    u = env.unwrapped
    before = u.layout
    square = int(np.flatnonzero(obs["action_mask"][u.world.n_holes :])[0])
    obs, reward, _, _, info = env.step(u.world.n_holes + square)
    assert (reward, info["level"], info["elapsed_minutes"]) == (0.0, "image_square", 4.3)
    assert info["layout"] is u.layout and u.layout is not before
    assert before.imaged[square] == 0 and u.layout.imaged[square] == 1  # the old snapshot never changes
    holes = u.world.grid.square == square
    assert (u.layout.square[holes] == square).all() and np.isnan(before.predicted_ctf[holes]).all()
    assert obs["stage_square"] == square + 1
    # From the square, one of its holes costs an other-patch move, and the stage is at a hole again.
    hole = int(np.flatnonzero(holes)[0])
    obs, _, _, _, info = env.step(hole)
    assert info["level"] == "square" and info["elapsed_minutes"] == 4.3 + 2.0 and obs["stage_square"] == 0


def test_features_equal_the_reference_and_tables_count_only_imaged_holes():
    world = small_world()
    rng = np.random.default_rng(0)
    state = simulator.start_session(world, 7)
    while not simulator.is_over(world, state):
        features = hole_features(world, state)
        np.testing.assert_array_equal(features, hole_features_from_scratch(world, state))
        assert not features[~state.shown].any()
        # The tables are those of the paper's rules over the imaged holes, minus the unimaged holes' rows.
        paper = replace(world, acquisition="paper")
        hidden = ~state.shown
        expected = recount_tables(paper, state.visited, state.revealed)
        for ids, table, full in zip(world.groups, state.tables, expected, strict=True):
            minus = np.zeros_like(full)
            np.add.at(minus, ids[hidden], world.image_delta[hidden])
            np.testing.assert_array_equal(table, full - minus)
        if rng.random() < 0.2 or not (state.shown & ~state.visited).any():
            action = world.n_holes + int(rng.integers(world.n_squares))
        else:
            action = int(rng.choice(np.flatnonzero(state.shown & ~state.visited)))
        simulator.step(world, state, action)


def snapshot(state: simulator.SessionState) -> tuple:
    return (
        state.current,
        state.stage_square,
        state.visited.copy(),
        state.imaged.copy(),
        [t.copy() for t in state.tables],
        list(state.exposures),
    )


def assert_same(a: tuple, b: tuple) -> None:
    assert a[:2] == b[:2] and a[5] == b[5]
    for x, y in zip(a[2:5], b[2:5], strict=True):
        if isinstance(x, list):
            assert all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
        else:
            assert np.array_equal(x, y)


def test_imaging_twice_and_unimaged_holes_are_costed_no_ops():
    world = small_world()
    state = simulator.start_session(world, 0)
    square = int(world.grid.square[0])
    before, elapsed = snapshot(state), state.elapsed
    result = simulator.step(world, state, world.n_holes + square)  # the start square again
    assert result.invalid and result.minutes == 1.0 and state.elapsed == elapsed + 1.0
    assert_same(before, snapshot(state))
    hidden = int(np.flatnonzero(world.grid.square != square)[0])
    result = simulator.step(world, state, hidden)
    assert result.invalid and result.reward == 0.0 and state.invalid_moves == 2
    assert_same(before, snapshot(state))


def test_square_actions_outside_staged_sessions_are_errors_and_change_nothing():
    world = replace(small_world(), acquisition="paper")
    state = simulator.start_session(world, 0)
    before = snapshot(state) if state.imaged is not None else None
    with pytest.raises(InputError, match="square actions exist only with acquisition='staged'"):
        simulator.step(world, state, world.n_holes)
    assert before is None and state.elapsed == 0.0 and state.invalid_moves == 0
    staged = small_world()
    state = simulator.start_session(staged, 0)
    with pytest.raises(InputError, match="out of range: squares are actions"):
        simulator.step(staged, state, staged.n_actions)
    assert state.elapsed == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "arxiv"}, "staged acquisition needs the profile's 'square_minutes'"),
        ({"atlas_noise": -1}, "argument 'atlas_noise'"),
        ({"acquisition": "atlas"}, "argument 'acquisition': expected 'paper' or 'staged'"),
    ],
)
def test_bad_staged_arguments_are_one_line_errors(kwargs, message):
    arguments = {"acquisition": "staged", **kwargs}
    with pytest.raises(InputError, match=message) as error:
        gym.make("cryobench/Aldolase-v0", **arguments)
    assert "\n" not in str(error.value)


def test_the_atlas_is_seeded_and_exact_without_noise():
    exact = staged_env(atlas_noise=0.0).unwrapped
    world = exact.world
    holes = np.bincount(world.grid.square)
    good = np.bincount(world.grid.square, weights=world.true_good) / holes
    np.testing.assert_allclose(exact.atlas.good_fraction, good)
    np.testing.assert_array_equal(exact.atlas.size_class, np.searchsorted(simulator.SIZE_CLASS_EDGES, holes, "right"))
    noisy, again = staged_env().unwrapped.atlas, staged_env().unwrapped.atlas
    np.testing.assert_array_equal(noisy.good_fraction, again.good_fraction)
    assert not np.allclose(noisy.good_fraction, good)


STAGED_AGENTS = [row["name"] for row in list_agents() if not row["error"] and agent_class(row["name"]).plays_staged]


@pytest.mark.parametrize("name", STAGED_AGENTS)
def test_every_staged_agent_plays_only_allowed_actions(name):
    env = gym.make("cryobench/Aldolase-v0", acquisition="staged", duration=120.0)
    agent, _ = load_agent(name)
    obs, info = env.reset(seed=2)
    agent.reset(env, 2)
    done, squares = False, 0
    while not done:
        action = agent.act(obs, info)
        assert obs["action_mask"][action] == 1, f"{name} chose a masked action {action}"
        obs, _, done, _, info = env.step(action)
        squares += info["level"] == "image_square"
    assert env.unwrapped.state.invalid_moves == 0


def test_agents_that_cannot_plan_staged_refuse_in_one_line():
    refusing = [row["name"] for row in list_agents() if not row["error"] and not agent_class(row["name"]).plays_staged]
    assert "dqn" in refusing
    env = staged_env()
    env.reset(seed=0)
    agent, _ = load_agent("dqn")
    with pytest.raises(InputError, match="'dqn' cannot plan with squares not imaged yet"):
        agent.reset(env, 0)


@pytest.mark.parametrize("name", ["orienteering", "bayes-lookahead"])
def test_the_refusal_names_exactly_the_agents_whose_class_plays_staged(name):
    env = staged_env()
    env.reset(seed=0)
    agent, _ = load_agent(name)
    with pytest.raises(InputError) as refused:
        agent.reset(env, 0)
    named = str(refused.value).split("agents that can: ")[1].split(", ")
    assert named == sorted(STAGED_AGENTS)
    assert "greedy" in named and name not in named and "dqn" not in named


def test_staged_options_are_checked():
    with pytest.raises(InputError, match="staged option 'squares': expected 'atlas' or 'in-order'"):
        load_agent("greedy", {"squares": "diagonal"})
    agent, card = load_agent("greedy", {"squares": "in-order"})
    assert card["staged"]["squares"] == "in-order"
    env = gym.make("cryobench/Aldolase-v0")
    env.reset(seed=0)
    with pytest.raises(InputError, match="acquisition is 'paper'"):
        agent.reset(env, 0)


def play(name: str, squares: str, seeds: range) -> list[float]:
    env = staged_env()
    agent, _ = load_agent(name, {"squares": squares})
    totals = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        agent.reset(env, seed)
        done, good = False, 0
        while not done:
            obs, reward, done, _, info = env.step(agent.act(obs, info))
            good += reward > 0
        totals.append(good)
    return totals


def test_the_atlas_chooser_beats_imaging_in_order_on_heterogeneous_squares():
    atlas, in_order = play("greedy", "atlas", range(3)), play("greedy", "in-order", range(3))
    assert np.mean(atlas) > 1.5 * np.mean(in_order)


def test_the_oracle_chooses_squares_by_truth_and_the_driver_sees_only_the_public_view():
    env = staged_env()
    obs, info = env.reset(seed=0)
    agent, _ = load_agent("greedy")
    agent.reset(env, 0)
    driver = agent._staged_driver
    # The copy's layout is the imaged holes only, with dense ids and no NaN.
    view = driver.view.layout
    assert len(view.predicted_ctf) == int(np.count_nonzero(env.unwrapped.layout.square >= 0))
    assert np.isfinite(view.predicted_ctf).all() and view.square.max() == 0
