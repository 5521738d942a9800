"""Protocol v2: held-out test worlds, sealed runs, submissions that verify field by field."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from cryobench.errors import InputError
from cryobench.heldout import load_heldout_protocol, parse_heldout_protocol, second_draw
from cryobench.leaderboard import heldout_runs
from cryobench.protocol import protocol_path
from cryobench.resources import card_dir
from cryobench.seeding import TEST_SEED_START


def test_the_protocol_plays_held_out_test_worlds_in_families():
    protocol = load_heldout_protocol()
    assert all(world >= TEST_SEED_START for world in protocol.worlds)
    assert len(protocol.worlds) >= 10 and len(protocol.starts) >= 2
    families = {family.name for family in protocol.families}
    assert {"twins", "perfect-regressor", "poor-regressor", "timings", "session-length", "threshold"} <= families
    names = [task.name for task in protocol.tasks]
    assert len(names) == len(set(names))
    assert protocol.measured and all(task.measured for task in protocol.measured)
    draw = second_draw(protocol)
    assert len(draw) == len(protocol.worlds) and not set(draw) & set(protocol.worlds)
    quick = protocol.quick()
    assert quick.tier == "quick" and len(quick.tasks) < len(protocol.tasks) and not quick.measured


def test_the_validation_tier_plays_the_same_tasks_on_training_worlds_only():
    protocol = load_heldout_protocol()
    validation = heldout_runs.protocol_for("validation")
    assert validation.tier == "validation"
    assert len(validation.worlds) == len(protocol.worlds) and validation.starts == protocol.starts
    assert all(world < TEST_SEED_START for world in validation.worlds)  # never a test world
    assert [(t.name, t.env, t.kwargs) for t in validation.tasks] == [(t.name, t.env, t.kwargs) for t in protocol.tasks]
    assert [t.kwargs["split"] for t in protocol.measured] == ["test"]
    assert [t.kwargs["split"] for t in validation.measured] == ["train"]  # the measured test split stays unseen


def _protocol_doc() -> dict:
    return yaml.safe_load(protocol_path(2).read_text())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["test_worlds"].update(first=5), "test_worlds"),
        (lambda d: d["families"][0]["tasks"][0].update(kwargs={"world_seed": 3}), "world_seed"),
        (lambda d: d["families"][0]["tasks"].append(dict(d["families"][0]["tasks"][0])), "unique"),
        (lambda d: d["families"][0]["tasks"][0].update(env="cryobench/Aldolase"), "versioned environment id"),
        (lambda d: d.update(starts=[3, 1]), "starts"),
        (lambda d: d["quick"].update(tasks=["no-such-task"]), "quick"),
        (lambda d: d.update(references={"aldolase": {"random": 1.0}}), "references"),
        (lambda d: d.update(extra=1), "unknown field"),
    ],
)
def test_a_malformed_protocol_names_the_field(change, field):
    doc = _protocol_doc()
    change(doc)
    with pytest.raises(InputError, match=field) as caught:
        parse_heldout_protocol(doc, "protocol-v2.yaml")
    assert str(caught.value).startswith("protocol-v2.yaml")


@pytest.fixture(scope="module")
def quick_submission(tmp_path_factory):
    work = tmp_path_factory.mktemp("quick")
    doc = heldout_runs.submit_heldout("predict-rank", work / "sweep", tier="quick", workers=2, progress=False)
    path = heldout_runs.save_submission(doc, work / "predict-rank.json")
    return path, doc


@pytest.mark.slow
def test_a_quick_submission_follows_the_schema_and_the_protocol(quick_submission):
    path, doc = quick_submission
    protocol = heldout_runs.protocol_for("quick")
    loaded = heldout_runs.load_submission(path)
    assert loaded == json.loads(json.dumps(doc))
    assert loaded["sealed"] is True and loaded["protocol"]["tier"] == "quick" and not loaded["protocol"]["complete"]
    assert sorted(loaded["tasks"]) == sorted(task.name for task in protocol.tasks)
    for block in loaded["tasks"].values():
        assert [run["world"] for run in block["runs"]] == list(protocol.worlds)
        for run in block["runs"]:
            goods = [episode["good_exposures"] for episode in run["episodes"]]
            assert run["score"] == pytest.approx(sum(goods) / len(goods))
            assert 0 < run["score"] <= run["n_holes"]
    assert heldout_runs.static_problems(loaded, protocol) == []


@pytest.mark.slow
def test_verify_accepts_an_exact_reproduction_and_lists_what_it_cannot_verify(quick_submission):
    path, _ = quick_submission
    report = heldout_runs.verify_heldout(path, workers=2)
    assert report["accepted"], report["reasons"]
    assert report["reduced"] is True
    assert "provenance" in report["unverifiable"] and "seconds_per_episode" in report["unverifiable"]


def _first_run(doc):
    return next(iter(doc["tasks"].values()))["runs"][0]


TAMPERINGS = [
    ("world size", lambda d: _first_run(d).update(n_holes=_first_run(d)["n_holes"] + 1), "n_holes"),
    (
        "good exposures",
        lambda d: (
            _first_run(d)["episodes"][0].update(good_exposures=_first_run(d)["episodes"][0]["good_exposures"] + 1),
            _first_run(d).update(score=heldout_runs.run_score(_first_run(d)["episodes"])),
        ),
        "episodes.good_exposures",
    ),
    ("trajectory", lambda d: _first_run(d)["episodes"][0].update(trajectory_sha256="0" * 64), "trajectory_sha256"),
    ("minutes", lambda d: _first_run(d)["episodes"][0].update(minutes=1.0), "episodes.minutes"),
    ("squares", lambda d: _first_run(d)["episodes"][0].update(squares_visited=1), "episodes.squares_visited"),
    ("version", lambda d: d["agent"]["version"].update(card_sha256="f" * 64), "agent.version"),
    ("upper bound flag", lambda d: d["agent"].update(upper_bound=True), "agent.upper_bound"),
    ("hyperparameters", lambda d: d["agent"]["hyperparameters"].update(extra=1), "agent.hyperparameters"),
    ("not applicable", lambda d: d["not_applicable"].update(x="y"), "not_applicable"),
    ("grid", lambda d: next(iter(d["tasks"].values())).update(grid="other"), "grid"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("what", "change", "reason"), TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_a_tampered_field_does_not_reproduce(quick_submission, what, change, reason):
    _, doc = quick_submission
    tampered = copy.deepcopy(doc)
    change(tampered)
    reasons = heldout_runs.reproduction_problems(tampered, doc)  # doc is what a re-run gives (tested above)
    assert any(reason in r for r in reasons), reasons
    assert heldout_runs.reproduction_problems(copy.deepcopy(doc), doc) == []


STATIC_TAMPERINGS = [
    ("world seed", lambda d: _first_run(d).update(world=_first_run(d)["world"] + 100), "one per test world"),
    (
        "protocol worlds",
        lambda d: d["protocol"].update(worlds=[TEST_SEED_START + 900, TEST_SEED_START + 901]),
        "worlds",
    ),
    ("arguments", lambda d: next(iter(d["tasks"].values()))["kwargs"].update(noise=0.0), "arguments"),
    ("environment", lambda d: next(iter(d["tasks"].values())).update(env_id="cryobench/RNAPII-v0"), "environment"),
    ("starts", lambda d: _first_run(d)["episodes"][0].update(seed=7), "start seeds"),
    ("complete", lambda d: d["protocol"].update(complete=True), "complete"),
    ("undeclared task", lambda d: d["protocol"]["tasks"].pop(), "not declared"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("what", "change", "reason"), STATIC_TAMPERINGS, ids=[t[0] for t in STATIC_TAMPERINGS])
def test_a_submission_off_the_protocol_is_refused_before_any_run(quick_submission, what, change, reason):
    _, doc = quick_submission
    tampered = copy.deepcopy(doc)
    change(tampered)
    reasons = heldout_runs.static_problems(tampered, heldout_runs.protocol_for("quick"))
    assert any(reason in r for r in reasons), reasons


SCHEMA_TAMPERINGS = [
    ("wrong version", lambda d: d["protocol"].update(version=1), "protocol.version"),
    ("unsafe agent name", lambda d: d["agent"].update(name="<img onerror=x>"), "agent.name"),
    ("unsealed", lambda d: d.update(sealed=False), "sealed"),
    ("score off its episodes", lambda d: _first_run(d).update(score=_first_run(d)["score"] + 1), "score"),
    ("negative count", lambda d: _first_run(d)["episodes"][0].update(exposures=-1), "exposures"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("what", "change", "field"), SCHEMA_TAMPERINGS, ids=[t[0] for t in SCHEMA_TAMPERINGS])
def test_a_malformed_submission_names_the_field_and_nothing_is_written(quick_submission, tmp_path, what, change, field):
    _, doc = quick_submission
    tampered = copy.deepcopy(doc)
    change(tampered)
    out = tmp_path / "out.json"
    with pytest.raises(InputError, match=field) as caught:
        heldout_runs.save_submission(tampered, out)
    assert "\n" not in str(caught.value)
    assert not out.exists()


@pytest.mark.slow
def test_non_finite_numbers_are_refused(quick_submission, tmp_path):
    path, _ = quick_submission
    text = path.read_text().replace('"score": ', '"score": NaN, "x": ', 1)
    bad = tmp_path / "nan.json"
    bad.write_text(text)
    with pytest.raises(InputError, match="non-finite number NaN"):
        heldout_runs.load_submission(bad)
    report = heldout_runs.verify_heldout(bad)
    assert not report["accepted"] and "non-finite" in report["reasons"][0]


def test_the_training_environment_draws_training_worlds_and_conditions():
    import warnings

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env = gym.make("cryobench/Training-v0", dataset="apoferritin")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []
    seen = []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        inner = env.unwrapped
        assert inner.world_seed < TEST_SEED_START and inner.layout_seed < TEST_SEED_START
        assert info["conditions"] == inner.conditions
        seen.append((inner.world_seed, inner.layout_seed, json.dumps(info["conditions"], sort_keys=True)))
    assert len(set(seen)) == 6  # a new world and conditions at every reset
    again = gym.make("cryobench/Training-v0", dataset="apoferritin")
    _, info = again.reset(seed=5)
    assert (again.unwrapped.world_seed, json.dumps(info["conditions"], sort_keys=True)) == (seen[5][0], seen[5][2])
    with pytest.raises(InputError, match="takes 'dataset', 'regressors', 'feedback' and 'render_mode'"):
        gym.make("cryobench/Training-v0", noise=2.0)


def test_training_worlds_of_poor_regressors_draw_only_poor_ones():
    import gymnasium as gym

    from cryobench.training_env import draw_conditions

    env = gym.make("cryobench/Training-v0", dataset="aldolase", regressors="poor")
    models = set()
    for seed in range(40):
        conditions = env.reset(seed=seed)[1]["conditions"]
        regressor = conditions["regressor"]
        models.add("default" if regressor is None else regressor["model"] if isinstance(regressor, dict) else regressor)
        if regressor is None:
            assert 1.0 <= conditions["noise"] <= 2.5
        elif isinstance(regressor, dict):
            assert 1.5 <= regressor["sigma"] <= 3.0
    assert models == {"default", "gaussian", "uninformative"}
    # "all" is the default and draws what it drew before the option existed (same generator calls)
    assert draw_conditions(np.random.default_rng(7)) == draw_conditions(np.random.default_rng(7), "all")
    with pytest.raises(InputError, match="argument 'regressors': expected one of all, poor, got 'bad'"):
        gym.make("cryobench/Training-v0", regressors="bad")


@pytest.mark.parametrize("name", ["world_seed", "layout_seed"])
def test_training_refuses_a_test_world(name):
    from cryobench.agents.dqn import DQNConfig
    from cryobench.agents.dqn_train import training_worlds

    with pytest.raises(InputError, match=f"training argument '{name}': seed {TEST_SEED_START} is a test world"):
        training_worlds("aldolase", {name: TEST_SEED_START}, DQNConfig(extra_worlds=0, training_pool=0), seed=0)


# ---- the committed protocol v2 board ----------------------------------------------------------------
def _board_results():
    from cryobench.leaderboard import heldout_tables

    docs = heldout_tables.load_results()
    if not docs:
        pytest.skip("no committed protocol v2 results yet (leaderboards/results/v2/)")
    return docs


def test_every_built_in_agent_is_on_the_v2_board_or_pending_with_a_reason():
    from importlib.metadata import distribution

    from cryobench.leaderboard import heldout_tables

    docs = _board_results()
    ours = {ep.name for ep in distribution("cryobench").entry_points if ep.group == "cryobench.agents"}
    on_board = {doc["agent"]["name"] for doc in docs}
    pending = heldout_tables.load_pending()
    assert all(reason.strip() for reason in pending.values())
    assert sorted(ours - on_board - set(pending)) == [], "built-in agents neither on the v2 board nor pending"
    assert sorted(set(pending) & on_board) == [], "pending agents that have results now: remove them from pending"
    for doc in docs:
        assert doc["protocol"]["complete"] and doc["sealed"]


@pytest.mark.slow
def test_the_committed_v2_outputs_are_what_build_writes():
    from cryobench.leaderboard import heldout_site

    _board_results()
    assert heldout_site.build(check=True) == [], "run `cryobench leaderboard build` and commit its outputs"


@pytest.mark.slow
def test_the_v2_page_renders_in_chromium_with_every_agent_escaped(tmp_path):
    import shutil
    import subprocess

    from cryobench.resources import card_dir

    docs = _board_results()
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    if not shutil.which(browser):
        pytest.skip("chromium is not installed (apt-get install -y chromium): the page is not rendered")
    page = card_dir("leaderboards") / "site" / "index.html"
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")  # no external assets
    for doc in docs:
        assert doc["agent"]["name"] in text
    shot = tmp_path / "page.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    subprocess.run(
        [
            browser,
            *flags,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 50_000  # a rendered page of tables and figures, not a blank one


@pytest.fixture(scope="module")
def committed_board():
    from cryobench.leaderboard.heldout_tables import compute_board

    return compute_board(_board_results())


def test_the_fixed_plans_are_the_agents_that_declare_they_read_no_feedback(committed_board):
    from cryobench.agents.registry import agent_class

    board = committed_board
    declared = sorted(name for name in board.agents if not agent_class(name).reads_feedback)
    assert list(board.fixed_plans) == declared
    # genetic and annealing plan once from the predictions: fixed plans like predict-rank and greedy.
    assert {"predict-rank", "greedy", "genetic", "annealing"} <= set(board.fixed_plans)
    assert not {"genetic-replan", "annealing-replan", "bayes-lookahead", "dqn"} & set(board.fixed_plans)
    assert not set(board.bounds) & set(board.fixed_plans)


def test_an_uninstalled_agent_counts_as_adaptive():
    from cryobench.leaderboard.heldout_tables import fixed_plans

    assert fixed_plans(["predict-rank", "someone-elses-agent", "ucb"]) == ("predict-rank",)


def test_the_best_fixed_plan_is_the_highest_of_the_declared_ones_and_fixed_plans_show_no_gain(committed_board):
    from cryobench.leaderboard.heldout_tables import headroom, headroom_table, task_means

    board = committed_board
    means = {name: task_means(doc) for name, doc in board.docs.items()}
    families = headroom(board)
    assert [f.family for f in families] == [f.name for f in board.protocol.families]
    for family in families:
        for task in family.tasks:
            plan, mean = family.best_fixed_plan[task]
            assert mean == max(means[f][task] for f in board.fixed_plans)
            assert plan in board.fixed_plans and means[plan][task] == mean
        rows = {row.agent: row for row in family.rows}
        for name in board.fixed_plans:
            assert rows[name].gain is None
        ran = [t for t in family.tasks if t in means["bayes-lookahead"]]  # it needs feedback: no blind task
        gains = [means["bayes-lookahead"][t] - family.best_fixed_plan[t][1] for t in ran]
        assert rows["bayes-lookahead"].gain == pytest.approx(np.mean(gains))
    # On the uninformative regressor snowball, which ignores the predictions, is the best fixed plan.
    poor = next(f for f in families if f.family == "poor-regressor")
    assert poor.best_fixed_plan["apoferritin-uninformative"][0] == "snowball"
    lines = headroom_table(board)
    for name in board.fixed_plans:
        assert all(line.endswith("| fixed plan |") for line in lines if line.startswith(f"| {name} |"))


def test_the_page_shows_the_headroom_of_headroom_md_and_says_what_each_bound_knows(committed_board):
    import html

    from cryobench.leaderboard import heldout_site
    from cryobench.leaderboard.heldout_tables import headroom, headroom_table

    board = committed_board
    page = heldout_site.render_page(board, heldout_site.render_figures(board))
    section = page[page.index("<section id=headroom>") : page.index("</section>", page.index("<section id=headroom>"))]
    markdown = headroom_table(board)
    for family in headroom(board):
        own = markdown[markdown.index(f"## {family.family}: {family.title}") :]
        start = section.index(f"<h3>{family.family}:")
        for row in family.rows:
            label = row.agent + (" (upper bound)" if row.upper_bound else "")
            line = next(x for x in own if x.startswith(f"| {label} |"))
            cells = [c.strip() for c in line.strip("|").split("|")][1:]  # the figures after the name
            name_cell = f"<th scope=row>{row.agent}" + (" <small>" if row.upper_bound else "</th>")
            html_row = section[section.index(name_cell, start) :].split("</tr>")[0]
            shown = [html.unescape(c.split("</td>")[0]) for c in html_row.split("<td>")[1:]]
            assert shown == cells, (family.family, row.agent)
    bounds = page[page.index("<h2>Upper bounds</h2>") :]
    informed = bounds[bounds.index("<b>oracle-informed</b>") :].split("</li>")[0]
    assert "ground truth" not in informed and "latent patch quality" in informed and "not each hole" in informed
    for oracle in ("oracle-planner", "oracle-predict-rank"):
        assert "sees the ground truth" in bounds[bounds.index(f"<b>{oracle}</b>") :].split("</li>")[0]


def test_the_real_data_track_shows_the_gap_closed_on_its_one_world(committed_board):
    from cryobench.leaderboard.heldout_tables import real_data_table

    board = committed_board
    measured = board.protocol.measured[0].name
    score = {name: doc["tasks"][measured]["runs"][0]["score"] for name, doc in board.docs.items()}
    pr, informed = score["predict-rank"], score["oracle-informed"]
    best_fixed = max(score[name] for name in board.fixed_plans)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in real_data_table(board)[2:]]
    assert len(rows) == len(score)
    for label, task, _, _, closed, gain in rows:
        name = label.removesuffix(" (upper bound)")
        assert task == measured
        assert closed == f"{100 * (score[name] - pr) / (informed - pr):.0f}%"
        assert gain == ("fixed plan" if name in board.fixed_plans else f"{score[name] - best_fixed:+.1f}")
    text = (card_dir("leaderboards") / "tables" / "v2" / "real-data.md").read_text()
    assert "ONE world" in text and "no interval" in text


def test_names_in_tables_and_page_are_escaped():
    from cryobench.leaderboard.tables import escape_markdown

    assert "<img" not in escape_markdown("<img src=x onerror=alert(1)>")
    assert "|" not in escape_markdown("a | b").replace("\\|", "")  # only escaped pipes: the row stays one row
    assert "\n" not in escape_markdown("a\n# b")


def test_summarize_tabulates_any_submissions_of_one_tier_and_refuses_a_mix(tmp_path):
    from cryobench.leaderboard import heldout_tables

    results = heldout_tables.results_dir()
    names = ["predict-rank", "greedy", "oracle-informed", "random"]
    written = heldout_tables.summarize([results / f"{name}.json" for name in names], tmp_path / "tables")
    assert {path.name for path in written} >= {"overall.md", "twins.md", "headroom.md", "tasks.md"}
    overall = (tmp_path / "tables" / "overall.md").read_text()
    assert "leaderboard summarize` from 4 submission(s), full tier" in overall and "## Pending" not in overall
    twins = [line for line in overall.split("## perfect-regressor")[0].splitlines() if line.startswith("| 1")]
    assert {line.split("|")[2].strip() for line in twins} <= {"greedy", "predict-rank"} and twins
    quick = json.loads((results / "greedy.json").read_text())
    quick["protocol"].update(tier="quick", complete=False)
    mixed = tmp_path / "greedy-quick.json"
    mixed.write_text(json.dumps(quick))
    with pytest.raises(InputError, match="one tier on the same worlds and starts; these differ"):
        heldout_tables.summarize([results / "predict-rank.json", mixed], tmp_path / "mixed")


@pytest.mark.parametrize(
    ("tier", "world", "accepted"),
    [("full", 2**29, False), ("validation", 2**29, True), ("validation", TEST_SEED_START, False)],
)
def test_the_schema_keeps_test_and_validation_worlds_apart(tmp_path, tier, world, accepted):
    doc = json.loads((card_dir("leaderboards") / "results" / "v2" / "predict-rank.json").read_text())
    doc["protocol"].update(tier=tier, worlds=[world], complete=False)
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(doc))
    if accepted:
        assert heldout_runs.load_submission(path)["protocol"]["worlds"] == [world]
    else:
        with pytest.raises(InputError, match="protocol.worlds.0"):
            heldout_runs.load_submission(path)
