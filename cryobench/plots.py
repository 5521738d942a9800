"""The paper's kinds of figures, drawn from results files (matplotlib; PNG, SVG or PDF by extension).

Every series is labelled by what tells its file apart from the others (the agent, and the
environment arguments or hyperparameters that differ between the files), every title names
the environment, and every band or error bar says what it is. The kinds that show the world
itself (``ctf``, ``regressor``, ``confusion``, and ``path`` for the map) rebuild it from the
results file's environment arguments.

Each ``plot_<kind>(results)`` returns a matplotlib ``Figure`` (tests read its labels back);
:func:`make_plot` draws one kind and writes it.
"""

from __future__ import annotations

import functools
import inspect
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.grid import CTF_CAP

# Light to import (the command line reads PLOT_DESCRIPTIONS): matplotlib, pandas and the
# metrics are imported by the functions that draw.
PLOT_KINDS = ("curve", "bins", "squares", "metrics", "jaccard", "path", "ctf", "regressor", "confusion")
#: What each kind shows, and the figure of the cryoRL paper it follows.
PLOT_DESCRIPTIONS = {
    "curve": "good exposures against minutes (paper Fig. 4B)",
    "bins": "exposures per CTF bin (Figs. 2C, 4C)",
    "squares": "squares visited and exposures per square (Fig. 4D)",
    "metrics": "every registered metric, one panel each (cryobench.metrics.METRICS)",
    "jaccard": "overlap of exposure sets (Fig. 4E)",
    "path": "one episode's path on the grid map (Fig. 2D-G)",
    "ctf": "CTF histogram of the collected holes against all holes (Figs. 2B, 3B)",
    "regressor": "predicted against true CTF (Extended Data Fig. 2)",
    "confusion": "good/bad by threshold, predicted against true (Extended Data Fig. 3)",
}
FORMATS = ("png", "svg", "pdf")
DEFAULT_DPI = 150
#: Environment arguments that change a session's rules but not its holes or their predictions.
SESSION_ONLY_ARGUMENTS = frozenset({"duration", "profile", "feedback", "partial_reward", "render_mode"})
#: Environment arguments that change the predictions but not the holes.
PREDICTION_ONLY_ARGUMENTS = frozenset({"noise", "regressor"})
ERROR_BAR_NOTE = "bars: mean; error bars: ±1 sd over episodes"
# Text in SVG stays text (searchable, editable in a drawing program); fonts embedded in PDF as
# TrueType. Fixed SVG ids and no creation dates: the same results give the same file, byte for byte.
_SAVE_RC = {"svg.fonttype": "none", "svg.hashsalt": "cryobench", "pdf.fonttype": 42}
_METADATA = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def _figure(width: float = 6.4, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


# ---- what tells the files apart ---------------------------------------------------------
@functools.cache
def _argument_defaults() -> dict[str, Any]:
    from cryobench.env import CryoEMSessionEnv

    parameters = inspect.signature(CryoEMSessionEnv.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def env_argument(result: dict, key: str) -> Any:
    """An environment argument of a results file: its ``-e`` value, else its card's, else the default."""
    from cryobench.registration import env_cards

    env = result["env"]
    if key in env.get("kwargs", {}):
        return env["kwargs"][key]
    card = env_cards().get(env["id"], {}).get("kwargs", {})
    return card.get(key, _argument_defaults().get(key))


def _show(key: str, value: Any) -> str:
    if key == "data" and isinstance(value, str):
        return Path(value).name or value
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _short_name(env_id: str) -> str:
    from cryobench.registration import env_cards

    return env_cards().get(env_id, {}).get("short_name", env_id)


def _varying_arguments(results: list[dict], exclude: frozenset = frozenset()) -> list[str]:
    """The environment arguments whose values differ between the files (defaults filled in)."""
    keys = sorted({k for r in results for k in r["env"].get("kwargs", {})} - exclude)
    return [k for k in keys if len({_show(k, env_argument(r, k)) for r in results}) > 1]


def _varying_hyperparameters(results: list[dict], index: int) -> list[str]:
    """Hyperparameters that differ between this file and other files of the same agent."""
    name = results[index]["agent"]["name"]
    same = [r for r in results if r["agent"]["name"] == name]
    tables = [((r["agent"].get("card") or {}).get("hyperparameters") or {}) for r in same]
    keys = sorted({k for table in tables for k in table})
    return [k for k in keys if len({json.dumps(t.get(k), sort_keys=True, default=str) for t in tables}) > 1]


def series_labels(results: list[dict]) -> list[str]:
    """One label per results file: the agent, and whatever else differs between the files.

    The environment's short name when the files mix environments; each environment argument
    (``-e``) whose value differs; each hyperparameter that differs between files of one agent;
    the seeds, or the file's position, when nothing else tells two files apart.
    """
    several_envs = len({r["env"]["id"] for r in results}) > 1
    varying = _varying_arguments(results)
    labels = []
    for index, result in enumerate(results):
        parts = [result["agent"]["name"] + (" (upper bound)" if result["agent"].get("upper_bound") else "")]
        if several_envs:
            parts.append(_short_name(result["env"]["id"]))
        parts += [f"{k}={_show(k, env_argument(result, k))}" for k in varying]
        hyper = (result["agent"].get("card") or {}).get("hyperparameters") or {}
        parts += [f"{k}={_show(k, hyper.get(k))}" for k in _varying_hyperparameters(results, index)]
        labels.append(", ".join(parts))
    for label in set(labels):
        clashing = [i for i, text in enumerate(labels) if text == label]
        if len(clashing) < 2:
            continue
        seeds = [_seed_text(results[i]["seeds"]) for i in clashing]
        for position, i in enumerate(clashing):
            tag = f"seeds {seeds[position]}" if len(set(seeds)) == len(seeds) else f"file {i + 1}"
            labels[i] = f"{labels[i]}, {tag}"
    return labels


def _seed_text(seeds: list[int]) -> str:
    if seeds and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ",".join(map(str, seeds))


def env_title(results: list[dict]) -> str:
    """The environment(s) of a figure: id, the arguments every file shares, split and holes."""
    ids = sorted({r["env"]["id"] for r in results})
    if len(ids) > 1:
        return "environments " + ", ".join(_short_name(i) for i in ids) + " (see each label)"
    varying = set(_varying_arguments(results))
    shared = sorted({k for r in results for k in r["env"].get("kwargs", {})} - varying - {"split"})
    parts = [ids[0], *(f"{k}={_show(k, env_argument(results[0], k))}" for k in shared)]
    if "split" not in varying:
        holes = {r["env"].get("n_holes") for r in results}
        count = f", {holes.pop()} holes" if len(holes) == 1 else ""
        parts.append(f"{env_argument(results[0], 'split')} split{count}")
    return ", ".join(parts)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if n <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(n)]


def _legend_below(fig, handles, labels, title: str | None = None) -> None:
    """The legend under the axes, outside them, so it covers no data."""
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 2), fontsize=8, title=title)


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


