"""Run an agent on an environment for seeded episodes and collect results with full provenance.

The results document (``cryobench-results/1``) is built by :mod:`cryobench.results`. Every
random choice flows from ``seed``: episode ``i`` resets the environment with
``seed + i`` and the agent with ``seed + i``; offline fitting uses ``seed``. Only the
``provenance.created`` timestamp and the ``timing`` section differ between two runs of
the same command.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from cryobench import metrics
from cryobench.agents.registry import agent_version, load_agent
from cryobench.errors import InputError
from cryobench.registration import make_env
from cryobench.results import env_record, results_document
from cryobench.rules import hole_index


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
        hole = hole_index(action)
        if hole is None or not 0 <= hole < n_holes:
            invalid_actions.append({"step": int(info["exposures"]), "action": repr(action)})
            hole = int(obs["current_hole"])
        obs, _reward, terminated, truncated, info = env.step(hole)
    inner = env.unwrapped
    return {**metrics.episode_metrics(inner.world, inner.state), "invalid_actions": invalid_actions}


def evaluate(
    agent_name: str,
    env: str,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 50,
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    progress: bool = True,
    sealed: bool = False,
    worlds: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Run ``episodes`` seeded sessions of an agent and return the results document.

    ``worlds``: play the seeds on each of these twin worlds (``world_seed = layout_seed = w``),
    one agent throughout; each episode row then names its ``world``. ``sealed`` runs the agent
    in a worker process that never receives the ground truth (:mod:`cryobench.sealed`): what
    protocol runs do.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InputError(f"argument 'episodes': expected a positive integer, got {episodes!r:.40}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"argument 'seed': expected an integer >= 0 (episode i uses seed + i), got {seed!r:.40}")
    kwargs = dict(env_kwargs or {})
    if worlds:
        environments = [
            (int(w), make_env(env, {**kwargs, "world_seed": int(w), "layout_seed": int(w)})) for w in worlds
        ]
    else:
        environments = [(None, make_env(env, kwargs))]
    if sealed:
        from cryobench.sealed import SealedAgent

        agent: Any = SealedAgent(agent_name, hyperparameters)
        card = agent.card
    else:
        agent, card = load_agent(agent_name, hyperparameters)
    try:
        return _evaluate_agent(agent, card, agent_name, environments, kwargs, episodes, seed, progress)
    finally:
        if sealed:
            agent.close()
        for _world, environment in environments:
            environment.close()


def _evaluate_agent(agent, card, agent_name, environments, env_kwargs, episodes, seed, progress) -> dict[str, Any]:
    first = environments[0][1]
    fit_start = time.perf_counter()
    agent.fit(first, seed=seed)
    fit_seconds = time.perf_counter() - fit_start
    seeds = [seed + i for i in range(episodes)]
    plan = [(world, environment, episode_seed) for world, environment in environments for episode_seed in seeds]
    rows, seconds = [], []
    iterator: Any = plan
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(plan, desc=f"{agent_name} on {first.spec.id}", unit="episode", leave=False)
    for world, environment, episode_seed in iterator:
        start = time.perf_counter()
        row = play_episode(environment, agent, episode_seed)
        seconds.append(time.perf_counter() - start)
        rows.append({"seed": episode_seed, **row} if world is None else {"world": world, "seed": episode_seed, **row})
        if progress:
            iterator.set_postfix(good=row["good_exposures"])
    result = results_document(
        env_record(first, env_kwargs),
        {
            "name": agent_name,
            "upper_bound": bool(agent.uses_ground_truth),
            "card": card,
            "version": agent.version if hasattr(agent, "version") else agent_version(agent, card),
        },
        seeds,
        rows,
        fit_seconds=fit_seconds,
        seconds_per_episode=float(np.mean(seconds)),
    )
    if environments[0][0] is not None:
        result["worlds"] = [
            {"world": world, "n_holes": environment.unwrapped.world.n_holes} for world, environment in environments
        ]
    decisions = getattr(agent, "decision_seconds", None)  # measured in the sealed worker, around act alone
    if decisions:
        result["timing"]["decision_seconds_median"] = float(np.median(decisions))
        result["sealed"] = True
    return result
