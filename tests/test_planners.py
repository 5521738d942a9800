"""The offline planners (genetic, annealing) and their replanning variants."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cryobench.agents import planners
from cryobench.agents.common import Hierarchy
from cryobench.agents.registry import load_agent
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.evaluate import play_episode
from cryobench.registration import make_env
from cryobench.simulator import World
from tests.conftest import make_world

PLANNERS = ["genetic", "annealing", "genetic-replan", "annealing-replan"]
OFFLINE = ["genetic", "annealing"]
REPLAN = ["genetic-replan", "annealing-replan"]
# Small searches keep the tests fast; the behaviour under test does not depend on the budget.
FAST = {
    "genetic": {"generations": 40},
    "genetic-replan": {"generations": 40, "replan_generations": 5},
    "annealing": {"steps": 300},
    "annealing-replan": {"steps": 300, "replan_steps": 50},
}


def toy_env(feedback: str = "inspection", duration: float = 480.0, seed: int = 0, **grid) -> CryoEMSessionEnv:
    grid = {"tiles": 3, "squares_per_tile": 2, "patches_per_square": 4, "holes_per_patch": 8} | grid
    return CryoEMSessionEnv.from_world(make_world(seed, feedback=feedback, duration=duration, **grid))


def rollout(agent, env, seed: int) -> tuple[list[int], dict]:
    """One episode, checking every action names an unvisited hole; returns actions and last info."""
    obs, info = env.reset(seed=seed)
    agent.reset(env, seed)
    actions, done = [], False
    while not done:
        action = agent.act(obs, info)
        assert obs["action_mask"][action] == 1, f"{agent.name} chose visited hole {action}"
        actions.append(action)
        obs, _, done, _, info = env.step(action)
    return actions, info


def first_plan(name: str, env, seed: int, **overrides):
    """The agent after its first act (the plan is made there)."""
    agent, _ = load_agent(name, FAST[name] | overrides)
    obs, info = env.reset(seed=seed)
    agent.reset(env, seed)
    agent.act(obs, info)
    return agent


# ---- the plan's arithmetic ------------------------------------------------------------------
@pytest.mark.parametrize("name", OFFLINE)
def test_executed_plan_is_the_planned_one_and_keeps_the_time_rules(name):
    # Count predicted-good holes (prior_scale 0) on a short session, so the budget binds.
    env = toy_env(duration=45.0)
    agent = first_plan(name, env, seed=3, prior_scale=0.0)
    problem, order = agent.last_problem, agent.last_search.order
    taken = problem.holes_taken(order)[0]
    planned = [h for g, k in zip(order, taken, strict=True) for h in problem.holes[g][:k]]
    assert problem.minutes_used(order) <= problem.time_left + max(env.layout.minutes) + 1e-9
    assert agent.last_search.value == pytest.approx(len(planned))  # every planned hole is predicted good

    actions, info = rollout(agent, env, seed=3)
    assert actions == planned  # the simulated plan is exactly what the session does
    assert 45.0 < info["elapsed_minutes"] <= 45.0 + max(env.layout.minutes)


def test_holes_taken_follows_the_episode_rules():
    # Two patches of 3 holes; moving in costs 2 minutes, in-patch 1 minute.
    problem = planners.PlanProblem(
        patches=np.array([0, 1]),
        holes=(np.array([0, 1, 2]), np.array([3, 4, 5])),
        cumulative_value=np.array([[0, 1, 2, 3], [0, 1, 2, 3]], dtype=float),
        hole_counts=np.array([3, 3]),
        start_minutes=np.array([2.0, 2.0]),
        transition_minutes=np.array([[1.0, 2.0], [2.0, 1.0]]),
        in_patch_minutes=1.0,
        time_left=5.0,
    )
    # Patch 0: exposures end at 2, 3, 4 min; patch 1's first starts at 4 <= 5 (ends 6), then no more.
    np.testing.assert_array_equal(problem.holes_taken(np.array([0, 1])), [[3, 1]])
    assert problem.value(np.array([[0, 1], [1, 0]])).tolist() == [4.0, 4.0]
    assert problem.minutes_used(np.array([0, 1])) == 6.0


# ---- the search works --------------------------------------------------------------------------
@pytest.mark.parametrize("name", OFFLINE)
def test_search_improves_on_random_orders(name):
    env = toy_env(duration=60.0, seed=1, tiles=4, squares_per_tile=3, patches_per_square=5)
    agent = first_plan(name, env, seed=0, greedy_seed=False)
    problem, result = agent.last_problem, agent.last_search
    random_orders = np.stack([np.random.default_rng(i).permutation(problem.n_genes) for i in range(200)])
    assert result.history[-1] > result.history[0]  # better than the best of its initial population
    assert result.value > problem.value(random_orders).max()
    assert np.all(np.diff(result.history) >= -1e-9)  # elitism / best-so-far never gets worse
    assert result.value == pytest.approx(problem.value(result.order)[0])


@pytest.mark.parametrize("name", OFFLINE)
def test_search_never_loses_to_its_ranked_seeds(name):
    env = toy_env(duration=60.0, seed=2, tiles=4, squares_per_tile=3, patches_per_square=5)
    agent = first_plan(name, env, seed=0)
    ranked = agent.last_problem.ranked_orders(agent.hierarchy)
    assert agent.last_search.value >= agent.last_problem.value(ranked).max() - 1e-9


def test_operators_keep_permutations():
    rng = np.random.default_rng(0)
    orders = np.stack([rng.permutation(12) for _ in range(64)])
    children = planners.order_crossover(orders, orders[::-1].copy(), rng)
    a, b = rng.integers(12, size=64), rng.integers(12, size=64)
    moved = [
        np.take_along_axis(orders, sources(a, b, 12), axis=1)
        for sources in (planners.swap_sources, planners.reversal_sources, planners.insert_sources)
    ]
    for result in [children, *moved]:
        np.testing.assert_array_equal(np.sort(result, axis=1), np.broadcast_to(np.arange(12), (64, 12)))
    # Insert moves the element at a to position b.
    np.testing.assert_array_equal(moved[2][np.arange(64), b], orders[np.arange(64), a])


# ---- rules every agent keeps ---------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
def test_only_unvisited_holes_and_same_seed_same_episode(name):
    # 480 min on 192 holes exhausts the plan, so the fallback is exercised too.
    env = toy_env()
    agent, _ = load_agent(name, FAST[name])
    first, _ = rollout(agent, env, seed=5)
    again, _ = rollout(agent, env, seed=5)
    assert first == again
    assert len(set(first)) == len(first)


@pytest.mark.parametrize("name", REPLAN)
def test_replanning_variants_refuse_feedback_none(name):
    env = toy_env(feedback="none")
    agent, _ = load_agent(name, FAST[name])
    env.reset(seed=0)
    with pytest.raises(InputError, match="feedback"):
        agent.reset(env, 0)


@pytest.mark.parametrize("name", REPLAN)
def test_replanning_variants_run_with_queued_feedback(name):
    env = toy_env(feedback="queue:4", duration=90.0)
    agent, _ = load_agent(name, FAST[name])
    actions, info = rollout(agent, env, seed=1)
    assert info["exposures"] == len(actions) and not info["invalid_action"]
    assert rollout(agent, env, seed=1)[0] == actions


def test_revealed_holes_move_their_patch_and_square():
    env = toy_env()
    hierarchy = Hierarchy.from_layout(env.unwrapped.layout)
    prior = np.full(hierarchy.n_holes, 0.8)
    revealed = np.zeros_like(prior, dtype=bool)
    holes_of_patch = planners.holes_by_patch(hierarchy)
    patch0 = holes_of_patch[0]
    revealed[patch0[:4]] = True  # four holes of patch 0 turned out bad
    shrunk, grid_shift = planners.shrunk_good_probability(prior, revealed, np.zeros_like(revealed), hierarchy, 3, 5, 10)
    same_square = holes_of_patch[1]  # patches 0 and 1 share a square in the toy grid
    other_square = holes_of_patch[hierarchy.n_patches - 1]
    assert grid_shift < 0
    assert shrunk[patch0[4]] < shrunk[same_square[0]] < shrunk[other_square[0]] < 0.8


def test_replanning_leaves_a_square_that_disappoints():
    # Predictions say every hole is good; truth: every hole of the start's square is bad.
    world = make_world(0, tiles=2, squares_per_tile=2, patches_per_square=3, holes_per_patch=8)
    grid = replace(world.grid, ctf=np.where(world.grid.square == 0, 12.0, 3.0))
    world = World(grid, np.full(grid.n_holes, 4.0), world.profile, duration=60.0)
    env = CryoEMSessionEnv.from_world(world)
    start = {"start_hole": int(np.flatnonzero(grid.square == 0)[0])}
    good = {}
    for name in ["genetic", "genetic-replan"]:
        agent, _ = load_agent(name, FAST[name])
        obs, info = env.reset(seed=0, options=start)
        agent.reset(env, 0)
        done = False
        while not done:
            obs, _, done, _, info = env.step(agent.act(obs, info))
        good[name] = int(world.true_good[env.state.exposures].sum())
    assert good["genetic-replan"] > good["genetic"]


# ---- on the measured Aldolase data ----------------------------------------------------------------
@pytest.mark.slow
def test_planners_beat_random_and_snowball_on_measured_aldolase(aldolase_data):
    env = make_env("cryorl", {"data": str(aldolase_data), "split": "test"})
    seeds = [0, 1]

    def mean_good(name: str, overrides: dict | None = None) -> float:
        agent, _ = load_agent(name, overrides)
        return float(np.mean([play_episode(env, agent, seed)["good_exposures"] for seed in seeds]))

    baseline = max(mean_good("random"), mean_good("snowball"))
    for name in PLANNERS:
        assert mean_good(name, FAST[name]) > 1.5 * baseline, name


# ---- replanning: when, and what leaving a square costs ----------------------------------------
def test_square_change_charge_is_paid_per_used_move_to_another_square():
    # Genes 0 and 1 in one square, gene 2 in another; the start hole is in the first square.
    env = toy_env()
    hierarchy = Hierarchy.from_layout(env.unwrapped.layout)
    holes_of_patch = planners.holes_by_patch(hierarchy)
    probability = np.full(hierarchy.n_holes, 0.9)
    worth = np.zeros(hierarchy.n_holes, dtype=bool)
    patches = [0, 1, int(np.flatnonzero(hierarchy.patch_square != hierarchy.patch_square[0])[0])]
    for patch in patches:
        worth[holes_of_patch[patch]] = True
    start = int(holes_of_patch[0][0])
    worth[start] = False
    build = dict(current_hole=start, time_left=480.0, take_probability=0.5)
    free = planners.PlanProblem.build(hierarchy, holes_of_patch, probability, worth, **build)
    charged = planners.PlanProblem.build(
        hierarchy, holes_of_patch, probability, worth, **build, square_change_penalty=0.7
    )
    orders = np.array([[0, 1, 2], [0, 2, 1], [2, 0, 1]])
    # Square changes: one, two (out and back), two (out at the start, back).
    np.testing.assert_allclose(free.value(orders) - charged.value(orders), [0.7, 1.4, 1.4])
    # With no time left for the last patch, its move is not charged.
    short = planners.PlanProblem.build(
        hierarchy, holes_of_patch, probability, worth, start, 8.0, 0.5, square_change_penalty=0.7
    )
    assert short.holes_taken(orders[:1])[0, 2] == 0
    assert short.value(orders[:1])[0] == pytest.approx(
        short.cumulative_value[[0, 1], short.holes_taken(orders[:1])[0, :2]].sum()
    )
