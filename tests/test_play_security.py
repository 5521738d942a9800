"""``cryobench play`` against a hostile web page and hostile files: only the server's own page may drive it,
a flood of sessions cannot deny a real player, crafted journals and replay files are refused with one line,
and player names are never rendered as markup."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cryobench.cli import main
from cryobench.errors import ExitCode
from cryobench.play import PlayConfig, create_app, make_play_server
from cryobench.play.server import STATIC_DIR

SEED = 4
INSPECTION = {"split": "all"}
QUEUE = {"split": "all", "feedback": "queue:3"}
PORT = 8765  # PlayConfig's default: Flask's test client sends Host 127.0.0.1:8765 (the app's SERVER_NAME)


def make_client(results_dir: Path, kwargs: dict | None = None, **settings):
    config = PlayConfig("aldolaseau", dict(kwargs or INSPECTION), seed=SEED, results_dir=results_dir, **settings)
    app = create_app(config)
    return app.test_client(), app.extensions["cryobench_play"]


@pytest.fixture()
def served(tmp_path):
    """A test client and its session store, on a fresh results folder."""
    return make_client(tmp_path)


def start(client, player: str = "Real Player") -> dict:
    response = client.post("/api/sessions", json={"player": player})
    assert response.status_code == 201, response.json
    return response.json


def holes_near_start(client, snapshot: dict, count: int) -> list[int]:
    """Unvisited holes in the patch where the session starts."""
    patch = np.asarray(client.get("/api/layout").json["patch"])
    holes = np.flatnonzero(patch == patch[snapshot["start_hole"]])
    return [int(h) for h in holes if h != snapshot["start_hole"]][:count]


def expose(client, sid: str, hole: int) -> dict:
    response = client.post(f"/api/sessions/{sid}/expose", json={"hole": hole})
    assert response.status_code == 200, response.json
    return response.json


def assert_real_player_served(client, store) -> None:
    """A new player can start a session and expose a hole, and the clock moves by the move's minutes."""
    session = start(client, "Still Served")
    hole = holes_near_start(client, session, 1)[0]
    snapshot = expose(client, session["session"], hole)
    assert snapshot["log"][0]["hole"] == hole and snapshot["elapsed"] == store.layout["minutes"][0]


# ---- only the server's own page may drive it ---------------------------------------------------------------
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://evil.example:8765",
        "http://127.0.0.1:9999",  # another local server's page
        "https://127.0.0.1:8765",
        "null",  # sandboxed frames, file:// pages
        "http://127.0.0.1:8765.evil.example",
    ],
)
def test_a_foreign_origin_can_neither_create_nor_move(served, origin):
    client, store = served
    session = start(client)  # the real player's, from the page itself (no Origin: same-origin GET/POST)
    sid = session["session"]
    hole = holes_near_start(client, session, 1)[0]
    foreign = {"Origin": origin}
    for method, path, body in [
        ("post", "/api/sessions", {"player": "Intruder"}),
        ("post", f"/api/sessions/{sid}/expose", {"hole": hole}),
        ("post", f"/api/sessions/{sid}/finish", {}),
        ("get", f"/api/sessions/{sid}", None),
        ("get", f"/api/sessions/{sid}/results", None),
    ]:
        response = getattr(client, method)(path, json=body, headers=foreign)
        assert response.status_code == 403, (path, response.json)
        assert response.json["error"] == (
            f"requests from the page {origin!r} are refused: only this server's own page may play"
        )
    assert list(store.live) == [sid]
    assert client.get(f"/api/sessions/{sid}").json == session  # nothing moved
    assert sorted(p.stem for p in store.journal_dir.iterdir()) == [sid]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"])
