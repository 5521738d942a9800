"""Protocol v2's statistics (cryobench.aggregate): rliable's results, hand-computed cases, the ranking rule.

tests/fixtures/rliable_expected.json holds a fixed score matrix and the values rliable 1.2.0 computed
from it once (the script and the library versions are recorded in the file). Point estimates AND
bootstrap CIs are compared to 1e-9: aggregate draws the same bootstrap indices as rliable (numpy's
RandomState stream), so the CIs are reproduced exactly, not only statistically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from cryobench import aggregate
from cryobench.aggregate import Interval
from cryobench.errors import InputError

FIXTURE = Path(__file__).parent / "fixtures" / "rliable_expected.json"


def one_line_error(call, *args, match: str, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


# ---- rliable's values --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rliable_case():
    case = json.loads(FIXTURE.read_text())
    summary = aggregate.summarise(
        np.array(case["scores"]),
        case["agents"],
        case["tasks"],
        case["families"],
        taus=np.array(case["taus"]),
        reps=case["reps"],
        confidence=case["confidence"],
        seed=case["seed"],
        gamma=1.0,  # rliable's default: the fixture's scores are on rliable's fraction scale
    )
    return case, summary


def test_the_fixture_says_what_made_it(rliable_case):
    case, _ = rliable_case
    assert case["made_with"]["rliable"] == "1.2.0" and case["made_with"]["numpy"]
    assert "rly.get_interval_estimates" in case["script_source"]
    assert set(case["expected"]) == {"overall", "quality", "timing"}


@pytest.mark.parametrize("scope", ["overall", "quality", "timing"])
def test_aggregates_and_their_cis_equal_rliable(rliable_case, scope):
    case, summary = rliable_case
    for k, agent in enumerate(case["agents"]):
        for name, (point, low, high) in case["expected"][scope]["aggregates"][agent].items():
            got = summary[scope].aggregates[name]
            np.testing.assert_allclose([got.point[k], got.low[k], got.high[k]], [point, low, high], rtol=0, atol=1e-9)


@pytest.mark.parametrize("scope", ["overall", "quality", "timing"])
def test_probability_of_improvement_and_its_ci_equal_rliable(rliable_case, scope):
    case, summary = rliable_case
    agents, improvement = case["agents"], summary[scope].improvement
    expected = case["expected"][scope]["probability_of_improvement"]
    assert len(expected) == len(agents) * (len(agents) - 1)  # every ordered pair
    for pair, (point, low, high) in expected.items():
        x, y = (agents.index(name) for name in pair.split(">"))
        got = [improvement.point[x, y], improvement.low[x, y], improvement.high[x, y]]
        np.testing.assert_allclose(got, [point, low, high], rtol=0, atol=1e-9)


@pytest.mark.parametrize("scope", ["overall", "quality", "timing"])
def test_performance_profiles_and_their_cis_equal_rliable(rliable_case, scope):
    case, summary = rliable_case
    profiles = summary[scope].profiles
    for k, agent in enumerate(case["agents"]):
        expected = case["expected"][scope]["profiles"][agent]
        for kind in ("point", "low", "high"):
            np.testing.assert_allclose(getattr(profiles, kind)[k], expected[kind], rtol=0, atol=1e-9)


def rliable_loop(scores: np.ndarray, reps: int, seed: int, confidence: float = 0.95):
    """rliable's algorithm written out plainly (one resampled matrix per replicate), for other shapes."""
    alpha = 100 * (1 - confidence) / 2
    out = {}
    for k, s in enumerate(scores):
        rng = np.random.RandomState(seed)
        values = []
        for _ in range(reps):
            resampled = s[rng.choice(len(s), s.shape), np.arange(s.shape[1])]
            values.append(
                [stats.trim_mean(resampled, 0.25, axis=None), resampled.mean(), 1 - np.minimum(resampled, 1).mean()]
            )
        out[k] = np.percentile(np.array(values), [alpha, 100 - alpha], axis=0)
    return out


