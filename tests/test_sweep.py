"""Sweeps: the task grid, atomic per-task results, resuming after a SIGKILL or Ctrl-C, checked results,
the folder lock, the checks before any work, workers that die with their parent, the Ray backend."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cryobench import sweep as sweep_module
from cryobench.cli import main
from cryobench.errors import ExitCode, InputError
from cryobench.results import load_results
from cryobench.sweep import (
    LOCK_NAME,
    Task,
    folder_lock,
    grid_tasks,
    pending,
    remove_stale_temporaries,
    result_problem,
    run_sweep,
    run_task,
)


def test_grid_covers_the_cross_product_in_seed_chunks():
    tasks = grid_tasks(["random", "snowball"], ["aldolase", "rnapii"], [None, 0.5], range(5), {"feedback": "none"}, 2)
    assert len(tasks) == 2 * 2 * 2 * 3
    assert len({t.key() for t in tasks}) == len(tasks)
    assert len({t.filename() for t in tasks}) == len(tasks)
    for agent in ("random", "snowball"):
        seeds = sorted(s for t in tasks if t.agent == agent and t.env == "rnapii" and "noise" not in t.env_kwargs
                       for s in t.seeds)  # fmt: skip
        assert seeds == [0, 1, 2, 3, 4]
    assert all(t.env_kwargs["feedback"] == "none" for t in tasks)


def test_task_key_is_stable_and_distinguishes_arguments():
    a = Task("random", "aldolase", {"noise": 0.5}, (0, 1))
    assert a.key() == Task("random", "aldolase", {"noise": 0.5}, (0, 1)).key()
    assert a.key() != Task("random", "aldolase", {"noise": 1.5}, (0, 1)).key()
    assert a.key() != Task("random", "aldolase", {"noise": 0.5}, (0, 2)).key()


def test_results_are_written_atomically_and_reused(tmp_path):
    tasks = grid_tasks(["random"], ["aldolase"], [None], range(2), None, 1)
    (tmp_path / "left-over.json.tmp999999999").write_text("{partial")  # a dead writer's temporary
    paths = run_sweep(tasks, tmp_path, workers=1, progress=False)
    assert not list(tmp_path.glob("*.tmp*"))
    for task, path in zip(tasks, paths, strict=True):
        result = load_results(path)
        assert result["seeds"] == list(task.seeds) and result["task"]["key"] == task.key()
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert pending(tasks, tmp_path) == []
    run_sweep(tasks, tmp_path, workers=1, progress=False)
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # nothing ran twice


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    mine = tmp_path / f"task.json.tmp{os.getpid()}"
    mine.write_text("{")
    remove_stale_temporaries(tmp_path)
    assert mine.exists()


def test_failing_tasks_are_reported_and_the_others_kept(tmp_path, monkeypatch):
    good = Task("random", "aldolase", {}, (0,))
    bad = Task("random", "aldolase", {"noise": 0.5}, (0,))
    evaluate_seeds = sweep_module.evaluate_seeds

    def fails_on_bad(task):  # a failure only running shows (arguments are checked before)
        if task == bad:
            raise RuntimeError("the agent crashed")
        return evaluate_seeds(task)

    monkeypatch.setattr(sweep_module, "evaluate_seeds", fails_on_bad)
    with pytest.raises(InputError, match=r"1 sweep task\(s\) failed.*\n.*RuntimeError: the agent crashed"):
        run_sweep([good, bad], tmp_path, workers=1, progress=False)
    assert pending([good, bad], tmp_path) == [bad]


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_with_nothing_lost_or_duplicated(tmp_path):
    out = tmp_path / "sweep"
    args = ["--agents", "random,snowball", "--envs", "aldolase,rnapii", "--seeds", "0-5", "--seeds-per-task", "1"]
    tasks = grid_tasks(["random", "snowball"], ["aldolase", "rnapii"], [None], range(6), {}, 1)
    command = [sys.executable, "-m", "cryobench.cli", "sweep", *args, "--out", str(out), "--workers", "2", "--quiet"]
    # A session of its own, so the kill takes the workers too (as an OOM killer or a lost node would).
    sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("*.json"))) < 2 and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sweep.poll() is None, "the sweep finished before it could be killed: " + sweep.stderr.read().decode()
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    finished_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert 2 <= len(finished_before) < len(tasks)
    for name in finished_before:  # what was finished is complete, never half-written
        load_results(out / name)

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    results = {p.name: load_results(p) for p in out.glob("*.json")}
    assert sorted(results) == sorted(t.filename() for t in tasks)
    assert not list(out.glob("*.tmp*"))
    assert {name: (out / name).stat().st_mtime_ns for name in finished_before} == finished_before
    for task in tasks:
        assert results[task.filename()]["seeds"] == list(task.seeds)
    # The resumed results are those of an uninterrupted run.
    reference = load_results(run_task(tasks[-1], tmp_path / "reference"))
    assert reference["episodes"] == results[tasks[-1].filename()]["episodes"]


# ---- Ctrl-C, and workers that end with their parent ------------------------------------------
# Two quick tasks (random) finish first; then two slow ones (annealing, ~10 s each on an idle
# machine) are mid-way in the two workers when the signal comes.
SLOW_SWEEP = ["--agents", "random,annealing", "--envs", "aldolase", "--seeds", "0-59", "--seeds-per-task", "30"]
SLOW_TASKS = grid_tasks(["random", "annealing"], ["aldolase"], [None], range(60), {}, 30)


def _start_slow_sweep(out: Path) -> tuple[subprocess.Popen, list[int]]:
    """A ``cryobench sweep`` subprocess with its two quick results written and two workers busy."""
    command = [sys.executable, "-m", "cryobench.cli", "sweep", *SLOW_SWEEP, "--out", str(out), "--workers", "2"]
    # A session of its own: a signal to its process group is what a terminal's Ctrl-C sends.
    # SIGINT at its default: a shell without job control starts `cmd &` with SIGINT ignored, and
    # that disposition is inherited (CI launched in the background made the sweep deaf to Ctrl-C).
    sweep = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 180
    while len(list(out.glob("*.json"))) < 2 and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if sweep.poll() is not None:
        pytest.fail("the sweep ended before the signal: " + sweep.communicate()[1])
    workers = [pid for pid in _children(sweep.pid) if "spawn_main" in _cmdline(pid)]
    assert len(workers) == 2, [_cmdline(pid) for pid in _children(sweep.pid)]
    return sweep, workers


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lingers where PID 1 does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_until_ended(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _running(pid)]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc (Linux)")


@pytest.mark.slow
@needs_proc
@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c-to-the-process-group", "sigint-to-the-parent"])
def test_sigint_stops_a_sweep_within_seconds_keeping_finished_results(tmp_path, to_group):
    out = tmp_path / "sweep"
    sweep, workers = _start_slow_sweep(out)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    start = time.monotonic()
    if to_group:
        os.killpg(sweep.pid, signal.SIGINT)
    else:
        os.kill(sweep.pid, signal.SIGINT)
    try:
        _stdout, stderr = sweep.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(sweep.pid, signal.SIGKILL)
        pytest.fail("the sweep did not stop within 5 s of SIGINT: " + sweep.communicate()[1])
    stopped = time.monotonic() - start
    assert stopped < 5
    assert sweep.returncode == ExitCode.INTERRUPTED == 130
    last = stderr.strip().splitlines()[-1]
    assert last == (
        f"sweep interrupted: 2 of 4 task results are finished and kept in {out}, 2 still to run; "
        "run the same command again to resume (finished results are checked and skipped)"
    ), stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert _wait_until_ended(workers, 5) == []  # the queue does not run on
    # Exactly the quick tasks' results, complete; nothing half-written left behind.
    assert sorted(finished) == sorted(t.filename() for t in SLOW_TASKS if t.agent == "random")
    assert sorted(p.name for p in out.iterdir()) == sorted([*finished, LOCK_NAME])
    for name in finished:
        assert load_results(out / name)["task"]["key"] == name.rpartition("__")[2].removesuffix(".json")
    assert pending(SLOW_TASKS, out) == [t for t in SLOW_TASKS if t.agent == "annealing"]
    assert (out / LOCK_NAME).read_text() == ""  # released: the resume takes it without a notice


@pytest.mark.slow
@needs_proc
def test_a_sigkilled_parent_leaves_no_worker_behind(tmp_path):
    out = tmp_path / "sweep"
    sweep, workers = _start_slow_sweep(out)
    helpers = [pid for pid in _children(sweep.pid) if pid not in workers]  # multiprocessing's resource tracker
    os.kill(sweep.pid, signal.SIGKILL)  # the parent alone: nothing can clean up after it
    sweep.wait()
    assert _wait_until_ended(workers + helpers, 5) == []
    # The killed workers' tasks never finish; a resumed sweep takes the lock and runs them.
    assert sorted(p.name for p in out.glob("*.json")) == sorted(t.filename() for t in SLOW_TASKS if t.agent == "random")


# ---- results checked on resume ----------------------------------------------------------------
def _corruptions(other: Path) -> dict:
    """How a results file can be broken, and the reason a resume gives for running it again."""
    return {
        "zero-byte": (lambda path: path.write_bytes(b""), "an empty file"),
        "truncated": (lambda path: path.write_text(path.read_text()[:-200]), "not valid JSON"),
        "wrong-format": (
            lambda path: path.write_text(path.read_text().replace("cryobench-results/1", "cryobench-results/0")),
            "not a cryobench results file",
        ),
        "another-task": (lambda path: path.write_bytes(other.read_bytes()), "the results of another task"),
        "not-utf8": (lambda path: path.write_bytes(b"\xff\xfe{" + path.read_bytes()), "codec can't decode"),
    }


def test_corrupt_results_are_run_again_on_resume_and_good_ones_kept(tmp_path):
    tasks = grid_tasks(["random"], ["aldolase", "rnapii"], [None], range(3), None, 1)
    paths = run_sweep(tasks, tmp_path, workers=1, progress=False)
    originals = [p.read_bytes() for p in paths]
    corruptions = _corruptions(paths[-1])
    for (name, (corrupt, _reason)), path in zip(corruptions.items(), paths, strict=False):
        corrupt(path)
        assert result_problem(path, tasks[paths.index(path)]) is not None, name
    broken = paths[: len(corruptions)]
    kept = {p: p.stat().st_mtime_ns for p in paths[len(corruptions) :]}
    assert len(kept) == 1

    notices: list[str] = []
    run_sweep(tasks, tmp_path, workers=1, progress=False, notify=notices.append)
    assert len(notices) == len(corruptions)
    for (name, (_corrupt, reason)), path in zip(corruptions.items(), broken, strict=True):
        (notice,) = [n for n in notices if n.startswith(f"running {path.name} again: ")]
        assert reason in notice, (name, notice)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # good results are not run again
    for task, path, original in zip(tasks, paths, originals, strict=True):
        again = load_results(path)
        assert again["task"]["key"] == task.key() and again["seeds"] == list(task.seeds)
        assert again["episodes"] == json.loads(original)["episodes"]  # the re-run gives the same result
    assert pending(tasks, tmp_path) == []


def test_results_with_other_seeds_are_not_taken_as_finished(tmp_path):
    task = Task("random", "aldolase", {}, (0, 1))
    path = run_task(task, tmp_path)
    doc = json.loads(path.read_text())
    doc["episodes"].pop()
    path.write_text(json.dumps(doc))
    assert result_problem(path, task) == "episodes for seeds [0], expected [0, 1]"


def test_results_on_several_worlds_must_cover_every_world_and_seed(tmp_path):
    plain = Task("random", "aldolase", {}, (0, 1))
    doc = json.loads(run_task(plain, tmp_path).read_text())
    task = Task("random", "aldolase", {}, (0, 1), worlds=(5, 6))
    doc["task"]["key"] = task.key()
    doc["episodes"] = [{**row, "world": world} for world in (5, 6) for row in doc["episodes"]]
    path = tmp_path / task.filename()
    path.write_text(json.dumps(doc))
    assert result_problem(path, task) is None
    doc["episodes"].pop()
    path.write_text(json.dumps(doc))
    assert result_problem(path, task) == (
        "episodes for (world, seed) [(5, 0), (5, 1), (6, 0)], expected [(5, 0), (5, 1), (6, 0), (6, 1)]"
    )


# ---- the folder lock --------------------------------------------------------------------------
def test_a_second_sweep_into_a_locked_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    holder_code = (
        "import sys, time; from pathlib import Path; from cryobench.sweep import folder_lock\n"
        "with folder_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        args = ["sweep", "--agents", "random", "--envs", "aldolase", "--seeds", "0-1", "--out", str(out), "--quiet"]
        result = CliRunner().invoke(main, args)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.startswith(f"Error: {out}: another sweep is writing into this folder (pid {holder.pid} on ")
    assert f"host {socket.gethostname()}, since " in result.output and result.output.count("\n") == 1
    assert list(out.glob("*.json")) == []  # no work done
    # The holder was killed: its lock went with it, and the next sweep takes the folder over.
    notices: list[str] = []
    run_sweep([Task("random", "aldolase", {}, (0,))], out, workers=1, progress=False, notify=notices.append)
    assert notices == [
        f"{out}: taking over the lock left by a sweep that has ended (pid {holder.pid} on host "
        + notices[0].partition(" on host ")[2]
    ]
    assert len(list(out.glob("*.json"))) == 1


def test_the_lock_is_per_folder_and_released_after_the_sweep(tmp_path):
    task = Task("random", "aldolase", {}, (0,))
    (tmp_path / "a").mkdir()
    with folder_lock(tmp_path / "a"):
        with pytest.raises(InputError, match=f"another sweep is writing into this folder \\(pid {os.getpid()} on host"):
            run_sweep([task], tmp_path / "a", workers=1, progress=False)
        run_sweep([task], tmp_path / "b", workers=1, progress=False)  # another folder is free
    notices: list[str] = []
    run_sweep([task], tmp_path / "a", workers=1, progress=False, notify=notices.append)
    assert notices == [] and (tmp_path / "a" / LOCK_NAME).read_text() == ""


# ---- checks before any work -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agents", "random,nosuch", "--envs", "aldolase"], "Error: unknown agent 'nosuch'; available: annealing"),
        (["--agents", "random", "--envs", "aldolase,nosuch"], "Error: unknown environment 'nosuch'; expected one of"),
        (["--agents", "random", "--envs", "aldolase", "-e", "noise=-3"], "Error: argument 'noise': -3 is out of range"),
        (
            ["--agents", "random", "--envs", "aldolase", "-e", "colour=red"],
            "Error: unexpected keyword argument 'colour'; expected some of",
        ),
    ],
)
def test_an_unknown_agent_or_environment_fails_before_any_task_runs(tmp_path, monkeypatch, args, message):
    ran: list[Task] = []
    monkeypatch.setattr(sweep_module, "run_task", lambda task, out: ran.append(task))
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", *args, "--seeds", "0-3", "--out", str(out), "--workers", "1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output
    assert ran == [] and not out.exists()


@pytest.mark.slow
def test_ray_backend_on_a_local_instance(tmp_path, monkeypatch):
    # Ray binds to the machine's address unless told it is a single-machine cluster; the test's
    # instance listens on 127.0.0.1 only, without an auth token written to the home folder.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'cryobench[ray]')")
    import cryobench

    # Ray's workers import cryobench from this checkout, whatever their working directory.
    root = str(Path(cryobench.__file__).resolve().parents[1])
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": root}},
    )
    try:
        address = ray.get_runtime_context().gcs_address
        tasks = [Task("random", "aldolase", {}, (0, 1))]
        paths = run_sweep(tasks, tmp_path, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert address.startswith("127.0.0.1:")
    result = json.loads(paths[0].read_text())
    assert result["seeds"] == [0, 1]
    local = load_results(run_task(tasks[0], tmp_path / "local"))
    assert local["episodes"] == result["episodes"]
