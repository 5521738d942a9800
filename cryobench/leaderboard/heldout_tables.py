"""Protocol v2's generated outputs: tables, figures and one static page, from ``results/v2/``.

Nothing is typed by hand: ``cryobench leaderboard build`` reads every submission in
``leaderboards/results/v2/`` (``cryobench-submission/2``), normalises each run by the task's
reference points in ``protocol-v2.yaml`` and computes, per task family and overall, the
statistics of :mod:`cryobench.aggregate` (IQM, mean, optimality gap with stratified bootstrap CIs
over test worlds, the probability of improvement of every pair, performance profiles) and the
ranking rule. It writes ``tables/v2/*.md``, ``figures/v2/*.png|svg`` and ``site/index.html``.

Upper bounds (agents that see the ground truth) are shown apart and never ranked. Agents listed
in ``pending-v2.yaml`` appear as pending with their reason, never silently missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cryobench import aggregate
from cryobench.errors import InputError
from cryobench.files import write_atomic
from cryobench.heldout import HeldOutProtocol, load_heldout_protocol
from cryobench.leaderboard.heldout_runs import load_submission, protocol_for
from cryobench.leaderboard.tables import escape_markdown
from cryobench.metrics import HEADROOM_MIN_RATIO, INFORMED_BOUND, adaptivity_gain, headroom_closed
from cryobench.resources import card_dir

VERSION = 2
#: Bootstrap settings of every published figure (fixed, so a build reproduces them exactly).
REPS, SEED, CONFIDENCE = 2000, 0, 0.95


def results_dir() -> Path:
    return card_dir("leaderboards") / "results" / f"v{VERSION}"


#: A learned agent's entry needs this many independently trained versions (protocol v2, issue 13).
MIN_TRAINING_SEEDS = 3


def load_results() -> list[dict]:
    """Every committed v2 submission (full tier), one per agent, sorted by agent name.

    A learned agent has one file per training seed; they are merged into one entry
    (:func:`merge_training_seeds`) after checking that there are at least ``MIN_TRAINING_SEEDS``.
    """
    groups: dict[str, list[dict]] = {}
    for path in sorted(results_dir().glob("*.json")):
        doc = load_submission(path)
        if doc["protocol"]["tier"] != "full":
            raise InputError(f"{path}: a leaderboard result must be a full-tier run, not {doc['protocol']['tier']!r}")
        groups.setdefault(doc["agent"]["name"], []).append(doc)
    docs = []
    for name, group in sorted(groups.items()):
        seeds = [doc["agent"].get("training_seed") for doc in group]
        if seeds == [None]:
            docs.append(group[0])
        elif None in seeds:
            raise InputError(f"{results_dir()}: more than one result for {[name]}")
        else:
            docs.append(merge_training_seeds(name, group))
    return docs


def merge_training_seeds(name: str, docs: list[dict]) -> dict:
    """One entry from a learned agent's per-training-seed submissions: a run's score is the mean over the
    seeds' scores on that test world (worlds stay the runs of the statistics); ``agent.training_seeds``
    lists the seeds and ``per_seed`` keeps each submission for the spread the tables show."""
    seeds = [doc["agent"]["training_seed"] for doc in docs]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{results_dir()}: agent {name!r}: training seed(s) submitted twice: {sorted(seeds)}")
    if len(seeds) < MIN_TRAINING_SEEDS:
        raise InputError(
            f"{results_dir()}: agent {name!r} is learned: its entry needs results of at least {MIN_TRAINING_SEEDS} "
            f"training seeds (one file each), found {sorted(seeds)}"
        )
    docs = sorted(docs, key=lambda doc: doc["agent"]["training_seed"])
    first = docs[0]
    for doc in docs[1:]:
        if set(doc["tasks"]) != set(first["tasks"]) or doc["protocol"] != first["protocol"]:
            raise InputError(
                f"{results_dir()}: agent {name!r}: training seeds {seeds} were not run on the same tasks and worlds"
            )
    merged = {**first, "agent": {**first["agent"], "training_seeds": sorted(seeds)}, "per_seed": docs}
    merged["agent"].pop("training_seed")
    merged["tasks"] = {}
    for task, block in first["tasks"].items():
        runs = []
        for k, run in enumerate(block["runs"]):
            scores = [doc["tasks"][task]["runs"][k]["score"] for doc in docs]
            runs.append({**run, "score": round(float(np.mean(scores)), 6)})
        merged["tasks"][task] = {**block, "runs": runs}
    return merged


def load_pending() -> dict[str, str]:
    """Agents whose v2 runs are still to come, with the reason (``leaderboards/pending-v2.yaml``)."""
    path = card_dir("leaderboards") / f"pending-v{VERSION}.yaml"
    if not path.is_file():
        return {}
    pending = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(pending, dict) or not all(isinstance(v, str) for v in pending.values()):
        raise InputError(f"{path}: expected a mapping of agent name to the reason its runs are pending")
    return pending


# ---- reference points -------------------------------------------------------------------------
def task_means(doc: dict) -> dict[str, float]:
    """An agent's mean good exposures per task, over its test worlds."""
    return {name: float(np.mean([run["score"] for run in block["runs"]])) for name, block in doc["tasks"].items()}


