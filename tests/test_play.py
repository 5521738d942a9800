"""``cryobench play``: the server's validation, a person's results against the environment, and the page
played end to end in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import cryobench  # noqa: F401  (registers the environments)
from cryobench import metrics
from cryobench.cli import main
from cryobench.errors import ExitCode
from cryobench.play import PlayConfig, create_app, hole_looks, make_play_server
from cryobench.play.server import STATIC_DIR
from cryobench.results import load_results

ENV_ID = "cryobench/AldolaseAu-v0"
SEED = 4
# A short session so a handful of exposures reaches the end.
SHORT = {"split": "all", "duration": 12.0}
CHROMIUM = "/usr/bin/chromium"


def reference_env(env_kwargs: dict, actions: list[int], seed: int = SEED):
    """The environment a person's session must match: same arguments, seed and actions."""
    env = gym.make(ENV_ID, **env_kwargs)
    env.reset(seed=seed)
    for hole in actions:
        env.step(hole)
    return env.unwrapped


@pytest.fixture(scope="module")
def short_app(tmp_path_factory):
    results_dir = tmp_path_factory.mktemp("play-results")
    return create_app(PlayConfig("aldolaseau-v0", dict(SHORT), seed=SEED, results_dir=results_dir))


@pytest.fixture()
def client(short_app):
    return short_app.test_client()


def new_session(client, player: str = "Tester") -> dict:
    response = client.post("/api/sessions", json={"player": player})
    assert response.status_code == 201, response.json
    return response.json


def same_patch_holes(client, snapshot: dict, count: int) -> list[int]:
    """Unvisited holes in the patch where the session starts."""
    layout = client.get("/api/layout").json
    patch = np.asarray(layout["patch"])
    holes = np.flatnonzero(patch == patch[snapshot["start_hole"]])
    return [int(h) for h in holes if h != snapshot["start_hole"]][:count]


# ---- what the player is shown -----------------------------------------------------------------
def test_layout_shows_predictions_only_never_the_truth(client):
    layout = client.get("/api/layout").json
    env = gym.make(ENV_ID, **SHORT).unwrapped
    predicted = env.world.predicted_ctf
    assert not any("ctf" in key and key != "predicted_ctf" for key in layout)
    # The look is the prediction drawn as brightness: the player has the agent's information and error.
    np.testing.assert_allclose(layout["look"], np.round(hole_looks(predicted), 3))
    order = np.argsort(predicted)
    assert np.all(np.diff(hole_looks(predicted)[order]) <= 1e-12), "better prediction, brighter hole"
    assert layout["minutes"] == list(env.world.profile.minutes)


# ---- bad requests: clear errors, state unchanged ----------------------------------------------------
def test_bad_holes_are_refused_and_change_nothing(client):
    session = new_session(client)
    sid = session["session"]
    first = same_patch_holes(client, session, 1)[0]
    assert client.post(f"/api/sessions/{sid}/expose", json={"hole": first}).status_code == 200
    before = client.get(f"/api/sessions/{sid}").json
    cases = [
        ({"hole": 99999}, 400, "unknown hole 99999"),
        ({"hole": -1}, 400, "unknown hole -1"),
        ({"hole": "12"}, 400, "must be an integer"),
        ({"hole": True}, 400, "must be an integer"),
        ({"hole": 1.5}, 400, "must be an integer"),
        ({"hole": first}, 409, f"hole {first} is already exposed"),
        ({"hole": session["start_hole"]}, 409, "starting position"),
        ({}, 400, "lacks the field(s) ['hole']"),
        ({"hole": 3, "x": 1}, 400, "unknown field(s) ['x']"),
        ({"hole": 3, "overlay": "yes"}, 400, "'overlay' must be true or false"),
    ]
    for body, status, message in cases:
        response = client.post(f"/api/sessions/{sid}/expose", json=body)
        assert response.status_code == status, (body, response.json)
        assert message in response.json["error"], (body, response.json)
    for raw in (b"{not json", b"[1, 2]", b"", b'"hole"'):
        response = client.post(f"/api/sessions/{sid}/expose", data=raw, content_type="application/json")
        assert response.status_code == 400
        assert "must be a JSON object" in response.json["error"]
    huge = client.post(f"/api/sessions/{sid}/expose", data=b"{" + b" " * 20000 + b"}", content_type="application/json")
    assert huge.status_code == 413 and "error" in huge.json
    assert client.get(f"/api/sessions/{sid}").json == before