def test_the_servers_own_page_is_served_under_each_loopback_name(served, origin):
    client, store = served
    response = client.post("/api/sessions", json={"player": "Own Page"}, headers={"Origin": origin})
    assert response.status_code == 201
    assert list(store.live) == [response.json["session"]]


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:8765",  # DNS rebinding: evil.example resolved to 127.0.0.1 after the page loaded
        "evil.example",
        "127.0.0.1:9999",
        "127.0.0.1",
        "127.0.0.1:8765:80",
        "127.0.0.1.evil.example:8765",
        "",
    ],
)
def test_a_request_that_does_not_name_this_server_is_refused(served, host):
    client, store = served
    for method, path in [("get", "/"), ("get", "/api/config"), ("get", "/api/layout"), ("post", "/api/sessions")]:
        response = getattr(client, method)(path, json={"player": "Rebound"}, headers={"Host": host})
        assert response.status_code == 403, (host, path)
        assert response.json["error"].startswith(f"Host {host!r} is not this server (expected one of [")
    assert store.live == {} and not store.journal_dir.exists()
    for own in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LocalHost:8765"):
        assert client.get("/api/config", headers={"Host": own}).status_code == 200, own


def test_a_configured_host_and_the_bound_port_are_the_ones_accepted(tmp_path):
    client, _store = make_client(tmp_path, host="192.0.2.7", port=9100)
    assert client.get("/api/config").status_code == 200  # the test client names the configured address
    for own in ("192.0.2.7:9100", "127.0.0.1:9100", "localhost:9100", "[::1]:9100"):
        assert client.get("/api/config", headers={"Host": own}).status_code == 200, own
    assert client.get("/api/config", headers={"Host": "127.0.0.1:8765"}).status_code == 403
    ipv6, _ = make_client(tmp_path, host="::1", port=9101)
    assert ipv6.get("/api/config", headers={"Host": "[::1]:9101"}).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None]
)
def test_a_post_that_is_not_json_is_refused(served, content_type):
    """A foreign page can POST text/plain without a CORS preflight; the server accepts only application/json."""
    client, store = served
    session = start(client)
    sid = session["session"]
    hole = holes_near_start(client, session, 1)[0]
    for path, body in [("/api/sessions", {"player": "Plain"}), (f"/api/sessions/{sid}/expose", {"hole": hole})]:
        response = client.post(path, data=json.dumps(body), content_type=content_type)
        assert response.status_code == 415, (path, response.json)
        assert response.json["error"] == (
            "the request body must be JSON sent as Content-Type: application/json, "
            f"got {(content_type or '').split(';')[0]!r}"
        )
    assert list(store.live) == [sid] and client.get(f"/api/sessions/{sid}").json == session


def test_the_page_may_not_be_framed_by_another_site(served):
    client, _store = served
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


# ---- a flood of sessions cannot deny a real player -------------------------------------------------------
def test_a_flood_of_creations_does_not_deny_a_real_player(tmp_path):
    client, store = make_client(tmp_path, max_live_sessions=8)
    mine = start(client, "Real Player")
    sid = mine["session"]
    holes = holes_near_start(client, mine, 3)
    before = expose(client, sid, holes[0])
    flood = [start(client, f"Flood {i}")["session"] for i in range(62)]
    # Memory holds at most the cap; every session keeps its journal.
    assert len(store.live) == 8 and list(store.live) == flood[-8:]
    assert len(list(store.journal_dir.glob("*.json"))) == 63
    # The real player's session left memory, not the game: the next request resumes it from its journal.
    assert client.get(f"/api/sessions/{sid}").json == before
    after = expose(client, sid, holes[1])
    assert [entry["hole"] for entry in after["log"]] == holes[:2]
    assert after["elapsed"] == 2 * store.layout["minutes"][0]
    assert sid in store.live and len(store.live) == 8
    assert_real_player_served(client, store)


def test_the_default_cap_survives_62_rapid_creations(served):
    """The issue's case: 62 creations once filled a 64-session limit (and then 2 more were refused)."""
    client, store = served
    mine = start(client)
    for i in range(70):
        start(client, f"Flood {i}")
    assert len(store.live) == store.config.max_live_sessions == 64
    assert expose(client, mine["session"], holes_near_start(client, mine, 1)[0])["exposures"] == 1