def reference_points(docs: list[dict], protocol: HeldOutProtocol) -> dict[str, dict[str, Any]]:
    """Per task: the random agent's mean and the best upper bound's mean over the test worlds."""
    by_name = {d["agent"]["name"]: d for d in docs}
    if "random" not in by_name:
        raise InputError("reference points need the committed results of the 'random' agent (results/v2/random.json)")
    # The ground-truth oracles only: the informed bound knows less and is a reference of its own (headroom.md).
    bounds = [d for d in docs if d["agent"]["upper_bound"] and d["agent"]["name"] != INFORMED_BOUND]
    if not bounds:
        raise InputError("reference points need the committed results of at least one upper bound (oracle-*)")
    random_means = task_means(by_name["random"])
    out = {}
    for task in (*protocol.tasks, *protocol.measured):
        if task.name not in random_means:
            continue
        candidates = [(task_means(d)[task.name], d["agent"]["name"]) for d in bounds if task.name in d["tasks"]]
        best, name = max(candidates)
        out[task.name] = {"random": round(random_means[task.name], 3), "upper_bound": round(best, 3), "by": name}
    return out


def write_references(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Compute the reference points from the committed results and write them into protocol-v2.yaml."""
    from cryobench.protocol import protocol_path

    path = path or protocol_path(VERSION)
    references = reference_points(load_results(), load_heldout_protocol())
    text = path.read_text(encoding="utf-8")
    marker = "\nreferences:"
    if marker not in text:
        raise InputError(f"{path}: no 'references:' section to write")
    head = text[: text.index(marker)]
    lines = ["", "references:"]
    for name, points in references.items():
        lines.append(f"  {name}: {json.dumps(points, sort_keys=True)}")
    write_atomic(path, head + "\n".join(lines) + "\n")
    return references


def summarize(paths: list[str | Path], out: str | Path) -> list[Path]:
    """The v2 tables of any set of submissions of one tier (e.g. ``--tier validation`` runs while choosing
    a design), written to ``out``; never the leaderboard. A learned agent's per-seed files are merged."""
    groups: dict[str, list[dict]] = {}
    tiers: dict[tuple, str] = {}
    for path in paths:
        doc = load_submission(path)
        tiers[(doc["protocol"]["tier"], tuple(doc["protocol"]["worlds"]), tuple(doc["protocol"]["starts"]))] = str(path)
        groups.setdefault(doc["agent"]["name"], []).append(doc)
    if len(tiers) != 1:
        raise InputError(
            "summarize compares submissions of one tier on the same worlds and starts; these differ: "
            + ", ".join(sorted(tiers.values()))
        )
    (tier, worlds, _starts), _ = tiers.popitem()
    docs = []
    for name, group in sorted(groups.items()):
        if len(group) == 1 and group[0]["agent"].get("training_seed") is None:
            docs.append(group[0])
        elif any(doc["agent"].get("training_seed") is None for doc in group):
            raise InputError(f"more than one submission of agent {name!r} without a training seed")
        else:
            docs.append(merge_training_seeds(name, group))
    protocol = protocol_for("full" if tier == "draw" else tier, worlds if tier == "draw" else None)
    board = replace(compute_board(docs, protocol), pending={})
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    origin = "from leaderboards/results/v2; do not edit -->"
    written = []
    for name, text in render_markdown(board).items():
        text = text.replace(
            "`cryobench leaderboard build` " + origin,
            f"`cryobench leaderboard summarize` from {len(paths)} submission(s), {tier} tier; not a leaderboard -->",
        )
        write_atomic(folder / name, text)
        written.append(folder / name)
    return written


# ---- statistics ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Board:
    """Everything the outputs show, computed once."""

    protocol: HeldOutProtocol
    agents: tuple[str, ...]  # real agents with results
    bounds: tuple[str, ...]  # upper bounds with results
    docs: dict[str, dict]
    scopes: dict[str, dict[str, Any]]  # scope -> {"tasks", "agents", "summary", "excluded"}
    pending: dict[str, str]
    fixed_plans: tuple[str, ...] = ()  # real agents whose class declares reads_feedback = False


def _normalised(doc: dict, tasks: list[str], protocol: HeldOutProtocol) -> np.ndarray:
    """(worlds, tasks) normalised scores of one agent, on the reference points of protocol-v2.yaml."""
    missing = [t for t in tasks if t not in protocol.references]
    if missing:
        raise InputError(
            f"protocol-v2.yaml has no reference points for task(s) {', '.join(missing)}: "
            "run `cryobench leaderboard references --version 2`"
        )
    references = aggregate.parse_references(
        {t: protocol.references[t] for t in tasks}, source="leaderboards/protocol-v2.yaml: references"
    )
    raw = np.column_stack([[run["score"] for run in doc["tasks"][name]["runs"]] for name in tasks])
    return aggregate.normalise(raw, tasks, references)


def scope_tasks(protocol: HeldOutProtocol) -> dict[str, list[str]]:
    """The tasks of every family, and "overall": every task that reveals CTFs (all agents run them)."""
    scopes = {family.name: [t.name for t in family.tasks] for family in protocol.families}
    scopes[aggregate.OVERALL] = [t.name for t in protocol.tasks if not t.blind]
    return scopes


def fixed_plans(agents: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The fixed plans among ``agents`` (no upper bounds): those whose class declares it never reads a
    revealed CTF (``reads_feedback = False``, held to it by tests/test_agents.py). An agent that is not
    installed here cannot be asked and counts as adaptive."""
    from cryobench.agents.registry import agent_class

    out = []
    for name in agents:
        try:
            reads_feedback = agent_class(name).reads_feedback
        except InputError:  # a third party's submission whose package is not installed
            continue
        if not reads_feedback:
            out.append(name)
    return tuple(out)


def compute_board(docs: list[dict] | None = None, protocol: HeldOutProtocol | None = None) -> Board:
    protocol = protocol or load_heldout_protocol()
    docs = load_results() if docs is None else docs
    by_name = {d["agent"]["name"]: d for d in docs}
    agents = tuple(n for n, d in by_name.items() if not d["agent"]["upper_bound"])
    bounds = tuple(n for n, d in by_name.items() if d["agent"]["upper_bound"])
    scopes = {}
    for scope, tasks in scope_tasks(protocol).items():
        members = [a for a in agents if all(t in by_name[a]["tasks"] for t in tasks)]
        excluded = {a: "not applicable to a task of this family" for a in agents if a not in members}
        if len(members) < 2:
            continue
        scores = np.stack([_normalised(by_name[a], tasks, protocol) for a in members])
        summary = aggregate.summarise_scope(scores, members, tasks, scope, reps=REPS, confidence=CONFIDENCE, seed=SEED)
        scopes[scope] = {"tasks": tasks, "agents": members, "summary": summary, "excluded": excluded}
    return Board(protocol, agents, bounds, by_name, scopes, load_pending(), fixed_plans(agents))


# ---- Markdown ------------------------------------------------------------------------------------
def _interval(interval: aggregate.Interval, k: int) -> str:
    return f"{interval.point[k]:.1f} [{interval.low[k]:.1f}, {interval.high[k]:.1f}]"


def scope_table(board: Board, scope: str) -> list[str]:
    entry = board.scopes[scope]
    summary, members = entry["summary"], entry["agents"]
    index = {a: k for k, a in enumerate(members)}
    stats = summary.aggregates
    lines = [
        "| rank | agent | IQM [95% CI] | mean [95% CI] | optimality gap [95% CI] | P(above > this) [95% CI] |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    ranking = summary.ranking
    for position, (agent, label) in enumerate(zip(ranking.agents, ranking.labels, strict=True)):
        k = index[agent]
        if position == 0:
            evidence = "—"
        else:
            e = ranking.evidence[position - 1]
            evidence = f"{e['p_improvement']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"
        lines.append(
            f"| {label} | {escape_markdown(agent)} | {_interval(stats['iqm'], k)} | {_interval(stats['mean'], k)} "
            f"| {_interval(stats['optimality_gap'], k)} | {evidence} |"
        )
    for agent, reason in entry["excluded"].items():
        lines.append(f"| – | {escape_markdown(agent)} | not applicable | | | {escape_markdown(reason)} |")
    spread = training_seed_spread(board, scope)
    if spread:
        lines += ["", "Learned agents: the row is the mean over training seeds per test world; each seed alone:", ""]
        lines += [f"- {escape_markdown(agent)}: {text}" for agent, text in spread.items()]
    return lines


def training_seed_spread(board: Board, scope: str) -> dict[str, str]:
    """Per learned agent of a scope, each training seed's IQM on its own and their range (the spread)."""
    entry, out = board.scopes[scope], {}
    for agent in entry["agents"]:
        per_seed = board.docs[agent].get("per_seed")
        if not per_seed:
            continue
        iqms = [aggregate.iqm(_normalised(doc, entry["tasks"], board.protocol)) for doc in per_seed]
        seeds = " / ".join(str(doc["agent"]["training_seed"]) for doc in per_seed)
        values = " / ".join(f"{value:.1f}" for value in iqms)
        out[agent] = f"IQM of training seeds {seeds}: {values} (range {max(iqms) - min(iqms):.1f})"
    return out


def task_table(board: Board) -> list[str]:
    """Raw mean good exposures per task over the test worlds (upper bounds last, marked)."""
    tasks = [t.name for t in board.protocol.tasks]
    names = [*board.agents, *board.bounds]
    lines = [
        "| task | "
        + " | ".join(escape_markdown(n) + (" (upper bound)" if n in board.bounds else "") for n in names)
        + " |"
    ]
    lines.append("|---|" + "---:|" * len(names))
    for task in tasks:
        cells = []
        for name in names:
            block = board.docs[name]["tasks"].get(task)
            cells.append(f"{np.mean([r['score'] for r in block['runs']]):.1f}" if block else "n/a")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def real_data_table(board: Board) -> list[str]:
    """The measured track: each agent's mean over start holes, the share of the Predict-Rank ->
    informed-bound gap it closes and its adaptivity gain (the definitions of headroom.md, on one world)."""
    lines = [
        "| agent | task | good exposures (mean over starts) | starts | gap closed | adaptivity gain |",
        "|---|---|---:|---:|---:|---:|",
    ]
    fixed = set(board.fixed_plans)
    for task in board.protocol.measured:
        means = {name: task_means(doc)[task.name] for name, doc in board.docs.items() if task.name in doc["tasks"]}
        pr, informed = means.get("predict-rank"), means.get(INFORMED_BOUND)
        plans = {name: means[name] for name in board.fixed_plans if name in means}
        for name in (*board.agents, *board.bounds):
            block = board.docs[name]["tasks"].get(task.name)
            if not block:
                continue
            run = block["runs"][0]
            if pr is None or informed is None:
                shown = "n/a"
            else:  # one world: a single figure, no interval
                closed = headroom_closed(means[name], pr, informed)
                shown = "no headroom" if closed is None else f"{100 * closed:.0f}%"
            gain = "n/a" if not plans else f"{adaptivity_gain(means[name], plans):+.1f}"
            gain = "fixed plan" if name in fixed else gain
            label = escape_markdown(name) + (" (upper bound)" if name in board.bounds else "")
            lines.append(f"| {label} | {task.name} | {run['score']:.1f} | {len(run['episodes'])} | {shown} | {gain} |")
    return lines


def upper_bound_notes(board: Board) -> list[tuple[str, str]]:
    """(name, what it knows and what it is for) of every upper bound with results."""
    informed = (
        "the informed bound: knows the twin generator's latent patch quality and the regressor's calibration "
        "on the world, not each hole's own quality; the top of the headroom (tables/v2/headroom.md), not the "
        "scale of the normalised score"
    )
    oracle = "sees the ground truth; the best of these sets the scale (100) of the normalised score"
    return [(name, informed if name == INFORMED_BOUND else oracle) for name in board.bounds]


# ---- headroom -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadroomRow:
    """One agent's (or upper bound's) headroom figures on one family."""

    agent: str
    upper_bound: bool
    closed: dict[str, float]  # task with headroom -> share of the Predict-Rank -> informed gap closed
    mean_closed: float | None  # the mean over the family's tasks with headroom it ran (None: none)
    gain: float | None  # adaptivity gain, the mean over the family's tasks it ran; None for a fixed plan


@dataclass(frozen=True)
class FamilyHeadroom:
    """The headroom of one task family: per task the two ends of the gap, then a row per agent."""

    family: str
    title: str
    tasks: tuple[str, ...]
    roomy: tuple[str, ...]  # the tasks with headroom (informed >= HEADROOM_MIN_RATIO x Predict-Rank)
    predict_rank: dict[str, float]
    informed: dict[str, float]
    best_fixed_plan: dict[str, tuple[str, float]]  # task -> (the fixed plan with the highest mean, its mean)
    rows: tuple[HeadroomRow, ...]  # agents by mean gap closed, then the upper bounds


def headroom(board: Board) -> list[FamilyHeadroom]:
    """Per family: the share of the Predict-Rank -> informed-bound gap each agent closes (tasks with
    headroom only) and its adaptivity gain over the best fixed plan (every task it ran). Empty when
    the results of predict-rank, the informed bound or every fixed plan are missing. The one
    computation behind tables/v2/headroom.md and the page's Headroom section."""
    if not all(name in board.docs for name in (INFORMED_BOUND, "predict-rank")) or not board.fixed_plans:
        return []
    means = {name: task_means(doc) for name, doc in board.docs.items()}
    pr, informed = means["predict-rank"], means[INFORMED_BOUND]
    fixed = set(board.fixed_plans)
    out = []
    for family in board.protocol.families:
        tasks = tuple(t.name for t in family.tasks)
        roomy = tuple(t for t in tasks if headroom_closed(pr[t], pr[t], informed[t]) is not None)
        plans = {t: {f: means[f][t] for f in board.fixed_plans if t in means[f]} for t in tasks}
        rows = []
        for name in (*board.agents, *board.bounds):
            ran = [t for t in tasks if t in means[name]]
            if not ran:
                continue
            closed = {t: headroom_closed(means[name][t], pr[t], informed[t]) for t in roomy if t in means[name]}
            gain = None
            if name not in fixed:
                gain = float(np.mean([adaptivity_gain(means[name][t], plans[t]) for t in ran]))
            mean_closed = float(np.mean(list(closed.values()))) if closed else None
            rows.append(HeadroomRow(name, name in board.bounds, closed, mean_closed, gain))
        rows.sort(key=lambda r: (r.upper_bound, -(r.mean_closed if r.mean_closed is not None else -np.inf), r.agent))
        best = {t: max(((m, f) for f, m in plans[t].items()), key=lambda pair: pair[0])[::-1] for t in tasks}
        out.append(
            FamilyHeadroom(
                family.name,
                family.title,
                tasks,
                roomy,
                {t: pr[t] for t in tasks},
                {t: informed[t] for t in tasks},
                best,
                tuple(rows),
            )
        )
    return out


def headroom_definition(board: Board, escape: Callable[[str], str] = escape_markdown) -> str:
    """What the headroom figures mean, in words shared by headroom.md and the page; agent names go
    through ``escape`` (Markdown's or HTML's), the rest is plain text."""
    plans = ", ".join(escape(name) for name in board.fixed_plans)
    return (
        f"Headroom of a task: the informed bound ({INFORMED_BOUND}, an upper bound that knows the twin's latent "
        "patch quality and the regressor's calibration, not the hole's own quality) minus Predict-Rank, in mean "
        f"good exposures over the test worlds; a task has headroom when the bound is at least "
        f"{100 * (HEADROOM_MIN_RATIO - 1):.0f}% above Predict-Rank. Gap closed: (agent - Predict-Rank) / "
        "(informed - Predict-Rank), per task with headroom, then the mean over the family's such tasks (100% "
        "reaches the bound; below 0, under Predict-Rank). Adaptivity gain: the agent's mean good exposures "
        "minus the best fixed plan's on the same task, then the mean over the family's tasks it ran. The fixed "
        f"plans are the agents whose class declares it never reads a revealed CTF (reads_feedback = False): {plans}; "
        "the best is the one with the highest mean on the task (named beside each task). A fixed plan's own "
        "row says 'fixed plan' instead of a gain; an upper bound's gain is what its extra knowledge is worth "
        "against the best fixed plan. Definitions: cryobench.metrics (adaptivity_gain, headroom_closed). "
        "Upper bounds are not ranked."
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def headroom_gain_text(row: HeadroomRow) -> str:
    return "fixed plan" if row.gain is None else f"{row.gain:+.1f}"


def describe_family_tasks(family: FamilyHeadroom, escape: Callable[[str], str] = escape_markdown) -> str:
    """Each task's Predict-Rank -> informed bound and its best fixed plan (through ``escape``), in one line."""
    parts = []
    for t in family.tasks:
        plan, mean = family.best_fixed_plan[t]
        room = "" if t in family.roomy else ", no headroom"
        ends = f"{family.predict_rank[t]:.1f} -> {family.informed[t]:.1f}{room}"
        parts.append(f"{t} ({ends}; best fixed plan {escape(plan)} {mean:.1f})")
    return "; ".join(parts)


def headroom_table(board: Board) -> list[str]:
    """tables/v2/headroom.md (as lines): :func:`headroom` per family, as Markdown."""
    families = headroom(board)
    if not families:
        return []
    lines = [
        "# Protocol v2: headroom",
        "",
        "<!-- generated by `cryobench leaderboard build` from leaderboards/results/v2; do not edit -->",
        "",
        headroom_definition(board),
    ]
    for family in families:
        lines += ["", f"## {family.family}: {family.title}", ""]
        lines += ["Predict-Rank -> informed bound: " + describe_family_tasks(family), ""]
        header = " | ".join(f"gap closed: {t}" for t in family.roomy)
        lines += ["| agent | gap closed (mean) | " + header + (" | " if family.roomy else "") + "adaptivity gain |"]
        lines += ["|---|---:|" + "---:|" * len(family.roomy) + "---:|"]
        for row in family.rows:
            label = escape_markdown(row.agent) + (" (upper bound)" if row.upper_bound else "")
            cells = [_percent(row.closed.get(t)) for t in family.roomy]
            lines.append(
                f"| {label} | {_percent(row.mean_closed)} | "
                + " | ".join(cells)
                + (" | " if cells else "")
                + f"{headroom_gain_text(row)} |"
            )
    return lines


def render_markdown(board: Board) -> dict[str, str]:
    """The v2 tables: one file per scope plus the raw per-task means and the real-data track."""
    note = (
        "<!-- generated by `cryobench leaderboard build` from leaderboards/results/v2; do not edit -->\n\n"
        "Normalised score per test world: 100 (x - random) / (best ground-truth upper bound - random), reference "
        "points per task in protocol-v2.yaml. CIs: stratified bootstrap over test worlds "
        f"({REPS} replicates, seed {SEED}). Ranks: ordered by IQM; an agent shares the rank above it unless "
        "the CI of P(above > it) lies wholly above 0.5 (`=` marks a shared rank). Not verifiable by "
        "re-running, so not shown: wall-clock times and the declared training budget.\n"
    )
    out = {}
    overall = ["# Protocol v2: overall", "", note]
    for scope in board.scopes:
        title = "All tasks that reveal CTFs" if scope == aggregate.OVERALL else board.protocol.family(scope).title
        section = [f"## {scope}: {title}", "", "Tasks: " + ", ".join(board.scopes[scope]["tasks"]), ""]
        section += scope_table(board, scope)
        out[f"{scope}.md"] = "\n".join([f"# Protocol v2: {scope}", "", note, *section]) + "\n"
        overall += ["", *section]
    if board.bounds:
        overall += ["", "## Upper bounds (not ranked)", ""]
        overall += [f"- {escape_markdown(name)}: {what}" for name, what in upper_bound_notes(board)]
    if board.pending:
        overall += ["", "## Pending (runs still to come)", ""]
        overall += [
            f"- {escape_markdown(name)}: {escape_markdown(reason)}" for name, reason in sorted(board.pending.items())
        ]
    out["overall.md"] = "\n".join(overall) + "\n"
    headroom = headroom_table(board)
    if headroom:
        out["headroom.md"] = "\n".join(headroom) + "\n"
    out["tasks.md"] = "\n".join(["# Protocol v2: mean good exposures per task", "", note, *task_table(board)]) + "\n"
    out["real-data.md"] = (
        "\n".join(
            [
                "# Protocol v2: the real-data track",
                "",
                "The measured Aldolase test split is ONE world (the paper's session): its figure is a mean "
                "over start holes, with no interval over worlds. It is reported apart from the statistics. "
                "Gap closed and adaptivity gain as in headroom.md, on this one world (single figures, no "
                f"interval): gap closed = (agent - predict-rank) / ({INFORMED_BOUND} - predict-rank); adaptivity "
                "gain = agent - the best fixed plan (" + ", ".join(map(escape_markdown, board.fixed_plans)) + ").",
                "",
                *real_data_table(board),
            ]
        )
        + "\n"
    )
    return out
