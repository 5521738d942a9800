"""The web server of ``cryobench play``: a small Flask app over :class:`~cryobench.play.session.PlaySession`.

Every session lives on the server, keyed by a random id that the page keeps in its address,
so a reload (or another tab) resumes it. Every request is validated before anything changes:
bad input is a 400, an unknown session a 404, a move the session cannot make now (a hole
already exposed, a session that is over) a 409, always with ``{"error": "..."}`` saying why.
Files are served only from the package's ``static`` folder (Flask's ``send_from_directory``
refuses any path that leaves it).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.files import utc_file_stamp
from cryobench.play.session import (
    PlaySession,
    SessionConflict,
    check_player_name,
    env_record,
    public_layout,
    replay_session,
    restore_session,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Session ids are ``secrets.token_urlsafe(16)``: 22 URL-safe characters.
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{22}$")
#: Sessions kept at once (each holds one environment's state, a few MB).
MAX_SESSIONS = 64
#: Requests carry a hole id or a name: a few hundred bytes at most.
MAX_REQUEST_BYTES = 16 * 1024


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
    """

    env_name: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    results_dir: Path = Path("cryobench-results")
    replay: dict[str, Any] | None = None
    replay_episode: int = 0


class UnknownSession(Exception):
    """A well-formed session id the server does not hold (HTTP 404)."""


class SessionStore:
    """The live sessions of one server, all sharing one immutable World."""

    def __init__(self, config: PlayConfig) -> None:
        from cryobench.registration import make_env

        self.config = config
        self.lock = threading.Lock()
        self.sessions: dict[str, PlaySession] = {}
        self.replay_id: str | None = None
        if config.replay is not None:
            session = replay_session(_new_id(), config.replay, config.replay_episode)
            self.sessions[session.session_id] = session
            self.replay_id = session.session_id
            self.template = session.env
            self.record = session.env_record
        else:
            if config.env_kwargs.get("new_world_each_reset"):
                raise InputError("argument 'new_world_each_reset': a played session is on one fixed world")
            gym_env = make_env(config.env_name, config.env_kwargs)
            self.template = gym_env.unwrapped
            self.record = env_record(gym_env, config.env_kwargs)
            self._restore_unfinished()
        self.layout = public_layout(self.template)

    @property
    def journal_dir(self) -> Path:
        """Journals of unfinished sessions: a restarted server with the same settings picks them up."""
        return self.config.results_dir / "sessions-in-progress"

    def _restore_unfinished(self) -> None:
        same_record = json.dumps(self.record, sort_keys=True, default=str)
        for path in sorted(self.journal_dir.glob("*.json")):
            try:
                journal = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                print(f"cryobench play: skipping {path}: not readable JSON ({exc})", file=sys.stderr)
                continue
            if not isinstance(journal, dict):
                print(f"cryobench play: skipping {path}: not a session journal", file=sys.stderr)
                continue
            if (
                json.dumps(journal.get("env"), sort_keys=True, default=str) != same_record
                or journal.get("seed") != self.config.seed
            ):
                continue  # a session of another environment or seed: its own server will take it
            if not SESSION_ID_PATTERN.match(str(journal.get("session", ""))) or len(self.sessions) >= MAX_SESSIONS:
                print(f"cryobench play: skipping {path}: malformed session id or too many sessions", file=sys.stderr)
                continue
            try:
                session = restore_session(journal, CryoEMSessionEnv.from_world(self.template.world), path)
            except InputError as exc:
                print(f"cryobench play: skipping {exc}", file=sys.stderr)
                continue
            self.sessions[session.session_id] = session

    def create(self, player: str) -> PlaySession:
        if self.replay_id is not None:
            raise SessionConflict("this server shows a replay; start `cryobench play` without --replay to play")
        player = check_player_name(player)
        with self.lock:
            if len(self.sessions) >= MAX_SESSIONS:
                raise SessionConflict(f"this server already holds {MAX_SESSIONS} sessions; restart it")
            session_id = _new_id()
            stamp = _file_stamp()
            safe_player = re.sub(r"[^A-Za-z0-9_.\-]", "_", player)
            env_short = self.config.env_name.replace("/", "-")
            path = self.config.results_dir / f"human-{safe_player}_{env_short}_seed{self.config.seed}_{stamp}.json"
            # Each session gets its own environment on the shared World (cheap: no dataset reload).
            env = CryoEMSessionEnv.from_world(self.template.world)
            journal = self.journal_dir / f"{session_id}.json"
            session = PlaySession(session_id, player, env, self.record, self.config.seed, path, journal_path=journal)
            session.save_journal()
            self.sessions[session_id] = session
            return session

    def get(self, session_id: str) -> PlaySession:
        if not SESSION_ID_PATTERN.match(session_id):
            raise InputError("malformed session id")
        session = self.sessions.get(session_id)
        if session is None:
            raise UnknownSession(f"unknown session {session_id} (the server may have been restarted)")
        return session


