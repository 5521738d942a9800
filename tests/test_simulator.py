"""Property tests of the session simulator (the functional core)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryobench import simulator
from cryobench.errors import InputError
from cryobench.features import FEATURE_NAMES, N_CRYORL_FEATURES, N_FEATURES, hole_features
from cryobench.profiles import PROFILES, get_profile, partial_reward_factor

from .conftest import make_world

feedbacks = st.sampled_from(["inspection", "none", "queue:1", "queue:3", "queue:10"])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    feedback=feedbacks,
    profile=st.sampled_from(sorted(PROFILES)),
    partial=st.booleans(),
    duration=st.floats(5.0, 200.0),
    actions=st.lists(st.integers(0, 10_000), min_size=1, max_size=80),
)
def test_session_invariants(seed, feedback, profile, partial, duration, actions):
    world = make_world(seed, feedback=feedback, profile=profile, partial=partial, duration=duration)
    state = simulator.start_session(world, seed % world.n_holes)
    rewards = world.profile.rewards()
    last_elapsed = 0.0
    for raw in actions:
        if simulator.is_over(world, state):
            break
        hole = raw % world.n_holes
        was_visited = bool(state.visited[hole])
        level = simulator.move_level(world, state.current, hole)
        result = simulator.expose(world, state, hole)
        # time never decreases, and grows by exactly the profile's minutes
        assert state.elapsed > last_elapsed
        if was_visited:
            assert result.invalid and result.reward == 0.0 and result.minutes == world.profile.minutes[0]
        else:
            assert result.level == level and result.minutes == world.profile.minutes[level]
            ctf = world.grid.ctf[hole]
            if ctf < world.threshold:
                assert result.reward == pytest.approx(rewards[level])
            elif partial and not world.grid.failed[hole]:
                assert result.reward == pytest.approx(rewards[level] * partial_reward_factor(ctf, world.threshold))
            else:
                assert result.reward == 0.0
        assert state.elapsed == pytest.approx(last_elapsed + result.minutes)
        last_elapsed = state.elapsed
        # no hole exposed twice; the start is never an exposure
        assert len(set(state.exposures)) == len(state.exposures)
        assert state.start not in state.exposures
        # incremental counts equal a recomputation from scratch
        for kept, fresh in zip(
            state.tables, simulator.recount_tables(world, state.visited, state.revealed), strict=True
        ):
            np.testing.assert_array_equal(kept, fresh)
        # feedback: what is revealed follows the mode
        if world.feedback.mode == "inspection":
            assert state.revealed.sum() == state.n_exposures
        elif world.feedback.mode == "none":
            assert not state.revealed.any()
        else:
            k = world.feedback.batch
            assert state.revealed.sum() == (state.n_exposures // k) * k
        np.testing.assert_array_equal(state.revealed_ctf[state.revealed], world.grid.ctf[state.revealed])
    # the episode ends by the rules: over exactly when time is exceeded or every hole visited
    over = state.elapsed > world.duration or state.visited.all()
    assert simulator.is_over(world, state) == over


def test_session_ends_after_crossing_move_counts():
    world = make_world(0, duration=10.0)
    state = simulator.start_session(world, 0)
    order = np.argsort(world.grid.tile, kind="stable")[::-1]  # far holes first: 8-minute moves
    steps = 0
    for hole in order:
        if simulator.is_over(world, state):
            break
        if not state.visited[hole]:
            simulator.expose(world, state, int(hole))
            steps += 1
    assert state.elapsed > 10.0
    assert state.elapsed - world.profile.minutes[3] <= 10.0  # the crossing move was taken and counted
    assert state.n_exposures == steps


def test_episode_over_when_every_hole_visited():
    world = make_world(0, duration=1e9)
    state = simulator.start_session(world, 0)
    for hole in range(1, world.n_holes):
        assert not simulator.is_over(world, state)
        simulator.expose(world, state, hole)
    assert simulator.is_over(world, state)


def test_rewards_derived_from_profile_costs():
    np.testing.assert_allclose(PROFILES["paper"].rewards(), [1.0, 0.905, 0.607, 0.497], atol=1e-3)
    np.testing.assert_allclose(PROFILES["arxiv"].rewards(), np.exp(-0.185 * (np.array([2, 5, 10, 20]) - 2)))
    custom = get_profile({"minutes": [2, 3, 4, 5], "beta": 0.5})
    np.testing.assert_allclose(custom.rewards(), np.exp(-0.5 * np.arange(4)))


def test_partial_reward_shape():
    assert partial_reward_factor(6.0, 6.0) == pytest.approx(1.0)
    assert partial_reward_factor(8.2, 6.0) == 0.0
    assert 0 < partial_reward_factor(7.0, 6.0) < 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bogus", "unknown profile"),
        ({"minutes": [1, 2]}, "4 numbers"),
        ({"minutes": [1, 2, 3, "x"]}, "numbers"),
        ({"minutes": [5, 2, 6, 8]}, "must not decrease"),
        ({"minutes": [1, 2, 3, 4], "speed": 2}, "'minutes'"),
    ],
)
def test_bad_profiles_rejected(value, message):
    with pytest.raises(InputError, match=message):
        get_profile(value)


@pytest.mark.parametrize("value", ["queue", "queue:0", "queue:x", "inspect", 3])
def test_bad_feedback_rejected(value):
    with pytest.raises(InputError, match="argument 'feedback'"):
        simulator.Feedback.parse(value)


def test_features_layout_and_values():
    world = make_world(3)
    state = simulator.start_session(world, 0)
    simulator.expose(world, state, 1)
    features = hole_features(world, state)
    assert features.shape == (world.n_holes, N_FEATURES) == (world.n_holes, len(FEATURE_NAMES))
    assert N_CRYORL_FEATURES == 32 and FEATURE_NAMES[29:32] == ("same_tile", "same_square", "same_patch")
    assert features.min() >= 0.0 and features.max() <= 1.0
    np.testing.assert_allclose(features[:, 0], np.minimum(world.predicted_ctf, 20) / 20, rtol=1e-6)
    np.testing.assert_array_equal(features[:, 1], state.visited)
    # histograms sum to one over groups that still have unvisited holes
    np.testing.assert_allclose(features[:, 2:7].sum(axis=1), 1.0, rtol=1e-5)
    same_patch = world.grid.patch == world.grid.patch[1]
    np.testing.assert_array_equal(features[:, 31], same_patch)
    # patch visited count: holes 0 and 1 are in patch 0
    assert features[0, FEATURE_NAMES.index("patch_visited")] == pytest.approx(2 / 32)
    assert features[1, FEATURE_NAMES.index("revealed")] == 1.0
    assert features[1, FEATURE_NAMES.index("revealed_ctf")] == pytest.approx(min(world.grid.ctf[1], 20) / 20)
