"""``cryobench play`` on staged and cassette environments: the page's API shows only what is known."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401  (registers the environments)
from cryobench.play import PlayConfig, create_app
from cryobench.play.journal import read_journal, restore_session

STAGED = {"split": "all", "duration": 40.0, "acquisition": "staged"}
SEED = 4


@pytest.fixture()
def client(tmp_path):
    return create_app(PlayConfig("aldolaseau", dict(STAGED), seed=SEED, results_dir=tmp_path)).test_client()


def test_a_staged_session_shows_the_atlas_and_only_imaged_holes(client):
    snapshot = client.post("/api/sessions", json={"player": "Tester"}).json
    session = snapshot["session"]
    layout = client.get(f"/api/sessions/{session}/layout").json
    assert layout["staged"] and snapshot["layout_version"] == 1
    known = np.array(layout["square"]) >= 0
    assert sum(layout["imaged"]) == 1 and known.sum() > 0
    assert all(v is None for v, k in zip(layout["predicted_ctf"], known, strict=True) if not k)
    assert len(layout["atlas_good_fraction"]) == len(layout["square_tile"])
    square = layout["imaged"].index(0)
    after = client.post(f"/api/sessions/{session}/image-square", json={"square": square}).json
    assert after["layout_version"] == 2 and after["elapsed"] == 4.3 and after["stage_square"] == square
    layout = client.get(f"/api/sessions/{session}/layout").json
    hole = int(np.flatnonzero(np.array(layout["square"]) == square)[0])
    after = client.post(f"/api/sessions/{session}/expose", json={"hole": hole}).json
    assert after["log"][-1]["level"] == "square" and after["log"][-1]["cost"] == 2.0
    # the same session again through the environment: the same state
    env = gym.make("cryobench/AldolaseAu-v0", **STAGED)
    env.reset(seed=SEED)
    env.step(env.unwrapped.world.n_holes + square)
    env.step(hole)
    assert env.unwrapped.state.elapsed == after["elapsed"]


@pytest.mark.parametrize(
    ("square", "status", "message"),
    [(-1, 400, "'square' must be a square id"), ("3", 400, "'square' must be a square id")],
)
def test_bad_squares_are_refused(client, square, status, message):
    session = client.post("/api/sessions", json={"player": "Tester"}).json["session"]
    response = client.post(f"/api/sessions/{session}/image-square", json={"square": square})
    assert response.status_code == status and message in response.json["error"]


def test_imaging_twice_and_unimaged_holes_are_conflicts(client):
    snapshot = client.post("/api/sessions", json={"player": "Tester"}).json
    session = snapshot["session"]
    layout = client.get(f"/api/sessions/{session}/layout").json
    square = layout["imaged"].index(1)
    response = client.post(f"/api/sessions/{session}/image-square", json={"square": square})
    assert response.status_code == 409 and "imaged already" in response.json["error"]
    hidden = int(np.flatnonzero(np.array(layout["square"]) < 0)[0])
    response = client.post(f"/api/sessions/{session}/expose", json={"hole": hidden})
    assert response.status_code == 409 and "not imaged yet" in response.json["error"]
    assert client.get(f"/api/sessions/{session}").json["elapsed"] == 0.0


def test_a_paper_session_has_no_squares_to_image(tmp_path):
    client = create_app(PlayConfig("aldolaseau", {"split": "all"}, seed=SEED, results_dir=tmp_path)).test_client()
    session = client.post("/api/sessions", json={"player": "Tester"}).json["session"]
    response = client.post(f"/api/sessions/{session}/image-square", json={"square": 0})
    assert response.status_code == 400 and "not staged" in response.json["error"]


def test_a_staged_journal_rebuilds_the_session(tmp_path):
    config = PlayConfig("aldolaseau", dict(STAGED), seed=SEED, results_dir=tmp_path)
    app = create_app(config)
    client = app.test_client()
    snapshot = client.post("/api/sessions", json={"player": "Tester"}).json
    session = snapshot["session"]
    layout = client.get(f"/api/sessions/{session}/layout").json
    square = layout["imaged"].index(0)
    client.post(f"/api/sessions/{session}/image-square", json={"square": square})
    layout = client.get(f"/api/sessions/{session}/layout").json
    hole = int(np.flatnonzero(np.array(layout["square"]) == square)[0])
    before = client.post(f"/api/sessions/{session}/expose", json={"hole": hole}).json
    journals = list(tmp_path.rglob(f"{session}.json"))
    assert journals, "the server keeps a journal of the unfinished session"
    journal = read_journal(journals[0])
    assert journal["squares_imaged"] == [[0, square]]
    env = gym.make("cryobench/AldolaseAu-v0", **STAGED).unwrapped
    env.reset(seed=SEED)
    restored = restore_session(journal, env, journals[0], tmp_path)
    assert restored.snapshot()["elapsed"] == before["elapsed"]
    bad = dict(journal, squares_imaged=[[5, square]])
    path = journals[0].with_name(f"{session}.json")
    path.write_text(json.dumps(bad))
    env.reset(seed=SEED)
    with pytest.raises(Exception, match="squares_imaged"):
        restore_session(read_journal(path), env, path, tmp_path)
