"""The built-in agents of the zoo: API, legality, determinism, feedback rules, reference levels."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from cryobench.agents.registry import agent_class, load_agent, load_card
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.evaluate import play_episode
from cryobench.registration import make_env
from cryobench.resources import card_dir
from cryobench.simulator import World, move_minutes
from tests.conftest import make_world
from tests.discover import agent_names

# Every agent of the ``cryobench.agents`` entry points: a new agent is covered without editing this file.
AGENTS = agent_names()
FEEDBACK_AGENTS = [name for name in AGENTS if agent_class(name).needs_feedback]
# Agents that declare they decide without revealed CTFs (sealed runs then play them without any).
BLIND_AGENTS = [name for name in AGENTS if not agent_class(name).reads_feedback]
# Agents that declare they never read obs["features"] (sealed runs then do not build it).
FEATURELESS_AGENTS = [name for name in AGENTS if not agent_class(name).reads_features]
# The two built-in upper bounds, for the tests of what they are for.
ORACLES = ["oracle-predict-rank", "oracle-planner"]


def small_env(feedback: str = "inspection", duration: float = 480.0, seed: int = 0) -> CryoEMSessionEnv:
    world = make_world(seed, feedback=feedback, duration=duration, tiles=3, squares_per_tile=2, holes_per_patch=8)
    return CryoEMSessionEnv.from_world(world)


def rollout(agent, env, seed: int) -> list[int]:
    """Play one episode, checking every action is an unvisited hole; returns the actions."""
    obs, info = env.reset(seed=seed)
    agent.reset(env, seed)
    actions, done = [], False
    while not done:
        hole = agent.act(obs, info)
        assert isinstance(hole, int)
        assert obs["action_mask"][hole] == 1, f"{agent.name} chose visited hole {hole}"
        actions.append(hole)
        obs, _, done, _, info = env.step(hole)
        assert not info["invalid_action"]
    return actions


@pytest.mark.parametrize("name", AGENTS)
def test_agent_plays_legal_deterministic_episodes(name):
    agent, _ = load_agent(name)
    env = small_env(duration=60.0)
    first = rollout(agent, env, seed=3)
    assert env.unwrapped.state.elapsed > 60.0  # the session ran until its minutes were spent
    assert len(set(first)) == len(first)
    assert first == rollout(agent, env, seed=3)
    # The whole grid, until every hole is visited, without an illegal move.
    everything = rollout(agent, small_env(duration=10_000.0), seed=1)
    assert len(everything) + 1 == env.unwrapped.world.n_holes


@pytest.mark.parametrize("name", AGENTS)
def test_card_equals_the_agent_class_and_its_config(name):
    cls = agent_class(name)
    assert cls.name == name
    # The documented naming rule: upper bounds (agents that see the ground truth) are called oracle-*.
    assert cls.uses_ground_truth == name.startswith("oracle-")
    card = load_card(name)
    assert card, f"agents/{name}.yaml is missing: every agent has a card (DEVELOPERS.md, 'Adding an agent')"
    assert card["name"] == name
    assert card["upper_bound"] == cls.uses_ground_truth
    assert card["needs_feedback"] == cls.needs_feedback
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    hyper = card["hyperparameters"]
    missing, unknown = sorted(set(defaults) - set(hyper)), sorted(set(hyper) - set(defaults))
    assert not missing and not unknown, f"agents/{name}.yaml: hyperparameters missing {missing}, unknown {unknown}"
    # The card is what runs: loading the agent gives exactly the card's values, types included.
    agent, effective = load_agent(name)
    assert dataclasses.asdict(agent.config) == hyper == effective["hyperparameters"]
    for key, value in hyper.items():
        assert type(value) is type(defaults[key]), (name, key, value, defaults[key])
    if "Config" in cls.__dict__:
        # An agent with a Config of its own runs the same without its card. (A variant that shares
        # its parent's Config, like dqn-noise-robust, is that Config with other values.)
        assert hyper == defaults


def test_every_agent_card_belongs_to_an_agent():
    """A card left behind by a renamed or removed agent would document something that does not run."""
    folder = card_dir("agents")
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".yaml" and p.name != "README.md")
    assert not stray, f"agents/: {stray} are not cards (cards are <name>.yaml)"
    orphans = sorted(set(p.stem for p in folder.glob("*.yaml")) - set(agent_names()))
    assert not orphans, f"agents/: cards {orphans} have no entry point in the cryobench.agents group"


@pytest.mark.parametrize("name", AGENTS)
def test_only_agents_that_need_feedback_refuse_feedback_none(name):
    agent, _ = load_agent(name)
    env = small_env(feedback="none", duration=60.0)
    if agent.needs_feedback:
        env.reset(seed=0)
        with pytest.raises(InputError, match="feedback"):
            agent.reset(env, 0)
    else:
        actions = rollout(agent, env, seed=0)
        assert actions == rollout(agent, env, seed=0)


@pytest.mark.parametrize("name", BLIND_AGENTS)
def test_an_agent_that_declares_it_ignores_feedback_plays_the_same_without_it(name):
    # The declaration lets a sealed run stream its actions instead of waiting for each step's
    # revealed CTF; it holds only if the session is the same with the feedback and without it.
    agent, _ = load_agent(name)
    assert not agent.needs_feedback
    for seed in (0, 1, 2):
        with_feedback = rollout(agent, small_env(feedback="inspection", duration=120.0, seed=seed), seed=seed)
        without = rollout(agent, small_env(feedback="none", duration=120.0, seed=seed), seed=seed)
        assert with_feedback == without, f"{name} declares reads_feedback = False but decided otherwise with feedback"


class _WithoutFeatures(gym.ObservationWrapper):
    """Observations without the feature matrix, as a sealed run gives an agent that declared it never reads it."""

    def observation(self, observation):
        return {key: value for key, value in observation.items() if key != "features"}


@pytest.mark.parametrize("name", FEATURELESS_AGENTS)
def test_an_agent_that_declares_it_never_reads_the_features_plays_the_same_without_them(name):
    agent, _ = load_agent(name)
    for seed in (0, 1):
        with_features = rollout(agent, small_env(duration=120.0, seed=seed), seed=seed)
        without = rollout(agent, _WithoutFeatures(small_env(duration=120.0, seed=seed)), seed=seed)
        assert with_features == without


def test_only_the_networks_read_the_feature_matrix():
    assert set(AGENTS) - set(FEATURELESS_AGENTS) == {"dqn", "dqn-noise-robust"}


def test_the_built_in_fixed_plans_declare_they_ignore_feedback():
    # What the test above checks, and what keeps their sealed runs at the cost of an open one.
    assert {"predict-rank", "greedy", "genetic", "annealing", "snowball", "random"} <= set(BLIND_AGENTS)
    assert not set(BLIND_AGENTS) & set(FEEDBACK_AGENTS)


def test_snowball_always_takes_the_cheapest_move():
    env = small_env(duration=120.0)
    agent, _ = load_agent("snowball")
    obs, info = env.reset(seed=5)
    agent.reset(env, 5)
    world, done = env.unwrapped.world, False
    while not done:
        hole = agent.act(obs, info)
        minutes = move_minutes(world, int(obs["current_hole"]))
        assert minutes[hole] == minutes[obs["action_mask"].astype(bool)].min()
        obs, _, done, _, info = env.step(hole)


def test_predict_rank_with_perfect_predictions_is_the_oracle():
    world = make_world(2, tiles=3, squares_per_tile=2, holes_per_patch=8, duration=60.0)
    perfect = World(world.grid, np.minimum(world.grid.ctf, 20.0), world.profile, duration=60.0)
    env = CryoEMSessionEnv.from_world(perfect)
    plain, _ = load_agent("predict-rank")
    oracle, _ = load_agent("oracle-predict-rank")
    assert rollout(plain, env, seed=4) == rollout(oracle, env, seed=4)


def test_oracles_expose_only_good_holes_while_any_remain():
    env = small_env(duration=30.0)
    truth_good = env.unwrapped.ground_truth_ctf() < 6.0
    for name in ORACLES:
        agent, _ = load_agent(name)
        actions = rollout(agent, env, seed=2)
        assert truth_good[actions].all(), name


@pytest.mark.parametrize("name", ["ucb", "thompson", "epsilon-greedy"])
def test_bandits_with_squares_as_arms(name):
    agent, _ = load_agent(name, {"arm": "square"})
    assert len(rollout(agent, small_env(duration=60.0), seed=0)) > 10
    with pytest.raises(InputError, match="arm"):
        load_agent(name, {"arm": "tile"})[0].reset(small_env(), 0)


def test_hierarchical_posterior_learns_from_revealed_holes():
    env = small_env()
    env.reset(seed=0)
    agent, _ = load_agent("hierarchical-bayes")
    agent.reset(env, 0)
    patch = env.unwrapped.layout.patch
    members = np.flatnonzero(patch == 0)
    revealed = np.zeros(len(patch), dtype=bool)
    revealed[members[:4]] = True
    prior = agent.posterior(np.zeros_like(revealed), revealed & False)
    bad = agent.posterior(revealed, np.zeros_like(revealed))
    good = agent.posterior(revealed, revealed.copy())
    rest = members[4:]
    assert (bad[rest] < prior[rest]).all() and (good[rest] > prior[rest]).all()
    # The neighbouring patch of the same square moves the same way, but less.
    sibling = np.flatnonzero(patch == 1)
    assert (bad[sibling] < prior[sibling]).all()
    assert np.mean(prior[sibling] - bad[sibling]) < np.mean(prior[rest] - bad[rest])


def test_queue_feedback_is_accepted_by_learning_agents():
    env = small_env(feedback="queue:5", duration=60.0)
    for name in FEEDBACK_AGENTS:
        agent, _ = load_agent(name)
        assert len(rollout(agent, env, seed=1)) > 10


def measured_scores(name: str, data, seeds=(0, 1, 2)) -> tuple[float, float]:
    env = make_env("cryorl", {"data": str(data), "split": "test"})
    agent, _ = load_agent(name)
    rows = [play_episode(env, agent, seed) for seed in seeds]
    return np.mean([r["good_exposures"] for r in rows]), np.mean([r["exposures"] for r in rows])


def test_measured_aldolase_baselines_near_the_reference(aldolase_data):
    """Facts §6 (50 seeds): Predict-Rank 355 good of 425, snowball 170 of 449, random 22 of 65."""
    pr_good, pr_exposures = measured_scores("predict-rank", aldolase_data)
    # Predict-Rank hardly depends on the start: within 5% of the reference.
    assert abs(pr_good - 355) <= 18 and abs(pr_exposures - 425) <= 15
    snow_good, snow_exposures = measured_scores("snowball", aldolase_data)
    # Snowball's exposures are set by the move costs; its good count swings with the start.
    assert abs(snow_exposures - 449) <= 10 and 90 <= snow_good <= 260
    random_good, _ = measured_scores("random", aldolase_data)
    assert pr_good > snow_good > random_good
    oracle_good, oracle_exposures = measured_scores("oracle-planner", aldolase_data, seeds=(0,))
    assert oracle_good == oracle_exposures and abs(oracle_good - 423) <= 10


def test_planner_stays_for_a_hole_worth_more_than_the_price_of_a_minute():
    """A hole above the rate the remaining minutes can still buy is taken before leaving the patch,
    even when another patch is better per minute (the myopic rule leaves at once)."""
    from cryobench.agents.common import Hierarchy, PatchPlanner

    env = small_env()
    env.reset(seed=0)
    h = Hierarchy.from_layout(env.unwrapped.layout)
    current = 0
    here = h.patch[current]
    sibling = next(p for p in range(h.n_patches) if p != here and h.patch_square[p] == h.square[current])
    p_good = np.full(h.n_holes, 0.75)
    p_good[h.patch == here] = 0.8
    p_good[h.patch == sibling] = 0.99
    available = np.ones(h.n_holes, dtype=bool)
    available[current] = False
    # 20 minutes buy the sibling, this patch and one more 0.75 patch: the price is about 0.67 per minute.
    shadow = PatchPlanner(h, shadow_price=True).next_hole(p_good, available, current, time_left=20.0)
    myopic = PatchPlanner(h, shadow_price=False).next_hole(p_good, available, current, time_left=20.0)
    assert h.patch[shadow] == here
    assert h.patch[myopic] == sibling


@pytest.mark.parametrize("feedback", ["inspection", "queue:3"])
def test_bandit_tallies_match_a_recount(feedback):
    """The bandits keep their per-arm counts incrementally; after an episode they equal a recount."""
    env = small_env(feedback=feedback, duration=60.0)
    agent, _ = load_agent("thompson")
    rollout(agent, env, seed=2)
    obs = env.unwrapped._observation()
    agent.update_tallies(obs)
    available = obs["action_mask"].astype(bool)
    revealed = obs["revealed"].astype(bool)
    good = revealed & (obs["revealed_ctf"] < env.unwrapped.layout.threshold)
    arms = agent.n_arms
    assert np.array_equal(agent.available_count, np.bincount(agent.arm_of[available], minlength=arms))
    candidates = available & agent.is_candidate
    assert np.array_equal(agent.candidate_count, np.bincount(agent.arm_of[candidates], minlength=arms))
    assert np.array_equal(agent.revealed_count, np.bincount(agent.arm_of[revealed], minlength=arms))
    assert np.array_equal(agent.good_count, np.bincount(agent.arm_of[good], minlength=arms))


@pytest.mark.parametrize("name", AGENTS)
def test_agent_fits_through_the_evaluation_entry_point(name):
    """``evaluate`` calls ``fit(env, seed=...)``: no agent may shadow that hook with another signature.
    The results it writes describe the episodes that were played (same seed, same trajectory: see
    test_agent_plays_legal_deterministic_episodes)."""
    from cryobench.evaluate import evaluate

    result = evaluate(name, "aldolase", {"duration": 20.0}, episodes=2, seed=5, progress=False)
    assert result["agent"]["name"] == name and result["seeds"] == [5, 6]
    env = make_env("aldolase", {"duration": 20.0})
    for episode in result["episodes"]:
        env.reset(seed=episode["seed"])
        truth = env.unwrapped.ground_truth_ctf()
        trajectory = np.asarray(episode["trajectory"])
        assert episode["invalid_actions"] == [] and episode["exposures"] == len(trajectory) > 0
        assert len(np.unique(trajectory)) == len(trajectory) and episode["start"] not in trajectory
        good = truth[trajectory] < env.unwrapped.layout.threshold
        assert episode["good_exposures"] == int(good.sum())
        assert episode["trajectory_good"] == good.astype(int).tolist()
        assert 20.0 <= episode["minutes"]


def test_hierarchical_fast_path_matches_the_full_posterior():
    """Right after a full fit, the per-patch update gives the full posterior of the current patch."""
    env = small_env()
    obs, info = env.reset(seed=4)
    agent, _ = load_agent("hierarchical-bayes")
    agent.reset(env, 4)
    for _ in range(25):
        obs, _, _, _, info = env.step(agent.act(obs, info))
    current = int(obs["current_hole"])
    revealed = obs["revealed"].astype(bool)
    full = agent.posterior(revealed, obs["revealed_ctf"] < env.unwrapped.layout.threshold)
    members = agent.planner.patch_members(current)
    assert revealed[members].any()
    np.testing.assert_allclose(agent.patch_probabilities(obs, current), full[members], rtol=1e-12)
