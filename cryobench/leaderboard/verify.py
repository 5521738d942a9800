"""Verification: a submission is accepted only when re-running its agent reproduces every episode.

:func:`static_problems` finds what is wrong before anything runs (seeds, entries, arguments,
environment versions, summaries); :func:`verify` then re-runs the agent under the same protocol
version and compares episode by episode.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryobench.errors import InputError
from cryobench.leaderboard.submission import EPISODE_FIELDS, episode_summary, load_submission, public_kwargs, submit
from cryobench.protocol import (
    CURRENT_VERSION,
    Protocol,
    folder_checksum,
    known_versions,
    load_protocol,
    measured_data_folder,
)


def static_problems(doc: dict, protocol: Protocol, agent_cls: type | None) -> list[str]:
    """What is wrong with a schema-valid submission before anything is re-run."""
    reasons = []
    declared_seeds = list(doc["protocol"]["seeds"])
    declared_entries = list(doc["protocol"]["entries"])
    try:
        reduced = protocol.reduced(tuple(declared_seeds), tuple(declared_entries))
    except InputError as exc:
        return [str(exc)]
    if len(set(declared_seeds)) != len(declared_seeds) or len(set(declared_entries)) != len(declared_entries):
        reasons.append("field 'protocol' lists a seed or an entry twice")
    if doc["protocol"]["complete"]:
        if tuple(declared_seeds) != protocol.seeds:
            reasons.append(f"claims a complete run but lists seeds other than the protocol's {protocol.seed_range}")
        missing = [e.name for e in protocol.entries if not e.measured and e.name not in declared_entries]
        if missing:
            reasons.append(f"claims a complete run but lacks the entries {missing}")
    reasons += version_problems(doc["agent"])
    present = set(doc["entries"]) | set(doc["not_applicable"])
    for name in declared_entries:
        if name not in present:
            reasons.append(f"entry {name!r} is declared but has no results")
    for name in sorted(present - set(declared_entries)):
        reasons.append(f"entry {name!r} is not declared in field 'protocol.entries'")
    for entry in reduced.entries:
        reason = entry.not_applicable_reason(agent_cls) if agent_cls else None
        if entry.name in doc["not_applicable"] and reason is None:
            reasons.append(f"entry {entry.name!r} is marked not applicable, but the agent can run it")
        if entry.name not in doc["entries"]:
            continue
        block = doc["entries"][entry.name]
        if block["env_id"] != entry.env:
            reasons.append(
                f"entry {entry.name!r}: environment {block['env_id']} is not the protocol's {entry.env} "
                "(an environment whose dynamics changed needs a new protocol version)"
            )
        if block["kwargs"] != public_kwargs(entry):
            reasons.append(f"entry {entry.name!r}: arguments {block['kwargs']} are not the protocol's {entry.kwargs}")
        seeds = [ep["seed"] for ep in block["episodes"]]
        missing = sorted(set(declared_seeds) - set(seeds))
        extra = sorted(set(seeds) - set(declared_seeds))
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if missing:
            reasons.append(f"entry {entry.name!r}: episodes for seeds {missing} are missing")
        if extra:
            reasons.append(f"entry {entry.name!r}: episodes for seeds {extra} are not in the protocol")
        if repeated:
            reasons.append(f"entry {entry.name!r}: seeds {repeated} appear more than once")
        if "summary" in block and block["summary"] != episode_summary(block["episodes"]):
            reasons.append(f"entry {entry.name!r}: field 'summary' does not match its episodes")
    return reasons


def version_problems(agent: dict) -> list[str]:
    """Whether the version an entry records is the one its card describes and the repository holds:
    an improved agent is a new version, and an old entry re-runs its own card and checkpoint."""
    from cryobench.agents.registry import card_version

    recorded, actual = agent["version"], card_version(agent.get("card") or {})
    reasons = []
    if recorded["card_sha256"] != actual["card_sha256"]:
        reasons.append("field 'agent.version.card_sha256' does not match the card recorded in the submission")
    if recorded.get("checkpoint_sha256") != actual["checkpoint_sha256"]:
        checkpoint = (agent.get("card") or {}).get("hyperparameters", {}).get("checkpoint")
        reasons.append(
            f"field 'agent.version.checkpoint_sha256': the checkpoint {checkpoint!r} in this repository is not the "
            "one the entry ran (an improved agent ships a new checkpoint file; the old one stays)"
        )
    return reasons


def verify(path: str | Path, data: str | Path | None = None, workers: int = 2, progress: bool = False) -> dict:
    """Re-run a submission and accept it only if everything reproduces exactly.

    Returns ``{"accepted": bool, "reduced": bool, "reasons": [...]}``; a reduced submission
    (a subset of seeds or entries) can be accepted, and says so, but is not a leaderboard entry.
    """
    from cryobench.agents.registry import agent_class

    try:
        doc = load_submission(path)
    except InputError as exc:
        return {"accepted": False, "reduced": False, "reasons": [f"schema: {exc}"]}
    version = doc["protocol"]["version"]
    reduced = not doc["protocol"]["complete"]
    if version != CURRENT_VERSION:
        kind = "an older" if version in known_versions() else "an unknown"
        return {
            "accepted": False,
            "reduced": reduced,
            "reasons": [
                f"protocol v{version} is {kind} protocol; submissions must follow the current v{CURRENT_VERSION}"
            ],
        }
    protocol = load_protocol(CURRENT_VERSION)
    name = doc["agent"]["name"]
    try:
        cls = agent_class(name)
    except InputError as exc:
        return {"accepted": False, "reduced": reduced, "reasons": [f"cannot re-run: {exc}"]}
    reasons = static_problems(doc, protocol, cls)
    folder = measured_data_folder(data)
    measured = [n for n in doc["entries"] if n in {e.name for e in protocol.entries if e.measured}]
    if measured:
        if folder is None:
            reasons.append(f"entries {measured} need the measured data to re-run (--data PATH)")
        elif (doc.get("measured_data") or {}).get("checksum") != folder_checksum(folder):
            reasons.append("the measured data given (--data) is not the data the submission was run on (checksum)")
    if reasons:
        return {"accepted": False, "reduced": reduced, "reasons": reasons}
    from cryobench.agents.registry import recorded_hyperparameters

    hyperparameters = recorded_hyperparameters(name, (doc["agent"].get("card") or {}).get("hyperparameters") or {})
    with tempfile.TemporaryDirectory() as work:
        rerun = submit(
            name,
            work,
            data=folder,
            workers=workers,
            progress=progress,
            seeds=tuple(doc["protocol"]["seeds"]),
            entries=tuple(doc["protocol"]["entries"]),
            hyperparameters=hyperparameters,
        )
    if bool(rerun["agent"].get("upper_bound")) != bool(doc["agent"].get("upper_bound")):
        reasons.append("field 'agent.upper_bound' does not match the agent (it sees the ground truth or not)")
    for entry_name, block in doc["entries"].items():
        if entry_name not in rerun["entries"]:
            why = rerun["not_applicable"].get(entry_name)
            reasons.append(f"entry {entry_name!r}: the agent does not run there ({why})")
            continue
        theirs = {ep["seed"]: ep for ep in rerun["entries"][entry_name]["episodes"]}
        for episode in block["episodes"]:
            again = theirs[episode["seed"]]
            if episode != again:
                fields = sorted(k for k in EPISODE_FIELDS if episode.get(k) != again.get(k))
                reasons.append(
                    f"entry {entry_name!r} seed {episode['seed']}: {', '.join(fields)} do not reproduce "
                    f"(submitted good_exposures {episode['good_exposures']}, re-run {again['good_exposures']})"
                )
                break  # one episode per entry says enough
    return {"accepted": not reasons, "reduced": reduced, "reasons": reasons}
