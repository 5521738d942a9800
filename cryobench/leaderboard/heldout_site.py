"""Protocol v2's figures (interval plots, P(improvement) matrix, performance profiles) and its static page.

The page (``leaderboards/site/index.html``) needs no server and loads nothing from elsewhere:
figures are inlined as SVG, every name is HTML-escaped. Figures are also written as PNG and
SVG files (``leaderboards/figures/v2/``). Everything is deterministic: the same results give
the same bytes (fixed SVG ids, no dates in the metadata).
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np

from cryobench import aggregate
from cryobench.files import write_atomic
from cryobench.leaderboard.heldout_tables import (
    CONFIDENCE,
    REPS,
    Board,
    FamilyHeadroom,
    describe_family_tasks,
    headroom,
    headroom_definition,
    headroom_gain_text,
    training_seed_spread,
    upper_bound_notes,
)

_SVG_METADATA = {"Date": None, "Creator": None}
_PNG_METADATA = {"Software": None}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "cryobench-v2"  # stable element ids: the same figure, the same bytes
    plt.rcParams["svg.fonttype"] = "path"
    return plt


def interval_figure(board: Board, scope: str):
    """IQM, mean and optimality gap of every agent with 95% CIs (rliable's interval plot)."""
    plt = _pyplot()
    entry = board.scopes[scope]
    summary = entry["summary"]
    order = list(summary.ranking.agents)[::-1]  # best at the top
    index = {a: k for k, a in enumerate(entry["agents"])}
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 0.42 * len(order) + 1.3), sharey=True)
    for ax, name, label in zip(
        axes,
        aggregate.AGGREGATES,
        ("IQM (higher is better)", "mean (higher is better)", "optimality gap (lower)"),
        strict=True,
    ):
        interval = summary.aggregates[name]
        for y, agent in enumerate(order):
            k = index[agent]
            ax.plot(
                [interval.low[k], interval.high[k]], [y, y], color="tab:blue", lw=6, alpha=0.45, solid_capstyle="butt"
            )
            ax.plot([interval.point[k]], [y], marker="|", color="black", markersize=12)
        ax.set_xlabel(f"{label}\nnormalised score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(order)), order)
    title = "all tasks that reveal CTFs" if scope == aggregate.OVERALL else board.protocol.family(scope).title
    fig.suptitle(
        f"Protocol v2, {scope}: {title} ({len(board.protocol.worlds)} test worlds x {len(entry['tasks'])} tasks; "
        f"bars: 95% stratified bootstrap CIs, {REPS} replicates)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def improvement_figure(board: Board, scope: str = aggregate.OVERALL):
    """P(row agent > column agent) for every pair, agents ordered by IQM."""
    plt = _pyplot()
    entry = board.scopes[scope]
    summary = entry["summary"]
    order = list(summary.ranking.agents)
    index = [entry["agents"].index(a) for a in order]
    matrix = summary.improvement.point[np.ix_(index, index)]
    fig, ax = plt.subplots(figsize=(0.55 * len(order) + 3.0, 0.5 * len(order) + 2.2))
    image = ax.imshow(matrix, cmap="RdBu", vmin=0.0, vmax=1.0)
    for i in range(len(order)):
        for j in range(len(order)):
            if i != j:
                value = matrix[i, j]
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(value - 0.5) > 0.3 else "black",
                )
    ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlabel("agent Y")
    ax.set_ylabel("agent X")
    fig.colorbar(image, ax=ax, label="P(X > Y): a random test world of a random task")
    ax.set_title(f"Protocol v2, {scope}: probability of improvement", fontsize=10)
    fig.tight_layout()
    return fig


def profile_figure(board: Board, scope: str = aggregate.OVERALL):
    """Performance profiles: the fraction of (world, task) runs above each normalised score."""
    plt = _pyplot()
    entry = board.scopes[scope]
    summary = entry["summary"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    cmap = plt.get_cmap("tab20")
    for position, agent in enumerate(summary.ranking.agents):
        k = entry["agents"].index(agent)
        colour = cmap(position % 20)
        ax.plot(summary.taus, summary.profiles.point[k], color=colour, lw=1.6, label=agent)
        ax.fill_between(summary.taus, summary.profiles.low[k], summary.profiles.high[k], color=colour, alpha=0.15)
    ax.set_xlabel("normalised score tau (0 = random, 100 = best ground-truth upper bound)")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left", frameon=True)
    ax.set_title(f"Protocol v2, {scope}: performance profiles (bands: 95% CIs)", fontsize=10)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str) -> bytes:
    buffer = io.BytesIO()
    metadata = _SVG_METADATA if fmt == "svg" else _PNG_METADATA
    fig.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
    return buffer.getvalue()


def render_figures(board: Board) -> dict[str, bytes]:
    """Every figure as PNG and SVG: interval plots per scope, and the overall matrix and profiles."""
    plt = _pyplot()
    figures = {f"intervals-{scope}": interval_figure(board, scope) for scope in board.scopes}
    if aggregate.OVERALL in board.scopes:
        figures["improvement-overall"] = improvement_figure(board)
        figures["profiles-overall"] = profile_figure(board)
    out = {}
    for name, fig in figures.items():
        for fmt in ("png", "svg"):
            out[f"{name}.{fmt}"] = figure_bytes(fig, fmt)
        plt.close(fig)
    return out


# ---- the page ---------------------------------------------------------------------------------------
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _scope_html(board: Board, scope: str) -> str:
    entry = board.scopes[scope]
    summary = entry["summary"]
    index = {a: k for k, a in enumerate(entry["agents"])}
    stats = summary.aggregates

    def cell(name: str, k: int) -> str:
        interval = stats[name]
        return f"<td>{interval.point[k]:.1f} <small>[{interval.low[k]:.1f}, {interval.high[k]:.1f}]</small></td>"

    rows = []
    for position, (agent, label) in enumerate(zip(summary.ranking.agents, summary.ranking.labels, strict=True)):
        k = index[agent]
        evidence = "—"
        if position:
            e = summary.ranking.evidence[position - 1]
            evidence = f"{e['p_improvement']:.2f} <small>[{e['low']:.2f}, {e['high']:.2f}]</small>"
        rows.append(
            f"<tr><td>{_e(label)}</td><th scope=row>{_e(agent)}</th>{cell('iqm', k)}{cell('mean', k)}"
            f"{cell('optimality_gap', k)}<td>{evidence}</td></tr>"
        )
    for agent, reason in entry["excluded"].items():
        rows.append(f"<tr class=na><td>–</td><th scope=row>{_e(agent)}</th><td colspan=4>{_e(reason)}</td></tr>")
    title = "All tasks that reveal CTFs" if scope == aggregate.OVERALL else board.protocol.family(scope).title
    spread = training_seed_spread(board, scope)
    seeds = (
        "<p class=tasks>Learned agents: the row is the mean over training seeds per test world; each seed alone: "
        + "; ".join(f"{_e(agent)}: {_e(text)}" for agent, text in spread.items())
        + "</p>"
        if spread
        else ""
    )
    return (
        f"<section id='{_e(scope)}'><h2>{_e(scope)}: {_e(title)}</h2>"
        f"<p class=tasks>Tasks: {_e(', '.join(entry['tasks']))}</p>"
        "<table><thead><tr><th>rank</th><th>agent</th><th>IQM [95% CI]</th><th>mean [95% CI]</th>"
        "<th>optimality gap</th><th>P(above &gt; this)</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + seeds
        + "</section>"
    )


def _percent_cell(value: float | None) -> str:
    return "<td>n/a</td>" if value is None else f"<td>{100 * value:.0f}%</td>"


def _headroom_html(family: FamilyHeadroom) -> str:
    """One family of :func:`cryobench.leaderboard.heldout_tables.headroom` (the figures of headroom.md)."""
    head = "".join(f"<th>gap closed: {_e(t)}</th>" for t in family.roomy)
    rows = []
    for row in family.rows:
        label = _e(row.agent) + (" <small>(upper bound)</small>" if row.upper_bound else "")
        cells = "".join(_percent_cell(row.closed.get(t)) for t in family.roomy)
        rows.append(
            f"<tr><th scope=row>{label}</th>{_percent_cell(row.mean_closed)}{cells}"
            f"<td>{_e(headroom_gain_text(row))}</td></tr>"
        )
    return (
        f"<h3>{_e(family.family)}: {_e(family.title)}</h3>"
        f"<p class=tasks>Predict-Rank &rarr; informed bound: {_e(describe_family_tasks(family, str))}</p>"
        f"<table><thead><tr><th>agent</th><th>gap closed (mean)</th>{head}<th>adaptivity gain</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


def _inline_svg(svg: bytes) -> str:
    text = svg.decode("utf-8")
    text = text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML
    if "<metadata>" in text:  # matplotlib's RDF block: namespace URLs the page does not need
        text = text[: text.index("<metadata>")] + text[text.index("</metadata>") + len("</metadata>") :]
    return text


def render_page(board: Board, figures: dict[str, bytes]) -> str:
    """One static HTML page: the ranking per scope, the figures inline, pending agents, how to read it."""
    sections = []
    order = [aggregate.OVERALL] + [s for s in board.scopes if s != aggregate.OVERALL]
    for scope in order:
        if scope not in board.scopes:
            continue
        sections.append(_scope_html(board, scope))
        sections.append(f"<figure>{_inline_svg(figures[f'intervals-{scope}.svg'])}</figure>")
        if scope == aggregate.OVERALL:
            for name in ("improvement-overall", "profiles-overall"):
                sections.append(f"<figure>{_inline_svg(figures[f'{name}.svg'])}</figure>")
    extras = []
    families = headroom(board)
    if families:
        extras.append(
            "<section id=headroom><h2>Headroom: the share of the Predict-Rank &rarr; informed-bound gap closed, "
            f"and the adaptivity gain</h2><p class=tasks>{_e(headroom_definition(board, str))}</p>"
            + "".join(_headroom_html(family) for family in families)
            + "</section>"
        )
    if board.bounds:
        items = "".join(f"<li><b>{_e(name)}</b>: {_e(what)}</li>" for name, what in upper_bound_notes(board))
        extras.append(f"<h2>Upper bounds</h2><p>Never ranked.</p><ul>{items}</ul>")
    if board.pending:
        items = "".join(f"<li>{_e(n)}: {_e(r)}</li>" for n, r in sorted(board.pending.items()))
        extras.append(f"<h2>Pending</h2><ul>{items}</ul>")
    protocol = board.protocol
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>cryobench leaderboard, protocol v2</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1a1a1a}}
h1{{font-size:1.6rem}} h2{{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;margin:.6rem 0}}
th,td{{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}}
th[scope=row]{{text-align:left;font-weight:600}} thead th{{background:#f4f4f4}} small{{color:#666}}
tr.na td,tr.na th{{color:#888}} figure{{margin:1rem 0}} figure svg{{max-width:100%;height:auto}}
.tasks{{color:#555;font-size:.9rem}} .note{{background:#f7f7f2;padding:.6rem 1rem;border-left:3px solid #bbb}}
</style></head><body>
<h1>cryobench leaderboard: protocol v2</h1>
<p class=note>Scores are measured on {len(protocol.worlds)} held-out <b>test worlds</b> per task
(layout and quality never used for training or tuning), each played from {len(protocol.starts)}
start holes, under {len(protocol.families)} families of conditions. A run is one test world.
Normalised score: 100 (x - random) / (best ground-truth upper bound - random) per task. Intervals: 95% stratified
bootstrap CIs over test worlds ({REPS} replicates, confidence {CONFIDENCE}). Ranks: by IQM; an agent
shares the rank above it unless the CI of P(above &gt; it) lies wholly above 0.5 (<code>=</code> marks
a shared rank). Runs are sealed: the agent ran in a process that never received the ground truth.
The measured Aldolase data is one world and is reported apart (tables/v2/real-data.md).</p>
{"".join(sections)}
{"".join(extras)}
<p><small>Generated by <code>cryobench leaderboard build</code> from leaderboards/results/v2; do not edit.</small></p>
</body></html>
"""


def write_outputs(board: Board, root: Path, tables: dict[str, str], check: bool = False) -> list[str]:
    """Write tables, figures and the page under ``root`` (the leaderboards folder); return what changed
    (with ``check``: what would change, writing nothing)."""
    figures = render_figures(board)
    page = render_page(board, figures)
    outputs: dict[Path, bytes] = {}
    for name, text in tables.items():
        outputs[root / "tables" / "v2" / name] = text.encode("utf-8")
    for name, data in figures.items():
        outputs[root / "figures" / "v2" / name] = data
    outputs[root / "site" / "index.html"] = page.encode("utf-8")
    changed = []
    for path, data in outputs.items():
        if path.is_file() and path.read_bytes() == data:
            continue
        changed.append(str(path.relative_to(root.parent) if path.is_relative_to(root.parent) else path))
        if not check:
            write_atomic(path, data)
    return changed


def build(check: bool = False) -> list[str]:
    """Regenerate protocol v2's tables, figures and page (``check``: only list what is out of date)."""
    from cryobench.leaderboard.heldout_tables import compute_board, load_results, render_markdown
    from cryobench.resources import card_dir

    docs = load_results()
    if not docs:
        return []
    board = compute_board(docs)
    return write_outputs(board, card_dir("leaderboards"), render_markdown(board), check=check)