def test_finished_sessions_free_their_slot_and_stay_readable(tmp_path):
    client, store = make_client(tmp_path, max_live_sessions=2, finished_kept=3)
    done = []
    for i in range(5):
        sid = start(client, f"Finisher {i}")["session"]
        finished = client.post(f"/api/sessions/{sid}/finish", json={}).json
        assert finished["over"] and Path(finished["results_file"]).is_file()
        done.append(sid)
    assert store.live == {} and list(store.finished) == done[-3:]
    assert not list(store.journal_dir.glob("*.json"))  # a finished session's results file replaces its journal
    assert client.get(f"/api/sessions/{done[-1]}/results").json["human"]["finished_early"] is True
    gone = client.get(f"/api/sessions/{done[0]}")
    assert gone.status_code == 404 and "unknown session" in gone.json["error"]
    a, b = start(client, "Player A")["session"], start(client, "Player B")["session"]
    assert list(store.live) == [a, b]


def test_idle_sessions_leave_memory_but_can_be_resumed(tmp_path):
    client, store = make_client(tmp_path, idle_minutes=10)
    now = [1000.0]
    store.clock = lambda: now[0]
    session = start(client, "Coffee Break")
    sid = session["session"]
    before = expose(client, sid, holes_near_start(client, session, 1)[0])
    now[0] += 9 * 60
    start(client, "Other")  # within 10 minutes: both stay
    assert list(store.live)[0] == sid and len(store.live) == 2
    now[0] += 2 * 60  # the coffee break passes 10 minutes; the other player's session is 2 minutes old
    client.get("/api/config")
    start(client, "Third")
    assert sid not in store.live and len(store.live) == 2
    assert (store.journal_dir / f"{sid}.json").is_file()
    assert client.get(f"/api/sessions/{sid}").json == before
    assert sid in store.live


def test_sessions_in_use_are_not_evicted_and_a_full_house_says_busy(tmp_path):
    client, store = make_client(tmp_path, max_live_sessions=2)
    first, second = start(client, "First")["session"], start(client, "Second")["session"]
    with store.use(first), store.use(second):  # two requests in flight
        busy = client.post("/api/sessions", json={"player": "Third"})
        assert busy.status_code == 503
        assert busy.json["error"] == "all 2 sessions are in the middle of a request; try again"
        assert list(store.live) == [first, second]
    # The requests ended second, then first: the second is now the least recently used.
    third = start(client, "Third")["session"]
    assert list(store.live) == [first, third]


def test_a_restarted_server_starts_empty_after_a_flood(tmp_path):
    client, store = make_client(tmp_path)
    mine = start(client)
    hole = holes_near_start(client, mine, 1)[0]
    before = expose(client, mine["session"], hole)
    for i in range(100):
        start(client, f"Flood {i}")
    assert len(list(store.journal_dir.glob("*.json"))) == 101

    restarted, restarted_store = make_client(tmp_path)
    assert restarted_store.live == {}  # journals are read on request, never at start-up
    assert_real_player_served(restarted, restarted_store)
    assert restarted.get(f"/api/sessions/{mine['session']}").json == before


