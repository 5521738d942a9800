"""The session's rules have one home (cryobench.rules); every user agrees with it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cryobench import features, simulator
from cryobench.agents.common import Hierarchy
from cryobench.agents.planners import patch_to_patch_minutes
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.rules import MOVE_LEVELS, SHARED_GROUPS_BY_LEVEL, Feedback, move_level
from tests.conftest import make_world


def _expected_level(world: simulator.World, a: int, b: int) -> int:
    """The rule as the paper states it, written out independently."""
    patch, square, tile = world.groups
    if patch[a] == patch[b]:
        return 0
    if square[a] == square[b]:
        return 1
    if tile[a] == tile[b]:
        return 2
    return 3


def test_move_level_counts_the_shared_groups():
    assert [int(move_level(*shared)) for shared in SHARED_GROUPS_BY_LEVEL] == [0, 1, 2, 3]
    assert len(MOVE_LEVELS) == 4
    same = np.array([[True, True, True], [True, True, False], [True, False, False], [False, False, False]])
    assert move_level(same[:, 0], same[:, 1], same[:, 2]).tolist() == [0, 1, 2, 3]


def test_simulator_agents_and_features_use_the_same_move_costs():
    world = make_world(seed=3)
    env = CryoEMSessionEnv.from_world(world)
    hierarchy = Hierarchy.from_layout(env.layout)
    minutes = np.asarray(world.profile.minutes)
    for start in (0, 7, world.n_holes - 1):
        expected = np.array([_expected_level(world, start, b) for b in range(world.n_holes)])
        assert simulator.move_levels(world, start).tolist() == expected.tolist()
        assert simulator.move_level(world, start, 11) == expected[11]
        assert hierarchy.hole_minutes(start).tolist() == minutes[expected].tolist()
        first_hole = features.first_hole_of_each_patch(hierarchy.patch)
        assert hierarchy.patch_minutes(start).tolist() == minutes[expected[first_hole]].tolist()
        state = simulator.start_session(world, start)
        matrix = features.hole_features(world, state)
        shared = matrix[:, features.SHARED_GROUP_COLUMNS]
        assert shared.tolist() == SHARED_GROUPS_BY_LEVEL[expected].astype(np.float32).tolist()
        assert np.allclose(matrix[:, features.MOVE_MINUTES_COLUMN], minutes[expected] / minutes[-1])
    patches = np.arange(hierarchy.n_patches)
    table = patch_to_patch_minutes(hierarchy, patches, patches)
    first_hole = features.first_hole_of_each_patch(hierarchy.patch)
    for p in (0, hierarchy.n_patches - 1):
        levels = [_expected_level(world, first_hole[p], first_hole[q]) for q in patches]
        assert table[p].tolist() == minutes[levels].tolist()


def test_an_exposure_costs_what_the_rule_says():
    world = make_world(seed=4)
    state = simulator.start_session(world, 0)
    for hole in (1, 9, 20, world.n_holes - 1):
        level = _expected_level(world, state.current, hole)
        result = simulator.expose(world, state, hole)
        assert (result.level, result.minutes) == (level, world.profile.minutes[level])


def test_feature_columns_are_named_once():
    assert features.N_FEATURES == len(features.FEATURE_NAMES) == len(features.COLUMN)
    own = [features.FEATURE_NAMES[c] for c in features.HOLE_OWN_COLUMNS]
    assert own == ["pred_ctf", "visited", "revealed", "revealed_ctf"]
    covered = np.concatenate(
        [
            np.ravel(features.HOLE_OWN_COLUMNS),
            np.concatenate(features.GROUP_COLUMNS),
            np.arange(features.N_FEATURES)[features.SHARED_GROUP_COLUMNS],
            [features.MOVE_MINUTES_COLUMN, features.TIME_LEFT_COLUMN],
        ]
    )
    assert sorted(covered.tolist()) == list(range(features.N_FEATURES))  # every column once


@pytest.mark.parametrize("text", ["inspection", "none", "queue:3"])
def test_feedback_is_parsed_once_and_shared(text):
    env = CryoEMSessionEnv(dataset="aldolase", feedback=text)
    assert env.layout.feedback is env.unwrapped.world.feedback
    assert isinstance(env.layout.feedback, Feedback)
    assert str(env.layout.feedback) == text
    assert env.layout.feedback.reveals == (text != "none")


def test_the_public_layout_cannot_change_the_rules():
    env = CryoEMSessionEnv(dataset="aldolase")
    layout = env.layout
    for name in ("tile", "square", "patch", "x_um", "y_um", "square_xy_um", "predicted_ctf"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(layout, name)[:1] = 0


@pytest.mark.parametrize(
    "action", [12.7, "5", True, np.True_, None, float("nan"), float("inf"), 1 + 2j, np.array([3]), np.float64(3.0)]
)
def test_an_action_is_an_integer_hole_index_and_nothing_else(action):
    env = CryoEMSessionEnv(dataset="aldolase")
    env.reset(seed=0)
    before = (env.state.elapsed, list(env.state.exposures))
    with pytest.raises(InputError, match="action: expected a hole index") as caught:
        env.step(action)
    assert "\n" not in str(caught.value)
    assert (env.state.elapsed, list(env.state.exposures)) == before  # state unchanged


@pytest.mark.parametrize("action", [7, np.int64(7), np.int32(7), np.array(7), np.array(7, dtype=np.uint16)])
def test_integer_actions_of_every_kind_name_the_same_hole(action):
    env = CryoEMSessionEnv(dataset="aldolase")
    env.reset(seed=0)
    env.step(action)
    assert env.state.exposures == [7]


@pytest.mark.parametrize("text", ["queue: 5", "queue:+5", "queue:1_0", "queue:0", "queue:-1", "queue:", "Queue:5"])
def test_feedback_text_is_parsed_strictly(text):
    with pytest.raises(InputError, match="argument 'feedback'"):
        Feedback.parse(text)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"minutes": "1268"}, "'minutes' must be a list of 4 numbers"),
        ({"minutes": [1, 2, 6, True]}, "'minutes' must be a list of 4 numbers"),
        ({"minutes": [1, 2, 6, 1e40]}, "up to 525600"),
        ({"minutes": [1, 2, 6, 8], "beta": "0.1"}, "'beta' must be a number"),
    ],
)
def test_a_custom_profile_is_read_strictly(profile, message):
    from cryobench.profiles import get_profile

    with pytest.raises(InputError, match=re.escape(message)):
        get_profile(profile)


@pytest.mark.parametrize(
    ("agent", "overrides", "message"),
    [
        ("greedy", {"replan_every": 0}, "'replan_every' of agent 'greedy' must be >= 1, got 0"),
        ("greedy", {"scale": float("nan")}, "'scale' of agent 'greedy' must be finite"),
        ("ucb", {"scale": 0.0}, "'scale' of agent 'ucb' must be > 0"),
        ("genetic", {"population": -3}, "'population' of agent 'genetic' must be >= 2"),
        ("epsilon-greedy", {"epsilon": 1.5}, "'epsilon' of agent 'epsilon-greedy' must be >= 0 and <= 1"),
        ("greedy", {"replan_every": True}, "'replan_every' of agent 'greedy' must be int, got True"),
    ],
)
def test_hyperparameters_out_of_their_cards_ranges_are_refused_naming_where_they_came_from(agent, overrides, message):
    from cryobench.agents.registry import load_agent

    with pytest.raises(InputError, match=re.escape(message)) as caught:
        load_agent(agent, overrides)
    assert str(caught.value).startswith("the hyperparameters given (-H)")  # not blamed on the card file
