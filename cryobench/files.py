"""Writing files safely and stamping them with the time: one home for both.

:func:`write_atomic` is how every results file, submission, journal and checkpoint reaches the
disk: a reader (or a resumed sweep) sees either the old file or the new one, complete, never a
half-written one, even when the machine loses power right after the call returns.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# One writer at a time per process: two threads writing the same target would share its
# temporary file (named by the process id, see write_atomic).
_write_lock = threading.Lock()


def write_atomic(path: str | Path, content: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to a binary file) to ``path`` atomically.

    The data goes to ``<name>.tmp<pid>`` in the same folder, is flushed and fsynced, then renamed
    over ``path`` (``os.replace``, atomic on POSIX and Windows), and the folder is fsynced so the
    rename itself survives a crash. The temporary name carries the writer's process id so that
    :func:`cryobench.sweep.remove_stale_temporaries` can tell a dead writer's leftovers from a
    live one's. Missing parent folders are created. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with _write_lock:
        try:
            with open(tmp, "wb") as file:
                if isinstance(content, str):
                    file.write(content.encode())
                elif isinstance(content, bytes):
                    file.write(content)
                else:
                    content(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the data itself is already synced
        pass
    finally:
        os.close(fd)


def utc_now() -> _dt.datetime:
    """The current time, timezone-aware, in UTC (all times cryobench records are UTC)."""
    return _dt.datetime.now(_dt.UTC)


def utc_timestamp() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. ``2026-12-03T09:10:00+00:00``."""
    return utc_now().isoformat(timespec="seconds")


def utc_file_stamp() -> str:
    """The current UTC time for a file name, e.g. ``20261203-091000`` (sorts by time)."""
    return utc_now().strftime("%Y%m%d-%H%M%S")
