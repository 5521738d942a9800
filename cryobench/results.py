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
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import cryobench
from cryobench import metrics
from cryobench.errors import InputError
from cryobench.files import read_json, utc_timestamp, write_atomic

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


def load_results(path: str | Path) -> dict:
    """Read a results document, refusing files that are not cryobench results."""
    path = Path(path)
    result = read_json(path, "results file")
    if not isinstance(result, dict) or result.get("format") != RESULTS_FORMAT:
        raise InputError(f"{path}: not a cryobench results file (expected format {RESULTS_FORMAT!r})")
    for key in ("env", "agent", "episodes", "seeds"):
        if key not in result:
            raise InputError(f"{path}: results file lacks the field {key!r}")
    for index, row in enumerate(result["episodes"]):
        missing = [k for k in EPISODE_FIELDS if not isinstance(row, dict) or k not in row]
        if missing:
            raise InputError(f"{path}: episode {index} lacks the field(s) {missing}")
    return result
