"""Wall time of protocol v2 runs, sealed against open: the same tasks, alternating repetitions.

Not a test (a run takes a minute); the numbers in leaderboards/README.md ("What sealing costs")
come from it::

    nice -n -5 python tests/benchmarks/sealed_whole_run.py predict-rank --worlds 2 --repetitions 2

``--worlds N``: the first N test worlds of every task, plus the real-data track (the measured
Aldolase test split). Prints each repetition's seconds and the ratio sealed / open.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

from cryobench.leaderboard.heldout_runs import _sweep_task, agent_needs_feedback, protocol_for
from cryobench.protocol import measured_data_folder
from cryobench.sweep import run_sweep

DATA = "/work/shared/datasets/cryorl-aldolase"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent")
    parser.add_argument("--worlds", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default=DATA)
    args = parser.parse_args()
    protocol = protocol_for("full")
    protocol = protocol.with_worlds(protocol.worlds[: args.worlds])
    folder = measured_data_folder(args.data)
    needs_feedback = agent_needs_feedback(args.agent)  # tasks without feedback are not the agent's (as in submit)
    tasks = [
        _sweep_task(args.agent, task, protocol, folder, {})
        for task in (*protocol.tasks, *protocol.measured)
        if task.not_applicable_reason(needs_feedback) is None
    ]
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for repetition in range(args.repetitions):
        for sealed in (True, False) if repetition % 2 == 0 else (False, True):  # alternate who goes first
            run = [dataclasses.replace(task, sealed=sealed) for task in tasks]
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                run_sweep(run, out, workers=args.workers, progress=False)
                seconds[sealed].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(seconds[True], seconds[False], strict=True)]
    print("open  ", " ".join(f"{t:.1f}" for t in seconds[False]))
    print("sealed", " ".join(f"{t:.1f}" for t in seconds[True]))
    print("sealed/open", " ".join(f"{r:.2f}" for r in ratios), "| median", f"{statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
