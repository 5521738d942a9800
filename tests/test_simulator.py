"""Property tests of the session simulator (the functional core) and of the incremental features."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryobench import simulator
from cryobench.errors import InputError
from cryobench.features import (
    FEATURE_NAMES,
    N_CRYORL_FEATURES,
    N_FEATURES,
    hole_features,
    hole_features_from_scratch,
)
from cryobench.grid import CTF_CAP, Grid
from cryobench.profiles import PROFILES, InstrumentProfile, get_profile, partial_reward_factor

from .conftest import make_world

feedbacks = st.sampled_from(["inspection", "none", "queue:1", "queue:3", "queue:10"])
#: Where the next action goes: a hole in the current patch, square or tile, anywhere, or a visited hole.
MOVE_KINDS = ("patch", "square", "tile", "any", "visited")
moves = st.lists(st.tuples(st.sampled_from(MOVE_KINDS), st.integers(0, 10**6)), min_size=1, max_size=80)


@st.composite
def profiles(draw) -> InstrumentProfile:
    """A named profile or a custom one: four non-decreasing positive minutes and a decay rate."""
    if draw(st.booleans()):
        return PROFILES[draw(st.sampled_from(sorted(PROFILES)))]
    steps = draw(st.lists(st.floats(0.0, 10.0), min_size=3, max_size=3))
    first = draw(st.floats(0.1, 5.0))
    minutes = tuple(float(x) for x in np.cumsum([first, *steps]))
    return InstrumentProfile("custom", minutes, draw(st.floats(0.0, 1.0)), "hypothesis")


def shuffled(world: simulator.World, seed: int) -> simulator.World:
    """The same world with its holes in a random order (the features' cache sorts them)."""
    order = np.random.default_rng(seed).permutation(world.n_holes)
    g = world.grid
    grid = Grid(
        name=g.name,
        tile=g.tile[order],
        square=g.square[order],
        patch=g.patch[order],
        x_um=g.x_um[order],
        y_um=g.y_um[order],
        ctf=g.ctf[order],
        confidence=g.confidence[order],
        failed=g.failed[order],
        hole_names=tuple(np.asarray(g.hole_names)[order]),
        square_xy_um=g.square_xy_um,
        pitch_um=g.pitch_um,
    )
    return dataclasses.replace(world, grid=grid, predicted_ctf=world.predicted_ctf[order])


def choose_hole(world: simulator.World, state: simulator.SessionState, kind: str, raw: int) -> int:
    """A hole of the given kind (see MOVE_KINDS); any unvisited hole when there is none."""
    unvisited = np.flatnonzero(~state.visited)
    if kind == "visited":
        candidates = np.flatnonzero(state.visited)
    elif kind == "any":
        candidates = unvisited
    else:
        ids = world.groups[("patch", "square", "tile").index(kind)]
        candidates = unvisited[ids[unvisited] == ids[state.current]]
    if len(candidates) == 0:
        candidates = unvisited
    return int(candidates[raw % len(candidates)])


def expected_revealed(world: simulator.World, state: simulator.SessionState) -> set[int]:
    """What each feedback mode must have revealed, from the exposures alone."""
    if world.feedback.mode == "inspection":
        return set(state.exposures)
    if world.feedback.mode == "none":
        return set()
    batch = world.feedback.batch
    return set(state.exposures[: state.n_exposures // batch * batch])


def assert_same_bits(fast: np.ndarray, reference: np.ndarray) -> None:
    assert fast.dtype == reference.dtype == np.float32 and fast.shape == reference.shape
    different = np.argwhere(fast.view(np.uint32) != reference.view(np.uint32))
    assert len(different) == 0, f"(hole, feature) differing: {different[:5].tolist()}"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    feedback=feedbacks,
    profile=profiles(),
    partial=st.booleans(),
    duration=st.floats(5.0, 200.0),
    plan=moves,
)
def test_session_invariants(seed, feedback, profile, partial, duration, plan):
    world = dataclasses.replace(
        make_world(seed),
        profile=profile,
        duration=duration,
        partial_reward=partial,
        feedback=simulator.Feedback.parse(feedback),
    )
    state = simulator.start_session(world, seed % world.n_holes)
    minutes = np.asarray(profile.minutes)
    last_elapsed, last_minutes = 0.0, 0.0
    for kind, raw in plan:
        if simulator.is_over(world, state):
            break
        hole = choose_hole(world, state, kind, raw)
        was_visited = bool(state.visited[hole])
        revealed_before = state.revealed.copy()
        level = simulator.move_level(world, state.current, hole)
        current_before = state.current
        result = simulator.expose(world, state, hole)
        # time never decreases, and grows by exactly the profile's minutes
        assert state.elapsed > last_elapsed
        assert state.elapsed == pytest.approx(last_elapsed + result.minutes)
        if was_visited:
            assert result.invalid and result.reward == 0.0 and result.minutes == minutes[0]
            assert state.current == current_before and result.newly_revealed == ()
        else:
            assert not result.invalid and result.level == level and result.minutes == minutes[level]
            # the reward follows the cost table: exp(-beta (t - t0)), t0 the cheapest move
            full = np.exp(-profile.beta * (minutes[level] - minutes[0]))
            ctf = world.grid.ctf[hole]
            if ctf < world.threshold:
                assert result.reward == pytest.approx(full)
            elif partial and not world.grid.failed[hole]:
                assert result.reward == pytest.approx(full * partial_reward_factor(ctf, world.threshold))
            else:
                assert result.reward == 0.0
        last_elapsed, last_minutes = state.elapsed, result.minutes
        # no hole exposed twice; the start is never an exposure; every exposure is visited
        assert len(set(state.exposures)) == state.n_exposures == int(state.moves.sum())
        assert state.start not in state.exposures
        assert state.visited.sum() == state.n_exposures + 1
        # incremental counts equal a recomputation from scratch
        for kept, fresh in zip(
            state.tables, simulator.recount_tables(world, state.visited, state.revealed), strict=True
        ):
            np.testing.assert_array_equal(kept, fresh)
        # feedback reveals exactly what its mode says, and nothing of the other holes
        assert set(np.flatnonzero(state.revealed).tolist()) == expected_revealed(world, state)
        assert set(result.newly_revealed) == set(np.flatnonzero(state.revealed & ~revealed_before).tolist())
        np.testing.assert_array_equal(state.revealed_ctf[state.revealed], world.grid.ctf[state.revealed])
        assert not state.revealed_ctf[~state.revealed].any()
    # the episode ends by the rules: over exactly when time is exceeded or every hole visited,
    # and the move that crossed the duration was taken and counted
    over = state.elapsed > world.duration or state.visited.all()
    assert simulator.is_over(world, state) == over
    if state.elapsed > world.duration:
        assert state.elapsed - last_minutes <= world.duration


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), feedback=feedbacks, in_hole_order=st.booleans(), plan=moves)
def test_incremental_features_equal_recomputation_at_every_step(seed, feedback, in_hole_order, plan):
    world = make_world(seed, feedback=feedback, tiles=3, squares_per_tile=2, patches_per_square=3, holes_per_patch=4)
    if not in_hole_order:
        world = shuffled(world, seed)
    state = simulator.start_session(world, seed % world.n_holes)
    assert_same_bits(hole_features(world, state), _original_hole_features(world, state))
    for kind, raw in plan:
        if simulator.is_over(world, state):
            break
        simulator.expose(world, state, choose_hole(world, state, kind, raw))
        fast = hole_features(world, state)
        assert_same_bits(fast, hole_features_from_scratch(world, state))
        assert_same_bits(fast, _original_hole_features(world, state))


