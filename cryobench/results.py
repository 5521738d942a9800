"""Results documents (``cryobench-results/1``): built, written and read here, and only here.

A results document holds one agent's (or one person's) seeded episodes on one environment,
with provenance. ``cryobench run``, sweeps and ``cryobench play`` all build it with
:func:`results_document`; compare, plot and the leaderboards read it with :func:`load_results`.
The format is documented in the README; its fields do not change within format version 1.
"""

from __future__ import annotations

import json
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import cryobench
from cryobench import metrics
from cryobench.errors import InputError
from cryobench.files import read_json, utc_timestamp, write_atomic
from cryobench.resources import card_dir

RESULTS_FORMAT = "cryobench-results/1"
#: Fields every episode of a results file has (what compare, plot and the leaderboards read).
EPISODE_FIELDS = ("seed", "good_exposures", "exposures", "bins", "good_curve", "trajectory", "squares_visited")
WALL_CLOCK_NOTE = "wall-clock figures vary between machines and runs; everything else is reproducible"


def results_document(
    env: dict[str, Any],
    agent: dict[str, Any],
    seeds: list[int],
    episodes: list[dict[str, Any]],
    *,
    fit_seconds: float,
    seconds_per_episode: float,
    timing_note: str = WALL_CLOCK_NOTE,
    **sections: Any,
) -> dict[str, Any]:
    """A results document: ``env`` (see :func:`env_record`), ``agent`` (name, upper_bound, card, ...),
    the episode ``seeds`` and rows, their summary, timing, and any further ``sections`` (e.g.
    ``human`` for a played session), with this machine's provenance."""
    return {
        "format": RESULTS_FORMAT,
        "provenance": provenance(),
        "env": env,
        "agent": agent,
        "seeds": list(seeds),
        "episodes": episodes,
        "summary": summarise_episodes(episodes),
        "timing": {"fit_seconds": fit_seconds, "seconds_per_episode": seconds_per_episode, "note": timing_note},
        **sections,
    }


def env_record(gym_env: gym.Env, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``env`` section of a results document: id, arguments, spec and the world's identity."""
    inner = gym_env.unwrapped
    return {
        "id": gym_env.spec.id,
        "kwargs": dict(env_kwargs),
        "spec": json.loads(gym_env.spec.to_json()),
        "n_holes": inner.world.n_holes,
        "world_seed": inner.world_seed,
        "layout_seed": getattr(inner, "layout_seed", None),
        "grid": inner.world.grid.name,
    }


def summarise_episodes(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean, sd, IQM and CI over episodes of every registered metric (:data:`cryobench.metrics.METRICS`)."""
    return {name: metrics.summarise(metric.values(rows)) for name, metric in metrics.METRICS.items()}


def provenance() -> dict[str, Any]:
    """Versions, platform and git commit of the code that made a result."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        # Versions from the package metadata: importing torch only to read its version costs seconds.
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    commit = None
    try:
        root = Path(cryobench.__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cryobench": cryobench.__version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": installed("scipy"),
        "pandas": installed("pandas"),
        "gymnasium": gym.__version__,
        "torch": installed("torch"),
        "platform": platform.platform(),
        "created": utc_timestamp(),
    }


def save_results(result: dict, path: str | Path) -> Path:
    """Write a results document atomically (see :func:`cryobench.files.write_atomic`)."""
    return write_atomic(path, json.dumps(result, indent=1, sort_keys=False) + "\n")


def schema_path() -> Path:
    """The published JSON Schema of results files (``leaderboards/schema/results-1.schema.json``)."""
    return card_dir("leaderboards") / "schema" / "results-1.schema.json"


@cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_path().read_text(encoding="utf-8")))


def load_results(path: str | Path) -> dict:
    """Read a results document, refusing (one line naming the file and field) any that does not follow
    the published schema (:func:`schema_path`) or whose episodes do not add up."""
    path = Path(path)
    result = read_json(path, "results file", finite=True)
    if not isinstance(result, dict) or result.get("format") != RESULTS_FORMAT:
        raise InputError(f"{path}: not a cryobench results file (expected format {RESULTS_FORMAT!r})")
    check_results(result, str(path))
    return result


def check_results(result: Any, source: str) -> None:
    """Refuse a results document that breaks the schema or whose episodes contradict themselves."""
    errors = sorted(_validator().iter_errors(result), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise InputError(f"{source}: field {where}: {errors[0].message[:200]}")
    seeds = set(result["seeds"])
    for index, row in enumerate(result["episodes"]):
        where = f"{source}: field episodes.{index}"
        if row["seed"] not in seeds:
            raise InputError(f"{where}.seed: {row['seed']} is not among the file's seeds {result['seeds']!r:.80}")
        exposures = row["exposures"]
        if row["good_exposures"] > exposures:
            raise InputError(f"{where}.good_exposures: {row['good_exposures']} is more than its {exposures} exposures")
        for field in ("trajectory", "good_curve.minutes", "good_curve.good", "trajectory_good", "trajectory_ctf"):
            value = row.get(field) if "." not in field else row["good_curve"][field.split(".")[1]]
            if value is not None and len(value) != exposures:
                raise InputError(f"{where}.{field}: {len(value)} entries for {exposures} exposures")
        if sum(row["bins"].values()) != exposures:
            raise InputError(f"{where}.bins: they count {sum(row['bins'].values())} exposures, not {exposures}")
        if "trajectory_good" in row and sum(row["trajectory_good"]) != row["good_exposures"]:
            raise InputError(
                f"{where}.trajectory_good: {sum(row['trajectory_good'])} good, not {row['good_exposures']}"
            )
    for metric in metrics.METRICS.values():  # registered metrics may read fields the schema does not know
        try:
            metric.values(result["episodes"])
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
