"""Protocol, submissions, verification, generated tables and the score guards of the leaderboards.

Submissions here run a reduced protocol (two seeds, two entries) to stay fast; the full
protocol is the documented command in ``leaderboards/README.md``. Set
``CRYOBENCH_SCORE_GUARD=full`` to make the score guard re-run every committed episode.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import zlib
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryobench.agents.registry import list_agents, recorded_hyperparameters
from cryobench.errors import InputError
from cryobench.evaluate import evaluate
from cryobench.leaderboard import submission as submissions
from cryobench.leaderboard import tables
from cryobench.leaderboard.verify import static_problems, verify
from cryobench.protocol import CURRENT_VERSION, MEASURED, Entry, load_protocol, parse_protocol, protocol_path
from cryobench.registration import env_cards

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cryobench-example-agent"
REDUCED = {"seeds": (0, 1), "entries": ("aldolase", "aldolase-blind")}


# ---- the protocol ------------------------------------------------------------------------
def test_protocol_pins_registered_versioned_environments():
    protocol = load_protocol()
    assert protocol.version == CURRENT_VERSION
    assert protocol.seeds == tuple(range(50))
    assert {e.env for e in protocol.entries} <= set(env_cards())
    core = [e for e in protocol.entries if e.group == "core"]
    assert len(core) == 8 and sum(e.blind for e in core) == 4
    assert any(e.measured for e in protocol.entries)
    assert len({e.kwargs.get("noise", 1.0) for e in protocol.entries if e.env == "cryobench/AldolaseAu-v0"}) >= 4


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(seeds=[5]), "'seeds'"),
        (lambda d: d["entries"][0].update(env="aldolase"), "entries[0]: field 'env'"),
        (lambda d: d["entries"][1].update(group="extra"), "entries[1]: field 'group'"),
        (lambda d: d["entries"][2].update(colour="red"), "entries[2]: unknown field"),
        (lambda d: d["entries"].append(dict(d["entries"][0])), "repeated: ['aldolase']"),
    ],
)
def test_malformed_protocol_names_the_field(change, field):
    doc = yaml.safe_load(protocol_path().read_text())
    change(doc)
    with pytest.raises(InputError, match="protocol-test.yaml") as excinfo:
        parse_protocol(doc, "protocol-test.yaml", CURRENT_VERSION)
    assert field in str(excinfo.value)


def test_feedback_learners_are_not_applicable_to_blind_entries():
    class Learner:
        needs_feedback = True

    class Planner:
        needs_feedback = False

    blind = Entry("x-blind", "cryobench/Aldolase-v0", {"feedback": "none"})
    seeing = Entry("x", "cryobench/Aldolase-v0", {"feedback": "inspection"})
    assert "feedback: none" in blind.not_applicable_reason(Learner)
    assert blind.not_applicable_reason(Planner) is None
    assert seeing.not_applicable_reason(Learner) is None


# ---- submissions and verification ------------------------------------------------------------
@pytest.fixture(scope="module")
def submission(tmp_path_factory) -> Path:
    """A reduced submission of the random agent (written as ``cryobench submit`` writes it)."""
    root = tmp_path_factory.mktemp("submission")
    doc = submissions.submit("random", root / "work", workers=1, progress=False, **REDUCED)
    return submissions.save_submission(doc, root / "random-v1.json")


def _edited(submission: Path, tmp_path: Path, change) -> Path:
    doc = json.loads(submission.read_text())
    change(doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return path


def test_submission_has_provenance_and_every_episode(submission):
    doc = submissions.load_submission(submission)
    assert doc["protocol"] == {"version": 1, "seeds": [0, 1], "entries": list(REDUCED["entries"]), "complete": False}
    assert {"cryobench", "git_commit", "numpy", "gymnasium", "python", "platform"} <= set(doc["provenance"])
    assert doc["agent"]["name"] == "random" and doc["agent"]["card"]["name"] == "random"
    for name in REDUCED["entries"]:
        block = doc["entries"][name]
        assert block["env_id"] == "cryobench/Aldolase-v0"
        assert block["spec"]["id"] == "cryobench/Aldolase-v0"
        assert [ep["seed"] for ep in block["episodes"]] == [0, 1]
        assert block["summary"] == submissions.episode_summary(block["episodes"])


def test_verify_accepts_an_exact_reproduction(submission):
    report = verify(submission, workers=1)
    assert report == {"accepted": True, "reduced": True, "reasons": []}


def _edit_score(doc: dict) -> None:
    block = doc["entries"]["aldolase"]
    block["episodes"][1]["good_exposures"] += 3
    block["summary"] = submissions.episode_summary(block["episodes"])  # a careful forger


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_edit_score, "entry 'aldolase' seed 1: good_exposures do not reproduce"),
        (lambda d: d["entries"]["aldolase"]["episodes"].pop(0), "entry 'aldolase': episodes for seeds [0] are missing"),
        (lambda d: d["protocol"].update(version=7), "protocol v7 is an unknown protocol"),
        (lambda d: d.pop("agent"), "schema: "),
        (lambda d: d["entries"]["aldolase"]["episodes"][0].pop("minutes"), "lacks the field(s) ['minutes']"),
        (lambda d: d["entries"]["aldolase"]["kwargs"].update(noise=0.0), "are not the protocol's"),
        (lambda d: d["entries"]["aldolase"].update(env_id="cryobench/Aldolase-v1"), "needs a new protocol version"),
        (lambda d: d["protocol"].update(complete=True), "claims a complete run"),
        (lambda d: d["agent"].pop("version"), "field 'agent.version' missing"),
        (lambda d: d["agent"]["version"].update(card_sha256="0" * 64), "does not match the card recorded"),
        (lambda d: d["agent"]["card"]["hyperparameters"].update(seed=123), "does not match the card recorded"),
        (lambda d: d["agent"]["version"].update(checkpoint_sha256="a" * 64), "is not the one the entry ran"),
    ],
    ids=["edited-score", "missing-episode", "foreign-protocol", "schema", "schema-episode", "kwargs", "env-version",
         "false-complete", "no-version", "version-digest", "card-edited", "checkpoint-digest"],
)  # fmt: skip
def test_verify_rejects_with_the_reason(submission, tmp_path, change, reason):
    report = verify(_edited(submission, tmp_path, change), workers=1)
    assert report["accepted"] is False
    assert any(reason in r for r in report["reasons"]), report["reasons"]


def test_verify_command_prints_the_reasons_and_fails(submission, tmp_path):
    from click.testing import CliRunner

    from cryobench.cli import main

    edited = _edited(submission, tmp_path, lambda d: d["entries"]["aldolase-blind"]["episodes"].pop())
    result = CliRunner().invoke(main, ["leaderboard", "verify", str(edited), "--workers", "1"])
    assert result.exit_code == 1
    assert "rejected: " in result.output and "'aldolase-blind': episodes for seeds [1] are missing" in result.output


def test_submission_never_records_the_measured_data_path(aldolase_data, tmp_path):
    doc = submissions.submit(
        "random", tmp_path / "work", data=aldolase_data, workers=1, progress=False, seeds=(0,),
        entries=("measured-aldolase",),
    )  # fmt: skip
    text = submissions.dumps_submission(doc)
    assert str(aldolase_data) not in text and str(aldolase_data.resolve()) not in text
    assert doc["entries"]["measured-aldolase"]["kwargs"]["data"] == MEASURED
    assert len(doc["measured_data"]["checksum"]) == 64


def test_measured_entries_are_skipped_saying_why_without_data(monkeypatch, tmp_path):
    monkeypatch.delenv("CRYOBENCH_ALDOLASE_DATA", raising=False)
    doc = submissions.submit(
        "random", tmp_path, workers=1, progress=False, seeds=(0,), entries=("aldolase", "measured-aldolase")
    )
    assert list(doc["entries"]) == ["aldolase"]
    assert "no measured data" in doc["skipped"]["measured-aldolase"]


# ---- a third-party agent through the entry point ------------------------------------------
def _plugin_path(tmp_path: Path) -> Path:
    """A ``.dist-info`` folder declaring the example's entry point: the agent is found exactly
    as after ``pip install``, without touching the running environment."""
    info = tmp_path / "cryobench_example_agent-0.1.0.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: cryobench-example-agent\nVersion: 0.1.0\n")
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    lines = ["[cryobench.agents]"] + [f"{k} = {v}" for k, v in project["entry-points"]["cryobench.agents"].items()]
    info.joinpath("entry_points.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.slow
def test_example_agent_package_submits_and_verifies(tmp_path):
    plugin = _plugin_path(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(EXAMPLE / "src")])}
    out = tmp_path / "lp.json"
    submit = ["submit", "--protocol", "1", "--agent", "lowest-prediction", "--seeds", "0-1"]
    submit += ["--entries", "aldolase,rnapii-blind"]
    submit += ["--workers", "1", "--quiet", "--work", str(tmp_path / "work"), "--out", str(out)]
    verify = ["leaderboard", "verify", str(out), "--workers", "1"]
    # One fresh interpreter (the plugin visible only there) runs the two commands as a user would.
    script = (
        "import sys\nfrom cryobench.cli import main\n"
        f"for args in ({submit!r}, {verify!r}):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        if e.code: sys.exit(e.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["agent"]["name"] == "lowest-prediction" and set(doc["entries"]) == {"aldolase", "rnapii-blind"}
    assert f"accepted: {out} (reduced protocol" in done.stdout


# ---- tables -------------------------------------------------------------------------------
def test_committed_tables_equal_what_build_writes():
    stale = tables.build_tables(check=True)
    assert stale == [], f"run `cryobench leaderboard build`: {stale} differ from the results"


def test_tables_normalise_between_random_and_the_best_upper_bound(submission, tmp_path, monkeypatch):
    random_doc = submissions.load_submission(submission)
    bound = copy.deepcopy(random_doc)
    bound["agent"].update(name="oracle-test", upper_bound=True)
    for block in bound["entries"].values():
        for episode in block["episodes"]:
            episode["good_exposures"] += 40
    middle = copy.deepcopy(random_doc)
    middle["agent"]["name"] = "halfway"
    for block in middle["entries"].values():
        for episode in block["episodes"]:
            episode["good_exposures"] += 20
    results = tmp_path / "results" / "v1"
    results.mkdir(parents=True)
    for doc in (random_doc, bound, middle):
        doc["protocol"]["complete"] = True
        submissions.save_submission(doc, results / f"{doc['agent']['name']}.json")
    root = tmp_path
    (root / "protocol-v1.yaml").write_text(protocol_path().read_text())
    monkeypatch.setattr(tables, "card_dir", lambda kind: root)
    monkeypatch.setattr("cryobench.protocol.card_dir", lambda kind: root)
    written = tables.build_tables()
    assert "tables/v1/overall.md" in written and "tables/v1/aldolase.md" in written
    assert tables.build_tables(check=True) == []
    rows = {r["agent"]: r for r in tables.entry_rows(tables.load_leaderboard_results(), "aldolase")}
    assert rows["random"]["score"] == pytest.approx(0.0)
    assert rows["oracle-test"]["score"] == pytest.approx(100.0)
    assert rows["halfway"]["score"] == pytest.approx(50.0)
    table = (root / "tables/v1/aldolase.md").read_text()
    agents, bounds = table.split("## Upper bounds")
    assert "halfway" in agents and "oracle-test" not in agents and "oracle-test (upper bound)" in bounds
    (results / "halfway.json").unlink()
    assert "tables/v1/overall.md" in tables.build_tables(check=True)


def test_a_reduced_submission_is_not_a_leaderboard_entry(submission, tmp_path, monkeypatch):
    (tmp_path / "results" / "v1").mkdir(parents=True)
    (tmp_path / "results" / "v1" / "random.json").write_text(submission.read_text())
    monkeypatch.setattr(tables, "card_dir", lambda kind: tmp_path)
    with pytest.raises(InputError, match="random.json: a reduced submission"):
        tables.load_leaderboard_results()


# ---- score guards -------------------------------------------------------------------------
def _committed() -> list[dict]:
    return tables.load_leaderboard_results()


def test_every_built_in_agent_is_on_the_leaderboard():
    ours = {ep.name for ep in distribution("cryobench").entry_points if ep.group == "cryobench.agents"}
    loadable = {row["name"] for row in list_agents() if row["error"] is None and row["name"] in ours}
    on_board = {doc["agent"]["name"] for doc in _committed()}
    # Agents whose full run is still to come, each with the reason (leaderboards/pending-v1.yaml).
    pending_file = tables.results_dir().parents[1] / f"pending-v{CURRENT_VERSION}.yaml"
    pending = (yaml.safe_load(pending_file.read_text()) or {}) if pending_file.is_file() else {}
    assert all(isinstance(reason, str) and reason for reason in pending.values()), f"{pending_file}: give reasons"
    missing = sorted(loadable - on_board - set(pending))
    assert not missing, f"built-in agents without results in leaderboards/results/v1/: {missing} (see its README)"
    listed_but_done = sorted(set(pending) & on_board)
    assert not listed_but_done, f"{pending_file}: {listed_but_done} have results now; remove them from the list"


def _guard_cases() -> list[tuple[str, str, int]]:
    """(agent, entry, seed) to re-run: everything with CRYOBENCH_SCORE_GUARD=full, else one
    episode per agent, its entry and seed chosen by a checksum of its name (spread, stable)."""
    cases = []
    full = os.environ.get("CRYOBENCH_SCORE_GUARD") == "full"
    protocol = load_protocol()
    for doc in _committed():
        name = doc["agent"]["name"]
        entries = [e for e in protocol.entries if e.name in doc["entries"] and not e.measured]
        if full:
            cases += [(name, e.name, s) for e in protocol.entries if e.name in doc["entries"] for s in protocol.seeds]
            continue
        pick = zlib.crc32(name.encode())
        cases.append((name, entries[pick % len(entries)].name, protocol.seeds[pick % len(protocol.seeds)]))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("agent", "entry_name", "seed"), _guard_cases())
def test_score_guard_committed_episodes_reproduce(agent, entry_name, seed, request):
    """A change that moves a committed score fails here: fix it, or bump the environment's
    version (-v1) and the protocol's (see leaderboards/README.md)."""
    entry = load_protocol().entry(entry_name)
    data = request.getfixturevalue("aldolase_data") if entry.measured else None
    doc = next(d for d in _committed() if d["agent"]["name"] == agent)
    committed = next(ep for ep in doc["entries"][entry_name]["episodes"] if ep["seed"] == seed)
    # As `cryobench leaderboard verify` re-runs it: hyperparameters added since the entry, at the values it ran with.
    hyper = recorded_hyperparameters(agent, doc["agent"]["card"].get("hyperparameters") or {})
    result = evaluate(agent, entry.env, entry.resolved_kwargs(data), 1, seed, hyper, progress=False)
    again = submissions.compact_episode(result["episodes"][0])
    assert again == committed, (
        f"{agent} on {entry_name} seed {seed} no longer reproduces its leaderboard entry: "
        f"good {committed['good_exposures']} -> {again['good_exposures']}. If the environment's dynamics "
        "changed on purpose, bump its id (-v1) and the protocol version instead of moving old scores."
    )