# ---- kinds from the episodes ---------------------------------------------------------------
def plot_curve(results: list[dict]):
    """Good exposures against minutes: mean and interquartile band over episodes (Fig. 4B)."""
    from cryobench import metrics

    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    handles = []
    counts = {len(r["episodes"]) for r in results}
    labels = series_labels(results)
    if len(counts) > 1:
        labels = [f"{label} ({len(r['episodes'])} episodes)" for label, r in zip(labels, results, strict=True)]
    for result, colour in zip(results, _colours(len(results)), strict=True):
        # To the last exposure: the move that crosses the session's end still counts.
        ends = [row["good_curve"]["minutes"][-1] for row in result["episodes"] if row["good_curve"]["minutes"]]
        minutes = np.linspace(0.0, max([float(env_argument(result, "duration")), *ends]), 241)
        curves = np.array([metrics.good_at_minutes(row["good_curve"], minutes) for row in result["episodes"]])
        low, high = np.percentile(curves, [25, 75], axis=0)
        style = "--" if result["agent"].get("upper_bound") else "-"
        (line,) = ax.plot(minutes, curves.mean(axis=0), style, color=colour)
        ax.fill_between(minutes, low, high, color=colour, alpha=0.15, linewidth=0)
        handles.append(line)
    thresholds = {_show("threshold", env_argument(r, "threshold")) for r in results}
    below = f"< {thresholds.pop()} Å" if len(thresholds) == 1 else "< threshold"
    ax.set_xlabel("minutes into the session")
    ax.set_ylabel(f"{metrics.metric('good_exposures').label} (CTFMaxRes {below})")
    ax.set_title(env_title(results), fontsize=9)
    episodes = f"{counts.pop()} episodes" if len(counts) == 1 else "episodes"
    _legend_below(fig, handles, labels, title=f"line: mean over {episodes}; band: 25th-75th percentile")
    return fig


