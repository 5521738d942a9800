"""Draw a session on the grid map: holes coloured by what is known, the path so far."""

from __future__ import annotations

import numpy as np

from cryobench.grid import Grid
from cryobench.simulator import SessionState, World


def map_xy(grid: Grid) -> np.ndarray:
    """(n_holes, 2) drawing coordinates: a mosaic of the grid, not its true geometry.

    Each atlas tile is a block of cells, one cell per square, with the square's holes at their
    true positions within the square (µm). Blocks are laid out in reading order. Grid-wide
    square positions are schematic for twins and approximate for measured data, and costs
    never depend on them, so a compact mosaic shows paths far better than the raw frame.
    """
    local = np.column_stack([grid.x_um, grid.y_um])
    centred = local - (np.bincount(grid.square, weights=local[:, 0]) / np.bincount(grid.square))[grid.square, None]
    centred[:, 1] = (
        local[:, 1] - (np.bincount(grid.square, weights=local[:, 1]) / np.bincount(grid.square))[grid.square]
    )
    cell = float(np.abs(centred).max()) * 2.0 + 4.0 * grid.pitch_um
    squares_per_tile = np.bincount(grid.square_tile, minlength=grid.n_tiles)
    block = int(np.ceil(np.sqrt(squares_per_tile.max())))
    tiles_per_row = int(np.ceil(np.sqrt(grid.n_tiles)))
    # The rank of each square within its tile decides its cell in the tile's block.
    order = np.lexsort((np.arange(grid.n_squares), grid.square_tile))
    rank = np.empty(grid.n_squares, dtype=np.int64)
    first = np.searchsorted(grid.square_tile[order], np.arange(grid.n_tiles))
    rank[order] = np.arange(grid.n_squares) - first[grid.square_tile[order]]
    tile = grid.square_tile
    tile_origin = np.column_stack([tile % tiles_per_row, -(tile // tiles_per_row)]) * (block + 0.5) * cell
    square_origin = tile_origin + np.column_stack([rank % block, -(rank // block)]) * cell
    return square_origin[grid.square] + centred


def draw_session(world: World, state: SessionState | None, size_px: int = 640, atlas=None) -> np.ndarray:
    """An RGB image (H, W, 3) uint8 of the grid: predicted quality in grey, revealed holes
    green (good) or red (bad), exposures joined in order by a line, the current hole ringed.

    The map fills the frame edge to edge (the image takes the mosaic's proportions, its longer
    side ``size_px``); the title and the legend have strips of their own. Every frame of one
    world has the same size, so frames make a video.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = session_figure(world, state, size_px, atlas)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def session_figure(world: World, state: SessionState | None, size_px: int = 640, atlas=None):
    """The matplotlib Figure :func:`draw_session` rasterises."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    xy = map_xy(world.grid)
    low, high = xy.min(axis=0), xy.max(axis=0)
    pad = 0.02 * float(np.max(high - low)) + world.grid.pitch_um
    low, high = low - pad, high + pad
    scale = size_px / float(np.max(high - low))
    map_w, map_h = (high - low) * scale
    map_w = max(map_w, 0.6 * size_px)  # room for the title and legend; the map is centred in it
    title_px, legend_px = 34.0, 44.0
    width, height = 2 * round(map_w / 2), 2 * round((map_h + title_px + legend_px) / 2)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0.0, legend_px / height, 1.0, map_h / height))
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.axis("off")
    shown = np.ones(world.n_holes, dtype=bool) if state is None or state.shown is None else state.shown
    shade = np.clip(world.predicted_ctf[shown] / 20.0, 0.0, 1.0)
    ax.scatter(xy[shown, 0], xy[shown, 1], s=2, c=shade, cmap="Greys_r", vmin=0.0, vmax=1.3, linewidths=0)
    title = f"{world.grid.name}: {world.n_holes} holes"
    if state is not None and state.imaged is not None:
        _draw_unimaged_squares(ax, world, state, xy, atlas)
        title += f", {int(state.imaged.sum())}/{world.n_squares} squares imaged"
    if state is not None:
        revealed = state.revealed
        good = revealed & world.true_good
        ax.scatter(xy[good, 0], xy[good, 1], s=5, c="tab:green", linewidths=0)
        ax.scatter(xy[revealed & ~good, 0], xy[revealed & ~good, 1], s=5, c="tab:red", linewidths=0)
        path = [state.start, *state.exposures]
        ax.plot(xy[path, 0], xy[path, 1], lw=0.6, c="tab:blue", alpha=0.7)
        ax.scatter(*xy[state.current], s=40, facecolors="none", edgecolors="tab:orange")
        exposed = np.asarray(state.exposures, dtype=np.int64)
        good_exposures = int(world.true_good[exposed].sum())
        title += f" | {state.elapsed:.0f} of {world.duration:.0f} min"
        title += f" | {good_exposures} good of {state.n_exposures} exposures"
    fig.text(0.5, 1.0 - 0.5 * title_px / height, title, ha="center", va="center", fontsize=9)
    dot = {"linestyle": "none", "marker": "o", "markersize": 4}
    handles = [
        Line2D([], [], color="#777777", **dot),
        Line2D([], [], color="tab:green", **dot),
        Line2D([], [], color="tab:red", **dot),
        Line2D([], [], color="tab:blue", lw=1),
        Line2D([], [], linestyle="none", marker="o", markersize=7, markerfacecolor="none", color="tab:orange"),
    ]
    names = ["hole (darker: predicted better)", "good (revealed)", "bad (revealed)", "path", "current hole"]
    fig.legend(handles, names, loc="lower center", ncols=3, fontsize=7, frameon=False, borderaxespad=0.2)
    return fig


def _draw_unimaged_squares(ax, world: World, state: SessionState, xy: np.ndarray, atlas) -> None:
    """Every square not imaged yet as a box at its cell, sized by its atlas size class and filled by
    the atlas's good fraction (greener: better)."""
    from matplotlib.patches import Rectangle

    square = world.grid.square
    holes = np.array([25.0, 75.0, 125.0, 175.0, 240.0])  # per atlas size class (agents.staged.SIZE_CLASS_HOLES)
    for s in np.flatnonzero(~state.imaged):
        # At the square's cell, as large as its atlas size class says (not its true holes).
        centre = xy[square == s].mean(axis=0)
        side = world.grid.pitch_um * np.sqrt(holes[atlas.size_class[s]] if atlas is not None else 100.0)
        fraction = 0.5 if atlas is None else float(atlas.good_fraction[s])
        ax.add_patch(
            Rectangle(
                centre - side / 2,
                side,
                side,
                facecolor=(1.0 - fraction, 0.55 + 0.45 * fraction, 0.4),
                alpha=0.35,
                lw=0.6,
                edgecolor="grey",
            )
        )
    if state.stage_square >= 0:
        members = xy[square == state.stage_square]
        ax.scatter(*members.mean(axis=0), s=80, marker="s", facecolors="none", edgecolors="tab:orange")
