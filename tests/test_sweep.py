"""Sweeps: the task grid, atomic per-task results, resuming after a SIGKILL, the Ray backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryobench.errors import InputError
from cryobench.results import load_results
from cryobench.sweep import Task, grid_tasks, pending, remove_stale_temporaries, run_sweep, run_task


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


def test_failing_tasks_are_reported_and_the_others_kept(tmp_path):
    good = Task("random", "aldolase", {}, (0,))
    bad = Task("random", "aldolase", {"noise": -3.0}, (0,))
    with pytest.raises(InputError, match="1 sweep task"):
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
