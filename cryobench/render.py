"""Draw a session on the grid map: holes coloured by what is known, the path so far."""

from __future__ import annotations

import numpy as np

from cryobench.simulator import SessionState, World


def draw_session(world: World, state: SessionState | None, size_px: int = 640) -> np.ndarray:
    """An RGB image (H, W, 3) uint8 of the grid: predicted quality in grey, revealed holes
    green (good) or red (bad), exposures joined in order by a line, the current hole ringed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xy = world.grid.global_xy_um()
    fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.92))
    ax.set_aspect("equal")
    ax.axis("off")
    shade = np.clip(world.predicted_ctf / 20.0, 0.0, 1.0)
    ax.scatter(xy[:, 0], xy[:, 1], s=2, c=shade, cmap="Greys_r", vmin=0.0, vmax=1.3, linewidths=0)
    title = f"{world.grid.name}: {world.n_holes} holes"
    if state is not None:
        revealed = state.revealed
        good = revealed & world.true_good
        ax.scatter(xy[good, 0], xy[good, 1], s=5, c="tab:green", linewidths=0)
        ax.scatter(xy[revealed & ~good, 0], xy[revealed & ~good, 1], s=5, c="tab:red", linewidths=0)
        path = [state.start, *state.exposures]
        ax.plot(xy[path, 0], xy[path, 1], lw=0.6, c="tab:blue", alpha=0.7)
        ax.scatter(*xy[state.current], s=40, facecolors="none", edgecolors="tab:orange")
        title += f" | {state.elapsed:.0f} min, {state.n_exposures} exposures"
    ax.set_title(title, fontsize=9)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
    return image
