"""Speed of a staged-acquisition step against a paper step at the same number of holes.

Goal (issue 12): a staged step (the full observation, with unimaged squares hidden and the
square actions masked) within 1.3x of a paper step on the same grid. The two are timed
interleaved in one process, step by step, so the machine's load hits both alike; the ratio of
their minimums goes into ``extra_info["staged_over_paper"]`` (a speed goal is a benchmark, not
an assert). ``benchmark`` itself times the staged step.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401

GRIDS = {"2426": dict(dataset="aldolase", split="test"), "5822": dict(dataset="aldolaseau", split="all")}


def _session(acquisition: str, grid: str, seed: int):
    """An environment mid-session: staged, with a third of the squares imaged (set-up, not timed)."""
    args = GRIDS[grid]
    env = gym.make(f"cryobench/{'Aldolase' if args['dataset'] == 'aldolase' else 'AldolaseAu'}-v0", **args)
    if acquisition == "staged":
        env = gym.make(env.spec.id, acquisition="staged", **args)
    env = env.unwrapped
    env.reset(seed=seed)
    if acquisition == "staged":
        n = env.world.n_holes
        for square in np.random.default_rng(seed).permutation(env.world.n_squares)[: env.world.n_squares // 3]:
            if not env.state.imaged[square]:
                env.step(n + int(square))
    return env


def _random_hole(env, rng):
    """A random hole to expose next (set-up, not timed): a new session near the end, and, staged,
    more squares imaged when few holes are left to expose."""
    if env.state.elapsed > env.world.duration - 30:
        env.reset(seed=int(rng.integers(1000)))
    while env.state.shown is not None and np.count_nonzero(env.state.shown & ~env.state.visited) < 20:
        env.step(env.world.n_holes + int(rng.choice(np.flatnonzero(~env.state.imaged))))
    taken = env.state.visited if env.state.shown is None else env.state.visited | ~env.state.shown
    candidates = np.flatnonzero(~taken)
    return int(candidates[rng.integers(len(candidates))])


@pytest.mark.parametrize("grid", list(GRIDS))
def test_bench_staged_step_against_paper_step(benchmark, grid):
    paper, staged = _session("paper", grid, 0), _session("staged", grid, 0)
    assert paper.world.n_holes == staged.world.n_holes
    rng_paper, rng_staged = np.random.default_rng(1), np.random.default_rng(1)
    times = {"paper": [], "staged": []}
    for _ in range(300 if benchmark.enabled else 3):  # interleaved: one paper step, one staged step
        for name, env, rng in (("paper", paper, rng_paper), ("staged", staged, rng_staged)):
            hole = _random_hole(env, rng)
            start = time.perf_counter()
            env.step(hole)
            times[name].append(time.perf_counter() - start)
    benchmark.extra_info["grid"] = GRIDS[grid]["dataset"] + ", " + GRIDS[grid]["split"]
    benchmark.extra_info["n_holes"] = staged.world.n_holes
    benchmark.extra_info["paper_step_min_ms"] = 1e3 * min(times["paper"])
    benchmark.extra_info["staged_step_min_ms"] = 1e3 * min(times["staged"])
    benchmark.extra_info["staged_over_paper"] = min(times["staged"]) / min(times["paper"])
    rng = np.random.default_rng(2)
    obs, *_ = benchmark.pedantic(
        staged.step, setup=lambda: ((_random_hole(staged, rng),), {}), rounds=300, warmup_rounds=10
    )
    assert obs["action_mask"].shape == (staged.world.n_actions,)
