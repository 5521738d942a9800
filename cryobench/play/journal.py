"""Reading the journal of an unfinished play session back, trusting nothing in it.

A journal (``RESULTS_DIR/sessions-in-progress/SESSION.json``, written by
:meth:`cryobench.play.session.PlaySession.save_journal`) is a file on disk that anyone with
access to the folder may have edited, so every field is checked for its type and range
before the session is rebuilt, and the results file it names must lie directly in the
server's results folder: a journal can never make the server write anywhere else. A bad
journal is refused with one line naming the file and the field.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.play.session import (
    JOURNAL_FORMAT,
    PlaySession,
    SessionConflict,
    check_player_name,
)

#: Session ids are ``secrets.token_urlsafe(16)``: 22 URL-safe characters.
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{22}$")
#: Results files of played sessions: ``human-PLAYER_ENV_seedN_STAMP.json`` (see ``SessionStore.create``).
RESULTS_NAME_PATTERN = re.compile(r"^human-[A-Za-z0-9_.\-]+\.json$")
#: A journal lists at most every hole of a grid once: a few hundred kB for the largest grids.
MAX_JOURNAL_BYTES = 4 * 1024 * 1024


def contained_results_path(value: Any, results_dir: Path, where: str) -> Path:
    """The results file a journal names, refused unless it lies directly in ``results_dir``.

    Journals written since this check store the bare file name; older ones a path, accepted
    only when it resolves (symlinks followed) to a file of the results folder itself.
    """
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: 'results_path' must be a file name, got {value!r}")
    given = Path(value)
    path = given if given.is_absolute() or len(given.parts) > 1 else results_dir / given
    if path.resolve().parent != results_dir.resolve() or not RESULTS_NAME_PATTERN.match(path.name):
        raise InputError(
            f"{where}: 'results_path' {value!r} is not a human-*.json file in the results folder {results_dir}"
        )
    return results_dir / path.name


def read_journal(path: Path) -> dict[str, Any]:
    """The JSON object of a journal file; InputError (naming the file) when it is not one."""
    try:
        if path.is_symlink() or not path.is_file():
            raise InputError(f"{path}: not a regular file")
        if path.stat().st_size > MAX_JOURNAL_BYTES:
            raise InputError(f"{path}: larger than {MAX_JOURNAL_BYTES} bytes, not a session journal")
        journal = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: not a session journal (JSON nested too deeply)") from None
    if not isinstance(journal, dict) or journal.get("format") != JOURNAL_FORMAT:
        raise InputError(f"{path}: not a cryobench play journal (expected format {JOURNAL_FORMAT!r})")
    return journal


def _field(journal: dict[str, Any], key: str, types: type | tuple[type, ...], what: str, where: Path) -> Any:
    if key not in journal:
        raise InputError(f"{where}: the journal lacks the field {key!r}")
    value = journal[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InputError(f"{where}: {key!r} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise InputError(f"{where}: {key!r} must be {what}, got {value!r}")
    return value


def _int_list(journal: dict[str, Any], key: str, where: Path) -> list[int]:
    values = _field(journal, key, list, "a list of hole ids", where)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: {key!r} must list integer hole ids, got {value!r}")
    return values


def _squares_imaged(journal: dict[str, Any], where: Path, exposures: int) -> list[tuple[int, int]]:
    """A staged journal's squares imaged: [exposures made before, square] pairs, in order."""
    pairs = _field(journal, "squares_imaged", list, "a list of [exposures before, square] pairs", where)
    out = []
    for pair in pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
            or not 0 <= pair[0] <= exposures
            or (out and pair[0] < out[-1][0])
        ):
            raise InputError(
                f"{where}: 'squares_imaged' must hold [exposures before, square] pairs in order, got {pair!r}"
            )
        out.append((pair[0], pair[1]))
    return out


def restore_session(
    journal: dict[str, Any], env: CryoEMSessionEnv, journal_path: Path, results_dir: Path
) -> PlaySession:
    """An unfinished session rebuilt from its journal on ``env`` (the server's world): the same start,
    the same exposures replayed through the simulator in order, the same queue.

    Every field is checked first (InputError naming ``journal_path`` and the field); the session id
    must be the file's name and the results file must lie in ``results_dir``.
    """
    where = journal_path
    session_id = _field(journal, "session", str, "a session id", where)
    if not SESSION_ID_PATTERN.match(session_id) or journal_path.name != f"{session_id}.json":
        raise InputError(f"{where}: 'session' {session_id!r} is not this journal's session id ({journal_path.stem})")
    player = _field(journal, "player", str, "a player name", where)
    try:
        check_player_name(player)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    seed = _field(journal, "seed", int, "an integer", where)
    env_record = _field(journal, "env", dict, "an object", where)
    results_path = contained_results_path(journal.get("results_path"), results_dir, str(where))
    started = _field(journal, "started", str, "a time stamp", where)
    seconds = _field(journal, "seconds_played", (int, float), "a number of seconds", where)
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"{where}: 'seconds_played' must be a number of seconds >= 0, got {seconds!r}")
    exposures = _int_list(journal, "exposures", where)
    queue = _int_list(journal, "queue", where)
    overlays = _field(journal, "overlay_per_exposure", list, "a list of true/false", where)
    if len(overlays) != len(exposures) or not all(isinstance(flag, bool) for flag in overlays):
        raise InputError(f"{where}: 'overlay_per_exposure' must hold one true/false per exposure")
    # Rebuilt without its files: a journal whose exposures end the session must not write results.
    session = PlaySession(session_id, player, env, env_record, seed, None)
    try:
        if queue and session.world.feedback.mode != "queue":
            raise SessionConflict(f"a queue in {session.world.feedback.mode} mode")
        squares = _squares_imaged(journal, where, len(exposures)) if session.world.staged else []
        for step, hole in enumerate(exposures, start=1):
            while squares and squares[0][0] < step:  # the squares imaged before this exposure
                session._image_checked(session._check_square(squares.pop(0)[1]))
            session._check_hole(hole)
            session._expose_checked([hole], overlays[step - 1])
            if session.is_over:
                raise SessionConflict(f"the session is over after exposure {step} of {len(exposures)}")
        for _, square in squares:  # imaged after the last exposure
            session._image_checked(session._check_square(square))
        for hole in queue:
            if session._check_hole(hole) in session.queue:
                raise SessionConflict(f"hole {hole} is queued twice")
            session.queue.append(hole)
    except (InputError, SessionConflict) as exc:
        raise InputError(f"{where}: cannot rebuild the session ({exc})") from None
    session.results_path, session.journal_path = results_path, journal_path
    session.started = started
    session._wall_start -= float(seconds)
    return session
