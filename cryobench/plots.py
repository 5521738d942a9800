"""The paper's kinds of figures, drawn from results files (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryobench import metrics
from cryobench.compare import jaccard_between

PLOT_KINDS = ("curve", "bins", "jaccard", "path", "squares")
_BIN_COLOURS = ("#1a1a1a", "#555555", "#999999", "#dddddd")


def _figure(width: float = 6.4, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def _label(result: dict) -> str:
    name = result["agent"]["name"]
    return f"{name} (upper bound)" if result["agent"].get("upper_bound") else name


def plot_curve(results: list[dict], path: Path) -> Path:
    """Good exposures against minutes, mean and interquartile band over episodes (Fig. 4B)."""
    fig = _figure()
    ax = fig.add_subplot()
    for result in results:
        duration = float(result["env"]["spec"]["kwargs"].get("duration", 480.0))
        grid = np.linspace(0.0, duration, 241)
        curves = np.array([metrics.good_at_minutes(row["good_curve"], grid) for row in result["episodes"]])
        mean = curves.mean(axis=0)
        low, high = np.percentile(curves, [25, 75], axis=0)
        style = "--" if result["agent"].get("upper_bound") else "-"
        (line,) = ax.plot(grid, mean, style, label=_label(result))
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("minutes")
    ax.set_ylabel("good exposures (CTFMaxRes < threshold)")
    ax.set_title(results[0]["env"]["id"])
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_bins(results: list[dict], path: Path) -> Path:
    """Mean exposures per CTF bin per agent, stacked (Fig. 2C / 4C)."""
    fig = _figure()
    ax = fig.add_subplot()
    labels = [_label(r) for r in results]
    bottom = np.zeros(len(results))
    for colour, bin_label in zip(_BIN_COLOURS, metrics.PAPER_BIN_LABELS, strict=True):
        heights = np.array([np.mean([row["bins"][bin_label] for row in r["episodes"]]) for r in results])
        ax.bar(labels, heights, bottom=bottom, color=colour, edgecolor="black", linewidth=0.5, label=f"{bin_label} Å")
        bottom += heights
    ax.set_ylabel("exposures (mean over episodes)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_jaccard(results: list[dict], path: Path) -> Path:
    """Heatmap of Jaccard similarity between agents' exposure sets (Fig. 4E)."""
    table = jaccard_between(results)
    fig = _figure(5.5, 4.8)
    ax = fig.add_subplot()
    image = ax.imshow(table.to_numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
    labels = [_label(r) for r in results]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "k")
    fig.colorbar(image, ax=ax, label="Jaccard similarity")
    fig.savefig(path)
    return path


def plot_squares(results: list[dict], path: Path) -> Path:
    """Squares visited and exposures per square per agent (Fig. 4D)."""
    fig = _figure()
    ax1, ax2 = fig.subplots(1, 2)
    labels = [_label(r) for r in results]
    squares = [np.mean([row["squares_visited"] for row in r["episodes"]]) for r in results]
    per_square = [np.mean([row["exposures_per_square"] for row in r["episodes"]]) for r in results]
    ax1.bar(labels, squares, color="#4c72b0")
    ax1.set_ylabel("squares visited")
    ax2.bar(labels, per_square, color="#dd8452")
    ax2.set_ylabel("exposures per square")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.savefig(path)
    return path


def plot_path(results: list[dict], path: Path, episode: int = 0) -> Path:
    """One episode's path drawn on the grid, per results file (rebuilds the environment)."""
    from cryobench.registration import make_env
    from cryobench.render import map_xy

    fig = _figure(4.2 * len(results), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(results)))
    for ax, result in zip(axes, results, strict=True):
        env = make_env(result["env"]["id"], result["env"]["kwargs"])
        world = env.unwrapped.world
        xy = map_xy(world.grid)
        row = result["episodes"][min(episode, len(result["episodes"]) - 1)]
        # Every hole coloured by its true CTFMaxRes (as the paper's Fig. 2D-G), the path on top.
        shade = ax.scatter(
            xy[:, 0], xy[:, 1], s=2, c=world.grid.ctf_capped(), cmap="viridis_r", vmin=2, vmax=15, linewidths=0
        )
        traj = np.asarray(row["trajectory"], dtype=int)
        good = np.asarray(row["trajectory_good"], dtype=bool)
        ax.plot(xy[[row["start"], *traj], 0], xy[[row["start"], *traj], 1], lw=0.5, c="tab:blue", alpha=0.6)
        ax.scatter(
            xy[traj[good], 0],
            xy[traj[good], 1],
            s=7,
            facecolors="none",
            edgecolors="tab:green",
            lw=0.6,
            label="good exposure",
        )
        ax.scatter(
            xy[traj[~good], 0],
            xy[traj[~good], 1],
            s=7,
            facecolors="none",
            edgecolors="tab:red",
            lw=0.6,
            label="bad exposure",
        )
        ax.set_aspect("equal")
        ax.set_title(f"{_label(result)}, seed {row['seed']}: {row['good_exposures']} good", fontsize=8)
        ax.axis("off")
        env.close()
    axes[0].legend(fontsize=7, loc="lower left")
    fig.colorbar(shade, ax=list(axes), shrink=0.6, label="true CTFMaxRes (Å)")
    fig.savefig(path)
    return path


PLOTTERS = {
    "curve": plot_curve,
    "bins": plot_bins,
    "jaccard": plot_jaccard,
    "path": plot_path,
    "squares": plot_squares,
}


def make_plot(kind: str, results: list[dict], out: str | Path) -> Path:
    """Draw one kind of figure from results files into ``out`` (a PNG path)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return PLOTTERS[kind](results, out)
