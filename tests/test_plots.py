"""Figures: labels that tell the files apart, titles that name the environment, bars that hide nothing,
the world-based kinds, the written formats, and the render() frame. Labels are read back from the
matplotlib figures (and from the SVG text)."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
from matplotlib.container import BarContainer

import cryobench  # noqa: F401
from cryobench import plots
from cryobench.errors import InputError
from cryobench.evaluate import evaluate
from cryobench.regressors import regressor_quality
from cryobench.render import session_figure


def _results(agent: str, env: str = "aldolase", seed: int = 0, episodes: int = 3, **env_kwargs) -> dict:
    return evaluate(agent, env, {"duration": 60.0, **env_kwargs}, episodes, seed, progress=False)


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    return {
        "random": _results("random"),
        "rank": _results("predict-rank"),
        "rank_noisy": _results("predict-rank", noise=2.0),
        "rank_au": _results("predict-rank", "aldolaseau"),
    }


def _legend_texts(fig) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def _legend_title(fig) -> str:
    return fig.legends[0].get_title().get_text()


def test_labels_name_what_differs_between_the_files(runs):
    labels = plots.series_labels([runs["random"], runs["rank"], runs["rank_noisy"]])
    # noise is given in one file only: the others show the default, 1.
    assert labels == ["random, noise=1", "predict-rank, noise=1", "predict-rank, noise=2"]
    assert plots.series_labels([runs["rank"], runs["rank_au"]]) == [
        "predict-rank, aldolase",
        "predict-rank, aldolaseau",
    ]
    later = _results("predict-rank", seed=3)
    assert plots.series_labels([runs["rank"], later]) == ["predict-rank, seeds 0-2", "predict-rank, seeds 3-5"]
    other = copy.deepcopy(runs["rank"])
    other["agent"]["card"]["hyperparameters"]["level"] = "square"
    other["agent"]["card"]["hyperparameters"].setdefault("x", 1)
    tuned = plots.series_labels([runs["rank"], other])
    assert tuned[0] != tuned[1] and tuned[1].startswith("predict-rank, ") and "x=1" in tuned[1]


def test_titles_name_the_environment_split_and_holes(runs):
    one = plots.env_title([runs["rank"], runs["rank_noisy"]])
    assert one == f"cryobench/Aldolase-v1, duration=60, test split, {runs['rank']['env']['n_holes']} holes"
    mixed = plots.env_title([runs["rank"], runs["rank_au"]])
    assert mixed == "environments aldolase, aldolaseau (see each label)"


def test_curve_legend_names_every_file_and_says_what_the_band_is(runs):
    results = [runs["random"], runs["rank"], runs["rank_noisy"]]
    fig = plots.plot_curve(results)
    assert _legend_texts(fig) == plots.series_labels(results)
    assert _legend_title(fig) == "line: mean over 3 episodes; band: 25th-75th percentile"
    (ax,) = fig.axes
    assert ax.get_title() == plots.env_title(results)
    assert ax.get_ylabel() == "good exposures (CTFMaxRes < 6 Å)"
    means = [line.get_ydata()[-1] for line in ax.get_lines()]
    assert means == pytest.approx([np.mean([r["good_exposures"] for r in x["episodes"]]) for x in results])


def test_bins_bars_stand_side_by_side_with_sd_error_bars(runs):
    results = [runs["rank"], runs["rank_noisy"], runs["random"]]
    fig = plots.plot_bins(results)
    (ax,) = fig.axes
    assert _legend_texts(fig) == plots.series_labels(results)
    assert _legend_title(fig) == plots.ERROR_BAR_NOTE
    assert ax.get_title() == plots.env_title(results)
    bar_sets = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bar_sets) == 3
    lefts = [bar.get_x() for container in bar_sets for bar in container]
    assert len(set(np.round(lefts, 6))) == 12  # 3 files x 4 bins, no two bars in one place
    for container, result in zip(bar_sets, results, strict=True):
        counts = np.array([[row["bins"][b] for b in ("<4", "4-5", "5-6", ">6")] for row in result["episodes"]])
        assert [bar.get_height() for bar in container] == pytest.approx(counts.mean(axis=0))
        segments = container.errorbar.lines[2][0].get_segments()
        assert [s[1][1] - s[0][1] for s in segments] == pytest.approx(2 * counts.std(axis=0, ddof=1))


def test_squares_one_bar_per_file_in_each_panel(runs):
    results = [runs["rank"], runs["rank_noisy"]]
    fig = plots.plot_squares(results)
    left, right = fig.axes
    assert [left.get_title(), right.get_title()] == ["squares visited", "exposures / square"]
    assert fig.get_suptitle() == plots.env_title(results)
    assert _legend_texts(fig) == plots.series_labels(results)
    heights = [c[0].get_height() for c in left.containers if isinstance(c, BarContainer)]
    assert heights == pytest.approx([np.mean([r["squares_visited"] for r in x["episodes"]]) for x in results])


def test_metrics_plot_draws_every_registered_metric_a_new_one_too(runs):
    from cryobench import metrics

    added = metrics.register_metric(
        metrics.Metric(
            "good_per_hour", "good exposures / hour", compute=lambda r: 60 * r["good_exposures"] / r["minutes"]
        )
    )
    try:
        fig = plots.plot_metrics([runs["random"], runs["rank"]])
    finally:
        del metrics.METRICS[added.name]
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [m.axis_label for m in metrics.METRICS.values()] + [added.label]
    rank = runs["rank"]["episodes"]
    heights = [c[0].get_height() for c in shown[-1].containers if isinstance(c, BarContainer)]
    assert heights[1] == pytest.approx(np.mean([60 * r["good_exposures"] / r["minutes"] for r in rank]))


def test_jaccard_marks_files_that_do_not_compare(runs):
    results = [runs["rank"], runs["rank_noisy"], runs["rank_au"]]
    fig = plots.plot_jaccard(results)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == plots.series_labels(results)
    cells = [t.get_text() for t in ax.texts]
    assert cells.count("n/a") == 6  # every pair of different environments or arguments
    assert "n/a: different environments or arguments" in ax.get_title().replace("\n", " ")


def test_path_shows_only_the_visited_squares_with_a_legend_outside(runs):
    result = runs["rank"]
    fig = plots.plot_path([result])
    ax = fig.axes[0]
    world = plots.world_of(result)
    row = result["episodes"][0]
    visited = np.unique(world.grid.square[[row["start"], *row["trajectory"]]])
    holes_shown = len(ax.collections[0].get_offsets())
    assert holes_shown == int(np.isin(world.grid.square, visited).sum()) < world.n_holes
    assert _legend_texts(fig) == ["good exposure", "bad exposure", "start (not an exposure)", "path"]
    assert fig.legends[0].get_bbox_to_anchor().y0 <= ax.get_position().y0  # below the map, not on it
    assert ax.get_title().startswith("predict-rank\n") and f"{row['good_exposures']} good" in ax.get_title()
    assert plots.env_title([result]) in fig.get_suptitle()


def test_ctf_histogram_against_all_holes(runs):
    results = [runs["random"], runs["rank"]]
    fig = plots.plot_ctf(results)
    (ax,) = fig.axes
    world = plots.world_of(runs["rank"])
    assert _legend_texts(fig) == ["all holes", *plots.series_labels(results)]
    shares = [bar.get_height() for bar in ax.patches]
    assert sum(shares) == pytest.approx(1.0)
    assert ax.get_title() == f"{world.n_holes} holes, {int(world.true_good.sum())} good"


def test_regressor_and_confusion_panels_per_prediction(runs):
    results = [runs["rank"], runs["random"], runs["rank_noisy"]]  # two files share a world
    scatter = plots.plot_regressor(results)
    confusion = plots.plot_confusion(results)
    panels = [ax for ax in scatter.axes]
    assert len(panels) == 2 and [ax.get_title().split("\n")[0] for ax in panels] == ["noise=1", "noise=2"]
    world = plots.world_of(runs["rank"])
    quality = regressor_quality(world.predicted_ctf, world.grid.ctf)
    assert f"MAE {quality['mae']:.2f} Å" in panels[0].get_title()
    assert len(panels[0].collections[0].get_offsets()) == world.n_holes
    first = confusion.axes[0]
    counts = [int(t.get_text().split("\n")[0]) for t in first.texts]
    assert counts == [quality["tp"], quality["fn"], quality["fp"], quality["tn"]]
    assert sum(counts) == world.n_holes
    assert confusion.get_suptitle() == plots.env_title(results)


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".png", b"\x89PNG")])
def test_formats_by_extension(runs, tmp_path, suffix, magic):
    out = plots.make_plot("bins", [runs["rank"], runs["rank_noisy"]], tmp_path / f"bins{suffix}", dpi=80)
    again = plots.make_plot("bins", [runs["rank"], runs["rank_noisy"]], tmp_path / f"again{suffix}", dpi=80)
    assert out.read_bytes()[:5].startswith(magic)
    assert out.read_bytes() == again.read_bytes()  # no dates, no random ids
    if suffix == ".svg":  # text stays text
        svg = out.read_text()
        assert "predict-rank, noise=2" in svg and "cryobench/Aldolase-v1" in svg and "±1 sd" in svg


def test_dpi_sets_the_png_size(runs, tmp_path):
    from PIL import Image

    small = plots.make_plot("curve", [runs["rank"]], tmp_path / "a.png", dpi=50)
    large = plots.make_plot("curve", [runs["rank"]], tmp_path / "b.png", dpi=100)
    assert Image.open(large).size[0] == pytest.approx(2 * Image.open(small).size[0], abs=2)


@pytest.mark.parametrize(
    "kind, out, dpi, results, message",
    [
        ("bins", "x.gif", 100, "one", "unknown figure format '.gif'; expected .png, .svg or .pdf"),
        ("bins", "x", 100, "one", "unknown figure format '(none)'"),
        ("bins", "x.png", 0, "one", "argument 'dpi': expected a number of dots per inch from 10 to 2400, got 0"),
        ("pie", "x.png", 100, "one", "unknown plot kind 'pie'"),
        ("bins", "x.png", 100, "none", "no results to plot"),
        ("bins", "x.png", 100, "empty", "have no episodes"),
    ],
)
def test_bad_arguments_are_refused(runs, tmp_path, kind, out, dpi, results, message):
    empty = {**runs["rank"], "episodes": []}
    given = {"one": [runs["rank"]], "none": [], "empty": [empty]}[results]
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plots.make_plot(kind, given, tmp_path / out, dpi=dpi)


def test_world_kinds_refuse_a_world_that_does_not_match(runs):
    changed = copy.deepcopy(runs["rank"])
    changed["env"]["n_holes"] += 1
    with pytest.raises(InputError, match="rebuilt environment has .* holes, the results file recorded"):
        plots.plot_ctf([changed])


def test_world_kinds_refuse_an_environment_of_changing_worlds(runs):
    changing = copy.deepcopy(runs["rank"])
    changing["env"]["kwargs"]["new_world_each_reset"] = True
    for plot in (plots.plot_path, plots.plot_ctf, plots.plot_regressor, plots.plot_confusion):
        with pytest.raises(InputError, match="draws a new world at every reset: there is no one world to draw"):
            plot([changing])


def test_render_frame_fills_the_image_and_names_the_good_exposures():
    env = gym.make("cryobench/Aldolase-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, *_ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
    frame = env.render()
    inner = env.unwrapped
    good = int(inner.world.true_good[inner.state.exposures].sum())
    assert frame.shape[1] == 640 and frame.shape[0] % 2 == 0
    # The map reaches the left and right edges: no blank margins beside it.
    ink = np.flatnonzero((frame < 200).any(axis=(0, 2)))
    assert ink[0] < 0.03 * frame.shape[1] and ink[-1] > 0.97 * frame.shape[1]
    figure = session_figure(inner.world, inner.state)
    (title,) = [text.get_text() for text in figure.texts]
    assert title.endswith(f"| {good} good of 20 exposures")
    assert _legend_texts(figure) == [
        "hole (darker: predicted better)",
        "good (revealed)",
        "bad (revealed)",
        "path",
        "current hole",
    ]
    env.reset(seed=1)
    assert env.render().shape == frame.shape  # every frame of one world has one size (video)


def test_metrics_one_panel_per_registered_metric_one_bar_per_file(runs):
    from cryobench import metrics

    results = [runs["random"], runs["rank"], runs["rank_noisy"]]
    fig = plots.plot_metrics(results)
    assert [ax.get_title() for ax in fig.axes] == [m.axis_label for m in metrics.METRICS.values()]
    assert _legend_texts(fig) == plots.series_labels(results) and _legend_title(fig) == plots.ERROR_BAR_NOTE
    assert fig.get_suptitle() == plots.env_title(results)
    for ax, metric in zip(fig.axes, metrics.METRICS.values(), strict=True):
        heights = [bar.get_height() for container in ax.containers if isinstance(container, BarContainer)
                   for bar in container]  # fmt: skip
        assert heights == pytest.approx([metric.values(r["episodes"]).mean() for r in results])
