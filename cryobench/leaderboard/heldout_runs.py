"""Protocol v2 submissions (``cryobench-submission/2``): an agent's sealed runs on every test world.

:func:`submit_heldout` runs an agent on every task of protocol v2 (``leaderboards/protocol-v2.yaml``)
and every held-out test world, sealed (the agent in a worker that never receives the ground
truth), through the resumable sweep runner; it returns the submission document. The document
holds one *run* per (task, test world): the world's seed, size and grid, its score (the mean
good exposures over the protocol's start seeds) and every episode, compacted as in protocol v1.
Its JSON Schema is published in ``leaderboards/schema/submission-v2.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.files import read_json, write_atomic
from cryobench.heldout import HeldOutProtocol, ProtocolTask, load_heldout_protocol
from cryobench.leaderboard.submission import compact_episode
from cryobench.protocol import folder_checksum, measured_data_folder
from cryobench.resources import card_dir
from cryobench.results import load_results, provenance
from cryobench.sweep import Task, run_sweep

SUBMISSION_FORMAT = "cryobench-submission/2"
TIERS = ("full", "quick", "validation")


def protocol_for(tier: str, worlds: tuple[int, ...] | None = None) -> HeldOutProtocol:
    """Protocol v2 at a tier (``full``, ``quick`` or ``validation``), optionally on another draw of test worlds."""
    if tier not in TIERS:
        raise InputError(f"option --tier: expected one of {', '.join(TIERS)}, got {tier!r}")
    protocol = load_heldout_protocol()
    if tier == "quick":
        protocol = protocol.quick()
    elif tier == "validation":
        protocol = protocol.validation()
    if worlds is not None:
        protocol = protocol.with_worlds(tuple(worlds))
    return protocol


def _sweep_task(agent: str, task: ProtocolTask, protocol: HeldOutProtocol, folder: Path | None, hyper: dict) -> Task:
    if task.measured:
        return Task(agent, task.env, task.world_kwargs(None, folder), task.starts, hyper, sealed=True)
    return Task(agent, task.env, dict(task.kwargs), protocol.starts, hyper, sealed=True, worlds=protocol.worlds)


def _runs(result: dict, task: ProtocolTask, starts: tuple[int, ...]) -> list[dict]:
    """The result file's episodes grouped into runs, one per world, in the protocol's order."""
    if task.measured:
        episodes = [compact_episode(row) for row in result["episodes"]]
        return [_run(None, result["env"]["n_holes"], episodes)]
    size = {block["world"]: block["n_holes"] for block in result["worlds"]}
    by_world: dict[int, list[dict]] = {}
    for row in result["episodes"]:
        by_world.setdefault(int(row["world"]), []).append(compact_episode(row))
    return [_run(world, size[world], by_world[world]) for world in size]


def _run(world: int | None, n_holes: int, episodes: list[dict]) -> dict:
    return {
        "world": world,
        "n_holes": int(n_holes),
        "score": run_score(episodes),
        "episodes": episodes,
    }


def run_score(episodes: list[dict]) -> float:
    """A run's score: the mean good exposures over its start seeds (rounded so it reads the same everywhere)."""
    return round(float(np.mean([episode["good_exposures"] for episode in episodes])), 6)


def submitted_agent(doc: dict) -> str:
    """What a submission ran: a registered agent's name or a policy's spec."""
    return doc["agent"].get("policy") or doc["agent"]["name"]


def agent_needs_feedback(agent: str) -> bool:
    """Whether an agent (a registered name or a ``module:attr`` policy) learns from revealed CTFs.

    A registered agent's class says so (its attributes only); a policy's code is loaded only in
    a sealed worker, so a worker is asked (and a wrong spec fails here, before any task runs).
    """
    from cryobench.agents.external import is_policy_spec

    if is_policy_spec(agent):
        from cryobench.sealed import SealedAgent

        with SealedAgent(agent) as probe:
            return probe.needs_feedback
    from cryobench.agents.registry import agent_class

    return bool(getattr(agent_class(agent), "needs_feedback", False))