def plot_bins(results: list[dict]):
    """Exposures per CTF bin, one bar per results file side by side, ±1 sd (Figs. 2C, 4C)."""
    from cryobench import metrics

    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    labels = series_labels(results)
    groups = np.arange(len(metrics.PAPER_BIN_LABELS))
    width = 0.8 / len(results)
    handles = []
    for i, (result, colour) in enumerate(zip(results, _colours(len(results)), strict=True)):
        counts = np.array([[row["bins"][b] for b in metrics.PAPER_BIN_LABELS] for row in result["episodes"]], float)
        sds = counts.std(axis=0, ddof=1) if len(counts) > 1 else np.zeros(len(groups))
        bars = ax.bar(
            groups - 0.4 + width * (i + 0.5),
            counts.mean(axis=0),
            width,
            yerr=sds,
            capsize=2,
            color=colour,
            edgecolor="black",
            linewidth=0.5,
            hatch="//" if result["agent"].get("upper_bound") else None,
            error_kw={"elinewidth": 0.8},
        )
        handles.append(bars)
    ax.set_xticks(groups, [f"{b} Å" for b in metrics.PAPER_BIN_LABELS])
    ax.set_xlabel("CTFMaxRes of the exposure")
    ax.set_ylabel("exposures per episode")
    ax.set_title(env_title(results), fontsize=9)
    _legend_below(fig, handles, labels, title=ERROR_BAR_NOTE)
    return fig


def _metric_bars(fig, axes, results: list[dict], names: list[str]) -> None:
    """One panel per registered metric, one bar per results file (mean ±1 sd over episodes)."""
    from cryobench import metrics

    labels = series_labels(results)
    colours = _colours(len(results))
    handles = []
    for ax, name in zip(axes, names, strict=False):
        metric = metrics.metric(name)
        for i, (result, colour) in enumerate(zip(results, colours, strict=True)):
            values = metric.values(result["episodes"])
            bars = ax.bar(
                i,
                values.mean(),
                0.8,
                yerr=_sd(values),
                capsize=3,
                color=colour,
                edgecolor="black",
                linewidth=0.5,
                hatch="//" if result["agent"].get("upper_bound") else None,
            )
            if ax is axes[0]:
                handles.append(bars)
        ax.set_xticks([])
        ax.set_title(metric.axis_label, fontsize=9)
        ax.set_ylabel(f"{metric.label} per episode" + ("" if metric.higher_is_better else " (lower is better)"))
    for ax in axes[len(names) :]:
        fig.delaxes(ax)
    fig.suptitle(env_title(results), fontsize=9)
    _legend_below(fig, handles, labels, title=ERROR_BAR_NOTE)


def plot_squares(results: list[dict]):
    """Squares visited and exposures per square, one bar per results file, ±1 sd (Fig. 4D)."""
    fig = _figure(6.4, 4.8)
    _metric_bars(fig, list(fig.subplots(1, 2)), results, ["squares_visited", "exposures_per_square"])
    return fig


def plot_metrics(results: list[dict]):
    """Every registered metric (:data:`cryobench.metrics.METRICS`), one panel each, one bar per results
    file, ±1 sd: a newly registered metric gets its panel here without a change to this module."""
    from cryobench import metrics

    names = list(metrics.METRICS)
    columns = min(len(names), 3)
    rows = -(-len(names) // columns)
    fig = _figure(3.0 * columns + 0.6, 2.6 * rows + 1.4)
    _metric_bars(fig, list(np.ravel(fig.subplots(rows, columns, squeeze=False))), results, names)
    return fig


def plot_jaccard(results: list[dict]):
    """Jaccard similarity between the files' exposure sets over shared seeds (Fig. 4E)."""
    from cryobench.compare import jaccard_between

    table = jaccard_between(results).to_numpy()
    size = 3.5 + 0.45 * len(results)
    fig = _figure(size + 1.5, size)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(table), vmin=0.0, vmax=1.0, cmap="viridis")
    labels = series_labels(results)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), value in np.ndenumerate(table):
        text = f"{value:.2f}" if np.isfinite(value) else "n/a"
        colour = "white" if np.isfinite(value) and value < 0.6 else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    note = "mean over the seeds two files share; diagonal: one file's seeds against each other"
    if not np.all(np.isfinite(table)):
        note += "; n/a: different environments or arguments (not comparable)"
    fig.suptitle(env_title(results), fontsize=9)
    ax.set_title(textwrap.fill(note, 60), fontsize=8)
    fig.colorbar(image, ax=ax, label="Jaccard similarity of exposure sets")
    return fig