def test_v1_dqn_entry_pins_the_old_checkpoint_it_ran(tmp_path):
    """Protocol v1's dqn entry names its checkpoint by digest: a newer dqn ships a new file, and the
    old entry verifies only while the file it ran is still in the repository, unchanged."""
    from cryobench.agents.registry import checkpoint_path
    from cryobench.leaderboard.verify import version_problems

    doc = submissions.load_submission(tables.results_dir() / "dqn.json")
    agent = doc["agent"]
    assert version_problems(agent) == []
    assert agent["version"]["checkpoint_sha256"] is not None
    stand_in = tmp_path / "other.pt"
    stand_in.write_bytes(checkpoint_path(agent["card"]["hyperparameters"]["checkpoint"]).read_bytes() + b"\0")
    agent["card"]["hyperparameters"]["checkpoint"] = str(stand_in)
    assert any("is not the one the entry ran" in r for r in version_problems(agent))


def test_v1_rows_of_an_earlier_agent_version_are_marked_with_how_to_run_it():
    """v1's dqn entries ran checkpoints that `cryobench run --agent dqn` no longer loads: their rows
    say so, and the footnote names the recorded checkpoint; rows of unchanged agents are plain."""
    from cryobench.agents.registry import agent_version, load_agent

    docs = _committed()
    marked = {doc["agent"]["name"] for doc in docs if tables.runs_an_earlier_version(doc)}
    assert marked == {"dqn", "dqn-noise-robust"}
    for doc in docs:  # the marker is exactly "the recorded version is not today's"
        agent, card = load_agent(doc["agent"]["name"])
        assert (doc["agent"]["version"] != agent_version(agent, card)) == (doc["agent"]["name"] in marked)
    table = (tables.results_dir().parents[1] / "tables" / "v1" / "aldolaseau.md").read_text()
    assert "| dqn (earlier version) | 190.2" in table and "| greedy | " in table and "greedy (earlier" not in table
    note = next(line for line in table.splitlines() if line.startswith("dqn (earlier version): "))
    assert "leaderboards/results/v1/dqn.json (checkpoint checkpoints/dqn-aldolase.pt)" in note
    assert "previous_version" in note and "cryobench leaderboard verify" in note
    # The same entry made today's version: unmarked. An agent not installed here: unmarked (nothing to compare).
    dqn = copy.deepcopy(next(doc for doc in docs if doc["agent"]["name"] == "dqn"))
    agent, card = load_agent("dqn")
    dqn["agent"]["version"] = agent_version(agent, card)
    assert not tables.runs_an_earlier_version(dqn)
    dqn["agent"]["name"] = "not-installed-here"
    assert not tables.runs_an_earlier_version(dqn) and tables.version_notes([dqn], 1) == []