def submit_heldout(
    agent: str,
    work_dir: str | Path,
    data: str | Path | None = None,
    workers: int = 2,
    tier: str = "full",
    worlds: tuple[int, ...] | None = None,
    progress: bool = True,
    hyperparameters: dict[str, Any] | None = None,
    backend: str = "local",
    address: str | None = None,
    training_seed: int | None = None,
) -> dict:
    """Run ``agent`` sealed on every task and test world of protocol v2; return its submission document.

    A learned agent runs once per training seed (``training_seed``: the card's ``training_seeds``
    entry gives that seed's hyperparameters, e.g. its checkpoint); each seed is one submission.

    The per-task results in ``work_dir`` make the run resumable: run the same call again after
    an interruption and only the missing tasks run.
    """
    from cryobench.agents.external import is_policy_spec, policy_slug

    protocol = protocol_for(tier, worlds)
    needs_feedback = agent_needs_feedback(agent)
    folder = measured_data_folder(data)
    hyper = dict(hyperparameters or {})
    if training_seed is not None and not hyperparameters:  # a verification re-run passes the recorded ones
        hyper = training_seed_hyperparameters(agent, training_seed)
    not_applicable, skipped, planned = {}, {}, []
    for task in (*protocol.tasks, *protocol.measured):
        reason = task.not_applicable_reason(needs_feedback)
        if reason:
            not_applicable[task.name] = reason
        elif task.measured and folder is None:
            skipped[task.name] = "no measured data (--data PATH or $CRYOBENCH_ALDOLASE_DATA)"
        else:
            planned.append((task, _sweep_task(agent, task, protocol, folder, hyper)))
    if not planned:
        raise InputError(f"agent {agent!r}: no protocol v2 task it can run")
    paths = run_sweep(
        [t for _, t in planned], work_dir, workers=workers, backend=backend, address=address, progress=progress
    )
    tasks: dict[str, dict] = {}
    agent_doc: dict = {}
    decisions = []
    for (task, _sweep), path in zip(planned, paths, strict=True):
        result = load_results(path)
        agent_doc = result["agent"]
        decisions.append(result["timing"].get("decision_seconds_median"))
        tasks[task.name] = {
            "family": task.family,
            "env_id": result["env"]["id"],
            "kwargs": task.public_kwargs(None) if task.measured else dict(task.kwargs),
            "grid": result["env"]["grid"] if not task.measured else "measured",
            "runs": _runs(result, task, protocol.starts),
            "seconds_per_episode": round(float(result["timing"]["seconds_per_episode"]), 4),
            "decision_seconds_median": round(float(result["timing"].get("decision_seconds_median", 0.0)), 6),
        }
    complete = protocol.tier == "full" and not skipped
    card = agent_doc.get("card") or {}
    return {
        "format": SUBMISSION_FORMAT,
        "protocol": {
            "version": protocol.version,
            "tier": protocol.tier,
            "worlds": list(protocol.worlds),
            "starts": list(protocol.starts),
            "tasks": [task.name for task, _ in planned],
            "complete": complete,
        },
        "agent": {
            "name": policy_slug(agent) if is_policy_spec(agent) else agent,
            **({"policy": agent} if is_policy_spec(agent) else {}),
            "upper_bound": bool(agent_doc.get("upper_bound")),
            "version": agent_doc.get("version"),
            "hyperparameters": card.get("hyperparameters") or {},
            "training": card.get("training"),
            **({"training_seed": int(training_seed)} if training_seed is not None else {}),
        },
        "sealed": True,
        "measured_data": {"checksum": folder_checksum(folder)}
        if folder and any(t.measured for t, _ in planned)
        else None,
        "provenance": provenance(),
        "not_applicable": not_applicable,
        "skipped": skipped,
        "tasks": tasks,
    }


