"""The orienteering re-solve agent: its routes on hand-made grids, with both solvers, and its refusals."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

from cryobench.agents import orienteering
from cryobench.agents.registry import load_agent
from cryobench.errors import InputError
from tests.hand_grids import hand_env, play_from

# Patches 0-4: patch 0 (holes 0-1) and 1 (holes 2-3) and 4 (holes 17-18) in square 0, patch 2 (holes 4-8)
# in square 1 (both squares in tile 0), patch 3 (holes 9-16) in square 2, alone in tile 1. Every hole is
# predicted good (3 Å) but the start hole 0 and patch 4 (9 Å). Moves: 1 min in a patch, 2 to another
# patch, 6 to another square, 8 to another tile.
PATCH = [0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4]
PATCH_SQUARE = [0, 0, 1, 2, 0]
SQUARE_TILE = [0, 0, 1]
PREDICTED = [9.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0] + [3.0] * 8 + [9.0, 9.0]
START = 0
# prior_scale 0: a hole's chance is 1 when predicted good, else 0, so prizes count predicted-good holes.
COUNTING = {"prior_scale": 0.0}


def agent(solver: str, **overrides):
    return load_agent("orienteering", COUNTING | {"solver": solver} | overrides)[0]


@pytest.mark.parametrize("solver", orienteering.SOLVERS)
def test_route_fits_the_budget_and_drops_the_far_rich_patch(solver):
    # 14 minutes: patch 0's hole (1 min), patch 1 (2 + 1), patch 2 in the next square (6 + 4) = 14 min
    # for 8 good. The 8 good holes of patch 3 are a tile move away (8 + 7 = 15 min): they do not fit.
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, duration=14.0)
    orienteer = agent(solver)
    actions = play_from(orienteer, env, START, steps=1)
    assert orienteer.plan == [0, 1, 2]
    assert orienteer.last_search.value == pytest.approx(8.0)
    assert actions + play_from(orienteer, env, START)[1:8] == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("solver", orienteering.SOLVERS)
def test_route_takes_every_patch_when_the_budget_allows_in_the_cheapest_order(solver):
    # 30 minutes: 0 -> 1 -> 2 -> 3 costs 1 + 3 + 10 + 15 = 29 min (16 good); ending in square 1 instead
    # (0 -> 1 -> 3 -> 2) costs 31 min. Patch 4 (predicted bad) is never a stop.
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, duration=30.0)
    orienteer = agent(solver)
    actions = play_from(orienteer, env, START)
    assert actions[:16] == list(range(1, 17))
    assert orienteer.solves >= 2  # re-solved at each patch change


def test_revealed_bad_hole_reroutes_past_its_square():
    # Hole 1 is truly bad. Once it is revealed (pseudo-counts of half a hole: one hole speaks for its
    # square), patch 1's chance falls to 0.32, under the cut (0.4 less the grid's shift 1/31): the
    # re-solve goes straight to patch 2, then patch 3 (1 + 10 + 15 = 26 of 30 min). Blind, the same
    # agent finishes square 0 first.
    true = list(PREDICTED)
    true[1] = 10.0
    pseudo = {"patch_pseudo_count": 0.5, "square_pseudo_count": 0.5}
    seen = play_from(agent("ortools", **pseudo), hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, true, 30.0), 0)
    blind = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, true, 30.0, feedback="none")
    assert seen[:14] == [1, *range(4, 17)]
    blind_agent = agent("ortools", **pseudo)
    assert play_from(blind_agent, blind, 0)[:16] == list(range(1, 17))
    # Blind, a patch change teaches nothing: one solve, for the whole route (when it has run out, no
    # hole worth taking is left: nothing to solve).
    assert blind_agent.solves == 1
    assert seen_agent_solves(pseudo) == 3  # with feedback: at the start, after patch 0, after patch 2


def seen_agent_solves(overrides: dict) -> int:
    true = list(PREDICTED)
    true[1] = 10.0
    orienteer = agent("ortools", **overrides)
    play_from(orienteer, hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, true, 30.0), 0)
    return orienteer.solves


def test_instance_arithmetic_and_warm_start_prefix():
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, duration=14.0)
    orienteer = agent("ortools")
    play_from(orienteer, env, START, steps=1)
    problem = orienteer.last_problem
    assert problem.patches.tolist() == [0, 1, 2, 3]  # patch 4 has no hole worth taking
    instance = orienteering.RoutingInstance.build(problem, np.arange(4))
    # Node 0 start, 1-4 patches 0-3, 5 end. Minutes x 100: a move in the patch, a patch, a square, a tile away.
    assert instance.travel[0].tolist() == [0, 100, 200, 600, 800, 0]
    assert instance.service.tolist() == [0, 0, 100, 400, 700, 0]
    assert instance.prize.tolist() == [0, 10_000, 20_000, 50_000, 80_000, 0]
    assert instance.budget == 1400
    assert instance.fitting_prefix([1, 2, 3, 4]) == [1, 2, 3]  # 1 + 3 + 10 = 14 min; patch 3 would pass 14
    assert instance.fitting_prefix([4, 1]) == []  # patch 3 first: 15 min


def test_ortools_operators_are_ortools_fields():
    # The agent switches on exactly these operators and every other one off: a misspelt or renamed
    # name would silently leave the search without that operator.
    from ortools.constraint_solver import pywrapcp

    fields = {f.name for f in pywrapcp.DefaultRoutingSearchParameters().local_search_operators.DESCRIPTOR.fields}
    assert set(orienteering.ORTOOLS_OPERATORS) <= fields
    assert len(set(orienteering.ORTOOLS_OPERATORS)) == 8


def test_candidates_keep_the_route_being_followed():
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, duration=30.0)
    orienteer = agent("ortools")
    play_from(orienteer, env, START, steps=1)
    problem, hierarchy = orienteer.last_problem, orienteer.hierarchy
    # Squares by expected good per minute: square 2 (8 good / 15 min), square 1 (5 / 11), square 0 (3 / 7).
    assert orienteering.candidate_genes(problem, hierarchy, np.zeros(0, dtype=np.int64), 2).tolist() == [3, 2]
    assert orienteering.candidate_genes(problem, hierarchy, np.array([0]), 2).tolist() == [0, 3]
    assert orienteering.candidate_genes(problem, hierarchy, np.array([0]), 9).tolist() == [0, 1, 2, 3]


def test_same_seed_same_episode_with_pyvrp():
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED, duration=30.0)
    assert play_from(agent("pyvrp"), env, 5, seed=3) == play_from(agent("pyvrp"), env, 5, seed=3)


def test_refuses_unknown_solver_and_names_the_extra_when_a_solver_is_missing(monkeypatch):
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED)
    with pytest.raises(InputError, match=r"hyperparameter 'solver': expected one of ortools, pyvrp, got 'gurobi'"):
        play_from(agent("gurobi"), env, START, steps=1)
    for solver, module, library in (("ortools", "ortools.constraint_solver", "OR-Tools"), ("pyvrp", "pyvrp", "PyVRP")):
        monkeypatch.setitem(sys.modules, module, None)  # the import fails as if not installed
        message = rf"solver '{solver}' needs {library}; install the solvers with: pip install 'cryobench\[planners\]'"
        with pytest.raises(InputError, match=message):
            agent(solver).reset(env, 0)


def test_refuses_a_session_without_a_time_budget():
    env = hand_env(PATCH, PATCH_SQUARE, SQUARE_TILE, PREDICTED)
    env.layout = replace(env.layout, duration=float("inf"))
    with pytest.raises(InputError, match="no time budget"):
        agent("ortools").reset(env, 0)
