"""Sweeps: many (agent, environment, arguments, seeds) tasks, run in parallel, resumable.

Each task writes one results file, atomically (a temporary file renamed into place), named
by a hash of the task. A sweep that is killed at any point resumes where it stopped: the
finished tasks' files are complete and are skipped, the unfinished ones run again from
scratch, so nothing is lost or duplicated.

Backends: ``local`` (worker processes on this machine, the default) and ``ray`` (an
optional dependency, ``pip install cryobench[ray]``, for users who outgrow one machine;
scheduling is Ray's own).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from cryobench import files
from cryobench.errors import InputError


@dataclass(frozen=True)
class Task:
    """One unit of a sweep: an agent on an environment with arguments, for some seeds."""

    agent: str
    env: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    #: Run the agent in a worker that never receives the ground truth (protocol runs).
    sealed: bool = False
    #: Twin test worlds to play the seeds on (protocol v2), each world_seed = layout_seed; none: the env's own.
    worlds: tuple[int, ...] = ()

    def key(self) -> str:
        """A stable id: the same task always maps to the same results file."""
        fields = asdict(self)
        for name in ("sealed", "worlds"):  # keys of other tasks stay what they were before these existed
            if not fields[name]:
                del fields[name]
        text = json.dumps(fields, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self) -> str:
        args = "_".join(f"{k}-{v}" for k, v in sorted(self.env_kwargs.items()) if k != "data")
        stem = f"{self.agent}__{self.env}" + (f"__{args}" if args else "")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
        return f"{safe}__{self.key()}.json"


def grid_tasks(
    agents: Sequence[str],
    envs: Sequence[str],
    noises: Sequence[float | None] = (None,),
    seeds: Sequence[int] = tuple(range(50)),
    env_kwargs: dict[str, Any] | None = None,
    seeds_per_task: int = 10,
) -> list[Task]:
    """The cross product agents x environments x noise levels, seeds split into chunks."""
    tasks = []
    seeds = tuple(int(s) for s in seeds)
    chunks = [seeds[i : i + seeds_per_task] for i in range(0, len(seeds), seeds_per_task)]
    for agent in agents:
        for env in envs:
            for noise in noises:
                kwargs = dict(env_kwargs or {})
                if noise is not None:
                    kwargs["noise"] = float(noise)
                tasks.extend(Task(agent, env, kwargs, chunk) for chunk in chunks)
    return tasks


def run_task(task: Task, out_dir: str | Path) -> Path:
    """Run one task and write its results file atomically; return its path."""
    import time

    from cryobench.results import save_results

    start = time.perf_counter()
    result = evaluate_seeds(task)
    result["task"] = {**asdict(task), "seeds": list(task.seeds), "key": task.key()}
    result["timing"]["task_seconds"] = time.perf_counter() - start
    return save_results(result, Path(out_dir) / task.filename())


def evaluate_seeds(task: Task) -> dict:
    """Evaluate a task's agent on exactly the task's seeds (which need not be contiguous)."""
    from cryobench.evaluate import evaluate

    seeds = list(task.seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise InputError(f"task {task.key()}: seeds must be a contiguous range, got {seeds}")
    return evaluate(
        task.agent,
        task.env,
        task.env_kwargs,
        len(seeds),
        seeds[0],
        task.hyperparameters,
        progress=False,
        sealed=task.sealed,
        worlds=task.worlds,
    )


def pending(tasks: Iterable[Task], out_dir: str | Path) -> list[Task]:
    """The tasks whose results file is not there yet (finished files are complete by construction)."""
    out = Path(out_dir)
    return [t for t in tasks if not (out / t.filename()).is_file()]


def run_sweep(
    tasks: Sequence[Task],
    out_dir: str | Path,
    workers: int = 2,
    backend: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Run every task not already done; return the paths of all tasks' results files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    keys = [t.key() for t in tasks]
    if len(set(keys)) != len(keys):
        raise InputError("the sweep lists the same task twice; each (agent, env, arguments, seeds) must be unique")
    todo = pending(tasks, out)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="sweep", unit="task")
    if backend == "local":
        _run_local(todo, out, workers, bar)
    elif backend == "ray":
        _run_ray(todo, out, address, bar)
    else:
        raise InputError(f"argument 'backend': expected 'local' or 'ray', got {backend!r}")
    if bar is not None:
        bar.close()
    return [out / t.filename() for t in tasks]


def remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary results files of writers that died (``<name>.json.tmp<pid>``).

    A temporary file is never a complete result; one whose writer is still alive (another
    sweep writing into the same folder) is left alone (see :func:`cryobench.files.remove_stale_temporaries`).
    """
    files.remove_stale_temporaries(out, "*.json.tmp*")


def _raise_failures(failures: list[tuple[Task, BaseException]]) -> None:
    if failures:
        lines = [f"{t.filename()}: {type(e).__name__}: {e}" for t, e in failures[:5]]
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise InputError(f"{len(failures)} sweep task(s) failed{more}; the others are saved:\n" + "\n".join(lines))


def _run_local(todo: list[Task], out: Path, workers: int, bar) -> None:
    failures: list[tuple[Task, BaseException]] = []
    if workers <= 1:
        for task in todo:
            try:
                run_task(task, out)
            except Exception as exc:  # one failing task must not lose the others' results
                failures.append((task, exc))
            if bar is not None:
                bar.update()
        _raise_failures(failures)
        return
    # spawn: fresh interpreters, safe with torch's threads (fork is not).
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_task, task, str(out)): task for task in todo}
        for future in as_completed(futures):
            try:
                future.result()
            except Exception as exc:
                failures.append((futures[future], exc))
            if bar is not None:
                bar.update()
    _raise_failures(failures)


def _run_ray(todo: list[Task], out: Path, address: str | None, bar) -> None:
    try:
        import ray
    except ImportError:
        raise InputError("backend 'ray' needs Ray: pip install 'cryobench[ray]'") from None
    if not ray.is_initialized():
        # address None: a new local instance; "auto" or "HOST:PORT": an existing cluster.
        ray.init(address=address, log_to_driver=False)
    # Ray places the tasks (one CPU each) on the cluster's nodes; every node must see ``out``
    # (a shared file system) for the results to land in one folder.
    remote = ray.remote(num_cpus=1, max_retries=2)(run_task)
    refs = {remote.remote(task, str(out)): task for task in todo}
    pending_refs = list(refs)
    failures: list[tuple[Task, BaseException]] = []
    while pending_refs:
        done, pending_refs = ray.wait(pending_refs, num_returns=1)
        try:
            ray.get(done[0])
        except Exception as exc:
            failures.append((refs[done[0]], exc))
        if bar is not None:
            bar.update()
    _raise_failures(failures)
