"""Leaderboards: submissions run under the protocol, verified by re-running, tables generated.

- :func:`submit` runs an agent on every protocol entry and seed (through the resumable
  sweep runner) and returns a submission document (``cryobench-submission/1``).
- :func:`verify` re-runs a submission's agent and accepts it only when every episode
  reproduces exactly under the same protocol version.
- :func:`build_tables` regenerates every table in ``leaderboards/`` from the results files
  in ``leaderboards/results/v<N>/``; the committed tables must equal what it writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cryobench import metrics
from cryobench.errors import InputError
from cryobench.evaluate import load_results, provenance, save_results
from cryobench.protocol import (
    CURRENT_VERSION,
    MEASURED,
    Protocol,
    folder_checksum,
    load_protocol,
    measured_data_folder,
)
from cryobench.resources import card_dir
from cryobench.sweep import Task, run_sweep

SUBMISSION_FORMAT = "cryobench-submission/1"
EPISODE_FIELDS = (
    "seed",
    "good_exposures",
    "exposures",
    "total_reward",
    "minutes",
    "bins",
    "squares_visited",
    "exposures_per_square",
    "trajectory_sha256",
)


def compact_episode(row: dict) -> dict:
    """The fields of an episode a leaderboard keeps; the trajectory as a checksum."""
    trajectory = ",".join(map(str, [row["start"], *row["trajectory"]]))
    out = {k: row[k] for k in EPISODE_FIELDS if k != "trajectory_sha256"}
    out["trajectory_sha256"] = hashlib.sha256(trajectory.encode()).hexdigest()
    return out


def protocol_tasks(
    agent: str, protocol: Protocol, data: Path | None, seeds_per_task: int = 10
) -> list[tuple[str, Task]]:
    """(entry name, task) pairs covering every entry and seed; measured entries only with data."""
    pairs = []
    seeds = protocol.seeds
    for entry in protocol.entries:
        if entry.measured and data is None:
            continue
        for i in range(0, len(seeds), seeds_per_task):
            task = Task(agent, entry.env, entry.resolved_kwargs(data), tuple(seeds[i : i + seeds_per_task]))
            pairs.append((entry.name, task))
    return pairs


def submit(
    agent: str,
    work_dir: str | Path,
    data: str | Path | None = None,
    workers: int = 2,
    version: int = CURRENT_VERSION,
    progress: bool = True,
    seeds: tuple[int, ...] | None = None,
) -> dict:
    """Run ``agent`` under the protocol and assemble its submission document.

    ``seeds`` restricts the run to a subset (for quick checks; such a document is marked
    ``partial`` and is not accepted by :func:`verify`)."""
    protocol = load_protocol(version)
    if seeds is not None:
        protocol = Protocol(protocol.version, tuple(seeds), protocol.entries, protocol.description)
    folder = measured_data_folder(data)
    pairs = protocol_tasks(agent, protocol, folder)
    paths = run_sweep([task for _, task in pairs], work_dir, workers=workers, progress=progress)
    by_entry: dict[str, dict] = {}
    for (name, task), path in zip(pairs, paths, strict=True):
        result = load_results(path)
        block = by_entry.setdefault(
            name,
            {
                "env_id": result["env"]["id"],
                "kwargs": _public_kwargs(task.env_kwargs),
                "n_holes": result["env"]["n_holes"],
                "episodes": [],
                "seconds": [],
                "agent": result["agent"],
            },
        )
        block["episodes"].extend(compact_episode(row) for row in result["episodes"])
        block["seconds"].append(result["timing"]["seconds_per_episode"] * len(result["episodes"]))
    entries = {}
    agent_doc = None
    for name, block in by_entry.items():
        agent_doc = block.pop("agent")
        n = len(block["episodes"])
        block["seconds_per_episode"] = float(np.sum(block.pop("seconds")) / n)
        entries[name] = block
    return {
        "format": SUBMISSION_FORMAT,
        "protocol": protocol.version,
        "partial": seeds is not None,
        "agent": agent_doc,
        "measured_data": {"checksum": folder_checksum(folder)} if folder else None,
        "provenance": provenance(),
        "entries": entries,
    }


def _public_kwargs(kwargs: dict) -> dict:
    return {k: (MEASURED if k == "data" else v) for k, v in kwargs.items()}


# ---- verification ------------------------------------------------------------------------
def check_schema(doc: Any, source: str) -> None:
    """Refuse a document that is not a well-formed submission, saying what is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != SUBMISSION_FORMAT:
        raise InputError(f"{source}: not a cryobench submission (expected format {SUBMISSION_FORMAT!r})")
    for key, kind in (("protocol", int), ("agent", dict), ("entries", dict), ("provenance", dict)):
        if not isinstance(doc.get(key), kind):
            raise InputError(f"{source}: field {key!r} missing or not a {kind.__name__}")
    if "name" not in doc["agent"]:
        raise InputError(f"{source}: field 'agent.name' missing")
    for name, block in doc["entries"].items():
        if not isinstance(block, dict) or not isinstance(block.get("episodes"), list):
            raise InputError(f"{source}: entry {name!r} has no list of episodes")
        for i, episode in enumerate(block["episodes"]):
            missing = [f for f in EPISODE_FIELDS if f not in episode]
            if missing:
                raise InputError(f"{source}: entry {name!r} episode {i} lacks {missing}")