def training_seeds(agent: str) -> dict[int, dict[str, Any]]:
    """A learned agent's independently trained versions: training seed -> its hyperparameters (the card's
    ``training_seeds``, e.g. ``{0: {checkpoint: checkpoints/x-seed0.pt}}``); {} for agents that do not train."""
    from cryobench.agents.registry import load_card

    listed = load_card(agent).get("training_seeds") or {}
    source = f"agents/{agent}.yaml: field 'training_seeds'"
    if not isinstance(listed, dict) or not all(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 and isinstance(hyper, dict)
        for seed, hyper in listed.items()
    ):
        raise InputError(f"{source}: expected a mapping of training seed (an integer >= 0) to hyperparameters")
    return dict(listed)


def training_seed_hyperparameters(agent: str, seed: int) -> dict[str, Any]:
    """The hyperparameters of ``agent``'s version trained with ``seed`` (refused if its card lists no such seed)."""
    listed = training_seeds(agent)
    if not listed:
        raise InputError(f"option --training-seed: agent {agent!r} lists no training seeds (it is not a learned agent)")
    if seed not in listed:
        raise InputError(
            f"option --training-seed: agent {agent!r} has training seeds {sorted(listed)} (agents/{agent}.yaml), "
            f"not {seed}"
        )
    return dict(listed[seed])


# ---- reading and writing -------------------------------------------------------------------------
def schema_path() -> Path:
    return card_dir("leaderboards") / "schema" / "submission-v2.schema.json"


def check_schema(doc: Any, source: str) -> None:
    """Refuse a document that does not follow the published schema, naming the field that is wrong."""
    import jsonschema

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InputError(f"{source}: field {where}: {error.message[:200]}")
    for name, block in doc["tasks"].items():
        for i, run in enumerate(block["runs"]):
            if run["score"] != run_score(run["episodes"]):
                raise InputError(f"{source}: field tasks.{name}.runs.{i}.score does not match its episodes")


def load_submission(path: str | Path) -> dict:
    doc = read_json(path, "submission file", finite=True)
    check_schema(doc, str(path))
    return doc