def test_feature_cache_follows_copied_and_replaced_states():
    world = shuffled(make_world(5, feedback="queue:2"), 5)
    state = simulator.start_session(world, 0)
    for hole in (7, 30, 31):
        simulator.expose(world, state, hole)
    hole_features(world, state)  # the cache now describes `state`
    twin = copy.deepcopy(state)
    # every field copied but the cache
    sharing = dataclasses.replace(
        copy.deepcopy(dataclasses.replace(state, feature_cache=None)), feature_cache=state.feature_cache
    )
    assert sharing.feature_cache is state.feature_cache  # a shared cache must not mix the two up
    for hole, other in ((50, 2), (51, 45), (12, 13)):
        simulator.expose(world, state, hole)
        simulator.expose(world, twin, other)
        simulator.expose(world, sharing, other)
        for each in (state, twin, sharing):
            assert_same_bits(hole_features(world, each), hole_features_from_scratch(world, each))
    # a state reused with another world rebuilds its cache
    other_world = make_world(6)
    fresh = simulator.start_session(other_world, 0)
    fresh.feature_cache = state.feature_cache
    assert_same_bits(hole_features(other_world, fresh), hole_features_from_scratch(other_world, fresh))


def test_features_are_a_fresh_array_each_call():
    world = make_world(2)
    state = simulator.start_session(world, 0)
    first = hole_features(world, state)
    kept = first.copy()
    first[:] = -1.0  # the caller owns it: writing into it changes nothing inside
    simulator.expose(world, state, 20)
    assert_same_bits(hole_features(world, state), hole_features_from_scratch(world, state))
    second = hole_features(world, state)
    assert not np.shares_memory(second, hole_features(world, state))
    np.testing.assert_array_equal(kept[:, 0], second[:, 0])


