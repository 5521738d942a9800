"""Aggregated throughput of the batched environment: P processes (one per core, as a trainer's
workers), each stepping B compact sessions of the aldolase twin's whole grid, all for the same
wall-clock window.

    nice -n -5 python tests/benchmarks/vector_throughput.py --processes 2 --seconds 10

Prints each process's environment steps per wall-clock second and per CPU second (its stepping
thread's ``time.thread_time``), and their sums. Actions are random allowed slots; finished
sessions restart (gymnasium's next-step autoreset), so resets are part of the figure. The
per-step timing with a committed baseline is ``test_bench_vector.py``; this script measures
what two cores give together, which one process cannot show.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np


def _worker(barrier, queue, sessions: int, seconds: float, seed: int) -> None:
    import gymnasium as gym

    import cryobench  # noqa: F401  (registers the environments)

    envs = gym.make_vec(
        "cryobench/Aldolase-v0",
        num_envs=sessions,
        vectorization_mode="vector_entry_point",
        split="all",
        observation="compact",
    )
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)

    def step(obs):
        mask = obs["action_mask"]
        return envs.step(np.argmax(mask * rng.random(mask.shape), axis=1))[0]

    for _ in range(20):  # warm-up
        obs = step(obs)
    barrier.wait()  # every process starts its window together
    start, cpu_start, steps = time.perf_counter(), time.thread_time(), 0
    while time.perf_counter() - start < seconds:
        obs = step(obs)
        steps += sessions
    queue.put((steps / (time.perf_counter() - start), steps / (time.thread_time() - cpu_start)))


def main(argv: list[str] | None = None) -> list[tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=256, help="compact sessions per process")
    parser.add_argument("--seconds", type=float, default=10.0, help="the timed window")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.sessions < 1 or args.seconds <= 0:
        parser.error("--processes, --sessions and --seconds must be positive")
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(args.processes), context.Queue()
    workers = [
        context.Process(target=_worker, args=(barrier, queue, args.sessions, args.seconds, 1000 * i))
        for i in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    rates = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    for wall, cpu in rates:
        print(f"process: {wall:,.0f} steps/s wall-clock, {cpu:,.0f} steps per CPU second")
    print(
        f"{args.processes} process(es) x {args.sessions} sessions: {sum(w for w, _ in rates):,.0f} steps/s wall-clock, "
        f"{sum(c for _, c in rates):,.0f} steps per CPU second"
    )
    return rates


if __name__ == "__main__":
    main()