FIG_4D_QUOTE = "cryoRL only visited four unique squares. In contrast, human users, on average, visited 12 squares"


def test_aldolaseau_tables_show_squares_visited_from_the_episodes_beside_fig_4d():
    folder = tables.results_dir().parents[1] / "tables" / "v1"
    table = (folder / "aldolaseau.md").read_text()
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| agent |"))
    assert "| exposures | squares visited | exposures / square |" in header
    for row in tables.entry_rows(_committed(), "aldolaseau"):
        doc = next(d for d in _committed() if d["agent"]["name"] == row["agent"])
        episodes = doc["entries"]["aldolaseau"]["episodes"]
        squares = np.mean([episode["squares_visited"] for episode in episodes])
        per_square = np.mean([episode["exposures_per_square"] for episode in episodes])
        label = row["agent"] + (" (earlier version)" if row["earlier_version"] else "")
        label += " (upper bound)" if row["upper_bound"] else ""
        cells = next(line for line in lines if line.startswith(f"| {label} |")).split(" | ")
        assert cells[5:7] == [f"{squares:.1f}", f"{per_square:.1f}"], row["agent"]
    # The paper's reference under the default-regressor AldolaseAu tables only.
    for name, shown in [("aldolaseau", True), ("aldolaseau-blind", True), ("aldolaseau-noise-2", False)]:
        assert ("Fig. 4D" in (folder / f"{name}.md").read_text()) == shown, name
    assert "Fig. 4D" not in (folder / "aldolase.md").read_text()
    assert f'"{FIG_4D_QUOTE}"' in table and '"collected over 100 micrographs per square' in table