def test_players_moving_while_a_flood_evicts_them_lose_nothing(tmp_path):
    """Three players move in threads while a fourth thread floods creations past the cap: every move lands."""
    client, store = make_client(tmp_path, max_live_sessions=4)
    players = [start(client, f"Thread {i}") for i in range(3)]
    plans = {p["session"]: holes_near_start(client, p, 5) for p in players}
    failures: list[str] = []

    def play(sid: str) -> None:
        own = client.application.test_client()
        for hole in plans[sid]:
            response = own.post(f"/api/sessions/{sid}/expose", json={"hole": hole})
            if response.status_code != 200:
                failures.append(f"{sid}: {response.status_code} {response.json}")

    def flood() -> None:
        own = client.application.test_client()
        for i in range(30):
            if own.post("/api/sessions", json={"player": f"Flood {i}"}).status_code != 201:
                failures.append(f"flood {i} refused")

    threads = [threading.Thread(target=play, args=(sid,)) for sid in plans] + [threading.Thread(target=flood)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(store.live) <= 4
    for sid, holes in plans.items():
        assert [entry["hole"] for entry in client.get(f"/api/sessions/{sid}").json["log"]] == holes


# ---- journals are trusted for nothing -------------------------------------------------------------------
def crafted(journal: dict, **changes) -> dict:
    return {**journal, **changes}


JOURNAL_CASES = {
    "results_path traversal": (
        lambda j, d: crafted(j, results_path="../../escaped.json"),
        "'results_path' '../../escaped.json' is not a human-*.json file in the results folder",
    ),
    "results_path absolute elsewhere": (
        lambda j, d: crafted(j, results_path=str(d.parent / "outside" / "human-x.json")),
        "is not a human-*.json file in the results folder",
    ),
    "results_path not a results name": (
        lambda j, d: crafted(j, results_path="sessions-in-progress/other.json"),
        "is not a human-*.json file in the results folder",
    ),
    "results_path over a journal": (
        lambda j, d: crafted(j, results_path="run.py"),
        "'results_path' 'run.py' is not a human-*.json file",
    ),
    "results_path missing": (lambda j, d: crafted(j, results_path=None), "'results_path' must be a file name"),
    "results_path a number": (lambda j, d: crafted(j, results_path=7), "'results_path' must be a file name, got 7"),
    "seed as text": (lambda j, d: crafted(j, seed="4"), "'seed' must be an integer, got '4'"),
    "seed a bool": (lambda j, d: crafted(j, seed=True), "'seed' must be an integer, got True"),
    "exposures as text": (lambda j, d: crafted(j, exposures="12"), "'exposures' must be a list of hole ids"),
    "exposure as text": (
        lambda j, d: crafted(j, exposures=["12"], overlay_per_exposure=[False]),
        "'exposures' must list integer hole ids, got '12'",
    ),
    "exposure a bool": (
        lambda j, d: crafted(j, exposures=[True], overlay_per_exposure=[False]),
        "'exposures' must list integer hole ids, got True",
    ),
    "exposure out of range": (
        lambda j, d: crafted(j, exposures=[10**9], overlay_per_exposure=[False]),
        "cannot rebuild the session (unknown hole 1000000000",
    ),
    "exposure twice": (
        lambda j, d: crafted(j, exposures=j["exposures"] * 2, overlay_per_exposure=[False, False]),
        "is already exposed",
    ),
    "overlay flags miscounted": (
        lambda j, d: crafted(j, overlay_per_exposure=[]),
        "'overlay_per_exposure' must hold one true/false per exposure",
    ),
    "overlay flag as text": (
        lambda j, d: crafted(j, overlay_per_exposure=["yes"]),
        "'overlay_per_exposure' must hold one true/false per exposure",
    ),
    "queue in inspection mode": (lambda j, d: crafted(j, queue=[1]), "a queue in inspection mode"),
    "player markup": (lambda j, d: crafted(j, player="<img src=x onerror=alert(1)>"), "player name: expected"),
    "seconds NaN": (lambda j, d: crafted(j, seconds_played=float("nan")), "'seconds_played' must be a number"),
    "seconds negative": (lambda j, d: crafted(j, seconds_played=-5), "'seconds_played' must be a number"),
    "another session's id": (lambda j, d: crafted(j, session="B" * 22), "is not this journal's session id"),
    "missing field": (lambda j, d: {k: v for k, v in j.items() if k != "started"}, "lacks the field 'started'"),
    "wrong format": (lambda j, d: crafted(j, format="cryobench-play-journal/9"), "not a cryobench play journal"),
    "a list": (lambda j, d: [j], "not a cryobench play journal"),
}


@pytest.mark.parametrize("case", list(JOURNAL_CASES))
def test_a_crafted_journal_is_refused_and_the_server_keeps_serving(tmp_path, case, capsys):
    results_dir = tmp_path / "results"
    client, store = make_client(results_dir)
    session = start(client, "Victim")
    sid = session["session"]
    expose(client, sid, holes_near_start(client, session, 1)[0])
    path = store.journal_dir / f"{sid}.json"
    journal = json.loads(path.read_text())
    assert journal["results_path"].startswith("human-Victim_aldolaseau_seed4_")  # a bare name, no folder
    mutate, reason = JOURNAL_CASES[case]
    path.write_text(json.dumps(mutate(journal, results_dir)))

    restarted, restarted_store = make_client(results_dir)  # the journal is read when the session is asked for
    response = restarted.get(f"/api/sessions/{sid}")
    assert response.status_code == 404
    error = response.json["error"]
    assert error.startswith(f"session {sid}") and reason in error and "\n" not in error, error
    assert error.startswith(f"session {sid} cannot be resumed: {path}: ")
    assert capsys.readouterr().err.strip() == f"cryobench play: refusing {error.split(': ', 1)[1]}"
    assert restarted_store.live == {}
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path / "outside").exists()
    assert_real_player_served(restarted, restarted_store)