def test_unknown_and_malformed_sessions(client):
    assert client.get("/api/sessions/" + "A" * 22).status_code == 404
    assert "unknown session" in client.get("/api/sessions/" + "A" * 22).json["error"]
    response = client.post("/api/sessions/not-an-id!/expose", json={"hole": 1})
    assert response.status_code == 400 and "malformed session id" in response.json["error"]
    for player in ("", " ", "x" * 41, "<script>", "../../etc", 7):
        response = client.post("/api/sessions", json={"player": player})
        assert response.status_code == 400 and "player name" in response.json["error"]
    assert client.get("/api/nothing").status_code == 404
    assert client.delete("/api/layout").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/static/../session.py",
        "/static/%2e%2e/session.py",
        "/static/..%2fserver.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/....//session.py",
        "/../../../etc/passwd",
        "/static/",
    ],
)
def test_files_outside_the_static_folder_are_not_served(client, path):
    response = client.get(path, follow_redirects=True)  # werkzeug redirects "//" to "/" first
    assert response.status_code == 404, path
    assert b"def " not in response.data and b"root:" not in response.data


def test_static_files_are_served_with_a_strict_policy(client):
    assert sorted(p.name for p in STATIC_DIR.iterdir()) == ["app.js", "index.html", "style.css"]
    page = client.get("/")
    assert page.status_code == 200 and b"/static/app.js" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    # Nothing is fetched from the internet at run time.
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, name


# ---- a person's session is the environment's session ----------------------------------------------------
def test_played_session_matches_the_environment_and_writes_results(short_app, client):
    session = new_session(client, "Ann Lee")
    sid = session["session"]
    layout = client.get("/api/layout").json
    square = np.asarray(layout["square"])
    patch = np.asarray(layout["patch"])
    start = session["start_hole"]
    in_patch = same_patch_holes(client, session, 2)
    other_patch = next(h for h in np.flatnonzero(square == square[start]) if patch[h] != patch[start])
    other_square = next(h for h in range(len(square)) if square[h] != square[start])
    actions = [*in_patch, int(other_patch), int(other_square)]
    for hole in actions:
        snapshot = client.post(f"/api/sessions/{sid}/expose", json={"hole": hole, "overlay": hole == actions[0]}).json
    env = reference_env(SHORT, actions)
    assert snapshot["elapsed"] == env.state.elapsed
    assert snapshot["exposures"] == len(actions)
    truth = env.ground_truth_ctf()
    assert [entry["ctf"] for entry in snapshot["log"]] == [round(float(truth[h]), 2) for h in actions]
    assert snapshot["good_known"] == int(np.sum(truth[actions] < 6.0))
    # Play on until the duration: the rest of the start patch first, then any hole.
    rest = [int(h) for h in np.flatnonzero(patch == patch[start]) if h != start and h not in actions]
    rest += [h for h in range(len(square)) if h != start and h not in actions and h not in rest]
    while not snapshot["over"]:
        actions.append(rest.pop(0))
        snapshot = client.post(f"/api/sessions/{sid}/expose", json={"hole": actions[-1]}).json
    env = reference_env(SHORT, actions)
    assert snapshot["elapsed"] == env.state.elapsed > SHORT["duration"]
    over = client.post(f"/api/sessions/{sid}/expose", json={"hole": 0})
    assert over.status_code == 409 and "session is over" in over.json["error"]

    saved = load_results(snapshot["results_file"])
    assert saved["agent"]["name"] == "human:Ann Lee" and saved["agent"]["track"] == "human"
    assert not saved["agent"]["upper_bound"]
    assert saved["env"]["id"] == ENV_ID and saved["env"]["kwargs"] == SHORT
    assert saved["seeds"] == [SEED]
    expected = metrics.episode_metrics(env.world, env.state)
    episode = saved["episodes"][0]
    for key, value in expected.items():
        assert episode[key] == value, key
    assert saved["human"]["overlay_per_exposure"][:2] == [True, False]
    assert saved["agent"]["card"]["exposures_with_predictions_overlay"] == 1
    # The same document comes back from the server for download.
    download = client.get(f"/api/sessions/{sid}/results")
    assert "attachment" in download.headers["Content-Disposition"]
    assert download.json["episodes"] == saved["episodes"]

    # compare reads it beside agents; --replay shows it again, read-only.
    from cryobench.compare import comparison_table

    table = comparison_table([saved])
    assert table.iloc[0]["agent"] == "human:Ann Lee" and table.iloc[0]["good_mean"] == expected["good_exposures"]
    replay_app = create_app(PlayConfig("aldolaseau-v0", replay=saved))
    replay_client = replay_app.test_client()
    config = replay_client.get("/api/config").json
    assert config["mode"] == "replay"
    replayed = replay_client.get(f"/api/sessions/{config['replay_session']}").json
    assert replayed["log"] == snapshot["log"] and replayed["read_only"]
    refused = replay_client.post(f"/api/sessions/{config['replay_session']}/expose", json={"hole": 0})
    assert refused.status_code == 409 and "replay" in refused.json["error"]
    assert replay_client.post("/api/sessions", json={"player": "x"}).status_code == 409