def test_the_fig_4d_reference_quotes_the_paper():
    paper = REPO.parent / "shared" / "paper" / "cryorl-paper.txt"
    if not paper.is_file():
        pytest.skip(f"the paper's text is not at {paper}: the quotation is not checked")
    text = " ".join(paper.read_text(encoding="utf-8").split())
    assert FIG_4D_QUOTE in text
    assert "cryoRL collected over 100 micrographs per square, three times more than the human test subjects" in text


def test_committed_results_follow_the_protocol_and_hold_no_machine_paths():
    from cryobench.agents.registry import agent_class

    protocol = load_protocol()
    for path in sorted(tables.results_dir().glob("*.json")):
        text = path.read_text()
        assert "/work/" not in text and "/home/" not in text and "datasets/cryorl-aldolase" not in text, path
        doc = submissions.load_submission(path)
        assert path.stem == doc["agent"]["name"]
        # Same environment ids (versions), arguments and seeds as the protocol, every entry present.
        assert static_problems(doc, protocol, agent_class(doc["agent"]["name"])) == [], path
        for block in doc["entries"].values():
            assert np.isfinite(block["seconds_per_episode"])


# ---- the human track ----------------------------------------------------------------------
def _played_session(player: str, holes: int) -> dict:
    """The results file a person's `cryobench play` session writes (the session driven directly)."""
    import gymnasium as gym

    from cryobench.play.session import PlaySession
    from cryobench.results import env_record

    kwargs = {"duration": 30.0, "split": "all"}
    env = gym.make("cryobench/Aldolase-v0", **kwargs)
    session = PlaySession("s1", player, env.unwrapped, env_record(env, kwargs), seed=2, results_path=None)
    for _ in range(holes):
        hole = int(np.flatnonzero(~session.state.visited)[0])
        session.expose(hole)
    session.finish()
    return session.results()