def test_the_bootstrap_equals_rliables_loop_on_other_shapes():
    # 7 worlds x 3 tasks = 21 scores: the IQM cuts int(21 / 4) = 5 from each end; many ties.
    scores = np.round(np.random.default_rng(5).normal(0.6, 0.3, (4, 7, 3)), 1)
    got = aggregate.aggregates(scores, reps=300, seed=11, gamma=1.0)
    expected = rliable_loop(scores, reps=300, seed=11)
    for k in range(4):
        for i, name in enumerate(aggregate.AGGREGATES):
            np.testing.assert_allclose([got[name].low[k], got[name].high[k]], expected[k][:, i], rtol=0, atol=1e-12)


def test_probability_of_improvement_equals_rliables_loop_with_many_ties():
    # rliable's StratifiedIndependentBootstrap: per replicate X's indices, then Y's, from one RandomState.
    scores = np.round(np.random.default_rng(9).uniform(0, 0.6, (3, 6, 2)), 1)
    got = aggregate.probability_of_improvement(scores, reps=150, seed=4)
    for x in range(3):
        for y in range(3):
            if x == y:
                continue
            rng, values = np.random.RandomState(4), []
            for _ in range(150):
                xs = scores[x][rng.choice(6, (6, 2)), np.arange(2)]
                ys = scores[y][rng.choice(6, (6, 2)), np.arange(2)]
                u = [stats.mannwhitneyu(xs[:, t], ys[:, t], alternative="greater").statistic for t in range(2)]
                values.append(np.mean(np.array(u) / 36))
            expected = np.percentile(values, [2.5, 97.5])
            np.testing.assert_allclose([got.low[x, y], got.high[x, y]], expected, rtol=0, atol=1e-12)