@pytest.mark.parametrize(
    "content", [b"{not json", b"\xff\xfe{\x00}\x00", b"[" * 100_000, b"", "{\u00e9}".encode("latin-1")]
)
def test_an_unreadable_journal_is_refused_with_one_line(served, content):
    client, store = served
    sid = "C" * 22
    store.journal_dir.mkdir(parents=True)
    (store.journal_dir / f"{sid}.json").write_bytes(content)
    response = client.get(f"/api/sessions/{sid}")
    assert response.status_code == 404
    error = response.json["error"]
    assert (
        error.startswith(f"session {sid} cannot be resumed: {store.journal_dir / sid}.json: not ") and "\n" not in error
    )
    assert_real_player_served(client, store)


def test_a_journal_that_is_a_symlink_or_a_folder_is_refused(served, tmp_path):
    client, store = served
    store.journal_dir.mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text('{"format": "cryobench-play-journal/1"}')
    (store.journal_dir / f"{'L' * 22}.json").symlink_to(secret)
    (store.journal_dir / f"{'D' * 22}.json").mkdir()
    for sid in ("L" * 22, "D" * 22):
        response = client.get(f"/api/sessions/{sid}")
        assert response.status_code == 404 and response.json["error"].endswith(".json: not a regular file")
    assert_real_player_served(client, store)


def test_an_older_journal_with_a_full_path_inside_the_results_folder_still_resumes(tmp_path):
    client, store = make_client(tmp_path)
    session = start(client, "Old Journal")
    sid = session["session"]
    before = expose(client, sid, holes_near_start(client, session, 1)[0])
    path = store.journal_dir / f"{sid}.json"
    journal = json.loads(path.read_text())
    journal["results_path"] = str(tmp_path / journal["results_path"])  # as journals were written before
    path.write_text(json.dumps(journal))
    restarted, _ = make_client(tmp_path)
    assert restarted.get(f"/api/sessions/{sid}").json == before
    finished = restarted.post(f"/api/sessions/{sid}/finish", json={}).json
    assert Path(finished["results_file"]) == tmp_path / Path(journal["results_path"]).name
    assert Path(finished["results_file"]).is_file()


