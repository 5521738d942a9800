"""The one atomic writer and the one UTC clock every module uses."""

from __future__ import annotations

import datetime as _dt
import os
import stat

import pytest

from cryobench import files


def test_write_atomic_writes_text_bytes_or_a_writer_function(tmp_path):
    target = tmp_path / "new" / "folder" / "doc.json"  # missing folders are created
    assert files.write_atomic(target, "é\n") == target
    assert target.read_bytes() == "é\n".encode()
    files.write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    files.write_atomic(target, lambda file: file.write(b"from a writer"))
    assert target.read_bytes() == b"from a writer"
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "doc.json"
    target.write_text("old")

    def broken(file):
        file.write(b"half of the ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.write_atomic(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_write_atomic_syncs_the_data_and_then_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    files.write_atomic(tmp_path / "doc.json", "data")
    assert synced == ["file", "folder"]


def test_temporary_name_carries_the_process_id_for_the_sweeps_cleanup(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(os.path.basename(src)), real_replace(src, dst)))
    files.write_atomic(tmp_path / "task.json", "{}")
    assert seen == [f"task.json.tmp{os.getpid()}"]


def test_utc_times_are_utc_and_formatted_once():
    now = files.utc_now()
    assert now.utcoffset() == _dt.timedelta(0)
    stamp = _dt.datetime.fromisoformat(files.utc_timestamp())
    assert stamp.utcoffset() == _dt.timedelta(0) and stamp.microsecond == 0
    assert abs((stamp - now).total_seconds()) < 5
    file_stamp = _dt.datetime.strptime(files.utc_file_stamp(), "%Y%m%d-%H%M%S").replace(tzinfo=_dt.UTC)
    assert abs((file_stamp - now).total_seconds()) < 5


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_a_live_writers_temporary_stays_and_a_killed_writers_goes(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "task.json"
    # A writer that stops half-way through its file, as a sweep worker killed mid-write would.
    script = (
        "import sys, time\nfrom cryobench.files import write_atomic\n"
        "def stall(file):\n    file.write(b'{half'); file.flush(); print('ready', flush=True); time.sleep(120)\n"
        f"write_atomic({str(target)!r}, stall)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        tmp = tmp_path / f"task.json.tmp{writer.pid}"
        assert files.remove_stale_temporaries(tmp_path, wait_seconds=0.2) == []  # alive: left alone
        assert tmp.read_bytes() == b"{half"
        writer.send_signal(signal.SIGKILL)
        # Not reaped yet (a zombie whose id still answers): the lock, not the id, says it is dead.
        assert files.remove_stale_temporaries(tmp_path, wait_seconds=10) == [tmp]
    finally:
        writer.kill()
        writer.wait()
    assert list(tmp_path.iterdir()) == []
