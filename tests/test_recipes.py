"""DEVELOPERS.md's recipes, followed to the letter, and everything that must then see the new thing.

"Adding an agent: its module, its card, its entry point", "Adding a twin: its dataset card
and its environment card" and "Adding a metric: one registration" (whose tables and plots
tests/test_results.py checks). Each test adds a dummy the documented way, without touching the
checkout or the installed environment:

- the card folders are a temporary copy of the real ones (links to every real card) plus the
  new cards, found through ``cryobench.resources`` as an installed wheel's ``_cards/`` would be;
- the entry point goes into a temporary ``cryobench-*.dist-info`` ahead of the installed one on
  ``sys.path``, which is what ``pip install -e .`` writes after a line is added to the
  ``[project.entry-points."cryobench.agents"]`` table of pyproject.toml;
- the agent's module is a file in a temporary folder on ``sys.path``.

Then the new agent or twin must appear in the command line, the registry, ``gym.make``, the
lists the generic tests are parametrised with (``tests/discover.py``) and pass those generic
tests, and (agents) be asked for by the leaderboard's "every built-in agent" check.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
from importlib.metadata import distribution

import gymnasium as gym
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import cryobench.resources
from cryobench import registration
from cryobench.agents.registry import agent_class, list_agents, load_agent
from cryobench.cli import main
from cryobench.resources import CARD_KINDS, card_dir
from tests import discover

AGENT = "recipe-dummy"
TWIN = "recipedummy"
TWIN_ID = "cryobench/RecipeDummy-v0"


def completions(command: str, option: str, incomplete: str) -> list[str]:
    """What the shell completion of ``cryobench <command> <option>`` offers for ``incomplete``."""
    import click

    cmd = main.commands[command]
    param = next(p for p in cmd.params if option in p.opts)
    return [item.value for item in param.shell_complete(click.Context(cmd), incomplete)]


AGENT_MODULE = '''
"""A dummy agent for tests/test_recipes.py: the lowest predicted CTF, jittered by its own seeded draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent


@dataclass
class RecipeDummyConfig:
    jitter: float = 0.1  # Å of seeded noise added to the predicted CTFs before ranking


class RecipeDummyAgent(Agent):
    """Recipe dummy: lowest predicted CTF plus seeded jitter."""

    name = "recipe-dummy"
    Config = RecipeDummyConfig

    def act(self, obs: dict, info: dict) -> int:
        predicted = self.layout.predicted_ctf
        score = predicted + self.rng.normal(0.0, self.config.jitter, len(predicted))
        score[obs["action_mask"] == 0] = np.inf
        return int(np.argmin(score))
