"""Timing an agent's decisions in a running session: the one harness the decision benchmarks share."""

from __future__ import annotations

from typing import Any


def time_decisions(benchmark, env, agent, state: dict, rounds: int, warmup_rounds: int) -> Any:
    """Time ``agent.act`` over ``rounds`` consecutive steps of its session (the step itself untimed:
    the hole chosen in one round is played in the next round's setup); a session near its end is
    reset (seed 1) between rounds. ``state`` holds the session's current ``obs`` and ``info`` and is
    kept up to date (the last hole chosen is played before returning). Returns the last hole chosen."""
    chosen: list[int] = []

    def play_chosen():
        if chosen:
            state["obs"], _, _, _, state["info"] = env.step(chosen.pop())

    def advance():
        play_chosen()
        if env.unwrapped.state.elapsed > env.unwrapped.world.duration - 30:
            state["obs"], state["info"] = env.reset(seed=1)
            agent.reset(env, 1)
        return (state["obs"], state["info"]), {}

    def decide(obs, info):
        hole = agent.act(obs, info)
        chosen.append(hole)
        return hole

    hole = benchmark.pedantic(decide, setup=advance, rounds=rounds, warmup_rounds=warmup_rounds)
    play_chosen()
    return hole
