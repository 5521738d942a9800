"""The sessions one ``cryobench play`` server holds, and the policy that keeps a flood from exhausting them.

Policy (why it cannot be exhausted):

- Every unfinished session has a journal on disk, rewritten after every change, so taking it
  out of memory loses nothing: a later request for it rebuilds it from the journal
  (:func:`cryobench.play.journal.restore_session`, milliseconds). Creating a session therefore
  never has to be refused: when ``max_live_sessions`` are in memory, the least recently used
  one that no request is using leaves memory. A flood of creations only churns memory; the
  player whose session it pushed out is served from the journal at the next click.
- Sessions idle for ``idle_minutes`` leave memory the same way (their journal stays).
- A finished session no longer counts: its results file is written and its journal removed;
  the last ``finished_kept`` stay readable (end dialog, download), older ones are dropped.
- Journals are read only when their session is asked for, never at start-up, so a restarted
  server begins empty: journals left by a flood cannot fill it.

Per-client limits would not help: every client of a server on the loopback address is
127.0.0.1, the real player and a flooding page alike.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.files import utc_file_stamp
from cryobench.play.journal import SESSION_ID_PATTERN, read_journal, restore_session
from cryobench.play.replay import replay_session
from cryobench.play.session import PlaySession, SessionConflict, check_player_name, public_layout
from cryobench.results import env_record


@dataclass
class PlayConfig:
    """What ``cryobench play`` was started with.

    Attributes:
        env_name: the environment's short name or id (as ``cryobench run --env``).
        env_kwargs: the ``gym.make`` arguments, recorded in results files.
        seed: the episode seed (sets the starting hole, as ``cryobench run --seed``).
        results_dir: where finished sessions' results files are written.
        replay: a results document to show instead of playing.
        replay_episode: which of its episodes.
        replay_source: the document's file, named in errors.
        host, port: the address the server listens on; requests must name it (``Host``) and
            come from its own page (``Origin``). Set to the bound port by ``serve``.
        max_live_sessions: unfinished sessions kept in memory (each holds an environment's state).
        idle_minutes: an unfinished session untouched this long leaves memory (its journal stays).
        finished_kept: finished sessions kept readable in memory for their end dialog.
    """

    env_name: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    results_dir: Path = Path("cryobench-results")
    replay: dict[str, Any] | None = None
    replay_episode: int = 0
    replay_source: str = "results file"
    host: str = "127.0.0.1"
    port: int = 8765
    max_live_sessions: int = 64
    idle_minutes: float = 30.0
    finished_kept: int = 64

    def __post_init__(self) -> None:
        self.results_dir = Path(self.results_dir)


class UnknownSession(Exception):
    """A well-formed session id the server does not hold and cannot resume (HTTP 404)."""


class ServerBusy(Exception):
    """Every session slot is in the middle of a request: try again in a moment (HTTP 503)."""


class SessionStore:
    """The sessions of one server, all sharing one immutable World.

    ``live`` holds unfinished sessions, least recently used first; ``finished`` the last finished
    ones; ``clock`` (seconds, monotonic) is replaceable so tests can age sessions.
    """

    def __init__(self, config: PlayConfig, clock: Callable[[], float] = time.monotonic) -> None:
        from cryobench.registration import make_env

        if config.max_live_sessions < 1 or config.finished_kept < 0 or not config.idle_minutes > 0:
            raise InputError(
                "play settings: max_live_sessions >= 1, finished_kept >= 0 and idle_minutes > 0 expected, got "
                f"{config.max_live_sessions}, {config.finished_kept}, {config.idle_minutes}"
            )
        self.config = config
        self.clock = clock
        self.lock = threading.Lock()
        self.live: OrderedDict[str, PlaySession] = OrderedDict()
        self.finished: OrderedDict[str, PlaySession] = OrderedDict()
        self.last_used: dict[str, float] = {}
        self.users: Counter[str] = Counter()
        self.replay: PlaySession | None = None
        if config.replay is not None:
            self.replay = replay_session(_new_id(), config.replay, config.replay_episode, config.replay_source)
            self.template = self.replay.env
            self.record = self.replay.env_record
        else:
            if config.env_kwargs.get("new_world_each_reset"):
                raise InputError("argument 'new_world_each_reset': a played session is on one fixed world")
            gym_env = make_env(config.env_name, config.env_kwargs)
            self.template = gym_env.unwrapped
            self.record = env_record(gym_env, config.env_kwargs)
        self.layout = public_layout(self.template)

    @property
    def replay_id(self) -> str | None:
        return self.replay.session_id if self.replay is not None else None

    @property
    def journal_dir(self) -> Path:
        """Journals of unfinished sessions: a restarted server with the same settings resumes them on request."""
        return self.config.results_dir / "sessions-in-progress"

    # ---- creating and using ----------------------------------------------------------------------
    def create(self, player: Any) -> PlaySession:
        if self.replay is not None:
            raise SessionConflict("this server shows a replay; start `cryobench play` without --replay to play")
        player = check_player_name(player)
        with self.lock:
            self._forget_idle()
            self._make_room()
            session_id = _new_id()
            safe_player = re.sub(r"[^A-Za-z0-9_.\-]", "_", player)
            env_short = re.sub(r"[^A-Za-z0-9_.\-]", "-", self.config.env_name)
            name = f"human-{safe_player}_{env_short}_seed{self.config.seed}_{_file_stamp()}.json"
            # Each session gets its own environment on the shared World (cheap: no dataset reload).
            env = CryoEMSessionEnv.from_world(self.template.world)
            journal = self.journal_dir / f"{session_id}.json"
            session = PlaySession(
                session_id,
                player,
                env,
                self.record,
                self.config.seed,
                self.config.results_dir / name,
                journal_path=journal,
            )
            session.save_journal()
            self._keep(session)
            return session

    @contextmanager
    def use(self, session_id: str) -> Iterator[PlaySession]:
        """The session ``session_id`` for one request: it stays in memory until the request ends."""
        if not SESSION_ID_PATTERN.match(session_id):
            raise InputError("malformed session id")
        with self.lock:
            self._forget_idle()
            session = self._find(session_id)
            self.users[session_id] += 1
        try:
            yield session
        finally:
            with self.lock:
                self.users[session_id] -= 1
                if self.users[session_id] <= 0:
                    del self.users[session_id]
                self._keep(session)

    # ---- the policy (all called with self.lock held) ----------------------------------------------
    def _find(self, session_id: str) -> PlaySession:
        if self.replay is not None and session_id == self.replay.session_id:
            return self.replay
        for held in (self.live, self.finished):
            if session_id in held:
                return held[session_id]
        if self.replay is None:
            return self._resume(session_id)
        raise UnknownSession(f"unknown session {session_id} (this server shows a replay)")

    def _resume(self, session_id: str) -> PlaySession:
        """An unfinished session that left memory (or a previous server), rebuilt from its journal."""
        path = self.journal_dir / f"{session_id}.json"
        if not path.exists() and not path.is_symlink():
            raise UnknownSession(f"unknown session {session_id} (the server may have been restarted)")
        try:
            journal = read_journal(path)
            seed = journal.get("seed")
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise InputError(f"{path}: 'seed' must be an integer, got {seed!r}")
            same_env = json.dumps(journal.get("env"), sort_keys=True, default=str) == json.dumps(
                self.record, sort_keys=True, default=str
            )
            if not same_env or seed != self.config.seed:
                # A session of another environment or seed: a server started with those resumes it.
                raise UnknownSession(
                    f"session {session_id} was played on another environment or seed; "
                    "start `cryobench play` with those settings to resume it"
                )
            self._make_room()
            env = CryoEMSessionEnv.from_world(self.template.world)
            session = restore_session(journal, env, path, self.config.results_dir)
        except InputError as exc:
            print(f"cryobench play: refusing {exc}", file=sys.stderr)
            raise UnknownSession(f"session {session_id} cannot be resumed: {exc}") from None
        self._keep(session)
        return session

    def _keep(self, session: PlaySession) -> None:
        """Hold ``session`` as most recently used: with the live ones, or the finished ones once over."""
        session_id = session.session_id
        if session is self.replay:
            return
        if session.is_over:
            self.live.pop(session_id, None)
            self.last_used.pop(session_id, None)
            self.finished[session_id] = session
            self.finished.move_to_end(session_id)
            while len(self.finished) > self.config.finished_kept:
                self.finished.popitem(last=False)  # its results file holds it
            return
        if session_id in self.finished:  # over sessions never come back to life; keep it where it is
            return
        self.live[session_id] = session
        self.live.move_to_end(session_id)
        self.last_used[session_id] = self.clock()

    def _forget(self, session_id: str) -> None:
        # Its journal, rewritten after every change, holds everything: nothing is lost.
        del self.live[session_id]
        del self.last_used[session_id]

    def _forget_idle(self) -> None:
        deadline = self.clock() - 60.0 * self.config.idle_minutes
        for session_id in [s for s in self.live if self.last_used[s] < deadline and not self.users[s]]:
            self._forget(session_id)

    def _make_room(self) -> None:
        """Free a slot for one more session: the least recently used one no request is using leaves memory."""
        while len(self.live) >= self.config.max_live_sessions:
            idle = next((s for s in self.live if not self.users[s]), None)
            if idle is None:
                raise ServerBusy(
                    f"all {self.config.max_live_sessions} sessions are in the middle of a request; try again"
                )
            self._forget(idle)


def _new_id() -> str:
    return secrets.token_urlsafe(16)


def _file_stamp() -> str:
    return utc_file_stamp() + "-" + secrets.token_hex(2)