def verify(path: str | Path, data: str | Path | None = None, workers: int = 2, progress: bool = False) -> dict:
    """Re-run a submission and accept it only if everything reproduces exactly.

    Returns a report ``{"accepted": bool, "reasons": [...]}``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    check_schema(doc, str(path))
    reasons: list[str] = []
    if doc["protocol"] != CURRENT_VERSION:
        return {"accepted": False, "reasons": [f"protocol v{doc['protocol']} is not the current v{CURRENT_VERSION}"]}
    if doc.get("partial"):
        return {"accepted": False, "reasons": ["a partial submission (a subset of seeds) is not a protocol run"]}
    protocol = load_protocol(CURRENT_VERSION)
    folder = measured_data_folder(data)
    expected_entries = {e.name for e in protocol.entries if not e.measured or folder is not None}
    submitted = set(doc["entries"])
    for name in sorted(expected_entries - submitted):
        reasons.append(f"entry {name!r} is missing")
    for name in sorted(submitted - {e.name for e in protocol.entries}):
        reasons.append(f"entry {name!r} is not part of protocol v{CURRENT_VERSION}")
    for name in sorted(submitted & expected_entries):
        seeds = [ep["seed"] for ep in doc["entries"][name]["episodes"]]
        if sorted(seeds) != list(protocol.seeds):
            missing = sorted(set(protocol.seeds) - set(seeds))
            extra = sorted(set(seeds) - set(protocol.seeds))
            reasons.append(f"entry {name!r}: seeds differ from the protocol (missing {missing}, unexpected {extra})")
    if reasons:
        return {"accepted": False, "reasons": reasons}
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        rerun = submit(doc["agent"]["name"], work, data=folder, workers=workers, progress=progress)
    if rerun["agent"].get("card") != doc["agent"].get("card"):
        reasons.append("the agent's card (hyperparameters) differs from the submitted one")
    for name in sorted(expected_entries):
        mine = {ep["seed"]: ep for ep in doc["entries"][name]["episodes"]}
        theirs = {ep["seed"]: ep for ep in rerun["entries"][name]["episodes"]}
        for seed in protocol.seeds:
            if mine[seed] != theirs[seed]:
                diff = sorted(k for k in EPISODE_FIELDS if mine[seed].get(k) != theirs[seed].get(k))
                reasons.append(f"entry {name!r} seed {seed}: {', '.join(diff)} do not reproduce")
                break
    return {"accepted": not reasons, "reasons": reasons}


# ---- tables ----------------------------------------------------------------------------
def results_dir(version: int = CURRENT_VERSION) -> Path:
    return card_dir("leaderboards") / "results" / f"v{version}"


def load_submissions(version: int = CURRENT_VERSION) -> list[dict]:
    docs = []
    for path in sorted(results_dir(version).glob("*.json")):
        doc = json.loads(path.read_text())
        check_schema(doc, str(path))
        docs.append(doc)
    return docs


def _mean_good(doc: dict, entry: str) -> float | None:
    block = doc["entries"].get(entry)
    if not block:
        return None
    return float(np.mean([ep["good_exposures"] for ep in block["episodes"]]))


def entry_table(docs: list[dict], entry: str) -> list[dict]:
    """Rows of one entry's table: real agents sorted by good exposures, then upper bounds."""
    random_mean = next((_mean_good(d, entry) for d in docs if d["agent"]["name"] == "random"), None)
    bounds = [_mean_good(d, entry) for d in docs if d["agent"].get("upper_bound")]
    bound = max((b for b in bounds if b is not None), default=None)
    rows = []
    for doc in docs:
        block = doc["entries"].get(entry)
        if not block:
            continue
        good = np.array([ep["good_exposures"] for ep in block["episodes"]], dtype=float)
        point, low, high = metrics.bootstrap_ci([good])
        score = None
        if random_mean is not None and bound is not None and bound > random_mean:
            score = float(metrics.normalised_score(good.mean(), random_mean, bound))
        rows.append(
            {
                "agent": doc["agent"]["name"],
                "upper_bound": bool(doc["agent"].get("upper_bound")),
                "good": float(good.mean()),
                "sd": float(good.std(ddof=1)),
                "iqm": point,
                "ci": (low, high),
                "score": score,
                "exposures": float(np.mean([ep["exposures"] for ep in block["episodes"]])),
                "per_square": float(np.mean([ep["exposures_per_square"] for ep in block["episodes"]])),
                "seconds": block["seconds_per_episode"],
            }
        )
    rows.sort(key=lambda r: (r["upper_bound"], -r["good"], r["agent"]))
    return rows


