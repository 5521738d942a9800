"""Submission documents (``cryobench-submission/1``): running an agent under the protocol, the
schema, reading and writing.

:func:`submit` runs an agent on every protocol entry and seed (through the resumable sweep
runner) and returns a submission document; :func:`save_submission` writes it one episode per
line; :func:`load_submission` reads one back, refusing a malformed document with the field named.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.files import read_json, write_atomic
from cryobench.protocol import CURRENT_VERSION, MEASURED, Entry, folder_checksum, load_protocol, measured_data_folder
from cryobench.results import load_results, provenance
from cryobench.sweep import Task, run_sweep

SUBMISSION_FORMAT = "cryobench-submission/1"
#: What a leaderboard keeps of each episode; the trajectory only as a checksum.
EPISODE_FIELDS = (
    "seed",
    "good_exposures",
    "exposures",
    "total_reward",
    "minutes",
    "bins",
    "squares_visited",
    "exposures_per_square",
    "invalid_actions",
    "trajectory_sha256",
)


def compact_episode(row: dict) -> dict:
    """The fields of an episode a leaderboard keeps; the trajectory (start first) as a checksum."""
    trajectory = ",".join(map(str, [row["start"], *row["trajectory"]]))
    return {
        "seed": int(row["seed"]),
        "good_exposures": int(row["good_exposures"]),
        "exposures": int(row["exposures"]),
        "total_reward": float(row["total_reward"]),
        "minutes": float(row["minutes"]),
        "bins": dict(row["bins"]),
        "squares_visited": int(row["squares_visited"]),
        "exposures_per_square": float(row["exposures_per_square"]),
        "invalid_actions": len(row.get("invalid_actions", [])),
        "trajectory_sha256": hashlib.sha256(trajectory.encode()).hexdigest(),
    }


def _redact(value: Any, secret: str | None) -> Any:
    """``value`` with every occurrence of the measured data's path replaced by ``$MEASURED``."""
    if secret is None:
        return value
    if isinstance(value, str):
        return value.replace(secret, MEASURED)
    if isinstance(value, dict):
        return {k: _redact(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, secret) for v in value]
    return value


def public_kwargs(entry: Entry) -> dict:
    """An entry's ``gym.make`` arguments as a submission records them (no machine paths)."""
    return {**entry.kwargs, "data": MEASURED} if entry.measured else dict(entry.kwargs)


def submit(
    agent: str,
    work_dir: str | Path,
    data: str | Path | None = None,
    workers: int = 2,
    version: int = CURRENT_VERSION,
    progress: bool = True,
    seeds: tuple[int, ...] | None = None,
    entries: tuple[str, ...] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    backend: str = "local",
    address: str | None = None,
) -> dict:
    """Run ``agent`` under the protocol and assemble its submission document.

    ``seeds`` and ``entries`` restrict the run to a subset (quick checks, CI, examples): such a
    document says it is reduced, verifies on its subset, and is refused by the leaderboard.
    The task results in ``work_dir`` make the run resumable: run the same call again after a
    crash and only the missing tasks run.
    """
    from cryobench.agents.registry import agent_class

    full = load_protocol(version)
    protocol = full.reduced(seeds, entries)
    cls = agent_class(agent)
    folder = measured_data_folder(data)
    not_applicable = {}
    skipped = {}
    planned: list[tuple[Entry, Task]] = []
    for entry in protocol.entries:
        reason = entry.not_applicable_reason(cls)
        if reason:
            not_applicable[entry.name] = reason
        elif entry.measured and folder is None:
            skipped[entry.name] = "no measured data (--data PATH or $CRYOBENCH_ALDOLASE_DATA)"
        else:
            task = Task(agent, entry.env, entry.resolved_kwargs(folder), protocol.seeds, dict(hyperparameters or {}))
            planned.append((entry, task))
    if not planned:
        raise InputError(f"agent {agent!r}: no protocol entry to run ({', '.join(not_applicable or skipped)} skipped)")
    tasks = [task for _, task in planned]
    paths = run_sweep(tasks, work_dir, workers=workers, backend=backend, address=address, progress=progress)
    secret = str(folder) if folder else None
    blocks: dict[str, dict] = {}
    agent_doc: dict = {}
    for (entry, _task), path in zip(planned, paths, strict=True):
        result = load_results(path)
        agent_doc = result["agent"]
        episodes = [compact_episode(row) for row in result["episodes"]]
        blocks[entry.name] = {
            "env_id": result["env"]["id"],
            "kwargs": public_kwargs(entry),
            "spec": _redact(result["env"]["spec"], secret),
            "n_holes": result["env"]["n_holes"],
            "world_seed": result["env"]["world_seed"],
            "grid": _redact(result["env"]["grid"], secret),
            "summary": episode_summary(episodes),
            "seconds_per_episode": float(result["timing"]["seconds_per_episode"]),
            "episodes": episodes,
        }
    listed = [e.name for e in protocol.entries if e.name not in skipped]
    ran_measured = folder is not None and any(e.measured for e, _ in planned)
    complete = protocol.seeds == full.seeds and all(
        e.name in listed for e in full.entries if not (e.measured and folder is None)
    )
    return {
        "format": SUBMISSION_FORMAT,
        "protocol": {
            "version": protocol.version,
            "seeds": list(protocol.seeds),
            "entries": listed,
            "complete": complete,
        },
        "agent": _redact(agent_doc, secret),
        "measured_data": {"checksum": folder_checksum(folder)} if ran_measured else None,
        "provenance": provenance(),
        "not_applicable": not_applicable,
        "skipped": skipped,
        "entries": blocks,
    }