def _new_id() -> str:
    return secrets.token_urlsafe(16)


def _file_stamp() -> str:
    return utc_file_stamp() + "-" + secrets.token_hex(2)


def _json_body(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's JSON object with exactly the named keys; InputError otherwise."""
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise InputError('the request body must be a JSON object, e.g. {"hole": 12}')
    missing = [key for key in required if key not in body]
    unknown = [key for key in body if key not in required and key not in optional]
    if missing:
        raise InputError(f"the request lacks the field(s) {missing}")
    if unknown:
        raise InputError(f"the request has unknown field(s) {unknown}")
    return body


def _overlay_flag(body: dict[str, Any]) -> bool:
    overlay = body.get("overlay", False)
    if not isinstance(overlay, bool):
        raise InputError(f"'overlay' must be true or false, got {overlay!r}")
    return overlay


def create_app(config: PlayConfig) -> Flask:
    """The Flask application for one ``cryobench play`` server."""
    store = SessionStore(config)
    # static_folder=None: the only file routes are the two below, both confined to STATIC_DIR.
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.json.sort_keys = False  # keep documents in the order they are built (results files read better)
    app.extensions["cryobench_play"] = store

    @app.errorhandler(InputError)
    def bad_request(exc: InputError):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(UnknownSession)
    def not_found(exc: UnknownSession):
        return jsonify(error=str(exc)), 404

    @app.errorhandler(SessionConflict)
    def conflict(exc: SessionConflict):
        return jsonify(error=str(exc)), 409

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=f"{exc.code} {exc.name}: {exc.description}"), exc.code

    @app.after_request
    def security_headers(response):
        # The page loads nothing from elsewhere; say so to the browser too.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def index():
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/static/<path:filename>")
    def static_file(filename: str):
        return send_from_directory(STATIC_DIR, filename)

    @app.get("/api/config")
    def get_config():
        return jsonify(
            mode="replay" if store.replay_id else "play",
            replay_session=store.replay_id,
            env=store.record["id"],
            env_kwargs=store.record["kwargs"],
            grid=store.record["grid"],
            n_holes=store.record["n_holes"],
            seed=config.seed,
            feedback=store.layout["feedback"],
            duration=store.layout["duration"],
            minutes=store.layout["minutes"],
            threshold=store.layout["threshold"],
        )

    @app.get("/api/layout")
    def get_layout():
        return jsonify(store.layout)

    @app.post("/api/sessions")
    def create_session():
        body = _json_body("player")
        session = store.create(body["player"])
        return jsonify(session.snapshot()), 201

    @app.get("/api/sessions/<session_id>")
    def get_session(session_id: str):
        return jsonify(store.get(session_id).snapshot())

    @app.post("/api/sessions/<session_id>/expose")
    def expose(session_id: str):
        session = store.get(session_id)
        body = _json_body("hole", optional=("overlay",))
        return jsonify(session.expose(body["hole"], overlay=_overlay_flag(body)))

    @app.post("/api/sessions/<session_id>/queue")
    def queue(session_id: str):
        session = store.get(session_id)
        body = _json_body("hole", "action")
        if body["action"] == "add":
            return jsonify(session.queue_add(body["hole"]))
        if body["action"] == "remove":
            return jsonify(session.queue_remove(body["hole"]))
        raise InputError(f"'action' must be 'add' or 'remove', got {body['action']!r}")

    @app.post("/api/sessions/<session_id>/collect")
    def collect(session_id: str):
        session = store.get(session_id)
        body = _json_body(optional=("overlay",))
        return jsonify(session.collect_queue(overlay=_overlay_flag(body)))

    @app.post("/api/sessions/<session_id>/finish")
    def finish(session_id: str):
        session = store.get(session_id)
        _json_body()
        return jsonify(session.finish())

    @app.get("/api/sessions/<session_id>/results")
    def results(session_id: str):
        session = store.get(session_id)
        response = jsonify(session.results())
        name = f"{session.display_name.replace(':', '-').replace(' ', '_')}_seed{session.seed}.json"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    return app


def serve(config: PlayConfig, host: str = "127.0.0.1", port: int = 8765, ready=None) -> None:
    """Run the server until interrupted; ``ready(url)`` is called once it listens."""
    import logging

    from werkzeug.serving import make_server

    # One line per request would bury the URL and the errors that matter in the terminal.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(config)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (try another --port)") from None
    url_host = f"[{host}]" if ":" in host else host
    if ready is not None:
        ready(f"http://{url_host}:{server.server_port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