def _markdown(rows: list[dict]) -> list[str]:
    head = (
        "| agent | good exposures (mean ± sd) | IQM [95% CI] | normalised score | exposures | "
        "exposures / square | s / episode |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        score = "" if r["score"] is None else f"{r['score']:.1f}"
        name = f"{r['agent']} (upper bound)" if r["upper_bound"] else r["agent"]
        lines.append(
            f"| {name} | {r['good']:.1f} ± {r['sd']:.1f} | {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] | "
            f"{score} | {r['exposures']:.1f} | {r['per_square']:.1f} | {r['seconds']:.3f} |"
        )
    return lines


def render_tables(version: int = CURRENT_VERSION) -> dict[str, str]:
    """Every generated table, as {relative path: markdown}."""
    protocol = load_protocol(version)
    docs = load_submissions(version)
    note = f"<!-- generated by `cryobench leaderboard build` from leaderboards/results/v{version}/; do not edit -->\n"
    files: dict[str, str] = {}
    overall_scores: dict[str, list[np.ndarray]] = {}
    for entry in protocol.entries:
        rows = entry_table(docs, entry.name)
        if not rows:
            continue
        real = [r for r in rows if not r["upper_bound"]]
        bounds = [r for r in rows if r["upper_bound"]]
        text = [note, f"# {entry.name} (protocol v{version})", "", f"`{entry.env}` with `{entry.kwargs}`", ""]
        text += ["## Agents", "", *_markdown(real), ""]
        if bounds:
            text += ["## Upper bounds (see the ground truth; not agents)", "", *_markdown(bounds), ""]
        text.append("Normalised score: 100 (x - random) / (best upper bound - random) on good exposures.")
        files[f"tables/v{version}/{entry.name}.md"] = "\n".join(text) + "\n"
        if entry.group == "core":
            for r in rows:
                if r["score"] is not None:
                    overall_scores.setdefault(r["agent"], []).append(np.array([r["score"]]))
    lines = [note, f"# Overall (protocol v{version})", ""]
    lines.append("Mean normalised score over the core entries (the four twins, inspection and blind).")
    lines.append("")
    lines.append("| agent | mean normalised score | entries |")
    lines.append("|---|---|---|")
    is_bound = {d["agent"]["name"]: bool(d["agent"].get("upper_bound")) for d in docs}
    ordered = sorted(overall_scores.items(), key=lambda kv: (is_bound[kv[0]], -float(np.mean(kv[1]))))
    for agent, scores in ordered:
        label = f"{agent} (upper bound)" if is_bound[agent] else agent
        lines.append(f"| {label} | {float(np.mean(scores)):.1f} | {len(scores)} |")
    files[f"tables/v{version}/overall.md"] = "\n".join(lines) + "\n"
    return files


def build_tables(version: int = CURRENT_VERSION, check: bool = False) -> list[str]:
    """Write every table (or, with ``check``, return the ones that differ from the files)."""
    root = card_dir("leaderboards")
    stale = []
    for rel, text in render_tables(version).items():
        path = root / rel
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            stale.append(rel)
    return stale


def save_submission(doc: dict, path: str | Path) -> Path:
    return save_results(doc, path)
