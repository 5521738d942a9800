"""Sweeps: many (agent, environment, arguments, seeds) tasks, run in parallel, resumable.

Each task writes one results file, atomically (a temporary file renamed into place), named
by a hash of the task. A sweep that is killed at any point resumes where it stopped: the
finished tasks' files are checked and kept, files that are not a finished result of their
task (empty, truncated, another format or task) are run again, and so are the unfinished
tasks, from scratch; nothing is lost or duplicated.

Before any work the agents and environments are built once, so a misspelt name fails in one
line and not in every task. A lock on the output folder keeps a second sweep out of it.
Ctrl-C (or SIGTERM) stops the workers mid-task within a second or two and raises
``Interrupted``, which says how much is finished; workers also die with their parent when it
is killed outright (see ``_end_with_parent``).

Backends: ``local`` (worker processes on this machine, the default) and ``ray`` (an
optional dependency, ``pip install cryobench[ray]``, for users who outgrow one machine;
scheduling is Ray's own).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from cryobench import files
from cryobench.errors import InputError, Interrupted

BACKENDS = ("local", "ray")
LOCK_NAME = ".cryobench-sweep.lock"


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
    from cryobench.results import save_results

    start = time.perf_counter()
    result = evaluate_seeds(task)
    result["task"] = {**asdict(task), "seeds": list(task.seeds), "key": task.key()}
    result["timing"]["task_seconds"] = time.perf_counter() - start
    return save_results(result, Path(out_dir) / task.filename())


def evaluate_seeds(task: Task) -> dict:
    """Evaluate a task's agent on exactly the task's seeds (which need not be contiguous)."""
    from cryobench.evaluate import evaluate

    _check_seeds(task)
    seeds = list(task.seeds)
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


def _check_seeds(task: Task) -> None:
    seeds = list(task.seeds)
    if not seeds or seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise InputError(f"task {task.filename()}: seeds must be a non-empty contiguous range, got {seeds}")


def check_tasks(tasks: Sequence[Task]) -> None:
    """Refuse, before any work, tasks whose agent, hyperparameters, environment or arguments cannot run.

    Each distinct agent configuration and environment is built once (milliseconds each, a
    second or two to import torch for a DQN), so a misspelt name is one line now, not a
    failure of every task at the end.
    """
    from cryobench.agents.external import is_policy_spec
    from cryobench.agents.registry import load_agent
    from cryobench.registration import make_env

    def distinct(pairs: Iterable[tuple[str, dict]]) -> list[tuple[str, dict]]:
        seen = {json.dumps(pair, sort_keys=True, default=str): pair for pair in pairs}
        return list(seen.values())

    for agent, hyperparameters in distinct((t.agent, t.hyperparameters) for t in tasks):
        if not is_policy_spec(agent):  # a policy's code loads where it runs (a sealed worker reports a bad spec)
            load_agent(agent, hyperparameters)
    for env, env_kwargs in distinct((t.env, t.env_kwargs) for t in tasks):
        make_env(env, env_kwargs).close()
    for task in tasks:
        _check_seeds(task)


def result_problem(path: Path, task: Task) -> str | None:
    """Why the file at ``path`` is not a finished result of ``task``, or None when it is.

    Atomic writes mean a crash never leaves half a file, but a full disk, a copy or a hand edit
    can; such a file is run again rather than trusted.
    """
    from cryobench.results import load_results

    try:
        if path.stat().st_size == 0:
            return "an empty file"
        result = load_results(path)
    except (InputError, ValueError, OSError) as exc:  # not JSON, another format, unreadable
        return str(exc).removeprefix(f"{path}: ")
    stored = result.get("task")
    key = stored.get("key") if isinstance(stored, dict) else None
    if key != task.key():
        return f"the results of another task (key {key!r}, expected {task.key()!r})"
    if task.worlds:  # every seed on every world, world by world
        what = "(world, seed)"
        played = [(row.get("world"), row["seed"]) for row in result["episodes"]]
        expected = [(world, seed) for world in task.worlds for seed in task.seeds]
    else:
        what, played, expected = "seeds", [row["seed"] for row in result["episodes"]], list(task.seeds)
    if result["seeds"] != list(task.seeds) or played != expected:
        return f"episodes for {what} {played}, expected {expected}"
    return None


def pending(tasks: Iterable[Task], out_dir: str | Path, notify: Callable[[str], None] | None = None) -> list[Task]:
    """The tasks without a finished results file: none yet, or one that ``result_problem`` refuses.

    ``notify`` is told about each refused file (it is run again).
    """
    out = Path(out_dir)
    todo = []
    for task in tasks:
        path = out / task.filename()
        if not os.path.lexists(path):
            todo.append(task)
            continue
        problem = result_problem(path, task)
        if problem is not None:
            todo.append(task)
            if notify is not None:
                notify(f"running {path.name} again: {problem}")
    return todo


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_sweep(
    tasks: Sequence[Task],
    out_dir: str | Path,
    workers: int = 2,
    backend: str = "local",
    address: str | None = None,
    progress: bool = True,
    notify: Callable[[str], None] = _to_stderr,
) -> list[Path]:
    """Run every task without a finished result; return the paths of all tasks' results files.

    Raises ``InputError`` before any work for a bad task (unknown agent or environment, bad
    arguments) or a folder another sweep holds, and ``Interrupted`` on Ctrl-C or SIGTERM once
    the workers are stopped (finished results kept). ``notify`` receives one-line notices
    (results run again, a stale lock taken over).
    """
    if backend not in BACKENDS:
        raise InputError(f"argument 'backend': expected 'local' or 'ray', got {backend!r}")
    keys = [t.key() for t in tasks]
    if len(set(keys)) != len(keys):
        raise InputError("the sweep lists the same task twice; each (agent, env, arguments, seeds) must be unique")
    check_tasks(tasks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, notify), _sigterm_interrupts():
        remove_stale_temporaries(out)
        todo = pending(tasks, out, notify)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="sweep", unit="task")
        try:
            if backend == "local":
                _run_local(todo, out, workers, bar)
            else:
                _run_ray(todo, out, address, bar)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
                bar = None
            remove_stale_temporaries(out)  # the stopped workers' half-written files
            left = len(pending(tasks, out))
            raise Interrupted(
                f"sweep interrupted: {len(tasks) - left} of {len(tasks)} task results are finished and kept in "
                f"{out}, {left} still to run; run the same command again to resume (finished results are "
                "checked and skipped)"
            ) from None
        finally:
            if bar is not None:
                bar.close()
    return [out / t.filename() for t in tasks]


@contextlib.contextmanager
def folder_lock(out: Path, notify: Callable[[str], None] = _to_stderr) -> Iterator[None]:
    """Hold ``out`` for one sweep: a second sweep into the same folder is refused, naming the first.

    flock, not a pid file: the kernel drops the lock when its holder ends, however it ends
    (SIGKILL, a crash), so a lock file left by a dead sweep is simply taken over, and no pid
    test can be fooled by a reused pid. The pid and host written into the file only name the
    holder in the refusal. (NFS on Linux carries flock between hosts as a POSIX lock.)
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; sweeps there are not guarded
        yield
        return
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{out}: another sweep is writing into this folder ({_lock_holder(fd)}); "
                "wait for it to finish, stop it, or choose another --out"
            ) from None
        previous = _lock_holder(fd)
        if previous != "holder unknown":
            notify(f"{out}: taking over the lock left by a sweep that has ended ({previous})")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # an ended sweep leaves no holder to report
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"pid {int(holder['pid'])} on host {holder['host']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError, OSError):  # empty (released) or not ours
        return "holder unknown"


def remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary results files of writers that died (``<name>.json.tmp<pid>``).

    A temporary file is never a complete result; one whose writer is still alive (another
    sweep writing into the same folder) is left alone (see :func:`cryobench.files.remove_stale_temporaries`).
    """
    files.remove_stale_temporaries(out, "*.json.tmp*")


def _raise_failures(failures: list[tuple[Task, BaseException]]) -> None:
    if failures:
        lines = [f"{t.filename()}: {type(e).__name__}: {e}" for t, e in failures[:5]]
        if len(failures) > 5:
            lines.append(f"... and {len(failures) - 5} more")
        raise InputError(f"{len(failures)} sweep task(s) failed; the others are saved:\n" + "\n".join(lines))


# ---- the local backend: worker processes that stop on Ctrl-C and die with their parent ----
def _run_local(todo: list[Task], out: Path, workers: int, bar) -> None:
    failures: list[tuple[Task, BaseException]] = []
    if workers <= 1:
        for task in todo:
            try:
                run_task(task, out)  # a Ctrl-C mid-write: write_atomic removes its temporary
            except Exception as exc:  # one failing task must not lose the others' results
                failures.append((task, exc))
            if bar is not None:
                bar.update()
        _raise_failures(failures)
        return
    if not todo:
        return
    # spawn: fresh interpreters, safe with torch's threads (fork is not).
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(todo)),
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        with _sigint_held():  # the workers start during submit
            futures = {pool.submit(run_task, task, str(out)): task for task in todo}
        for future in as_completed(futures):
            try:
                future.result()
            except Exception as exc:
                failures.append((futures[future], exc))
            if bar is not None:
                bar.update()
    except BaseException:  # Ctrl-C, SIGTERM, or a bug here: no worker runs on without us
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    _raise_failures(failures)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's workers now, mid-task: their results were never written, so they run again on resume."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    processes = list((pool._processes or {}).values())  # no public way before 3.14
    for process in processes:
        process.terminate()  # SIGTERM: workers keep its default action, an immediate end
    for process in processes:
        process.join(timeout=2)
        if process.is_alive():
            process.kill()


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold SIGINT back while workers start, so they are born with it blocked (see ``_start_worker``).

    A terminal's Ctrl-C goes to the whole process group, workers included; only the parent
    should act on it. A Ctrl-C meanwhile reaches the parent on release, it is not lost.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler's or ``kill``'s polite stop) stops the sweep like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_worker(parent_pid: int) -> None:
    """A worker's first act: ignore Ctrl-C (the parent decides what it stops), end with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also drops one held back by ``_sigint_held``
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _end_with_parent(parent_pid)


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _end_with_parent(parent_pid: int) -> None:
    """Make this worker die with the sweep that started it, however that one ends (SIGKILL too).

    On Linux the kernel does it: prctl(PR_SET_PDEATHSIG, SIGKILL) kills the worker the moment
    its parent exits, even in the middle of numpy or torch code that holds the GIL, at no cost
    while it runs. (A pipe whose end-of-file ends the worker, or a polling thread, needs the
    GIL to notice.) Elsewhere a daemon thread polls the parent's pid every second. The final
    check closes the gap of a parent that died before the worker got this far.
    """
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        signal_number = ctypes.c_ulong(int(signal.SIGKILL))
        armed = libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), signal_number, *[ctypes.c_ulong(0)] * 3) == 0
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="watch-parent").start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # an orphan is adopted by another process
        time.sleep(1.0)
    os._exit(1)