def dumps_submission(doc: dict) -> str:
    """JSON with one episode per line: reviewable diffs at a modest size."""
    head = {k: v for k, v in doc.items() if k != "tasks"}
    lines = [json.dumps(head, indent=1, sort_keys=True)[:-2] + ",", ' "tasks": {']
    names = list(doc["tasks"])
    for i, name in enumerate(names):
        block = doc["tasks"][name]
        lines.append(f"  {json.dumps(name)}: {{")
        for key, value in sorted((k, v) for k, v in block.items() if k != "runs"):
            lines.append(f"   {json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
        lines.append('   "runs": [')
        for j, run in enumerate(block["runs"]):
            meta = {k: v for k, v in run.items() if k != "episodes"}
            lines.append("    {" + json.dumps(meta, sort_keys=True)[1:-1] + ', "episodes": [')
            for k, episode in enumerate(run["episodes"]):
                comma = "," if k < len(run["episodes"]) - 1 else ""
                lines.append("     " + json.dumps(episode, sort_keys=True) + comma)
            lines.append("    ]}" + ("," if j < len(block["runs"]) - 1 else ""))
        lines.append("   ]")
        lines.append("  }" + ("," if i < len(names) - 1 else ""))
    lines += [" }", "}", ""]
    text = "\n".join(lines)
    assert json.loads(text) == json.loads(json.dumps(doc))  # the layout never changes the content
    return text


def save_submission(doc: dict, path: str | Path) -> Path:
    """Write a submission atomically (after checking it against the schema)."""
    check_schema(json.loads(json.dumps(doc)), str(path))
    return write_atomic(path, dumps_submission(doc))


# ---- verification ------------------------------------------------------------------------------------
#: Fields a table publishes that cannot be re-derived by re-running (marked so in the tables).
UNVERIFIABLE = ("provenance", "seconds_per_episode", "decision_seconds_median", "agent.training")


def _is_learned(agent: str) -> bool:
    """A registered agent that names a trainer (its v2 entry is per training seed); policies are not."""
    from cryobench.agents.external import is_policy_spec
    from cryobench.agents.registry import agent_class

    return not is_policy_spec(agent) and bool(getattr(agent_class(agent), "trainer", ""))


def static_problems(doc: dict, protocol: HeldOutProtocol) -> list[str]:
    """What is wrong with a schema-valid v2 submission before anything is re-run."""
    reasons = []
    declared = doc["protocol"]
    if list(protocol.worlds) != declared["worlds"] or list(protocol.starts) != declared["starts"]:
        reasons.append(f"field 'protocol': worlds or starts are not those of the {protocol.tier} tier of protocol v2")
    needs_feedback = agent_needs_feedback(submitted_agent(doc))
    if _is_learned(submitted_agent(doc)) and doc["agent"].get("training_seed") is None:
        reasons.append(
            "field 'agent.training_seed' is missing: a learned agent's submission is one of its training seeds "
            "(cryobench submit --training-seed N)"
        )
    known = {task.name: task for task in (*protocol.tasks, *protocol.measured)}
    for name in declared["tasks"]:
        if name not in known:
            reasons.append(f"task {name!r} is not a task of protocol v2's {protocol.tier} tier")
        elif name not in doc["tasks"]:
            reasons.append(f"task {name!r} is declared but has no runs")
    for name in sorted(set(doc["tasks"]) - set(declared["tasks"])):
        reasons.append(f"task {name!r} is not declared in field 'protocol.tasks'")
    if declared["complete"]:
        missing = [t.name for t in protocol.tasks if t.name not in doc["tasks"] and t.name not in doc["not_applicable"]]
        if missing or protocol.tier != "full":
            reasons.append(f"claims a complete run but lacks tasks {missing} or is not the full tier")
    for name, reason in doc["not_applicable"].items():
        task = known.get(name)
        if task is None or task.not_applicable_reason(needs_feedback) != reason:
            reasons.append(f"task {name!r} is marked not applicable, but the agent can run it")
    for name, block in doc["tasks"].items():
        task = known.get(name)
        if task is None:
            continue
        expected_kwargs = task.public_kwargs(None) if task.measured else dict(task.kwargs)
        if block["env_id"] != task.env or block["kwargs"] != expected_kwargs or block["family"] != task.family:
            reasons.append(f"task {name!r}: environment, arguments or family are not the protocol's")
        worlds = [run["world"] for run in block["runs"]]
        if worlds != ([None] if task.measured else list(protocol.worlds)):
            reasons.append(f"task {name!r}: its runs are not one per test world of the protocol, in order")
        starts = list(task.starts if task.measured else protocol.starts)
        for run in block["runs"]:
            if [episode["seed"] for episode in run["episodes"]] != starts:
                reasons.append(f"task {name!r} world {run['world']}: episodes are not the protocol's start seeds")
                break
    return reasons


def verify_heldout(path: str | Path, data: str | Path | None = None, workers: int = 2, progress: bool = False) -> dict:
    """Re-run a v2 submission (sealed) and accept it only if every verifiable field reproduces.

    Returns ``{"accepted", "reduced", "reasons", "unverifiable"}``. Wall-clock figures, the
    provenance and the declared training budget cannot be re-derived: they are listed in
    ``unverifiable`` (and marked in the tables), never silently trusted.
    """
    try:
        doc = load_submission(path)
    except InputError as exc:
        return {"accepted": False, "reduced": False, "reasons": [f"schema: {exc}"], "unverifiable": []}
    tier = doc["protocol"]["tier"]
    reduced = not doc["protocol"]["complete"]
    worlds = tuple(doc["protocol"]["worlds"]) if tier == "draw" else None
    try:
        protocol = protocol_for("full" if tier == "draw" else tier, worlds)
        reasons = static_problems(doc, protocol)
    except InputError as exc:
        return {"accepted": False, "reduced": reduced, "reasons": [str(exc)], "unverifiable": []}
    folder = measured_data_folder(data)
    measured = [t.name for t in protocol.measured if t.name in doc["tasks"]]
    if measured:
        if folder is None:
            reasons.append(f"tasks {measured} need the measured data to re-run (--data PATH)")
        elif (doc.get("measured_data") or {}).get("checksum") != folder_checksum(folder):
            reasons.append("the measured data given (--data) is not the data the submission was run on (checksum)")
    if reasons:
        return {"accepted": False, "reduced": reduced, "reasons": reasons, "unverifiable": list(UNVERIFIABLE)}
    import tempfile

    from cryobench.agents.registry import recorded_hyperparameters

    with tempfile.TemporaryDirectory() as work:
        rerun = submit_heldout(
            submitted_agent(doc),
            work,
            data=folder,
            workers=workers,
            tier="full" if tier == "draw" else tier,
            worlds=worlds,
            progress=progress,
            hyperparameters=recorded_hyperparameters(submitted_agent(doc), doc["agent"]["hyperparameters"]),
            training_seed=doc["agent"].get("training_seed"),
        )
    reasons += reproduction_problems(doc, rerun)
    return {"accepted": not reasons, "reduced": reduced, "reasons": reasons, "unverifiable": list(UNVERIFIABLE)}


def _same_older_version(doc: dict, rerun: dict) -> bool:
    """Whether ``rerun`` ran the version an entry recorded before its agent gained hyperparameters: the
    re-run's are the recorded ones plus the added ones at their recorded-era values
    (``recorded_hyperparameters``), the recorded card digest is that of the recorded hyperparameters and
    the checkpoint is the same file."""
    from cryobench.agents.registry import card_version, recorded_hyperparameters

    recorded = doc["agent"].get("hyperparameters") or {}
    if not isinstance(recorded, dict) or rerun["agent"].get("hyperparameters") == recorded:
        return False  # nothing was added: the plain comparison decides
    name = submitted_agent(doc)
    version = card_version({"name": name, "hyperparameters": recorded})
    return (
        rerun["agent"].get("hyperparameters") == recorded_hyperparameters(name, recorded)
        and doc["agent"].get("version") == version
        and (rerun["agent"].get("version") or {}).get("checkpoint_sha256") == version["checkpoint_sha256"]
        and doc["agent"].get("upper_bound") == rerun["agent"].get("upper_bound")
        and doc["agent"].get("training_seed") == rerun["agent"].get("training_seed")
    )


def reproduction_problems(doc: dict, rerun: dict) -> list[str]:
    """Every verifiable field of ``doc`` that the re-run ``rerun`` does not reproduce."""
    reasons = []
    for key in ("upper_bound", "version", "hyperparameters", "training_seed"):
        if doc["agent"].get(key) != rerun["agent"].get(key) and not _same_older_version(doc, rerun):
            reasons.append(f"field 'agent.{key}' does not reproduce (submitted {doc['agent'][key]!r})")
    if doc["not_applicable"] != rerun["not_applicable"]:
        reasons.append("field 'not_applicable' does not reproduce")
    for name, block in doc["tasks"].items():
        again = rerun["tasks"].get(name)
        if again is None:
            reasons.append(f"task {name!r}: the agent does not run there")
            continue
        if block["grid"] != again["grid"]:
            reasons.append(f"task {name!r}: field 'grid' does not reproduce")
        for run, run_again in zip(block["runs"], again["runs"], strict=True):
            fields = [k for k in ("world", "n_holes", "score") if run[k] != run_again[k]]
            for episode, episode_again in zip(run["episodes"], run_again["episodes"], strict=True):
                fields += [f"episodes.{k}" for k in episode if episode[k] != episode_again.get(k)]
            if fields:
                reasons.append(
                    f"task {name!r} world {run['world']}: {', '.join(sorted(set(fields)))} do not reproduce "
                    f"(submitted score {run['score']}, re-run {run_again['score']})"
                )
                break  # one run per task says enough
    return reasons