# ---- hand-computable cases ----------------------------------------------------------------------
def test_iqm_of_known_arrays():
    assert aggregate.iqm(np.arange(1.0, 9.0).reshape(4, 2)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert aggregate.iqm(np.array([[0, 10, 10, 10], [10, 10, 10, 1000]], dtype=float)) == 10.0
    values = np.random.default_rng(1).normal(size=(13, 3))
    assert aggregate.iqm(values) == pytest.approx(stats.trim_mean(values, 0.25, axis=None), abs=1e-15)


def test_mean_and_optimality_gap_of_known_arrays():
    scores = np.array([[[0.5, 1.5], [0.5, 0.5]]])  # one agent, 2 worlds, 2 tasks
    result = aggregate.aggregates(scores, reps=50, gamma=1.0)
    assert result["mean"].point[0] == pytest.approx(0.75)
    assert result["optimality_gap"].point[0] == pytest.approx(1 - (0.5 + 1.0 + 0.5 + 0.5) / 4)


def test_probability_of_improvement_by_hand():
    # Task 1: x = (3, 4), y = (1, 3): 3>1, 3=3 (a half), 4>1, 4>3 -> 3.5 / 4. Task 2: x always below y -> 0.
    x = np.array([[3.0, 0.0], [4.0, 0.0]])
    y = np.array([[1.0, 1.0], [3.0, 1.0]])
    assert aggregate.improvement_probability(x, y) == pytest.approx((3.5 / 4 + 0.0) / 2)
    assert aggregate.improvement_probability(y, x) == pytest.approx(1 - (3.5 / 4 + 0.0) / 2)


def test_clearly_separated_agents_give_one_and_identical_agents_one_half():
    rng = np.random.default_rng(2)
    low = rng.uniform(0.0, 0.4, (10, 3))
    scores = np.stack([low + 0.5, low.copy(), low])  # 0 always beats 1; 1 and 2 are the same agent
    result = aggregate.probability_of_improvement(scores, reps=500, seed=3)
    assert result.point[0, 1] == 1.0 and result.low[0, 1] == 1.0 and result.high[0, 1] == 1.0
    assert result.point[1, 0] == 0.0 and result.high[1, 0] == 0.0
    assert result.point[1, 2] == 0.5 and result.point[2, 1] == 0.5
    assert result.low[1, 2] < 0.5 < result.high[1, 2]
    assert np.isnan(np.diag(result.point)).all() and np.isnan(np.diag(result.low)).all()


def test_profiles_count_scores_strictly_above_each_threshold():
    scores = np.array([[[0.1, 0.5], [0.9, 1.3]]])  # 4 scores of one agent
    result = aggregate.performance_profiles(scores, taus=[0.0, 0.5, 1.0, 2.0], reps=100)
    np.testing.assert_array_equal(result.point[0], [1.0, 0.5, 0.25, 0.0])
    flat = np.full((1, 5, 2), 0.7)  # every resample is the same: CIs of width 0
    result = aggregate.performance_profiles(flat, taus=[0.5, 0.7], reps=100)
    np.testing.assert_array_equal(result.low, result.high)
    np.testing.assert_array_equal(result.low[0], [1.0, 0.0])


# ---- the ranking rule ---------------------------------------------------------------------------
def improvement_with_lows(lows: dict[tuple[int, int], float], n: int) -> Interval:
    low = np.full((n, n), 0.0)
    for (i, j), value in lows.items():
        low[i, j] = value
    return Interval(point=np.clip(low + 0.1, 0, 1), low=low, high=np.clip(low + 0.2, 0, 1))


def test_ranking_clear_order():
    improvement = improvement_with_lows({(0, 1): 0.7, (1, 2): 0.8, (0, 2): 0.9}, 3)
    ranking = aggregate.rank_agents(["a", "b", "c"], np.array([0.9, 0.6, 0.3]), improvement)
    assert ranking.agents == ("a", "b", "c") and ranking.ranks == (1, 2, 3)
    assert ranking.labels == ("1", "2", "3")
    assert [e["separated"] for e in ranking.evidence] == [True, True]
    evidence = ranking.evidence[0]
    assert (evidence["above"], evidence["agent"], evidence["low"]) == ("a", "b", 0.7)
    assert evidence["p_improvement"] == pytest.approx(0.8) and evidence["high"] == pytest.approx(0.9)


def test_ranking_tie_shares_the_best_rank_and_the_next_counts_agents_above():
    # Listed out of order: the rule sorts by IQM. b and a overlap (low 0.45); c is clearly below a.
    improvement = improvement_with_lows({(1, 0): 0.45, (0, 2): 0.75, (1, 2): 0.8}, 3)
    ranking = aggregate.rank_agents(["a", "b", "c"], np.array([0.7, 0.72, 0.3]), improvement)
    assert ranking.agents == ("b", "a", "c")
    assert ranking.ranks == (1, 1, 3) and ranking.labels == ("1=", "1=", "3")


def test_ranking_chain_of_overlapping_neighbours_shares_one_rank():
    # a ~ b and b ~ c, although a is clearly above c: only neighbours are compared.
    improvement = improvement_with_lows({(0, 1): 0.5, (1, 2): 0.3, (0, 2): 0.9}, 3)
    ranking = aggregate.rank_agents(["a", "b", "c"], np.array([0.9, 0.8, 0.7]), improvement)
    assert ranking.ranks == (1, 1, 1) and ranking.labels == ("1=", "1=", "1=")
    assert ranking.evidence[0]["separated"] is False  # a low end of exactly 0.5 is not "wholly above"


def test_ranking_two_groups_and_equal_iqms_in_name_order():
    improvement = improvement_with_lows({(1, 0): 0.2, (0, 2): 0.6, (2, 3): 0.1}, 4)
    ranking = aggregate.rank_agents(["b", "a", "c", "d"], np.array([0.5, 0.5, 0.4, 0.4]), improvement)
    assert ranking.agents == ("a", "b", "c", "d")
    assert ranking.ranks == (1, 1, 3, 3) and ranking.labels == ("1=", "1=", "3=", "3=")


def test_ranking_from_scores_end_to_end():
    rng = np.random.default_rng(4)
    base = rng.uniform(0.0, 0.3, (30, 2))
    scores = np.stack([base + 0.6, base + 0.61, base])  # top two overlap, the third far below
    summary = aggregate.summarise(scores, ["x", "y", "z"], ["t1", "t2"], ["f", "f"], reps=300, seed=0)
    ranking = summary["overall"].ranking
    assert ranking.agents == ("y", "x", "z") and ranking.labels == ("1=", "1=", "3")


# ---- reproducibility ----------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_results_and_another_seed_other_cis():
    scores = np.random.default_rng(6).uniform(size=(3, 12, 2))

    def run(seed):
        return aggregate.summarise(scores, ["a", "b", "c"], ["t1", "t2"], ["f", "g"], reps=200, seed=seed)

    first, again, other = run(1), run(1), run(2)
    for scope in first:
        assert json.dumps(first[scope].as_dict(["a", "b", "c"])) == json.dumps(again[scope].as_dict(["a", "b", "c"]))
    assert not np.array_equal(first["overall"].aggregates["iqm"].low, other["overall"].aggregates["iqm"].low)


def test_an_agents_results_do_not_depend_on_the_other_agents_or_families():
    scores = np.random.default_rng(7).uniform(size=(3, 9, 4))
    everyone = aggregate.aggregates(scores, reps=200, seed=5)
    alone = aggregate.aggregates(scores[1:2], reps=200, seed=5)
    assert everyone["iqm"].low[1] == alone["iqm"].low[0] and everyone["mean"].high[1] == alone["mean"].high[0]
    summary = aggregate.summarise(
        scores, ["a", "b", "c"], ["t1", "t2", "t3", "t4"], ["f", "f", "g", "g"], reps=200, seed=5
    )
    family_alone = aggregate.probability_of_improvement(scores[:, :, 2:], reps=200, seed=5)
    np.testing.assert_array_equal(summary["g"].improvement.low, family_alone.low)
    assert summary["g"].tasks == ("t3", "t4") and list(summary) == ["f", "g", "overall"]
    family = aggregate.summarise_scope(scores[:, :, 2:], ["a", "b", "c"], ["t3", "t4"], "g", reps=200, seed=5)
    assert json.dumps(family.as_dict(["a", "b", "c"])) == json.dumps(summary["g"].as_dict(["a", "b", "c"]))


# ---- normalisation ------------------------------------------------------------------------------
def test_normalise_with_reference_points_from_a_protocol_file(tmp_path):
    protocol = tmp_path / "protocol-v2.yaml"
    protocol.write_text(
        "references:\n  t1: {random: 20, upper_bound: 420}\n  t2: {random: 0.0, upper_bound: 2, by: oracle}\n"
    )
    references = aggregate.load_references(protocol)
    raw = np.array([[20.0, 0.0], [420.0, 2.0], [220.0, 3.0]])
    np.testing.assert_allclose(aggregate.normalise(raw, ["t1", "t2"], references), [[0, 0], [100, 100], [50, 150]])


def test_the_committed_protocol_states_references_in_the_format_read_here():
    text = (Path(__file__).resolve().parents[1] / "leaderboards" / "protocol-v2.yaml").read_text()
    assert "\nreferences:" in text and "100 (x - random) / (upper_bound - random)" in text


def test_bad_reference_points_are_one_line_errors(tmp_path):
    one_line_error(
        aggregate.parse_references, {"t1": {"random": 5, "upper_bound": 5}}, match="must be finite and above"
    )
    one_line_error(aggregate.parse_references, {}, match="no reference points stated")
    one_line_error(aggregate.parse_references, {"t1": {"random": 5}}, match="t1.*needs the keys random and upper_bound")
    one_line_error(aggregate.parse_references, {"t1": {"random": "x", "upper_bound": 2}}, match="must be numbers")
    one_line_error(aggregate.normalise, [[1.0]], ["t9"], {}, match="none for task.*t9")
    refs = aggregate.parse_references({"t1": {"random": 0, "upper_bound": 1}})
    one_line_error(aggregate.normalise, [[1.0, 2.0]], ["t1"], refs, match="last axis")
    empty = tmp_path / "protocol.yaml"
    empty.write_text("entries: []\n")
    one_line_error(aggregate.load_references, empty, match="protocol.yaml: no 'references' section")
    one_line_error(aggregate.load_references, tmp_path / "missing.yaml", match="missing.yaml: cannot read")


# ---- bad input ----------------------------------------------------------------------------------
def test_non_finite_scores_name_the_agent_world_and_task():
    scores = np.ones((2, 3, 2))
    scores[1, 2, 0] = np.nan
    message = one_line_error(aggregate.summarise, scores, ["a", "b"], ["t1", "t2"], ["f", "f"], match="non-finite")
    assert "agent 'b', world 2, task 't1'" in message
    scores[1, 2, 0] = np.inf
    one_line_error(aggregate.aggregates, scores, match="non-finite value.*inf")


def test_fewer_than_two_worlds_is_refused():
    one_line_error(aggregate.probability_of_improvement, np.ones((2, 1, 3)), match="1 test world.*at least 2")


def test_mismatched_tasks_and_shapes_are_refused():
    one_line_error(aggregate.summarise, np.ones((2, 3, 2)), ["a", "b"], ["t1"], ["f"], match="tasks: 1 names for 2")
    one_line_error(aggregate.summarise, np.ones((2, 3, 2)), ["a", "b"], ["t1", "t2"], ["f"], match="families: 1")
    one_line_error(aggregate.summarise, np.ones((2, 3, 2)), ["a", "a"], ["t1", "t2"], ["f", "f"], match="repeat.*a")
    one_line_error(aggregate.summarise, np.ones((2, 3, 1)), ["a", "b"], ["t1"], ["overall"], match="'overall' names")
    one_line_error(aggregate.aggregates, np.ones((3, 2)), match="expected shape .agents, worlds, tasks., got 2")
    one_line_error(aggregate.aggregates, np.ones((3, 2, 0)), match="no tasks")
    one_line_error(aggregate.aggregates, [[["x", 1.0]]], match="expected numbers")
    results = {"a": {"t1": [1.0, 2.0], "t2": [1.0, 2.0]}, "b": {"t1": [1.0, 2.0]}}
    one_line_error(aggregate.score_array, results, ["t1", "t2"], match="agent 'b'.*missing t2")
    results["b"] = {"t1": [1.0, 2.0], "t2": [1.0, 2.0], "t3": [0.0, 0.0]}
    one_line_error(aggregate.score_array, results, ["t1", "t2"], match="unknown t3")
    results["b"] = {"t1": [1.0, 2.0], "t2": [1.0, 2.0, 3.0]}
    one_line_error(aggregate.score_array, results, ["t1", "t2"], match="'t2': 3 world scores, expected 2")
    results["b"] = {"t1": [1.0, 2.0], "t2": [1.0, 4.0]}
    np.testing.assert_array_equal(aggregate.score_array(results, ["t1", "t2"])[1], [[1.0, 1.0], [2.0, 4.0]])


def test_bad_bootstrap_settings_are_refused():
    one_line_error(aggregate.aggregates, np.ones((1, 3, 1)), reps=0, match="reps")
    one_line_error(aggregate.aggregates, np.ones((1, 3, 1)), confidence=95, match="confidence")
    one_line_error(aggregate.performance_profiles, np.ones((1, 3, 1)), taus=[0.1, np.nan], match="taus")


# ---- speed --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_full_bootstrap(benchmark):
    """A full table: 20 agents x 8 families of 3 tasks x 40 test worlds, 2000 replicates, every scope."""
    scores = np.random.default_rng(8).normal(0.6, 0.2, (20, 40, 24))
    agents = [f"agent-{k}" for k in range(20)]
    tasks = [f"task-{t}" for t in range(24)]
    families = [f"family-{t // 3}" for t in range(24)]
    summary = benchmark.pedantic(
        aggregate.summarise, args=(scores, agents, tasks, families), kwargs={"reps": 2000}, rounds=1, iterations=1
    )
    assert len(summary) == 9 and summary["overall"].improvement.low.shape == (20, 20)