def test_human_track_lists_people_apart_from_agents(tmp_path, monkeypatch):
    from cryobench.results import save_results

    monkeypatch.setattr(tables, "human_dir", lambda version=1: tmp_path)
    assert "No sessions yet" in tables.human_table(tables.load_human_results(), 1)
    save_results(_played_session("Ada", 5), tmp_path / "ada.json")
    save_results(_played_session("Bob", 9), tmp_path / "bob.json")
    table = tables.human_table(tables.load_human_results(), 1)
    rows = [line for line in table.splitlines() if line.startswith("| Ada") or line.startswith("| Bob")]
    assert len(rows) == 2 and all("cryobench/Aldolase-v0" in row for row in rows)
    goods = [int(row.split("|")[5]) for row in rows]
    assert goods == sorted(goods, reverse=True)  # best session first
    # An agent's results file is not a human session: refused with the field named.
    agent = json.loads((tmp_path / "ada.json").read_text())
    agent["agent"].pop("track")
    (tmp_path / "agent.json").write_text(json.dumps(agent))
    with pytest.raises(InputError, match="agent.track"):
        tables.load_human_results()


# ---- names from other people's files, made inert in the generated Markdown --------------------------
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("dqn-noise-robust", "dqn-noise-robust"),  # ordinary names and sentences come out as they were
        ("the agent learns (feedback: none)", "the agent learns (feedback: none)"),
        ("no measured data: skipped", "no measured data: skipped"),
        ("mailto:a@b.example data:text/html,x", "mailto&#58;a@b.example data&#58;text/html,x"),
        ("a|b", r"a\|b"),
        ("two\nlines\r\n| x |", r"two lines \| x \|"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("[click](javascript:alert(1))", r"\[click\](javascript&#58;alert(1))"),
        ("![img](https://evil.example/x.png)", r"!\[img\](https&#58;//evil.example/x.png)"),
        ("JavaScript:void(0)", "JavaScript&#58;void(0)"),
        ("www.evil.example", "www&#46;evil.example"),
        ("`code` *bold* _it_ ~~del~~ back\\slash &amp;", r"\`code\` \*bold\* \_it\_ \~\~del\~\~ back\\slash &amp;amp;"),
    ],
)
def test_names_are_escaped_for_markdown(name, shown):
    assert tables.escape_markdown(name) == shown


