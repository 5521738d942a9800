"""Results documents: one builder for runs and played sessions, and the recipe for adding a metric."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from matplotlib.container import BarContainer

from cryobench import metrics, plots
from cryobench.compare import comparison_table
from cryobench.evaluate import evaluate
from cryobench.leaderboard import tables
from cryobench.play.session import PlaySession
from cryobench.results import RESULTS_FORMAT, env_record, results_document, summarise_episodes

KWARGS = {"duration": 30.0, "split": "all"}


def _played(player: str = "Ada", holes: int = 4) -> dict:
    env = gym.make("cryobench/Aldolase-v0", **KWARGS)
    session = PlaySession("s1", player, env.unwrapped, env_record(env, KWARGS), seed=2, results_path=None)
    for _ in range(holes):
        session.expose(int(np.flatnonzero(~session.state.visited)[0]))
    session.finish()
    return session.results()


def test_the_builder_lays_out_format_v1():
    rows = [{"seed": 3, "good_exposures": 2, "exposures": 4, "good_fraction": 0.5, "total_reward": 2.0,
             "squares_visited": 1, "exposures_per_square": 4.0}]  # fmt: skip
    env = {"id": "cryobench/Aldolase-v0", "kwargs": {}}
    doc = results_document(env, {"name": "x"}, [3], rows, fit_seconds=1.5, seconds_per_episode=0.25, human={"p": 1})
    assert list(doc) == ["format", "provenance", "env", "agent", "seeds", "episodes", "summary", "timing", "human"]
    assert doc["format"] == RESULTS_FORMAT == "cryobench-results/1"
    assert doc["seeds"] == [3] and doc["episodes"] is rows and doc["env"] is env
    assert doc["summary"] == summarise_episodes(rows) and doc["summary"]["good_exposures"]["mean"] == 2.0
    assert doc["timing"]["fit_seconds"] == 1.5 and doc["timing"]["seconds_per_episode"] == 0.25


def test_a_run_and_a_played_session_write_the_same_document():
    run = evaluate("random", "aldolase-v0", KWARGS, episodes=1, seed=2, progress=False)
    played = _played()
    assert list(played) == [*run, "human"]
    assert played["env"] == run["env"]  # the same environment section for the same arguments
    assert list(played["episodes"][0]) == list(run["episodes"][0])
    assert list(played["summary"]) == list(run["summary"]) == list(metrics.METRICS)
    assert played["agent"]["name"] == "human:Ada" and played["seeds"] == [2]


@pytest.fixture
def good_per_hour(monkeypatch):
    """A metric added the way DEVELOPERS.md says (one registration), on a copy of the registry."""
    monkeypatch.setattr(metrics, "METRICS", dict(metrics.METRICS))
    return metrics.register_metric(
        metrics.Metric(
            "good_per_hour",
            "good exposures / hour",
            compute=lambda row: 60.0 * row["good_exposures"] / max(row["minutes"], 1e-9),
        )
    )


def test_one_registration_adds_a_metric_to_results_compare_the_human_table_and_plots(good_per_hour):
    run = evaluate("random", "aldolase-v0", KWARGS, episodes=2, seed=0, progress=False)
    expected = np.mean([60.0 * r["good_exposures"] / r["minutes"] for r in run["episodes"]])
    assert run["summary"]["good_per_hour"]["mean"] == pytest.approx(expected)
    table = comparison_table([run])
    assert table["good_per_hour"].tolist() == pytest.approx([expected])
    played = _played()
    row = played["episodes"][0]
    human = tables.human_table([played], 1)
    header, session = [line.split(" | ") for line in human.splitlines() if line.startswith("| ")]
    column = header.index("good exposures / hour")
    assert session[column] == f"{60.0 * row['good_exposures'] / row['minutes']:.1f}"
    figure = plots.plot_metrics([run])
    assert figure.axes[-1].get_title() == "good exposures / hour"
    (bars,) = [c for c in figure.axes[-1].containers if isinstance(c, BarContainer)]
    assert bars[0].get_height() == pytest.approx(expected)
