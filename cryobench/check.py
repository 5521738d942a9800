"""Regression checks for other people's CI: is an agent worse than a baseline, with statistical support?

``cryobench check --agent NAME | --policy MODULE:ATTR --against BASELINE.json [--tier quick]``
plays the agent sealed on protocol v2's tasks and test worlds (the baseline's tier and worlds)
and compares its per-world scores with the baseline's using protocol v2's statistics
(:mod:`cryobench.aggregate`): the probability of improvement P(candidate > baseline), per task
the Mann-Whitney U over test worlds, averaged over tasks, with a stratified bootstrap CI.

The verdict: **worse** when the whole CI lies below ``0.5 - tolerance`` (tolerance 0 by default:
a CI wholly below one half is statistically supported evidence that the candidate scores lower on
a randomly drawn world and task); otherwise **not worse**. The same deterministic agent run again
scores the same on every world, so P = 0.5 and it never fails against its own baseline.

A baseline is a protocol v2 submission (``cryobench submit --tier quick``) or the report a
previous check wrote (``cryobench-check/1``: its candidate becomes the baseline). The report
holds the verdict, the statistics and the candidate's submission document.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cryobench import aggregate
from cryobench.errors import InputError
from cryobench.files import read_json, utc_timestamp, write_atomic

CHECK_FORMAT = "cryobench-check/1"
REPS, SEED, CONFIDENCE = 2000, 0, 0.95  # protocol v2's (cryobench.leaderboard.heldout_tables)


def load_baseline(path: str | Path) -> dict:
    """The baseline's protocol v2 submission document, or a one-line error saying what the file is instead."""
    from cryobench.leaderboard.heldout_runs import SUBMISSION_FORMAT, check_schema, protocol_for

    doc = read_json(path, "baseline file", finite=True)
    kind = doc.get("format") if isinstance(doc, dict) else None
    if kind == CHECK_FORMAT:
        doc = doc.get("candidate")
        kind = doc.get("format") if isinstance(doc, dict) else None
    if kind == "cryobench-results/1":
        env = doc.get("env", {}).get("id", "?")
        raise InputError(
            f"{path}: a results file of one environment ({env}); a baseline is a protocol 2 submission: "
            "cryobench submit --agent NAME --tier quick (or the report of an earlier cryobench check)"
        )
    if kind != SUBMISSION_FORMAT:
        raise InputError(
            f"{path}: format {kind!r} is not a protocol 2 submission ({SUBMISSION_FORMAT!r}) nor a check report "
            f"({CHECK_FORMAT!r}); protocol 1 submissions cannot be compared "
            "(write one with cryobench submit --tier quick)"
        )
    check_schema(doc, str(path))
    tier = doc["protocol"]["tier"]
    if tier == "draw":
        raise InputError(
            f"{path}: a baseline on another draw of test worlds; check compares on the full, quick or validation tier"
        )
    problem = _protocol_problem(doc, protocol_for(tier))
    if problem:
        raise InputError(f"{path}: not a baseline of this cryobench's protocol 2 ({tier} tier): {problem}")
    return doc


def _protocol_problem(doc: dict, protocol) -> str | None:
    """Why a submission was not played on ``protocol``'s worlds, starts and tasks (None if it was)."""
    if doc["protocol"]["worlds"] != list(protocol.worlds) or doc["protocol"]["starts"] != list(protocol.starts):
        return "its test worlds or start seeds differ"
    known = {task.name: task for task in (*protocol.tasks, *protocol.measured)}
    for name, block in doc["tasks"].items():
        task = known.get(name)
        if task is None:
            return f"task {name!r} is not one of the tier's"
        expected = task.public_kwargs(None) if task.measured else dict(task.kwargs)
        if block["env_id"] != task.env or block["kwargs"] != expected:
            return f"task {name!r} ran {block['env_id']} {block['kwargs']}, not the protocol's {task.env} {expected}"
    return None