def _cells(line: str) -> int:
    """Cells of a Markdown table row: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


EVIL = "x|y\n| z <img src=x onerror=alert(1)> [a](javascript:alert(1))"


def test_an_agent_name_cannot_break_a_table_or_inject_html(submission):
    honest = submissions.load_submission(submission)
    evil = copy.deepcopy(honest)
    evil["agent"]["name"] = EVIL
    evil["not_applicable"] = {"aldolaseau": "</table> <b>reason</b>"}
    text = tables.entry_table([honest, evil], load_protocol().entry("aldolase"), 1)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    # agent, good exposures, IQM, normalised score, the metric columns, s / episode: every row the same
    assert len(rows) == 4 and {_cells(line) for line in rows} == {5 + len(tables.ENTRY_COLUMNS)}
    assert "<img" not in text and "](javascript:" not in text
    assert r"x\|y \| z &lt;img src=x onerror=alert(1)&gt; \[a\](javascript&#58;alert(1))" in text


def test_a_player_name_cannot_break_the_human_table():
    played = _played_session("Ada", 3)
    played["agent"]["name"] = "human:" + EVIL
    table = tables.human_table([played], 1)
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 3 and len({_cells(line) for line in rows}) == 1
    assert "<img" not in table and rows[2].startswith(r"| x\|y \| z &lt;img")