def test_recount_tables_equal_counting_hole_by_hole():
    world = make_world(4, feedback="queue:3")
    state = simulator.start_session(world, 3)
    for hole in (10, 11, 40, 55, 2, 9, 30):
        simulator.expose(world, state, hole)
    bins = np.searchsorted(simulator.FEATURE_BIN_EDGES, world.predicted_ctf, side="right") - 1
    for ids, table in zip(world.groups, simulator.recount_tables(world, state.visited, state.revealed), strict=True):
        expected = np.zeros_like(table)
        for hole in range(world.n_holes):
            row = expected[ids[hole]]
            good = world.predicted_ctf[hole] < world.threshold
            if state.visited[hole]:
                row[simulator.COL_VISITED] += 1
                row[simulator.COL_VISITED_PRED_GOOD] += good
            else:
                row[bins[hole]] += 1
                row[simulator.COL_UNVISITED_PRED_GOOD] += good
            if state.revealed[hole]:
                row[simulator.COL_REVEALED] += 1
                row[simulator.COL_REVEALED_GOOD] += world.grid.ctf[hole] < world.threshold
        np.testing.assert_array_equal(table, expected)
    with pytest.raises(ValueError, match="read-only"):
        world.initial_tables[0][0, 0] = 5  # sessions copy these; nobody may change them


def test_recount_tables_of_many_sessions_at_once_equal_each_sessions_tables():
    world = make_world(5, feedback="queue:3")
    rng = np.random.default_rng(0)
    states = []
    for start in (0, 17, 59):
        state = simulator.start_session(world, start)
        for hole in rng.permutation(np.flatnonzero(~state.visited))[: int(rng.integers(5, 40))]:
            simulator.expose(world, state, int(hole))
        states.append(state)
    batched = simulator.recount_tables(
        world, np.stack([s.visited for s in states]), np.stack([s.revealed for s in states])
    )
    for i, state in enumerate(states):
        for level_tables, kept in zip(batched, state.tables, strict=True):
            np.testing.assert_array_equal(level_tables[i], kept)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), plan=st.lists(st.sampled_from(MOVE_KINDS), min_size=1, max_size=20))
