"""Run an agent on an environment for seeded episodes and collect results with full provenance.

The results document (``cryobench-results/1``) is built by :mod:`cryobench.results`. Every
random choice flows from ``seed``: episode ``i`` resets the environment with
``seed + i`` and the agent with ``seed + i``; offline fitting uses ``seed``. Only the
``provenance.created`` timestamp and the ``timing`` section differ between two runs of
the same command.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import gymnasium as gym
import numpy as np

from cryobench import metrics
from cryobench.agents import external
from cryobench.agents.registry import agent_version, load_agent
from cryobench.errors import InputError
from cryobench.registration import make_env
from cryobench.results import env_record, results_document
from cryobench.rules import hole_index


def play_episode(env: gym.Env, agent, seed: int, options: dict | None = None, strict_actions: bool = False) -> dict:
    """One seeded session of ``agent`` on ``env``; returns its metrics.

    An action that is not a hole index (out of range, not an integer) does not crash the run:
    it is recorded in ``invalid_actions`` and played as a choice of an already visited hole
    (the current one), which the rules charge the in-patch minutes for and reward with nothing.
    With ``strict_actions`` (policies that are not agents: a wrong action is a bug to see at
    once) it is an InputError naming the step and the value instead.
    """
    sealed = getattr(agent, "sealed_play_episode", None)  # a sealed agent plays with its worker's observations
    row = None if sealed is None else sealed(env, seed, options, strict_actions)
    if row is not None:
        return row
    obs, info = env.reset(seed=seed, options=options)
    agent.reset(env, seed)
    n_holes = env.action_space.n
    invalid_actions = []
    terminated = truncated = False
    while not (terminated or truncated):
        if strict_actions:
            action = _policy_action(agent, obs, info, seed)
        else:
            action = agent.act(obs, info)
        hole = hole_index(action)
        if hole is None or not 0 <= hole < n_holes:
            if strict_actions:
                raise InputError(
                    f"policy {getattr(agent, 'name', '?')!r}: episode seed {seed}, step {int(info['exposures'])}: "
                    f"returned {action!r:.80}, expected a hole index from 0 to {n_holes - 1} (an integer)"
                )
            invalid_actions.append({"step": int(info["exposures"]), "action": repr(action)})
            hole = int(obs["current_hole"])
        obs, _reward, terminated, truncated, info = env.step(hole)
    inner = env.unwrapped
    return {**metrics.episode_metrics(inner.world, inner.state), "invalid_actions": invalid_actions}


def _policy_action(agent, obs: dict, info: dict, seed: int):
    """A policy's action; its own exception becomes one line naming the step and where in its code."""
    try:
        return agent.act(obs, info)
    except InputError:
        raise
    except Exception as exc:
        ours = (__file__, external.__file__)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename not in ours]
        where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        raise InputError(
            f"policy {getattr(agent, 'name', '?')!r}: episode seed {seed}, step {int(info['exposures'])}: "
            f"it raised {type(exc).__name__}: {exc}{where}"
        ) from None


def evaluate(
    agent_name: str | None = None,
    env: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 50,
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    progress: bool = True,
    sealed: bool = False,
    worlds: tuple[int, ...] = (),
    *,
    policy: Any = None,
) -> dict[str, Any]:
    """Run ``episodes`` seeded sessions of an agent and return the results document.

    The agent is a registered agent's name (``agent_name``), or ``policy``: an agent object, a
    Stable-Baselines3 model, a callable ``(obs, info) -> action`` or a ``module:attr`` /
    ``file.py:attr`` spec naming one (:mod:`cryobench.agents.external`); an ``agent_name``
    holding a colon is such a spec too. A policy's action that is not a hole index stops the
    run with an InputError naming the step and value.

    ``worlds``: play the seeds on each of these twin worlds (``world_seed = layout_seed = w``),
    one agent throughout; each episode row then names its ``world``. ``sealed`` runs the agent
    in a worker process that never receives the ground truth (:mod:`cryobench.sealed`): what
    protocol runs do; a policy is then given as a spec (the worker imports it).
    """
    if (agent_name is None) == (policy is None):
        raise InputError("give exactly one of the arguments 'agent_name' (a registered agent) and 'policy'")
    if env is None:
        raise InputError("argument 'env': expected an environment's short name or id (cryobench list envs)")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InputError(f"argument 'episodes': expected a positive integer, got {episodes!r:.40}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"argument 'seed': expected an integer >= 0 (episode i uses seed + i), got {seed!r:.40}")
    if agent_name is not None and external.is_policy_spec(agent_name):
        agent_name, policy = None, agent_name
    if policy is not None and sealed and not isinstance(policy, str):
        raise InputError("argument 'policy': a sealed run imports the policy in its worker; give a 'module:attr' spec")
    if policy is not None and hyperparameters:
        raise InputError("argument 'hyperparameters': a policy has none to set (they belong to registered agents)")
    kwargs = dict(env_kwargs or {})
    name = agent_name if policy is None else external.policy_name(policy)
    # The agent first: a wrong policy spec is reported before any world is built.
    if sealed:
        from cryobench.sealed import SealedAgent

        agent: Any = SealedAgent(name, hyperparameters)
        card = agent.card
    elif policy is not None:
        agent, card = external.as_agent(policy, name), {}
        agent.version = dict(external.NO_VERSION)
    else:
        agent, card = load_agent(agent_name, hyperparameters)
    environments: list[tuple[int | None, gym.Env]] = []
    try:
        if worlds:
            for w in worlds:
                environments.append((int(w), make_env(env, {**kwargs, "world_seed": int(w), "layout_seed": int(w)})))
        else:
            environments.append((None, make_env(env, kwargs)))
        return _evaluate_agent(
            agent, card, name, environments, kwargs, episodes, seed, progress, strict_actions=policy is not None
        )
    finally:
        if sealed:
            agent.close()
        for _world, environment in environments:
            environment.close()


def drawn_world(env) -> dict[str, Any] | None:
    """The world an episode played when ``env`` draws a new one at every reset (e.g. cryobench/Training-v0):
    its seeds, size and drawn conditions; None for an environment of one fixed world."""
    inner = env.unwrapped
    if not getattr(inner, "_new_world_each_reset", False):
        return None
    drawn = {
        "world_seed": int(inner.world_seed),
        "layout_seed": None if inner.layout_seed is None else int(inner.layout_seed),
        "n_holes": int(inner.world.n_holes),
    }
    conditions = getattr(inner, "conditions", None)
    return {**drawn, "conditions": conditions} if conditions else drawn


def _evaluate_agent(
    agent, card, agent_name, environments, env_kwargs, episodes, seed, progress, strict_actions=False
) -> dict[str, Any]:
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
        row = play_episode(environment, agent, episode_seed, strict_actions=strict_actions)
        seconds.append(time.perf_counter() - start)
        drawn = drawn_world(environment)
        if drawn is not None:  # a new world each reset: the header's world is only the last one
            row = {**row, "drawn_world": drawn}
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
