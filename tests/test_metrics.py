"""Metrics: per episode, Jaccard, aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from cryobench import metrics, simulator
from cryobench.errors import InputError

from .conftest import make_world


def test_episode_metrics_match_a_recount():
    world = make_world(5)
    state = simulator.start_session(world, 0)
    for hole in (1, 2, 7, 30, 31, 59, 2):  # the repeated 2 is an invalid move
        simulator.expose(world, state, hole)
    m = metrics.episode_metrics(world, state)
    exposed = [1, 2, 7, 30, 31, 59]
    ctf = world.grid.ctf[exposed]
    assert m["trajectory"] == exposed
    assert m["exposures"] == 6 and m["invalid_moves"] == 1
    assert m["good_exposures"] == int((ctf < 6.0).sum()) == sum(m["trajectory_good"])
    assert sum(m["bins"].values()) == 6
    assert m["bins"]["<4"] == int((ctf < 4).sum()) and m["bins"][">6"] == int((ctf >= 6).sum())
    assert m["total_reward"] == pytest.approx(sum(state.rewards))
    assert sum(m["moves"].values()) == 6
    assert m["squares_visited"] == len(set(world.grid.square[exposed]))
    assert m["exposures_per_square"] == pytest.approx(6 / m["squares_visited"])
    assert m["good_curve"]["good"][-1] == m["good_exposures"]
    assert m["good_curve"]["minutes"] == sorted(m["good_curve"]["minutes"])


def test_jaccard_and_matrix():
    assert metrics.jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 4)
    assert metrics.jaccard([], []) == 1.0
    trajs = [[1, 2, 3], [2, 3, 4], [7]]
    matrix = metrics.jaccard_matrix(trajs)
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == pytest.approx(0.5) and matrix[0, 2] == 0.0
    np.testing.assert_allclose(matrix, matrix.T)
    good = np.zeros(10, dtype=bool)
    good[[2, 4]] = True
    good_matrix = metrics.jaccard_matrix(trajs, good=good)
    assert good_matrix[0, 1] == pytest.approx(metrics.jaccard([2], [2, 4]))
    assert metrics.mean_pairwise(matrix) == pytest.approx((0.5 + 0 + 0) / 3)


def test_normalised_score():
    assert metrics.normalised_score(22.0, 22.0, 422.0) == 0.0
    assert metrics.normalised_score(422.0, 22.0, 422.0) == 100.0
    assert metrics.normalised_score(222.0, 22.0, 422.0) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="undefined"):
        metrics.normalised_score(1.0, 5.0, 5.0)


def test_iqm_ignores_the_tails():
    values = np.array([0, 10, 10, 10, 10, 10, 10, 1000], dtype=float)
    assert metrics.iqm(values) == pytest.approx(10.0)


def test_iqm_equals_scipys_trimmed_mean_bit_for_bit():
    from scipy import stats

    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 4, 5, 7, 50, 51, 1000]:
        values = rng.normal(size=n) * 100
        assert metrics.iqm(values) == float(stats.trim_mean(values, 0.25))
    table = rng.normal(size=(7, 51))
    for axis in (0, 1):
        np.testing.assert_array_equal(metrics.iqm(table, axis=axis), stats.trim_mean(table, 0.25, axis=axis))


def test_bootstrap_ci_covers_the_point_and_is_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 2, 50), rng.normal(20, 2, 30)
    point, low, high = metrics.bootstrap_ci([a, b], seed=1)
    assert low < point < high
    assert metrics.bootstrap_ci([a, b], seed=1) == (point, low, high)
    wide = metrics.bootstrap_ci([rng.normal(10, 20, 50)], seed=1)
    assert (wide[2] - wide[1]) > (high - low)


def test_probability_of_improvement():
    x = [np.array([5.0, 6.0, 7.0])]
    y = [np.array([1.0, 2.0, 3.0])]
    assert metrics.probability_of_improvement(x, y) == 1.0
    assert metrics.probability_of_improvement(y, x) == 0.0
    assert metrics.probability_of_improvement(x, x) == pytest.approx(0.5)


# ---- normalised-score reference points and the metric registry ----------------------------------
def test_reference_points_are_the_random_mean_and_the_best_upper_bound():
    runs = [("random", False, 10.0), ("greedy", False, 30.0), ("oracle-a", True, 50.0), ("oracle-b", True, 70.0)]
    assert metrics.reference_points(runs) == (10.0, 70.0)
    assert metrics.reference_points([("greedy", False, 30.0), ("oracle-a", True, 50.0)]) == (None, 50.0)
    assert metrics.reference_points([("random", False, 10.0)]) == (10.0, None)
    # A bound that does not beat random leaves the score undefined (blank), never a division by ~0.
    assert metrics.reference_points([("random", False, 10.0), ("oracle-a", True, 10.0)]) == (10.0, None)


def test_the_built_in_metrics_are_the_results_summary_of_format_v1():
    assert list(metrics.METRICS) == [
        "good_exposures", "exposures", "good_fraction", "total_reward", "squares_visited", "exposures_per_square",
    ]  # fmt: skip
    row = {"good_exposures": 12, "exposures": 40, "good_fraction": 0.3, "total_reward": 11.5}
    assert metrics.metric("good_fraction").format(metrics.metric("good_fraction").value(row)) == "0.30"
    assert metrics.metric("exposures").format(40.0, one_episode=True) == "40"
    assert metrics.metric("exposures").format(40.26) == "40.3"
    assert metrics.metric("total_reward").values([row, row]).tolist() == [11.5, 11.5]


def test_the_registry_refuses_a_second_metric_of_a_name_and_names_the_known_ones():
    with pytest.raises(ValueError, match="'exposures' is registered already"):
        metrics.register_metric(metrics.Metric("exposures", "exposures again"))
    with pytest.raises(InputError, match="unknown metric 'good'; registered: good_exposures, exposures, "):
        metrics.metric("good")


def test_a_computed_metric_reads_the_episode_row():
    per_hour = metrics.Metric("good_per_hour", "good exposures", unit="per hour", compute=lambda r: r["good"] / 2)
    assert per_hour.value({"good": 9}) == 4.5 and per_hour.axis_label == "good exposures (per hour)"


def test_an_episode_without_a_metrics_field_is_refused_naming_it():
    with pytest.raises(InputError, match="metric 'total_reward': an episode lacks the field 'total_reward'"):
        metrics.metric("total_reward").values([{"good_exposures": 3}])