'''


def forget_env_cards() -> None:
    """Drop registration's cached reading of envs/ (whatever its cached functions are called)."""
    for value in vars(registration).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@pytest.fixture
def cards(tmp_path, monkeypatch):
    """A card tree like a wheel's ``cryobench/_cards``: every real card linked in, new ones addable."""
    root = tmp_path / "package"
    for kind in CARD_KINDS:
        folder = root / "_cards" / kind
        folder.mkdir(parents=True)
        for entry in card_dir(kind).iterdir():
            (folder / entry.name).symlink_to(entry)
    monkeypatch.setattr(cryobench.resources, "_PACKAGE_DIR", root)
    forget_env_cards()
    yield root / "_cards"
    forget_env_cards()


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A folder on ``sys.path`` that holds cryobench's metadata with extra entry points, as a
    reinstall after editing pyproject.toml would; returns a function adding ``name = target``."""
    site = tmp_path / "site"
    real = distribution("cryobench")
    info = site / f"cryobench-{real.version}.dist-info"
    info.mkdir(parents=True)
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: cryobench\nVersion: {real.version}\n")
    points = [ep for ep in real.entry_points if ep.group == discover.AGENT_GROUP]
    lines = [f"{ep.name} = {ep.value}" for ep in points]

    def add(name: str, target: str) -> None:
        lines.append(f"{name} = {target}")
        other = "\n".join(
            f"[{ep.group}]\n{ep.name} = {ep.value}" for ep in real.entry_points if ep.group != discover.AGENT_GROUP
        )
        info.joinpath("entry_points.txt").write_text(
            f"[{discover.AGENT_GROUP}]\n" + "\n".join(lines) + "\n" + other + "\n"
        )

    monkeypatch.syspath_prepend(str(site))
    yield site, add
    sys.modules.pop("cryobench_recipe_dummy", None)


# ---- adding an agent -----------------------------------------------------------------------------
@pytest.fixture
def dummy_agent(cards, installed):
    site, add_entry_point = installed
    # 1. its module
    (site / "cryobench_recipe_dummy.py").write_text(textwrap.dedent(AGENT_MODULE))
    # 2. its card: the Config's fields and defaults, as every built-in card
    card = {
        "name": AGENT,
        "summary": "A dummy agent that follows DEVELOPERS.md's recipe.",
        "source": "tests/test_recipes.py",
        "upper_bound": False,
        "needs_feedback": False,
        "hyperparameters": {"jitter": 0.1},
    }
    (cards / "agents" / f"{AGENT}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    # 3. its entry point
    add_entry_point(AGENT, "cryobench_recipe_dummy:RecipeDummyAgent")
    return AGENT


def test_a_new_agent_is_listed_loaded_and_run_by_name(dummy_agent, tmp_path):
    runner = CliRunner()
    listing = runner.invoke(main, ["list", "agents"])
    assert listing.exit_code == 0, listing.output
    agents_part = listing.output.split("upper bounds")[0]
    assert f"  {AGENT} " in agents_part and "A dummy agent that follows DEVELOPERS.md's recipe." in agents_part
    checked = runner.invoke(main, ["list", "agents", "--check"])  # imports every agent
    assert checked.exit_code == 0 and f"  {AGENT} " in checked.output
    assert "failed to load" not in checked.output
    assert completions("run", "--agent", "recipe") == [AGENT]
    row = next(r for r in list_agents() if r["name"] == AGENT)
    assert row["error"] is None and row["source"] == "cryobench_recipe_dummy:RecipeDummyAgent"
    agent, card = load_agent(AGENT, {"jitter": 0.5})
    assert agent.config.jitter == 0.5 and card["summary"].startswith("A dummy agent")
    args = ["run", "--agent", AGENT, "--env", "aldolase", "-e", "duration=30", "--episodes", "1", "--quiet"]
    ran = runner.invoke(main, [*args, "--out", str(tmp_path / "run.json")])
    assert ran.exit_code == 0, ran.output
    document = yaml.safe_load((tmp_path / "run.json").read_text())
    assert document["agent"]["name"] == AGENT and document["agent"]["card"]["hyperparameters"] == {"jitter": 0.1}


def test_a_new_agent_is_in_the_generic_tests_and_passes_them(dummy_agent):
    from tests import test_agents

    assert AGENT in discover.agent_names()
    assert agent_class(AGENT).__name__ == "RecipeDummyAgent"
    # The generic tests of tests/test_agents.py, run on it as their parametrisation would.
    test_agents.test_card_equals_the_agent_class_and_its_config(AGENT)
    test_agents.test_agent_plays_legal_deterministic_episodes(AGENT)
    test_agents.test_only_agents_that_need_feedback_refuse_feedback_none(AGENT)
    test_agents.test_agent_fits_through_the_evaluation_entry_point(AGENT)


def test_a_new_agent_is_asked_for_by_the_leaderboard(dummy_agent):
    from tests import test_leaderboard

    with pytest.raises(AssertionError, match=f"without results in leaderboards/results/v1/: \\['{AGENT}'\\]"):
        test_leaderboard.test_every_built_in_agent_is_on_the_leaderboard()


def test_a_card_that_disagrees_with_the_config_is_caught(dummy_agent, cards):
    from tests import test_agents

    path = cards / "agents" / f"{AGENT}.yaml"
    card = yaml.safe_load(path.read_text())
    card["hyperparameters"] = {"jitter": 0.1, "temperature": 1.0}
    path.write_text(yaml.safe_dump(card))
    with pytest.raises(
        AssertionError, match=r"recipe-dummy.yaml: hyperparameters missing \[\], unknown \['temperature'\]"
    ):
        test_agents.test_card_equals_the_agent_class_and_its_config(AGENT)
    config = dataclasses.fields(agent_class(AGENT).Config)
    assert [f.name for f in config] == ["jitter"]


def test_a_card_without_its_entry_point_is_caught(cards):
    from tests import test_agents

    (cards / "agents" / f"{AGENT}.yaml").write_text(yaml.safe_dump({"name": AGENT, "hyperparameters": {}}))
    with pytest.raises(AssertionError, match=f"cards \\['{AGENT}'\\] have no entry point"):
        test_agents.test_every_agent_card_belongs_to_an_agent()


# ---- adding a twin -------------------------------------------------------------------------------
@pytest.fixture
def dummy_twin(cards):
    # 1. its dataset card: a small grid with the Aldolase twin's quality model
    card = yaml.safe_load((cards / "datasets" / "aldolase.yaml").read_text())
    card.update(name=TWIN, title="Recipe dummy (simulated twin)", world_seed=3, layout_seed=5)
    card["layout"].update(
        tiles={"value": 4, "source": "assumption"},
        squares={"value": 6, "source": "assumption"},
        holes={"value": 400, "source": "assumption"},
    )
    (cards / "datasets" / f"{TWIN}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    # 2. its environment card
    env_card = {
        "id": TWIN_ID,
        "short_name": TWIN,
        "title": "Recipe dummy (simulated twin)",
        "kwargs": {"dataset": TWIN},
        "description": "A twin added the documented way by tests/test_recipes.py.",
        "paper": "not in the paper",
        "simulated": True,
    }
    (cards / "envs" / f"{TWIN}.yaml").write_text(yaml.safe_dump(env_card, sort_keys=False))
    forget_env_cards()
    registration.register_envs()  # what `import cryobench` does
    yield TWIN
    gym.registry.pop(TWIN_ID, None)


def test_a_new_twin_is_registered_listed_and_made(dummy_twin, tmp_path):
    assert TWIN_ID in registration.env_cards() and registration.resolve_env_id(TWIN) == TWIN_ID
    env = gym.make(TWIN_ID, split="all")
    obs, _ = env.reset(seed=0)
    assert env.action_space.n == 400 and obs["action_mask"].sum() == 399
    assert env.unwrapped.world.grid.n_squares == 6
    runner = CliRunner()
    envs = runner.invoke(main, ["list", "envs"])
    assert envs.exit_code == 0 and any(line.split()[:2] == [TWIN, TWIN_ID] for line in envs.output.splitlines())
    assert completions("run", "--env", "recipe") == [TWIN]
    datasets = runner.invoke(main, ["datasets", "list"])
    assert any(line.split()[:2] == [TWIN, "simulated-twin"] for line in datasets.output.splitlines())
    shown = runner.invoke(main, ["datasets", "show", TWIN, "--json"])
    assert shown.exit_code == 0, shown.output
    args = ["run", "--agent", "greedy", "--env", TWIN, "--episodes", "1", "--quiet", "--out", str(tmp_path / "r.json")]
    ran = runner.invoke(main, args)
    assert ran.exit_code == 0, ran.output
    assert yaml.safe_load((tmp_path / "r.json").read_text())["env"]["id"] == TWIN_ID


def test_a_new_twin_is_in_the_generic_tests_and_passes_them(dummy_twin):
    from tests import test_datasets, test_env

    assert TWIN in discover.dataset_cards() and TWIN_ID in discover.env_cards_on_disk()
    assert [p.values[0] for p in discover.dataset_params(kind="simulated-twin")].count(TWIN) == 1
    test_datasets.test_every_card_loads_and_every_parameter_says_where_it_comes_from()
    test_datasets.test_the_card_folders_hold_cards_only_and_every_twin_has_an_environment()
    test_datasets.test_twins_are_deterministic_with_fixed_layout_and_disjoint_splits(TWIN)
    test_env.test_check_env_passes_without_warnings(TWIN_ID)
    test_env.test_same_seed_same_episode(TWIN_ID)


def test_a_twin_without_its_environment_card_is_caught(dummy_twin, cards):
    from tests import test_datasets

    (cards / "envs" / f"{TWIN}.yaml").unlink()
    with pytest.raises(AssertionError, match=f"twins without an environment card in envs/: \\['{TWIN}'\\]"):
        test_datasets.test_the_card_folders_hold_cards_only_and_every_twin_has_an_environment()


def test_no_help_text_lists_the_environments_by_hand(dummy_twin):
    """A hand-written list in a help text would leave the new twin out: help names at most one
    environment, as an example, and points to `cryobench list envs`."""
    short_names = [card["short_name"] for card in registration.env_cards().values()]
    for name, command in main.commands.items():
        for param in getattr(command, "params", []):
            if "--env" in getattr(param, "opts", ()) and param.help:
                named = [short for short in short_names if re.search(rf"\b{re.escape(short)}\b", param.help)]
                assert len(named) <= 1, f"cryobench {name} --env help lists {named} by hand: {param.help!r}"


# ---- adding a metric -----------------------------------------------------------------------------
@pytest.fixture
def dummy_metric():
    """One registration, as DEVELOPERS.md's recipe says, into the real registry (so a reader that
    kept its own reference to it sees the metric too); taken out again afterwards."""
    from cryobench import metrics

    metric = metrics.register_metric(
        metrics.Metric(
            "recipe_minutes_per_exposure",
            "minutes / exposure",
            digits=3,
            unit="min",
            higher_is_better=False,
            compute=lambda row: row["minutes"] / max(row["exposures"], 1),
        )
    )
    yield metric
    metrics.METRICS.pop(metric.name)


def test_a_new_metric_is_in_run_results_and_every_form_of_compare(dummy_metric, tmp_path):
    import csv
    import json

    runner = CliRunner()
    out = tmp_path / "run.json"
    args = ["run", "--agent", "random", "--env", "aldolase", "-e", "duration=30", "--episodes", "2", "--quiet"]
    ran = runner.invoke(main, [*args, "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    document = json.loads(out.read_text())
    expected = float(np.mean([row["minutes"] / row["exposures"] for row in document["episodes"]]))
    assert document["summary"][dummy_metric.name]["mean"] == pytest.approx(expected)
    printed = next(line for line in ran.output.splitlines() if line.startswith(dummy_metric.name))
    assert float(printed.split()[1]) == pytest.approx(expected, abs=0.01)

    compared = runner.invoke(main, ["compare", str(out)])
    assert compared.exit_code == 0 and dummy_metric.name in compared.output
    as_json = runner.invoke(main, ["compare", str(out), "--json"])
    (row,) = json.loads(as_json.output)["table"]
    assert row[dummy_metric.name] == pytest.approx(expected)
    as_csv = runner.invoke(main, ["compare", str(out), "--csv"])
    (row,) = list(csv.DictReader(as_csv.output.splitlines()))
    assert float(row[dummy_metric.name]) == pytest.approx(expected)