# ---- the Ray backend ----
def _run_ray(todo: list[Task], out: Path, address: str | None, bar) -> None:
    try:
        import ray
    except ImportError:
        raise InputError("backend 'ray' needs Ray: pip install 'cryobench[ray]'") from None
    if not ray.is_initialized():
        # address None: a new local instance; "auto" or "HOST:PORT": an existing cluster.
        ray.init(address=address, log_to_driver=False)
    # Ray places the tasks (one CPU each) on the cluster's nodes; every node must see ``out``
    # (a shared file system) for the results to land in one folder. Ray ends a driver's
    # tasks when the driver dies.
    remote = ray.remote(num_cpus=1, max_retries=2)(run_task)
    refs = {remote.remote(task, str(out)): task for task in todo}
    pending_refs = list(refs)
    failures: list[tuple[Task, BaseException]] = []
    try:
        while pending_refs:
            done, pending_refs = ray.wait(pending_refs, num_returns=1)
            try:
                ray.get(done[0])
            except Exception as exc:
                failures.append((refs[done[0]], exc))
            if bar is not None:
                bar.update()
    except KeyboardInterrupt:
        for ref in pending_refs:  # stop the queue and the running tasks, not just our wait
            ray.cancel(ref, force=True)
        raise
    _raise_failures(failures)