# ---- queue requests need queue mode ------------------------------------------------------------------
def test_queue_requests_are_refused_outside_queue_mode(served):
    client, _store = served
    session = start(client)
    sid = session["session"]
    hole = holes_near_start(client, session, 1)[0]
    for path, body in [
        (f"/api/sessions/{sid}/queue", {"hole": hole, "action": "add"}),
        (f"/api/sessions/{sid}/queue", {"hole": hole, "action": "remove"}),
        (f"/api/sessions/{sid}/collect", {}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 409, path
        assert response.json["error"] == "inspection mode has no queue: expose holes one at a time"
    assert client.get(f"/api/sessions/{sid}").json == session


# ---- replay files ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def played_document(tmp_path_factory):
    """A real results document: a person's short session, finished early."""
    client, _ = make_client(tmp_path_factory.mktemp("replay-source"))
    session = start(client, "Replayed")
    sid = session["session"]
    for hole in holes_near_start(client, session, 3):
        expose(client, sid, hole)
    client.post(f"/api/sessions/{sid}/finish", json={})
    return client.get(f"/api/sessions/{sid}/results").json


def _edit(document: dict, path: tuple, value) -> dict:
    document = json.loads(json.dumps(document))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


REPLAY_CASES = {
    "not JSON": (b"{results", "not valid JSON (line 1"),
    "not UTF-8": ("{\u00e9}".encode("latin-1"), "not UTF-8 text"),
    "UTF-16": ('{"format": 1}'.encode("utf-16"), "not UTF-8 text"),
    "deeply nested": (b"[" * 100_000, "JSON nested too deeply"),
    "a list": (b"[1, 2]", "not a cryobench results file"),
    "episodes a number": (("episodes",), 5, "'episodes' must be a list of episodes, got 5"),
    "no episodes": (("episodes",), [], "field episodes: [] should be non-empty"),
    "episode a string": (("episodes", 0), "x", "field episodes.0: 'x' is not of type 'object'"),
    "trajectory text": (
        ("episodes", 0, "trajectory"),
        "1,2",
        "field episodes.0.trajectory: '1,2' is not of type 'array'",
    ),
    "trajectory floats": (
        ("episodes", 0, "trajectory"),
        [1.5],
        "field episodes.0.trajectory.0: 1.5 is not of type 'integer'",
    ),
    "trajectory bools": (
        ("episodes", 0, "trajectory"),
        [True],
        "field episodes.0.trajectory.0: True is not of type 'integer'",
    ),
    "trajectory out of range": (("episodes", 0, "trajectory"), [10**9] * 3, "exposes hole 1000000000, which is not a"),
    "seed text": (("episodes", 0, "seed"), "4", "field episodes.0.seed: '4' is not of type 'integer'"),
    "negative count": (
        ("episodes", 0, "exposures"),
        -1,
        "field episodes.0.exposures: -1 is less than the minimum of 0",
    ),
    "start text": (("episodes", 0, "start"), "12", "field episodes.0.start: '12' is not of type 'integer'"),
    "env a list": (("env",), [1], "field env: [1] is not of type 'object'"),
    "env kwargs text": (("env", "kwargs"), "split=all", "field env.kwargs: 'split=all' is not of type 'object'"),
    "env unknown argument": (("env", "kwargs"), {"colour": "blue"}, "'env': "),
    "world seed text": (("env", "world_seed"), "0", "field env.world_seed: '0' is not of type 'integer', 'null'"),
    "agent without name": (("agent",), {"track": "human"}, "field agent: 'name' is a required property"),
    "agent name a number": (("agent", "name"), 7, "field agent.name: 7 is not of type 'string'"),
    "human a list": (("human",), [], "field human: [] is not of type 'object'"),
    "overlay text": (("human", "overlay_per_exposure"), "yes", "'human.overlay_per_exposure' must be a list"),
    "finished_early text": (("human", "finished_early"), "no", "'human.finished_early' must be true or false"),
}


@pytest.mark.parametrize("case", list(REPLAY_CASES))
def test_a_malformed_replay_file_is_one_line_naming_the_file(played_document, tmp_path, monkeypatch, case):
    import cryobench.play.server as server

    # Were a case accepted, the command would start the server: fail instead of serving forever.
    monkeypatch.setattr(server, "serve", lambda config, host, port, ready: create_app(config))
    spec = REPLAY_CASES[case]
    path = tmp_path / "replay.json"
    if len(spec) == 2:
        content, reason = spec
        path.write_bytes(content)
    else:
        where, value, reason = spec
        path.write_text(json.dumps(_edit(played_document, where, value)))
    result = CliRunner().invoke(main, ["play", "--replay", str(path), "--port", "0"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: ") and reason in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_replay_file_that_is_a_folder_or_missing_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["play", "--replay", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output and "Traceback" not in result.output
    missing = tmp_path / "missing.json"
    result = CliRunner().invoke(main, ["play", "--replay", str(missing)])
    assert result.exit_code == ExitCode.BAD_INPUT and result.output.strip() == f"Error: {missing}: no such results file"


def test_a_replay_episode_out_of_range_names_the_option_and_the_file(played_document, tmp_path):
    path = tmp_path / "one-episode.json"
    path.write_text(json.dumps(played_document))
    result = CliRunner().invoke(main, ["play", "--replay", str(path), "--episode", "3"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.strip() == f"Error: option --episode: {path} has episodes 0..0, got 3"


# ---- names are text, never markup ------------------------------------------------------------------------
MARKUP_NAME = 'human:<img src=x onerror="window.pwned=1">"; filename=evil.sh'


def test_an_agent_name_with_markup_is_data_in_json_and_harmless_in_a_download(played_document):
    document = _edit(played_document, ("agent", "name"), MARKUP_NAME)
    client = create_app(PlayConfig("aldolaseau", replay=document)).test_client()
    replay = client.get("/api/config").json["replay_session"]
    snapshot = client.get(f"/api/sessions/{replay}").json
    assert snapshot["display_name"] == MARKUP_NAME  # JSON carries it as text; the page sets it as text
    download = client.get(f"/api/sessions/{replay}/results")
    disposition = download.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="human_[A-Za-z0-9_.\-]+_seed4\.json"', disposition), disposition


def test_the_page_never_builds_markup_from_strings():
    """Names, titles and messages reach the page as text: no innerHTML or its kin anywhere in app.js."""
    script = (STATIC_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "who.textContent = app.snapshot.display_name" in script
    assert "row.insertCell().textContent = label" in script


class _ForeignSite(http.server.BaseHTTPRequestHandler):
    """Another web site on this machine: one empty page, no security policy of its own."""

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        body = b"<!doctype html><title>elsewhere</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_in_chromium_a_markup_name_is_text_and_another_page_cannot_play(played_document, tmp_path):
    """The real browser: a replayed agent name full of markup is shown as text (no element, no script run),
    and a page of another web site cannot create a session: its no-cors text/plain POST, which a browser
    sends without asking, is refused by the server; its JSON POST dies at the CORS preflight."""
    from tests.test_play import CHROMIUM, browser_or_skip

    sync_playwright = browser_or_skip()
    document = _edit(played_document, ("agent", "name"), MARKUP_NAME)
    replay_server = make_play_server(PlayConfig("aldolaseau", replay=document), "127.0.0.1", 0)
    target_config = PlayConfig("aldolaseau", dict(INSPECTION), seed=SEED, results_dir=tmp_path / "results")
    target_server = make_play_server(target_config, "127.0.0.1", 0)
    target_store = target_server.app.extensions["cryobench_play"]
    foreign_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ForeignSite)
    servers = (replay_server, target_server, foreign_server)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    target = f"http://127.0.0.1:{target_server.server_port}"
    refusals: list[int] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(15000)
            page.goto(f"http://127.0.0.1:{replay_server.server_port}/")
            page.wait_for_selector("#session-meta b")
            assert page.text_content("#session-meta b") == MARKUP_NAME
            assert page.query_selector_all("#session-meta img") == []
            assert page.evaluate("window.pwned") is None

            page.on("response", lambda r: refusals.append(r.status) if r.url.startswith(target) else None)
            page.goto(f"http://127.0.0.1:{foreign_server.server_address[1]}/")
            attacks = page.evaluate(
                """async (target) => {
                    const outcomes = [];
                    const body = JSON.stringify({player: "Intruder"});
                    const plain = {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body};
                    try { await fetch(`${target}/api/sessions`, plain); outcomes.push("sent"); }
                    catch (e) { outcomes.push("blocked"); }
                    const json = {method: "POST", headers: {"Content-Type": "application/json"}, body};
                    try { const r = await fetch(`${target}/api/sessions`, json); outcomes.push(`read ${r.status}`); }
                    catch (e) { outcomes.push("preflight refused"); }
                    return outcomes;
                }""",
                target,
            )
            browser.close()
    finally:
        for server in servers:
            server.shutdown()
        for thread in threads:
            thread.join(5)
    assert attacks == ["sent", "preflight refused"]
    assert 403 in refusals  # the no-cors POST reached the server and was refused there
    assert target_store.live == {} and not target_store.journal_dir.exists()
