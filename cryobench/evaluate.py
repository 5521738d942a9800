"""Run an agent on an environment for seeded episodes and collect results with full provenance.

The results format (``cryobench-results/1``, JSON) is documented in the README. Every
random choice flows from ``seed``: episode ``i`` resets the environment with
``seed + i`` and the agent with ``seed + i``; offline fitting uses ``seed``. Only the
``provenance.created`` timestamp and the ``timing`` section differ between two runs of
the same command.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import cryobench
from cryobench import metrics
from cryobench.agents.registry import load_agent
from cryobench.errors import InputError
from cryobench.files import utc_timestamp, write_atomic
from cryobench.registration import make_env

RESULTS_FORMAT = "cryobench-results/1"
#: Fields every episode of a results file has (what compare, plot and the leaderboards read).
EPISODE_FIELDS = ("seed", "good_exposures", "exposures", "bins", "good_curve", "trajectory", "squares_visited")


def play_episode(env: gym.Env, agent, seed: int, options: dict | None = None) -> dict:
    """One seeded session of ``agent`` on ``env``; returns its metrics.

    An action that is not a hole index (out of range, not an integer) does not crash the run:
    it is recorded in ``invalid_actions`` and played as a choice of an already visited hole
    (the current one), which the rules charge the in-patch minutes for and reward with nothing.
    """
    obs, info = env.reset(seed=seed, options=options)
    agent.reset(env, seed)
    n_holes = env.action_space.n
    invalid_actions = []
    terminated = truncated = False
    while not (terminated or truncated):
        action = agent.act(obs, info)
        if isinstance(action, bool) or not isinstance(action, int | np.integer) or not 0 <= action < n_holes:
            invalid_actions.append({"step": int(info["exposures"]), "action": repr(action)})
            action = int(obs["current_hole"])
        obs, _reward, terminated, truncated, info = env.step(int(action))
    inner = env.unwrapped
    return {**metrics.episode_metrics(inner.world, inner.state), "invalid_actions": invalid_actions}


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


def evaluate(
    agent_name: str,
    env: str,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 50,
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``episodes`` seeded sessions of an agent and return the results document."""
    if episodes < 1:
        raise InputError(f"argument 'episodes': expected a positive integer, got {episodes}")
    environment = make_env(env, env_kwargs)
    agent, card = load_agent(agent_name, hyperparameters)
    fit_start = time.perf_counter()
    agent.fit(environment, seed=seed)
    fit_seconds = time.perf_counter() - fit_start
    seeds = [seed + i for i in range(episodes)]
    rows, seconds = [], []
    iterator = seeds
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(seeds, desc=f"{agent_name} on {environment.spec.id}", unit="episode", leave=False)
    for episode_seed in iterator:
        start = time.perf_counter()
        row = play_episode(environment, agent, episode_seed)
        seconds.append(time.perf_counter() - start)
        rows.append({"seed": episode_seed, **row})
        if progress:
            iterator.set_postfix(good=row["good_exposures"])
    inner = environment.unwrapped
    result = {
        "format": RESULTS_FORMAT,
        "provenance": provenance(),
        "env": {
            "id": environment.spec.id,
            "kwargs": env_kwargs or {},
            "spec": json.loads(environment.spec.to_json()),
            "n_holes": inner.world.n_holes,
            "world_seed": inner.world_seed,
            "grid": inner.world.grid.name,
        },
        "agent": {
            "name": agent_name,
            "upper_bound": bool(agent.uses_ground_truth),
            "card": card,
        },
        "seeds": seeds,
        "episodes": rows,
        "summary": summarise_episodes(rows),
        "timing": {
            "fit_seconds": fit_seconds,
            "seconds_per_episode": float(np.mean(seconds)),
            "note": "wall-clock figures vary between machines and runs; everything else is reproducible",
        },
    }
    environment.close()
    return result


SUMMARY_METRICS = (
    "good_exposures",
    "exposures",
    "good_fraction",
    "total_reward",
    "squares_visited",
    "exposures_per_square",
)


def summarise_episodes(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean, sd, IQM and CI of the headline metrics over episodes."""
    return {name: metrics.summarise(np.array([r[name] for r in rows], dtype=float)) for name in SUMMARY_METRICS}


def save_results(result: dict, path: str | Path) -> Path:
    """Write a results document atomically (a temporary file renamed into place)."""
    return write_atomic(path, json.dumps(result, indent=1, sort_keys=False) + "\n")


def load_results(path: str | Path) -> dict:
    """Read a results document, refusing files that are not cryobench results."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such results file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
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