def test_replay_refuses_a_trajectory_from_another_world(short_app, client, tmp_path):
    session = new_session(client)
    sid = session["session"]
    client.post(f"/api/sessions/{sid}/expose", json={"hole": same_patch_holes(client, session, 1)[0]})
    document = client.get(f"/api/sessions/{sid}/results").json
    episode = document["episodes"][0]  # forged consistently (a good exposure more), so only replaying can tell
    episode["trajectory_good"][0] = 1 - episode["trajectory_good"][0]
    episode["good_exposures"] = sum(episode["trajectory_good"])
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["play", "--replay", str(path), "--port", "0"])
    assert result.exit_code == ExitCode.BAD_INPUT and "the trajectory gives" in result.output


def test_queue_mode_reveals_in_batches(tmp_path):
    kwargs = {"split": "all", "feedback": "queue:3"}
    client = create_app(PlayConfig("aldolaseau-v0", kwargs, seed=SEED, results_dir=tmp_path)).test_client()
    session = new_session(client)
    sid = session["session"]
    holes = same_patch_holes(client, session, 4)
    refused = client.post(f"/api/sessions/{sid}/expose", json={"hole": holes[0]})
    assert refused.status_code == 409 and "queue" in refused.json["error"]
    for hole in holes:
        snapshot = client.post(f"/api/sessions/{sid}/queue", json={"hole": hole, "action": "add"}).json
    assert snapshot["queue"] == holes and snapshot["elapsed"] == 0.0, "queueing costs no time"
    again = client.post(f"/api/sessions/{sid}/queue", json={"hole": holes[0], "action": "add"})
    assert again.status_code == 409
    bad = client.post(f"/api/sessions/{sid}/queue", json={"hole": holes[0], "action": "drop"})
    assert bad.status_code == 400
    snapshot = client.post(f"/api/sessions/{sid}/collect", json={}).json
    env = reference_env(kwargs, holes)
    assert snapshot["elapsed"] == env.state.elapsed == 4.0
    # The first three are revealed together; the fourth waits for the next batch of three.
    assert [entry["ctf"] is not None for entry in snapshot["log"]] == [True, True, True, False]
    assert snapshot["awaiting_ctf"] == [holes[3]] == [int(h) for h in env.state.pending]
    empty = client.post(f"/api/sessions/{sid}/collect", json={})
    assert empty.status_code == 409 and "queue is empty" in empty.json["error"]
    finished = client.post(f"/api/sessions/{sid}/finish", json={}).json
    assert finished["over"] and finished["finished_early"]
    saved = load_results(finished["results_file"])
    assert saved["episodes"][0]["trajectory"] == holes and saved["human"]["finished_early"]


