"""The Bayesian lookahead agent: its belief is hierarchical-bayes's, its rollouts value what the
next exposures reveal, and it decides differently from hierarchical-bayes exactly when that pays."""

from __future__ import annotations

import numpy as np
import pytest

from cryobench.agents.lookahead import batched_patch_probabilities
from cryobench.agents.registry import load_agent
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.evaluate import play_episode
from cryobench.grid import Grid
from cryobench.profiles import get_profile
from cryobench.rules import Feedback
from cryobench.simulator import World
from tests.conftest import make_world


def two_patches(predicted_a: float, duration: float, feedback: str = "inspection") -> CryoEMSessionEnv:
    """One square, two 3 x 3 patches: A (holes 0-8) predicted ``predicted_a`` and truly all good,
    B (holes 9-17) predicted 5.5 Å (P(good) about 0.78 by the card's calibration) and good."""
    lattice = np.array([(i % 3, i // 3) for i in range(9)], dtype=float) * 2.5
    grid = Grid(
        name="two-patches",
        tile=np.zeros(18, dtype=np.int32),
        square=np.zeros(18, dtype=np.int32),
        patch=np.repeat([0, 1], 9).astype(np.int32),
        x_um=np.tile(lattice[:, 0], 2),
        y_um=np.tile(lattice[:, 1], 2),
        ctf=np.concatenate([np.full(9, 3.0), np.full(9, 4.0)]),
        confidence=np.full(18, np.nan),
        failed=np.zeros(18, dtype=bool),
        hole_names=tuple(f"h{i}" for i in range(18)),
        square_xy_um=np.zeros((1, 2)),
        pitch_um=2.5,
    )
    predicted = np.concatenate([np.full(9, predicted_a), np.full(9, 5.5)])
    world = World(grid, predicted, get_profile("paper"), duration=duration, feedback=Feedback.parse(feedback))
    return CryoEMSessionEnv.from_world(world)


def first_choice(name: str, env: CryoEMSessionEnv, seed: int = 1) -> tuple[int, int]:
    """(start hole, the agent's first choice); seed 1 starts in patch A."""
    agent, _ = load_agent(name)
    obs, info = env.reset(seed=seed)
    agent.reset(env, seed)
    return int(obs["current_hole"]), agent.act(obs, info)


def test_batched_update_is_hierarchical_bayes_update():
    env = CryoEMSessionEnv.from_world(make_world(3, tiles=2, squares_per_tile=2, holes_per_patch=12))
    agent, _ = load_agent("bayes-lookahead")
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    for _ in range(5):  # a few revealed holes, all in the start's patch
        obs, _, _, _, info = env.step(agent.act(obs, info))
    current = int(obs["current_hole"])
    members = agent.planner.patch_members(current)
    patch = agent.hierarchy.patch[current]
    shown = obs["revealed"][members].astype(bool)
    y = (obs["revealed_ctf"][members] < 6.0) * shown
    batched = batched_patch_probabilities(
        agent.prior_logit[members] + agent.coarse_shift[patch],
        agent.patch_weights[patch],
        np.stack([shown, np.zeros_like(shown)]),
        np.stack([y, y]).astype(float),
        agent.patch_level_variance,
        agent.config.neighbour_variance,
    )
    assert shown.sum() >= 3
    assert batched[0] == pytest.approx(agent.patch_probabilities(obs, current), abs=1e-12)
    # Nothing revealed: the coarse belief alone.
    base = agent.prior_logit[members] + agent.coarse_shift[patch]
    assert batched[1] == pytest.approx(1 / (1 + np.exp(-base)), abs=1e-12)


def test_it_stays_where_a_reveal_can_pay_and_hierarchical_bayes_leaves():
    # A's holes are a little worse than B's by prediction (P(good) 0.66 against 0.78) and the
    # 8-minute session makes B's rate the price of a minute: the myopic rule leaves at once.
    # One exposure in A reveals a CTF that lifts A's other holes above B: worth staying for.
    env = two_patches(6.1, duration=8.0)
    start, leaving = first_choice("hierarchical-bayes", env)
    assert start in range(9) and leaving == 9  # B's first hole
    assert first_choice("bayes-lookahead", env) == (start, 0)  # A's first open hole
    agent, _ = load_agent("bayes-lookahead")
    row = play_episode(env, agent, 1)
    assert (agent.lookaheads, agent.stays) == (1, 1)
    assert row["trajectory"][:2] == [0, 1]  # and it stays on as the reveals come in


def test_it_leaves_when_staying_cannot_pay():
    # A's holes a little worse still (P(good) 0.61): even a good reveal does not lift them enough.
    env = two_patches(6.3, duration=8.0)
    agent, _ = load_agent("bayes-lookahead")
    assert first_choice("hierarchical-bayes", env)[1] == 9
    obs, info = env.reset(seed=1)
    agent.reset(env, 1)
    assert agent.act(obs, info) == 9
    assert (agent.lookaheads, agent.stays) == (1, 0)


def test_it_values_only_what_the_feedback_mode_reveals():
    # With queue:10 nothing is revealed within this 8-minute session: staying is worth its
    # expected good alone, and the agent leaves as the myopic rule does.
    env = two_patches(6.1, duration=8.0, feedback="queue:10")
    assert first_choice("bayes-lookahead", env)[1] == 9


def test_it_refuses_what_it_cannot_run_in_one_line():
    env = CryoEMSessionEnv.from_world(make_world(0, feedback="none"))
    agent, _ = load_agent("bayes-lookahead")
    env.reset(seed=0)
    with pytest.raises(InputError, match="needs feedback 'inspection' or 'queue:K'") as caught:
        agent.reset(env, 0)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="scenarios") as caught:
        load_agent("bayes-lookahead", {"scenarios": 0})
    assert "\n" not in str(caught.value)
