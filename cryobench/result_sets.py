"""Results files in bulk: files and sweep folders read at once, a sweep's seed chunks merged.

A sweep writes one results file per task, and a task holds a chunk of the seeds, while
``compare`` and ``plot`` want one series per agent and environment. :func:`load_many` reads
files and folders; the files of a folder that differ only in their seeds (same agent,
hyperparameters, environment and arguments) become one document with all their episodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cryobench.errors import InputError
from cryobench.results import load_results, summarise_episodes


def series_key(result: dict) -> str:
    """What makes two results files the same series: agent, hyperparameters, environment, arguments."""
    env, agent = result["env"], result["agent"]
    hyperparameters = (agent.get("card") or {}).get("hyperparameters")
    return json.dumps([agent["name"], hyperparameters, env["id"], env.get("kwargs", {})], sort_keys=True, default=str)


def load_many(paths: Iterable[str | Path]) -> list[dict]:
    """Results documents from files and folders (``*.json`` in a folder, merged per series)."""
    documents = []
    for path in map(Path, paths):
        if not path.is_dir():
            documents.append(load_results(path))
            continue
        files = sorted(path.glob("*.json"))
        if not files:
            raise InputError(f"{path}: no results files (*.json) in this folder")
        documents.extend(merge_series([(load_results(file), file) for file in files]))
    return documents


def merge_series(results: list[tuple[dict, Path]]) -> list[dict]:
    """One document per series, in the order each series first appears; refuses a seed run twice."""
    groups: dict[str, list[tuple[dict, Path]]] = {}
    for result, source in results:
        groups.setdefault(series_key(result), []).append((result, source))
    return [_merge(group) for group in groups.values()]


def _merge(group: list[tuple[dict, Path]]) -> dict:
    if len(group) == 1:
        return group[0][0]
    first_seen: dict[int, Path] = {}
    for result, source in group:
        for seed in result["seeds"]:
            if seed in first_seen:
                raise InputError(
                    f"{source}: seed {seed} of {result['agent']['name']} on {result['env']['id']} is also in "
                    f"{first_seen[seed]}; a folder may hold each run once"
                )
            first_seen[seed] = source
    episodes = sorted((row for result, _ in group for row in result["episodes"]), key=lambda row: row["seed"])
    merged = {key: value for key, value in group[0][0].items() if key not in ("task", "timing")}
    merged.update(
        seeds=[row["seed"] for row in episodes],
        episodes=episodes,
        summary=summarise_episodes(episodes),
        merged_from=[str(source) for _, source in group],
    )
    return merged