def test_an_unfinished_session_survives_a_server_restart(tmp_path):
    kwargs = {"split": "all", "feedback": "queue:3"}
    config = PlayConfig("aldolaseau-v0", kwargs, seed=SEED, results_dir=tmp_path)
    client = create_app(config).test_client()
    session = new_session(client, "Restarted")
    sid = session["session"]
    holes = same_patch_holes(client, session, 6)
    for hole in holes[:4]:
        client.post(f"/api/sessions/{sid}/queue", json={"hole": hole, "action": "add"})
    client.post(f"/api/sessions/{sid}/collect", json={})
    before = client.post(f"/api/sessions/{sid}/queue", json={"hole": holes[4], "action": "add"}).json
    assert (tmp_path / "sessions-in-progress" / f"{sid}.json").is_file()

    restarted = create_app(config).test_client()  # a new server on the same folder and settings
    after = restarted.get(f"/api/sessions/{sid}").json
    assert after == before  # the same exposures, reveals, clock and queue
    assert after["awaiting_ctf"] == [holes[3]] and after["queue"] == [holes[4]]
    # play on and finish: the results cover the whole session and the journal is gone
    restarted.post(f"/api/sessions/{sid}/collect", json={})
    finished = restarted.post(f"/api/sessions/{sid}/finish", json={}).json
    saved = load_results(finished["results_file"])
    assert saved["episodes"][0]["trajectory"] == holes[:5]
    assert reference_env(kwargs, holes[:5]).state.elapsed == saved["episodes"][0]["minutes"]
    assert not (tmp_path / "sessions-in-progress" / f"{sid}.json").exists()
    # another seed's server leaves other sessions' journals alone, and a broken journal is skipped, not fatal
    waiting = new_session(restarted, "Waiting")["session"]
    (tmp_path / "sessions-in-progress" / "broken.json").write_text("{not json")
    other = create_app(PlayConfig("aldolaseau-v0", kwargs, seed=SEED + 1, results_dir=tmp_path)).test_client()
    assert other.get(f"/api/sessions/{waiting}").status_code == 404
    assert (tmp_path / "sessions-in-progress" / f"{waiting}.json").is_file()
    assert create_app(config).test_client().get(f"/api/sessions/{waiting}").status_code == 200


def test_cli_refuses_bad_options_without_starting_a_server():
    runner = CliRunner()
    assert runner.invoke(main, ["play", "--help"]).exit_code == 0
    result = runner.invoke(main, ["play", "--feedback", "queue:x"])
    assert result.exit_code == ExitCode.BAD_INPUT and "expected 'inspection', 'queue:K'" in result.output
    result = runner.invoke(main, ["play", "--env", "nosuchenv"])
    assert result.exit_code == ExitCode.BAD_INPUT and "Error:" in result.output
    result = runner.invoke(main, ["play", "-e", "new_world_each_reset=true"])
    assert result.exit_code == ExitCode.BAD_INPUT and "one fixed world" in result.output


