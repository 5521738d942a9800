"""The SmartEM-style Bayesian model averaging agent: its weight update and its choices on hand-made grids."""

from __future__ import annotations

import numpy as np
import pytest

from cryobench.agents.common import predicted_good_probability
from cryobench.agents.registry import load_agent
from cryobench.agents.smartem import PREDICTORS
from tests.hand_grids import hand_env, play_from

# Two patches of 8 holes, each alone in its square (a square move is 6 min, in a patch 1 min). Every hole
# is predicted good (3 Å); patch 0's holes are truly bad (10 Å), patch 1's truly good.
PATCH = [0] * 8 + [1] * 8
PREDICTED = [3.0] * 16
TRUE = [10.0] * 8 + [3.0] * 8
# Without the shadow price and with a fresh price at every decision the planner compares staying with the
# best rate elsewhere only, which makes the choices below follow from the beliefs alone.
FRESH = {"shadow_price": False, "replan_every": 1}


def test_weights_are_the_prior_times_the_likelihood_of_the_earlier_predictions():
    env = hand_env(PATCH, [0, 1], [0, 0], [3.0] * 8 + [8.0] * 8, TRUE, duration=30.0)
    agent = load_agent("smartem-bma")[0]
    actions = play_from(agent, env, start_hole=0, steps=2)
    # Inspection reveals an exposure before the next decision: hole 1 (bad) is scored at the second, on
    # what every predictor said before it was revealed; then hole 2, its neighbour, looks worse than 3.
    assert actions == [1, 3]
    p = predicted_good_probability(np.array([3.0, 8.0]), 6.0, 0.5, 0.8, 0.03, 0.97)
    before = {
        "regressor": p[0],
        "square": p[0],  # square 0's mean prediction
        "grid": p.mean(),  # nothing revealed: every revealed-data predictor says the grid's mean prediction
        "square-revealed": p.mean(),
        "patch-revealed": p.mean(),
        "neighbours": p.mean(),
    }
    prior = np.array([0.5] + [0.1] * 5)
    posterior = prior * (1.0 - np.array([before[name] for name in PREDICTORS]))
    expected = 0.01 + (1.0 - 0.06) * posterior / posterior.sum()
    np.testing.assert_allclose(agent.weights, expected, rtol=1e-9)
    assert agent.weights[0] == pytest.approx(0.1068, abs=1e-4)  # from 0.48: it had said 0.96 good


def test_leaves_a_patch_whose_revealed_holes_are_bad_where_greedy_stays():
    env = hand_env(PATCH, [0, 1], [0, 0], PREDICTED, TRUE, duration=30.0)
    smartem = play_from(load_agent("smartem-bma", FRESH)[0], env, start_hole=0)
    greedy = play_from(load_agent("greedy", FRESH)[0], env, start_hole=0)
    # Greedy believes the predictions: the whole patch, then the next one.
    assert greedy == list(range(1, 16))
    # Hole 1's bad outcome (seen at the second decision) moves the weight to the revealed-data predictors:
    # patch 0's holes fall to about 0.4 (hole 2, next to hole 1, lower: it is skipped for hole 3) and
    # after hole 3 to 0.2, below patch 1's rate per minute; the agent collects patch 1 and only then
    # comes back for patch 0's best remaining holes.
    assert smartem == [1, 3, 8, 9, 10, 11, 12, 13, 14, 15, 5, 7, 2, 4, 6]


def test_without_feedback_the_weights_stay_at_their_priors():
    env = hand_env(PATCH, [0, 1], [0, 0], PREDICTED, TRUE, duration=30.0, feedback="none")
    agent = load_agent("smartem-bma")[0]
    play_from(agent, env, start_hole=0)
    np.testing.assert_allclose(agent.weights, 0.01 + 0.94 * np.array([0.5] + [0.1] * 5))


def test_queued_feedback_scores_a_batch_at_once():
    env = hand_env(PATCH, [0, 1], [0, 0], PREDICTED, TRUE, duration=30.0, feedback="queue:4")
    agent = load_agent("smartem-bma")[0]
    obs, info = env.reset(seed=0, options={"start_hole": 0})
    agent.reset(env, 0)
    scored = []
    for _ in range(9):
        obs, _, _, _, info = env.step(agent.act(obs, info))
        scored.append(int(agent.seen.sum()))
    # The queue reveals 4 exposures when it is full; each batch is scored at the next decision.
    assert scored == [0, 0, 0, 0, 4, 4, 4, 4, 8]