def compare(candidate: dict, baseline: dict, tolerance: float = 0.0) -> dict[str, Any]:
    """The verdict and its statistics, over the tasks both documents ran (one-line error if none)."""
    if not 0.0 <= tolerance < 0.5:
        raise InputError(f"option --tolerance: expected a number from 0 to below 0.5, got {tolerance}")
    tasks = [name for name in baseline["tasks"] if name in candidate["tasks"]]
    if not tasks:
        raise InputError("the candidate and the baseline have no task in common (is the baseline of another tier?)")
    scores = np.array(
        [[[run["score"] for run in doc["tasks"][name]["runs"]] for name in tasks] for doc in (candidate, baseline)],
        dtype=np.float64,
    ).transpose(0, 2, 1)  # (agents, worlds, tasks)
    improvement = aggregate.probability_of_improvement(scores, reps=REPS, confidence=CONFIDENCE, seed=SEED)
    point, low, high = (float(matrix[0, 1]) for matrix in (improvement.point, improvement.low, improvement.high))
    limit = 0.5 - tolerance
    worse = high < limit
    means = scores.mean(axis=1)  # (agents, tasks): mean over worlds
    per_task = {
        name: {"candidate": round(float(means[0, t]), 6), "baseline": round(float(means[1, t]), 6)}
        for t, name in enumerate(tasks)
    }
    if worse:
        reason = (
            f"worse than the baseline: P(candidate > baseline) = {point:.3f}, {CONFIDENCE:.0%} CI "
            f"[{low:.3f}, {high:.3f}] lies wholly below {limit:.3f} ({len(tasks)} tasks, {scores.shape[1]} test worlds)"
        )
    else:
        reason = (
            f"not worse than the baseline: P(candidate > baseline) = {point:.3f}, {CONFIDENCE:.0%} CI "
            f"[{low:.3f}, {high:.3f}] reaches {limit:.3f} or above"
        )
    return {
        "worse": bool(worse),
        "reason": reason,
        "tolerance": tolerance,
        "probability_of_improvement": {"point": point, "low": low, "high": high, "confidence": CONFIDENCE},
        "bootstrap": {"reps": REPS, "seed": SEED},
        "tasks": per_task,
        "not_compared": sorted(set(baseline["tasks"]) ^ set(candidate["tasks"])),
    }


def run_check(
    agent: str,
    against: str | Path,
    work_dir: str | Path,
    tier: str | None = None,
    tolerance: float = 0.0,
    data: str | Path | None = None,
    workers: int = 2,
    progress: bool = False,
) -> dict[str, Any]:
    """Play ``agent`` (a registered name or a policy spec) on the baseline's tier and compare; the report."""
    from cryobench.leaderboard.heldout_runs import submit_heldout

    if not 0.0 <= tolerance < 0.5:  # before hours of runs, not after
        raise InputError(f"option --tolerance: expected a number from 0 to below 0.5, got {tolerance}")
    baseline = load_baseline(against)
    baseline_tier = baseline["protocol"]["tier"]
    if tier is not None and tier != baseline_tier:
        raise InputError(
            f"option --tier: {tier!r}, but the baseline {against} is of the {baseline_tier!r} tier; "
            "compare like with like (omit --tier to use the baseline's)"
        )
    candidate = submit_heldout(agent, work_dir, data=data, workers=workers, tier=baseline_tier, progress=progress)
    verdict = compare(candidate, baseline, tolerance)
    return {
        "format": CHECK_FORMAT,
        "created": utc_timestamp(),
        "verdict": "worse" if verdict["worse"] else "ok",
        **verdict,
        "baseline": {
            "file": str(against),
            "sha256": hashlib.sha256(Path(against).read_bytes()).hexdigest(),
            "agent": baseline["agent"]["name"],
            "tier": baseline_tier,
        },
        "candidate": candidate,
    }


def save_report(report: dict, path: str | Path) -> Path:
    return write_atomic(path, json.dumps(report, indent=1) + "\n")


def report_lines(report: dict) -> list[str]:
    """What the command prints: the verdict's reason, then per task the mean scores."""
    lines = [report["reason"]]
    width = max(len(name) for name in report["tasks"])
    lines.append(f"  {'task':<{width}}  {'candidate':>10}  {'baseline':>10}   (mean good exposures over test worlds)")
    for name, means in report["tasks"].items():
        lines.append(f"  {name:<{width}}  {means['candidate']:>10.2f}  {means['baseline']:>10.2f}")
    if report["not_compared"]:
        lines.append(f"  not compared (run by only one of them): {', '.join(report['not_compared'])}")
    return lines