def test_paper_costs_end_between_481_and_488_minutes(seed, plan):
    """480-minute sessions with the paper's 1/2/6/8-minute moves end at 481-488 minutes: the
    crossing move counts. (488 needs exactly 480 minutes then an 8-minute move.)"""
    world = make_world(seed, tiles=4, squares_per_tile=3, patches_per_square=4, holes_per_patch=12)
    state = simulator.start_session(world, seed % world.n_holes)
    rng = np.random.default_rng(seed)
    step, last = 0, None
    while not simulator.is_over(world, state):
        kind = plan[step % len(plan)]
        last = simulator.expose(world, state, choose_hole(world, state, kind, int(rng.integers(10**6))))
        step += 1
    assert 480.0 < state.elapsed <= 488.0
    assert state.elapsed - last.minutes <= 480.0  # the move that crossed the limit was taken


def test_crossing_from_exactly_the_duration_ends_at_488_minutes():
    world = make_world(0, tiles=4, squares_per_tile=3, patches_per_square=4, holes_per_patch=12)
    state = simulator.start_session(world, 0)
    while state.elapsed < 480.0:  # 8-minute moves to other tiles: 60 x 8 = 480
        simulator.expose(world, state, _other_tile(world, state))
    assert state.elapsed == 480.0 and not simulator.is_over(world, state)
    simulator.expose(world, state, _other_tile(world, state))
    assert state.elapsed == 488.0 and simulator.is_over(world, state)


def _other_tile(world: simulator.World, state: simulator.SessionState) -> int:
    tile = world.grid.tile
    return int(np.flatnonzero(~state.visited & (tile != tile[state.current]))[0])


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


# ---- the features as first written (commit 73a756d), frozen: the values agents train on ----


def _original_level_table(table: np.ndarray, cap: float) -> np.ndarray:
    hist = table[:, simulator.COL_HIST].astype(np.float32)
    unvisited = hist.sum(axis=1, keepdims=True)
    counts = np.column_stack(
        [
            unvisited[:, 0],
            table[:, simulator.COL_UNVISITED_PRED_GOOD],
            table[:, simulator.COL_VISITED],
            table[:, simulator.COL_VISITED_PRED_GOOD],
        ]
    ).astype(np.float32)
    revealed = table[:, simulator.COL_REVEALED].astype(np.float32)
    good_frac = table[:, simulator.COL_REVEALED_GOOD] / np.maximum(revealed, 1.0)
    return np.column_stack(
        [hist / np.maximum(unvisited, 1.0), np.minimum(counts / cap, 1.0), good_frac, np.minimum(revealed / cap, 1.0)]
    ).astype(np.float32)


def _original_hole_features(world: simulator.World, state: simulator.SessionState) -> np.ndarray:
    per_level = simulator.N_BINS + 4
    out = np.empty((world.n_holes, N_FEATURES), dtype=np.float32)
    out[:, 0] = np.minimum(world.predicted_ctf, CTF_CAP) / CTF_CAP
    out[:, 1] = state.visited
    for i, (ids, table, cap) in enumerate(zip(world.groups, state.tables, (32.0, 320.0, 1600.0), strict=True)):
        per_hole = _original_level_table(table, cap)[ids]
        start = 2 + i * per_level
        out[:, start : start + per_level] = per_hole[:, :per_level]
        out[:, 34 + i] = per_hole[:, per_level]
        out[:, 37 + i] = per_hole[:, per_level + 1]
    levels = simulator.move_levels(world, state.current)
    out[:, 29] = levels <= 2
    out[:, 30] = levels <= 1
    out[:, 31] = levels == 0
    out[:, 32] = state.revealed
    out[:, 33] = np.minimum(state.revealed_ctf, CTF_CAP) / CTF_CAP
    minutes = np.asarray(world.profile.minutes, dtype=np.float32)
    out[:, 40] = minutes[levels] / minutes[-1]
    out[:, 41] = simulator.time_left(world, state) / world.duration
    return out
