"""Writing files safely and stamping them with the time: one home for both.

:func:`write_atomic` is how every results file, submission, journal and checkpoint reaches the
disk: a reader (or a resumed sweep) sees either the old file or the new one, complete, never a
half-written one, even when the machine loses power right after the call returns.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

try:  # POSIX: a writer holds a lock on its temporary file, so a cleaner can tell a dead writer's leftovers
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted, which tells the same
    fcntl = None

# One writer at a time per process: two threads writing the same target would share its
# temporary file (named by the process id, see write_atomic).
_write_lock = threading.Lock()


def write_atomic(path: str | Path, content: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to a binary file) to ``path`` atomically.

    The data goes to ``<name>.tmp<pid>`` in the same folder, is flushed and fsynced, then renamed
    over ``path`` (``os.replace``, atomic on POSIX and Windows), and the folder is fsynced so the
    rename itself survives a crash. On POSIX the writer holds a lock on the temporary file until
    the rename, which is how :func:`remove_stale_temporaries` knows its writer died. Missing parent
    folders are created. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with _write_lock:
        file = _open_locked(tmp)
        try:
            with file:
                if isinstance(content, str):
                    file.write(content.encode())
                elif isinstance(content, bytes):
                    file.write(content)
                else:
                    content(file)
                file.flush()
                os.fsync(file.fileno())
                if fcntl is None:
                    file.close()  # Windows renames only closed files
                os.replace(tmp, path)  # POSIX: still locked, so no cleaner takes it for a dead writer's
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
    return path


def _open_locked(tmp: Path) -> BinaryIO:
    """``tmp`` opened for writing and locked; opened again if a cleaner removed it before the lock."""
    while True:
        file = open(tmp, "wb")  # returned open: the caller closes it after the rename
        if fcntl is None:
            return file
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        if _names(file.fileno(), tmp):
            return file
        file.close()


def _names(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the open file ``fd`` (not removed, not replaced)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)


def remove_stale_temporaries(folder: str | Path, pattern: str = "*.tmp*", wait_seconds: float = 10.0) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writer died mid-write; return them.

    A writer that is alive holds its temporary file's lock (POSIX) or has it open (Windows):
    such files are left alone (after waiting up to ``wait_seconds`` for the writer to finish),
    as are this process's own. Process ids are not trusted for the rest: a killed writer can
    linger as a zombie and a dead one's id can be reused.
    """
    removed = []
    for tmp in sorted(Path(folder).glob(pattern)):
        if tmp.name.rpartition(".tmp")[2] == str(os.getpid()):
            continue
        if fcntl is None:
            try:
                tmp.unlink()
            except (PermissionError, FileNotFoundError):  # open by a live writer, or renamed meanwhile
                continue
            removed.append(tmp)
            continue
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        try:
            if _lock_within(fd, wait_seconds) and _names(fd, tmp):
                tmp.unlink()
                removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def _lock_within(fd: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


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


def read_json(path: str | Path, what: str, finite: bool = False) -> Any:
    """A JSON file's content; every failure one InputError naming the file (``what``: e.g. "results file").

    ``finite`` refuses NaN and Infinity, which Python's json accepts but no cryobench document holds.
    """
    from cryobench.errors import InputError

    path = Path(path)

    def refuse_non_finite(token: str) -> None:
        raise InputError(f"{path}: holds the non-finite number {token}; every number must be finite")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_non_finite if finite else None)
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # thousands of nested brackets: no cryobench document is a tenth as deep
        raise InputError(f"{path}: JSON nested too deeply, not a {what}") from None
    except OSError as exc:  # no permission, a looping symbolic link, ...
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror or type(exc).__name__}") from None