def episode_summary(episodes: list[dict]) -> dict[str, float]:
    """The headline figures of an entry, derived from its episodes (verify recomputes them)."""
    good = np.array([ep["good_exposures"] for ep in episodes], dtype=float)
    return {"episodes": len(episodes), "good_exposures_mean": round(float(good.mean()), 6)}


def save_submission(doc: dict, path: str | Path) -> Path:
    """Write a submission atomically, one episode per line (reviewable diffs, modest size)."""
    return write_atomic(path, dumps_submission(doc))


def dumps_submission(doc: dict) -> str:
    head = {k: v for k, v in doc.items() if k != "entries"}
    lines = [json.dumps(head, indent=1)[:-2] + ",", ' "entries": {']
    names = list(doc.get("entries", {}))
    for i, name in enumerate(names):
        block = doc["entries"][name]
        meta = {k: v for k, v in block.items() if k != "episodes"}
        lines.append(f"  {json.dumps(name)}: {{")
        for key, value in meta.items():
            lines.append(f"   {json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
        lines.append('   "episodes": [')
        episodes = block["episodes"]
        for j, episode in enumerate(episodes):
            lines.append("    " + json.dumps(episode, sort_keys=True) + ("," if j < len(episodes) - 1 else ""))
        lines.append("   ]")
        lines.append("  }" + ("," if i < len(names) - 1 else ""))
    lines += [" }", "}", ""]
    return "\n".join(lines)


# ---- schema --------------------------------------------------------------------------------
def check_schema(doc: Any, source: str) -> None:
    """Refuse a document that is not a well-formed submission, naming the field that is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != SUBMISSION_FORMAT:
        raise InputError(f"{source}: not a cryobench submission (field 'format' must be {SUBMISSION_FORMAT!r})")
    kinds = {"protocol": dict, "agent": dict, "entries": dict, "provenance": dict, "not_applicable": dict}
    for key, kind in kinds.items():
        if not isinstance(doc.get(key), kind):
            raise InputError(f"{source}: field {key!r} missing or not a {kind.__name__}")
    protocol = doc["protocol"]
    if not isinstance(protocol.get("version"), int) or isinstance(protocol.get("version"), bool):
        raise InputError(f"{source}: field 'protocol.version' missing or not an integer")
    for key in ("seeds", "entries"):
        if not isinstance(protocol.get(key), list):
            raise InputError(f"{source}: field 'protocol.{key}' missing or not a list")
    if not all(isinstance(s, int) for s in protocol["seeds"]):
        raise InputError(f"{source}: field 'protocol.seeds' must list integers")
    if not isinstance(protocol.get("complete"), bool):
        raise InputError(f"{source}: field 'protocol.complete' missing or not true/false")
    if not isinstance(doc["agent"].get("name"), str):
        raise InputError(f"{source}: field 'agent.name' missing or not a string")
    version = doc["agent"].get("version")
    if not isinstance(version, dict) or not _is_digest(version.get("card_sha256")):
        raise InputError(
            f"{source}: field 'agent.version' missing or malformed (expected card_sha256 and checkpoint_sha256 "
            "digests: which version of the agent ran)"
        )
    checkpoint = version.get("checkpoint_sha256")
    if checkpoint is not None and checkpoint != "missing" and not _is_digest(checkpoint):
        raise InputError(f"{source}: field 'agent.version.checkpoint_sha256' must be a sha256 digest or null")
    for name, block in doc["entries"].items():
        where = f"{source}: entries.{name}"
        if not isinstance(block, dict):
            raise InputError(f"{where}: not a mapping")
        for key, kind in (("env_id", str), ("kwargs", dict), ("episodes", list), ("seconds_per_episode", float)):
            if not isinstance(block.get(key), kind):
                raise InputError(f"{where}: field {key!r} missing or not a {kind.__name__}")
        for i, episode in enumerate(block["episodes"]):
            if not isinstance(episode, dict):
                raise InputError(f"{where}.episodes[{i}]: not a mapping")
            missing = [f for f in EPISODE_FIELDS if f not in episode]
            if missing:
                raise InputError(f"{where}.episodes[{i}]: lacks the field(s) {missing}")
            for key in ("seed", "good_exposures", "exposures"):
                if not isinstance(episode[key], int) or isinstance(episode[key], bool):
                    raise InputError(f"{where}.episodes[{i}]: field {key!r} must be an integer")


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def load_submission(path: str | Path) -> dict:
    """Read and schema-check a submission file."""
    doc = read_json(path, "submission file")
    check_schema(doc, str(path))
    return doc
