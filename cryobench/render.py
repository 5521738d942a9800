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


def draw_session(world: World, state: SessionState | None, size_px: int = 640) -> np.ndarray:
    """An RGB image (H, W, 3) uint8 of the grid: predicted quality in grey, revealed holes
    green (good) or red (bad), exposures joined in order by a line, the current hole ringed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xy = map_xy(world.grid)
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
