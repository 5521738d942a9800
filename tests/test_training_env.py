"""cryobench/Training-v0's feedback option, and what an agent that needs revealed CTFs says there."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

from cryobench.agents.registry import load_agent
from cryobench.cli import main
from cryobench.errors import InputError
from cryobench.training_env import TrainingWorldsEnv, draw_conditions


def test_feedback_reveals_changes_only_the_feedback_of_the_default_draw():
    pairs = []
    for seed in range(300):
        default = draw_conditions(np.random.default_rng(seed))
        reveals_rng = np.random.default_rng(seed)
        reveals = draw_conditions(reveals_rng, "all", "reveals")
        default_rng = np.random.default_rng(seed)
        draw_conditions(default_rng)
        assert {k: v for k, v in reveals.items() if k != "feedback"} == {
            k: v for k, v in default.items() if k != "feedback"
        }
        assert reveals_rng.random() == default_rng.random()  # the same number of draws: later worlds unchanged
        pairs.append((default["feedback"], reveals["feedback"]))
    assert {after for _, after in pairs} == {"inspection", "queue:10"}
    assert {before for before, _ in pairs} == {"inspection", "queue:10", "none"}  # the default still draws 'none'
    assert all(after == "inspection" for before, after in pairs if before == "inspection")


def test_training_worlds_with_feedback_reveals_are_the_default_worlds():
    default = gym.make("cryobench/Training-v0", dataset="apoferritin")
    reveals = gym.make("cryobench/Training-v0", dataset="apoferritin", feedback="reveals")
    for seed in range(8):
        before = default.reset(seed=seed)[1]["conditions"]
        after = reveals.reset(seed=seed)[1]["conditions"]
        assert reveals.unwrapped.world_seed == default.unwrapped.world_seed
        assert reveals.unwrapped.layout_seed == default.unwrapped.layout_seed
        assert after["feedback"] in ("inspection", "queue:10")
        assert {k: v for k, v in after.items() if k != "feedback"} == {
            k: v for k, v in before.items() if k != "feedback"
        }


@pytest.mark.parametrize("value", ["inspection", "none", "REVEALS", ""])
def test_training_feedback_refuses_anything_but_its_ranges(value):
    with pytest.raises(InputError, match=f"argument 'feedback': expected one of all, reveals .*got '{value}'"):
        gym.make("cryobench/Training-v0", feedback=value)


def _seed_of_a_blind_world() -> int:
    env = gym.make("cryobench/Training-v0")
    return next(seed for seed in range(50) if env.reset(seed=seed)[1]["conditions"]["feedback"] == "none")


def test_an_agent_that_needs_feedback_names_the_training_world_and_the_fix():
    seed = _seed_of_a_blind_world()
    env = gym.make("cryobench/Training-v0")
    env.reset(seed=seed)
    agent, _ = load_agent("bayes-lookahead")
    with pytest.raises(InputError) as refused:
        agent.reset(env, seed)
    assert "this training world drew feedback 'none'" in str(refused.value)
    assert "pass -e feedback=reveals" in str(refused.value)
    fixed = gym.make("cryobench/Training-v0", feedback="reveals")
    fixed.reset(seed=seed)
    agent.reset(fixed, seed)  # the same world, now with feedback that reveals CTFs: accepted
    assert fixed.unwrapped.layout.feedback.reveals


@pytest.mark.parametrize(
    ("env", "blind", "told"),
    [
        ("training", [], "this training world drew feedback 'none'"),
        ("aldolase", ["-e", "feedback=none"], "the environment has feedback 'none'"),
    ],
)
def test_following_the_feedback_advice_works(env, blind, told, tmp_path):
    seed = _seed_of_a_blind_world() if env == "training" else 0
    command = ["run", "--agent", "bayes-lookahead", "--env", env, "--episodes", "1", "--seed", str(seed), "--quiet"]
    refused = CliRunner().invoke(main, [*command, *blind, "--out", str(tmp_path / "refused.json")])
    assert refused.exit_code != 0 and told in refused.output
    advice = re.search(r"pass (-e) (feedback=\w+)", refused.output)
    result = CliRunner().invoke(main, [*command, advice[1], advice[2], "--out", str(tmp_path / "followed.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "followed.json").is_file() and not (tmp_path / "refused.json").exists()


def test_a_run_on_training_worlds_records_every_episodes_world_and_says_so(tmp_path):
    # Each reset draws a new world: the results header can only show the last, so each episode keeps its own.
    from click.testing import CliRunner

    from cryobench.cli import main

    out = tmp_path / "r.json"
    args = ["run", "--agent", "predict-rank", "--env", "training", "--episodes", "3", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 episodes, a new world each (3538 holes; each one's seeds and conditions in the results)" in result.output
    assert "split" not in result.output.splitlines()[1]
    episodes = json.loads(out.read_text())["episodes"]
    worlds = [episode["drawn_world"] for episode in episodes]
    assert len({world["world_seed"] for world in worlds}) == 3  # three different worlds
    for episode, world in zip(episodes, worlds, strict=True):  # each replays from its recorded seeds
        env = TrainingWorldsEnv()
        env.reset(seed=episode["seed"])
        assert (env.world_seed, env.layout_seed, env.conditions) == (
            world["world_seed"],
            world["layout_seed"],
            world["conditions"],
        )


def test_a_fixed_world_records_no_drawn_world():
    import gymnasium as gym

    from cryobench.evaluate import drawn_world

    assert drawn_world(gym.make("cryobench/Aldolase-v0")) is None