# ---- kinds that need the world -------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _rebuilt_world(env_id: str, kwargs_json: str):
    from cryobench.registration import make_env

    env = make_env(env_id, json.loads(kwargs_json))
    try:
        # The environment's own flag (Training-v0 sets it too): its episodes each had another world.
        if getattr(env.unwrapped, "_new_world_each_reset", False):
            raise InputError(
                f"{env_id} with {kwargs_json} draws a new world at every reset: there is no one world to draw "
                "(the path, ctf, regressor and confusion plots need an environment with a fixed world)"
            )
        return env.unwrapped.world
    finally:
        env.close()


def world_of(result: dict):
    """The world a results file was run on, rebuilt from its environment id and arguments."""
    env = result["env"]
    world = _rebuilt_world(env["id"], json.dumps(env.get("kwargs", {}), sort_keys=True))
    recorded = env.get("n_holes")
    if recorded is not None and world.n_holes != recorded:
        raise InputError(
            f"results of {result['agent']['name']} on {env['id']}: the rebuilt environment has {world.n_holes} holes, "
            f"the results file recorded {recorded} (other data or another version of the world?)"
        )
    return world


def _world_key(result: dict, ignore: frozenset) -> str:
    kwargs = {k: v for k, v in result["env"].get("kwargs", {}).items() if k not in ignore}
    return json.dumps([result["env"]["id"], kwargs], sort_keys=True, default=str)


def _distinct_worlds(results: list[dict], ignore: frozenset = SESSION_ONLY_ARGUMENTS) -> tuple[list[dict], list[str]]:
    """One results file per distinct world (the environment and its arguments but those in
    ``ignore``), and a label for each naming what differs between them."""
    seen: dict[str, dict] = {}
    for result in results:
        seen.setdefault(_world_key(result, ignore), result)
    firsts = list(seen.values())
    several_envs = len({r["env"]["id"] for r in firsts}) > 1
    varying = _varying_arguments(firsts, exclude=ignore)
    labels = []
    for result in firsts:
        parts = [_short_name(result["env"]["id"])] if several_envs else []
        parts += [f"{k}={_show(k, env_argument(result, k))}" for k in varying]
        labels.append(", ".join(parts))
    return firsts, labels