# ---- the page, in a real browser ----------------------------------------------------------------------
def browser_or_skip():
    """Playwright driving Debian's chromium; skips (saying why) where either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; the test uses Debian's chromium)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


@pytest.fixture()
def live_server(tmp_path):
    """The real server (werkzeug, threaded) on a free local port."""
    config = PlayConfig("aldolaseau-v0", dict(SHORT), seed=SEED, results_dir=tmp_path / "results")
    server = make_play_server(config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", tmp_path / "results"
    server.shutdown()
    thread.join(5)


@pytest.mark.slow
def test_page_plays_a_session_in_chromium(live_server, tmp_path):
    sync_playwright = browser_or_skip()
    url, results_dir = live_server
    screenshots = Path(os.environ.get("CRYOBENCH_SCREENSHOT_DIR", tmp_path))
    screenshots.mkdir(parents=True, exist_ok=True)
    env = gym.make(ENV_ID, **SHORT).unwrapped
    env.reset(seed=SEED)
    truth = env.ground_truth_ctf()
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.set_default_timeout(15000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.fill("#player", "Browser Test")
        page.click("#start")
        page.wait_for_selector("#patch g.hole")
        layout = page.evaluate("({square: app.layout.square, patch: app.layout.patch, tile: app.layout.tile})")
        start = env.state.start
        patch_of, square_of = np.asarray(layout["patch"]), np.asarray(layout["square"])
        assert page.get_attribute(f'#patch g.hole[data-hole="{start}"]', "data-status") == "start"

        def expose(hole: int) -> None:
            """Click the hole in the patch view and wait until the server's answer is drawn."""
            page.click(f'#patch g.hole[data-hole="{hole}"]')
            page.wait_for_selector(
                f'#patch g.hole[data-hole="{hole}"][data-status="good"], '
                f'#patch g.hole[data-hole="{hole}"][data-status="bad"]'
            )
            env.step(hole)

        def check_readouts() -> None:
            assert float(page.get_attribute("#clock", "data-minutes")) == env.state.elapsed
            assert float(page.get_attribute("#time-left", "data-minutes")) == max(
                SHORT["duration"] - env.state.elapsed, 0
            )
            assert int(page.inner_text("#exposures")) == env.state.n_exposures
            good = int(np.sum(truth[env.state.exposures] < 6.0))
            assert int(page.inner_text("#good")) == good
            shown = {
                int(r.get_attribute("data-hole")): float(r.query_selector("td:last-child").get_attribute("data-ctf"))
                for r in page.query_selector_all("#log tbody tr")
            }
            assert shown == {h: round(float(truth[h]), 2) for h in env.state.exposures}

        # Three holes in the start patch (1 min each).
        in_patch = [int(h) for h in np.flatnonzero(patch_of == patch_of[start]) if h != start][:3]
        for hole in in_patch:
            expose(hole)
        check_readouts()
        assert page.inner_text("#clock") == "0:03"
        ctf_label = page.text_content(f'#patch g.hole[data-hole="{in_patch[0]}"] text.ctf-text')
        assert ctf_label.startswith(f"{truth[in_patch[0]]:.1f}") or ctf_label in ("> 20 Å", "fit failed")

        # Another patch of the square, chosen in the square view (navigation is free: the clock stands).
        other_patch = next(int(p) for p in np.unique(patch_of[square_of == square_of[start]]) if p != patch_of[start])
        page.click(f'#square rect.patch-frame[data-patch="{other_patch}"]')
        assert float(page.get_attribute("#clock", "data-minutes")) == 3.0
        expose(int(np.flatnonzero(patch_of == other_patch)[0]))

        # The predictions overlay is off by default, and only draws.
        assert not page.is_checked("#overlay")
        page.check("#overlay")
        page.wait_for_selector("#patch text.pred")
        check_readouts()

        # A reload mid-session loses nothing.
        page.reload()
        page.wait_for_selector("#log tbody tr")
        check_readouts()
        page.check("#overlay")
        page.screenshot(path=str(screenshots / "play-session.png"))

        # Another square, chosen in the atlas; then the start patch's holes until the time is up.
        other_square = next(int(s) for s in np.unique(square_of) if s != square_of[start])
        page.click(f'#atlas rect.square-cell[data-square="{other_square}"]')
        target_patch = int(page.evaluate("app.selectedPatch"))
        expose(int(np.flatnonzero(patch_of == target_patch)[0]))
        check_readouts()
        for hole in (int(h) for h in np.flatnonzero(patch_of == target_patch)[1:]):
            if env.state.elapsed > SHORT["duration"]:
                break
            expose(hole)
        page.wait_for_selector("#end-dialog:not(.hidden)")
        check_readouts()
        page.screenshot(path=str(screenshots / "play-end.png"))
        assert page.inner_text("#end-exposures") == str(env.state.n_exposures)
        assert page.inner_text("#end-good") == str(int(np.sum(truth[env.state.exposures] < 6.0)))
        assert errors == []
        browser.close()

    files = sorted(results_dir.glob("human-Browser_Test_aldolaseau-v0_seed4_*.json"))
    assert len(files) == 1
    saved = load_results(files[0])
    assert saved["episodes"][0] == {
        "seed": SEED,
        **metrics.episode_metrics(env.world, env.state),
        "invalid_actions": [],
    }
