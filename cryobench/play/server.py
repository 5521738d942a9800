"""The web server of ``cryobench play``: a small Flask app over :class:`~cryobench.play.store.SessionStore`.

Every session lives on the server, keyed by a random id that the page keeps in its address,
so a reload (or another tab) resumes it. Every request is validated before anything changes:
bad input is a 400, an unknown session a 404, a move the session cannot make now (a hole
already exposed, a session that is over) a 409, always with ``{"error": "..."}`` saying why.
Files are served only from the package's ``static`` folder (Flask's ``send_from_directory``
refuses any path that leaves it).

Only the server's own page may drive it. A page on another web site can send requests to
127.0.0.1 (a ``text/plain`` POST needs no CORS preflight), and by DNS rebinding can even
read the answers, so every request must name this server in its ``Host`` header (403
otherwise), must not come from a foreign ``Origin`` (403), and every POST must be
``application/json`` (415), which a foreign page cannot send without a preflight that the
server never answers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from cryobench.errors import InputError
from cryobench.play.journal import SESSION_ID_PATTERN
from cryobench.play.session import SessionConflict, public_layout
from cryobench.play.store import PlayConfig, ServerBusy, SessionStore, UnknownSession

__all__ = ["SESSION_ID_PATTERN", "PlayConfig", "create_app", "make_play_server", "serve"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Requests carry a hole id or a name: a few hundred bytes at most.
MAX_REQUEST_BYTES = 16 * 1024
#: Names of this machine's loopback address a browser may put in ``Host`` (with the server's port).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class Refused(Exception):
    """A request from somewhere other than the server's own page (HTTP 403) or not JSON (HTTP 415)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` values naming this server: its loopback names and its own address, with its port."""
    names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host and not host.startswith("[") else host}
    hosts = {f"{name.lower()}:{port}" for name in names}
    if port == 80:  # browsers leave http's default port out
        hosts |= {name.lower() for name in names}
    return frozenset(hosts)


def check_request_source(config: PlayConfig) -> None:
    """Refuse a request that does not name this server (DNS rebinding), comes from a foreign page, or
    posts anything but JSON."""
    hosts = allowed_hosts(config.host, config.port)
    host = request.headers.get("Host", "")  # as sent: werkzeug's request.host normalises it
    if host.lower() not in hosts:
        raise Refused(
            f"Host {host!r} is not this server (expected one of {sorted(hosts)}); "
            "open the address cryobench play printed",
            403,
        )
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in {f"http://{h}" for h in hosts}:
        raise Refused(f"requests from the page {origin!r} are refused: only this server's own page may play", 403)
    if request.method == "POST" and request.mimetype != "application/json":
        raise Refused(
            f"the request body must be JSON sent as Content-Type: application/json, got {request.mimetype!r}", 415
        )


def _json_body(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's JSON object with exactly the named keys; InputError otherwise."""
    body = request.get_json(silent=True)
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
    """The Flask application for one ``cryobench play`` server (answering at ``config.host:config.port``)."""
    store = SessionStore(config)
    # static_folder=None: the only file routes are the two below, both confined to STATIC_DIR.
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.json.sort_keys = False  # keep documents in the order they are built (results files read better)
    app.extensions["cryobench_play"] = store
    _name_server(app, config)

    @app.errorhandler(InputError)
    def bad_request(exc: InputError):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(UnknownSession)
    def not_found(exc: UnknownSession):
        return jsonify(error=str(exc)), 404

    @app.errorhandler(SessionConflict)
    def conflict(exc: SessionConflict):
        return jsonify(error=str(exc)), 409

    @app.errorhandler(ServerBusy)
    def busy(exc: ServerBusy):
        return jsonify(error=str(exc)), 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=f"{exc.code} {exc.name}: {exc.description}"), exc.code

    @app.before_request
    def only_our_own_page():
        check_request_source(config)

    @app.after_request
    def security_headers(response):
        # The page loads nothing from elsewhere, and no other page may frame it; say so to the browser too.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
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
        with store.use(session_id) as session:
            return jsonify(session.snapshot())

    @app.post("/api/sessions/<session_id>/expose")
    def expose(session_id: str):
        with store.use(session_id) as session:
            body = _json_body("hole", optional=("overlay",))
            return jsonify(session.expose(body["hole"], overlay=_overlay_flag(body)))

    @app.post("/api/sessions/<session_id>/image-square")
    def image_square(session_id: str):
        with store.use(session_id) as session:
            body = _json_body("square")
            return jsonify(session.image_square(body["square"]))

    @app.get("/api/sessions/<session_id>/layout")
    def session_layout(session_id: str):
        """Staged sessions: what is known now (a new layout after each square imaged)."""
        with store.use(session_id) as session:
            return jsonify(public_layout(session.env))

    @app.post("/api/sessions/<session_id>/queue")
    def queue(session_id: str):
        with store.use(session_id) as session:
            body = _json_body("hole", "action")
            if body["action"] == "add":
                return jsonify(session.queue_add(body["hole"]))
            if body["action"] == "remove":
                return jsonify(session.queue_remove(body["hole"]))
            raise InputError(f"'action' must be 'add' or 'remove', got {body['action']!r}")

    @app.post("/api/sessions/<session_id>/collect")
    def collect(session_id: str):
        with store.use(session_id) as session:
            body = _json_body(optional=("overlay",))
            return jsonify(session.collect_queue(overlay=_overlay_flag(body)))

    @app.post("/api/sessions/<session_id>/finish")
    def finish(session_id: str):
        with store.use(session_id) as session:
            _json_body()
            return jsonify(session.finish())

    @app.get("/api/sessions/<session_id>/results")
    def results(session_id: str):
        with store.use(session_id) as session:
            response = jsonify(session.results())
            # The name comes from a player name or a replayed file's agent name: keep it a plain file name.
            name = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{session.display_name}_seed{session.seed}")[:120]
            response.headers["Content-Disposition"] = f'attachment; filename="{name}.json"'
            return response

    return app


def _name_server(app: Flask, config: PlayConfig) -> None:
    """Record the address the server answers at (Flask's test client sends it as ``Host`` too)."""
    host = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    app.config["SERVER_NAME"] = f"{host}:{config.port}"


def make_play_server(config: PlayConfig, host: str = "127.0.0.1", port: int = 8765):
    """A werkzeug server (threaded) for ``config`` listening on ``host:port`` (0: a free port), not yet serving."""
    from werkzeug.serving import make_server

    config.host, config.port = host, port
    app = create_app(config)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (try another --port)") from None
    config.port = server.server_port  # the port actually bound: requests must name it
    _name_server(app, config)
    return server


def serve(config: PlayConfig, host: str = "127.0.0.1", port: int = 8765, ready=None) -> None:
    """Run the server until interrupted; ``ready(url)`` is called once it listens."""
    import logging

    # One line per request would bury the URL and the errors that matter in the terminal.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_play_server(config, host, port)
    url_host = f"[{host}]" if ":" in host else host
    if ready is not None:
        ready(f"http://{url_host}:{server.server_port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