def plot_path(results: list[dict], episode: int = 0):
    """One episode's path on the grid map per results file, zoomed to the squares it visited."""
    from matplotlib.lines import Line2D

    from cryobench.render import map_xy

    columns = min(len(results), 3)
    rows = -(-len(results) // columns)
    fig = _figure(4.0 * columns + 1.0, 3.6 * rows + 1.2)
    axes = np.ravel(fig.subplots(rows, columns, squeeze=False))
    for ax in axes[len(results) :]:
        ax.set_visible(False)
    for ax, result, label in zip(axes, results, series_labels(results), strict=False):
        world = world_of(result)
        row = result["episodes"][min(episode, len(result["episodes"]) - 1)]
        trajectory = np.asarray(row["trajectory"], dtype=int)
        good = np.asarray(row["trajectory_good"], dtype=bool)
        start = int(row["start"])
        path = [start, *trajectory]
        # Zoom: a mosaic of the visited squares alone, so the path's holes are large enough to see.
        visited = np.isin(world.grid.square, world.grid.square[path])
        xy = np.full((world.n_holes, 2), np.nan)
        xy[visited] = map_xy(world.grid.select(visited))
        # Every hole of those squares coloured by its true CTFMaxRes (as the paper's Fig. 2D-G), the path on top.
        shade = ax.scatter(
            *xy[visited].T, s=4, c=world.grid.ctf_capped()[visited], cmap="viridis_r", vmin=2, vmax=15, linewidths=0
        )
        ax.plot(xy[path, 0], xy[path, 1], lw=0.6, c="black", alpha=0.45)
        # White and red with black edges: neither colour is in viridis, so exposures stand out.
        ax.scatter(*xy[trajectory[good]].T, s=12, facecolors="white", edgecolors="black", linewidths=0.5)
        ax.scatter(*xy[trajectory[~good]].T, s=14, marker="X", facecolors="#e8000b", edgecolors="black", linewidths=0.4)
        ax.scatter(*xy[start], s=90, marker="*", facecolors="#ff7f0e", edgecolors="black", linewidths=0.6, zorder=5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{label}\nseed {row['seed']}: {row['good_exposures']} good of {row['exposures']}", fontsize=8)
    marker = {"linestyle": "none", "markeredgecolor": "black"}
    handles = [
        Line2D([], [], marker="o", markerfacecolor="white", markersize=5, **marker),
        Line2D([], [], marker="X", markerfacecolor="#e8000b", markersize=6, **marker),
        Line2D([], [], marker="*", markerfacecolor="#ff7f0e", markersize=9, **marker),
        Line2D([], [], color="black", alpha=0.45, lw=0.8),
    ]
    names = ["good exposure", "bad exposure", "start (not an exposure)", "path"]
    fig.legend(handles, names, loc="outside lower center", ncols=4, fontsize=8)
    fig.colorbar(shade, ax=list(axes), shrink=0.7, label="true CTFMaxRes (Å) of every hole shown")
    fig.suptitle(f"{env_title(results)}: the squares each path visited", fontsize=9)
    return fig


def plot_ctf(results: list[dict]):
    """CTFMaxRes histogram of the collected holes against all holes, per environment (Figs. 2B, 3B)."""
    holes_only = SESSION_ONLY_ARGUMENTS | PREDICTION_ONLY_ARGUMENTS
    firsts, panel_labels = _distinct_worlds(results, ignore=holes_only)
    fig = _figure(5.6 * len(firsts) + 0.8, 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(firsts), squeeze=False)[0])
    labels = series_labels(results)
    colours = _colours(len(results))
    edges = np.arange(0.0, CTF_CAP + 1.0, 1.0)
    handles, names = [], []
    for ax, first, panel_label in zip(axes, firsts, panel_labels, strict=True):
        world = world_of(first)
        everything = world.grid.ctf_capped()
        shares = np.histogram(everything, bins=edges)[0] / len(everything)
        bars = ax.bar(edges[:-1], shares, np.diff(edges), align="edge", color="#cccccc", edgecolor="#888888", lw=0.5)
        if not names:
            handles.append(bars)
            names.append("all holes")
        for result, label, colour in zip(results, labels, colours, strict=True):
            if _world_key(result, holes_only) != _world_key(first, holes_only):
                continue
            collected = np.concatenate([_exposure_ctf(row, world) for row in result["episodes"]])
            counts = np.histogram(np.minimum(collected, CTF_CAP), bins=edges)[0]
            (line,) = ax.step(edges, np.append(counts, counts[-1]) / max(len(collected), 1), where="post", c=colour)
            if label not in names:
                handles.append(line)
                names.append(f"{label}")
        ax.set_xlim(np.floor(everything.min()), CTF_CAP + 0.5)
        ax.axvline(world.threshold, color="black", ls=":", lw=1)
        ax.text(world.threshold, ax.get_ylim()[1], f" good < {world.threshold:g} Å", va="top", fontsize=7)
        ax.set_xlabel(f"CTFMaxRes (Å); last bin: {CTF_CAP - 1:g} Å and above, failed fits included")
        ax.set_ylabel("share of holes (grey) or of exposures (lines)")
        what = f"{panel_label}: " if panel_label else ""
        ax.set_title(f"{what}{world.n_holes} holes, {int(world.true_good.sum())} good", fontsize=8)
    fig.suptitle(env_title(results), fontsize=9)
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=min(len(names), 2),
        fontsize=8,
        title="exposures pooled over each file's episodes",
    )
    return fig


def _exposure_ctf(row: dict, world) -> np.ndarray:
    if "trajectory_ctf" in row:
        return np.asarray(row["trajectory_ctf"], dtype=float)
    return world.grid.ctf[np.asarray(row["trajectory"], dtype=int)]


def plot_regressor(results: list[dict]):
    """The regressor's predicted CTFMaxRes against the truth, per environment (Extended Data Fig. 2)."""
    from cryobench.regressors import regressor_quality

    firsts, panel_labels = _distinct_worlds(results)
    fig = _figure(4.4 * len(firsts), 5.8)
    axes = np.atleast_1d(fig.subplots(1, len(firsts), squeeze=False)[0])
    for ax, first, panel_label in zip(axes, firsts, panel_labels, strict=True):
        world = world_of(first)
        truth = world.grid.ctf_capped()
        quality = regressor_quality(world.predicted_ctf, world.grid.ctf, threshold=world.threshold)
        holes = ax.scatter(truth, world.predicted_ctf, s=3, alpha=0.3, color="#1f77b4", linewidths=0)
        (diagonal,) = ax.plot([0, CTF_CAP], [0, CTF_CAP], color="black", lw=0.8)
        threshold = ax.axvline(world.threshold, color="#d62728", ls=":", lw=1)
        ax.axhline(world.threshold, color="#d62728", ls=":", lw=1)
        ax.set_xlim(0, CTF_CAP + 0.5)
        ax.set_ylim(0, CTF_CAP + 0.5)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true CTFMaxRes (Å; failed fits at {CTF_CAP:g})")
        ax.set_ylabel("predicted CTFMaxRes (Å)")
        what = f"{panel_label}\n" if panel_label else ""
        ax.set_title(
            f"{what}{world.n_holes} holes: MAE {quality['mae']:.2f} Å, Pearson r {quality['pearson']:.2f}", fontsize=8
        )
    thresholds = {f"{world_of(first).threshold:g}" for first in firsts}
    names = ["a hole", "prediction = truth", f"threshold {' / '.join(sorted(thresholds))} Å (good below)"]
    fig.legend([holes, diagonal, threshold], names, loc="outside lower center", ncols=3, fontsize=8, markerscale=3)
    fig.suptitle(env_title(results), fontsize=9)
    return fig


def plot_confusion(results: list[dict]):
    """Good or bad by the threshold, predicted against true, per environment (Extended Data Fig. 3)."""
    from cryobench.regressors import regressor_quality

    firsts, panel_labels = _distinct_worlds(results)
    fig = _figure(3.8 * len(firsts) + 0.8, 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(firsts), squeeze=False)[0])
    image = None
    for ax, first, panel_label in zip(axes, firsts, panel_labels, strict=True):
        world = world_of(first)
        q = regressor_quality(world.predicted_ctf, world.grid.ctf, threshold=world.threshold)
        counts = np.array([[q["tp"], q["fn"]], [q["fp"], q["tn"]]])
        shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
        image = ax.imshow(shares, vmin=0.0, vmax=1.0, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            colour = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, f"{count}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=9, color=colour)
        threshold = f"{world.threshold:g} Å"
        ax.set_xticks([0, 1], [f"predicted good\n(< {threshold})", "predicted bad"], fontsize=8)
        ax.set_yticks([0, 1], [f"truly good\n(< {threshold})", "truly bad"], fontsize=8)
        what = f"{panel_label}\n" if panel_label else ""
        ax.set_title(f"{what}precision {q['precision']:.2f}, recall {q['recall']:.2f}", fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the row (holes truly good, or bad)")
    fig.suptitle(env_title(results), fontsize=9)
    return fig


PLOTTERS: dict[str, Callable[[list[dict]], Any]] = {
    "curve": plot_curve,
    "bins": plot_bins,
    "squares": plot_squares,
    "metrics": plot_metrics,
    "jaccard": plot_jaccard,
    "path": plot_path,
    "ctf": plot_ctf,
    "regressor": plot_regressor,
    "confusion": plot_confusion,
}


def make_plot(kind: str, results: list[dict], out: str | Path, dpi: int = DEFAULT_DPI) -> Path:
    """Draw one kind of figure from results documents into ``out`` (.png, .svg or .pdf)."""
    import matplotlib

    if kind not in PLOTTERS:
        raise InputError(f"unknown plot kind {kind!r}; expected one of {', '.join(PLOT_KINDS)}")
    out = Path(out)
    form = out.suffix.lower().lstrip(".")
    if form not in FORMATS:
        raise InputError(f"{out}: unknown figure format {out.suffix or '(none)'!r}; expected .png, .svg or .pdf")
    if isinstance(dpi, bool) or not isinstance(dpi, int | float) or not 10 <= dpi <= 2400:
        raise InputError(f"argument 'dpi': expected a number of dots per inch from 10 to 2400, got {dpi!r}")
    if not results:
        raise InputError("no results to plot")
    for result in results:
        if not result["episodes"]:
            raise InputError(f"results of {result['agent']['name']} on {result['env']['id']} have no episodes")
    figure = PLOTTERS[kind](results)
    out.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_SAVE_RC):
        figure.savefig(out, dpi=dpi, metadata=_METADATA[form])
    return out
