"""DQN's switch to Predict-Rank's plan while the revealed CTFs show a near-perfect regressor (version 3:
about the calibrated predictions; version 4: about the raw ones): its decisions on small grids, the
network's decisions where the regressor errs, the two tests' difference, its hyperparameters."""

from __future__ import annotations

import numpy as np
import pytest

from cryobench.agents.calibrated import CalibrationPriors
from cryobench.agents.dqn import TRUST_WINDOW, DQNAgent, DQNConfig, checkpoint_config
from cryobench.agents.predict_rank import PredictRankAgent
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.grid import CTF_CAP
from cryobench.profiles import get_profile
from cryobench.rules import Feedback
from cryobench.simulator import World
from tests.conftest import make_grid
from tests.hand_grids import hand_env, play_from

V2 = "checkpoints/dqn-v2-seed0.pt"


def perfect_env(duration: float = 120.0, feedback: str = "inspection") -> CryoEMSessionEnv:
    grid = make_grid(2, tiles=2, squares_per_tile=2, patches_per_square=3, holes_per_patch=12)
    predicted = np.minimum(grid.ctf, CTF_CAP)
    world = World(grid, predicted, get_profile("paper"), duration=duration, feedback=Feedback.parse(feedback))
    return CryoEMSessionEnv.from_world(world)


TESTS = ("raw", "calibrated")


@pytest.mark.parametrize("test", TESTS)
def test_with_perfect_predictions_it_follows_predict_ranks_plan_once_it_trusts_them(test):
    env = perfect_env()
    agent = DQNAgent(checkpoint_config(V2, trust_rms=0.25, trust_test=test))
    actions = play_from(agent, env, start_hole=0)
    assert agent.trust.is_trusted and agent.trust.rms == pytest.approx(0.0, abs=1e-9)
    plan_position = np.argsort(agent.trust.plan)[np.array(actions)]
    # From the switch on, every exposure is the plan's next unvisited hole: strictly later in the plan.
    switched = len(actions) - int(np.argmax(np.diff(plan_position)[::-1] <= 0)) - 1
    assert switched < len(actions) // 2
    assert (np.diff(plan_position[switched:]) > 0).all()
    # The plan takes every predicted-good hole before any predicted-bad one.
    good = env.unwrapped.world.predicted_ctf < env.unwrapped.world.threshold
    taken_good = good[actions]
    assert taken_good[: int(good.sum())].all() and not taken_good[int(good.sum()) :].any()
    ranked = play_from(PredictRankAgent(), env, start_hole=0)
    truth = env.unwrapped.world.true_good
    assert truth[actions].sum() >= truth[ranked].sum() - 2  # the network's few steps before the switch


@pytest.mark.parametrize("test", TESTS)
def test_a_perfect_regressor_on_a_hand_made_grid_takes_the_predicted_good_holes_first(test):
    # Two squares of one patch each: the start patch holds 3 good holes of 6, the other patch 6 of 6.
    # Once 5 revealed CTFs that can tell (within 2 Å of the threshold) match, it follows Predict-Rank:
    # the rich square's good holes, best first, and no predicted-bad hole while a good one is left.
    predicted = [5.5, 6.5, 5.2, 6.8, 5.8, 6.2] + [4.0, 4.2, 4.4, 5.0, 5.1, 5.3]
    env = hand_env([0] * 6 + [1] * 6, [0, 1], [0, 0], predicted, duration=40.0)
    agent = DQNAgent(checkpoint_config(V2, trust_rms=0.25, trust_holes=1, trust_test=test))
    actions = play_from(agent, env, start_hole=1)
    good = np.array(predicted) < 6.0
    first_bad = next(i for i, a in enumerate(actions) if not good[a])
    assert good.sum() - 1 <= first_bad  # every predicted-good hole but at most one before the first bad
    assert agent.trust.is_trusted


@pytest.mark.parametrize("test", TESTS)
def test_where_the_regressor_errs_it_decides_as_the_network(test):
    # Predictions out of step with the truth: the revealed CTFs never look like a perfect regressor.
    truth = [3.5, 9.0] * 12
    predicted = [9.0, 3.5] * 12
    patch = [i // 4 for i in range(24)]
    env = hand_env(patch, [0, 0, 1, 1, 2, 2], [0, 0, 1], predicted, true=truth, duration=30.0)
    switched = DQNAgent(checkpoint_config(V2, trust_rms=0.25, trust_test=test))
    plain = DQNAgent(checkpoint_config(V2, trust_rms=0.0))
    assert play_from(switched, env, start_hole=0) == play_from(plain, env, start_hole=0)
    assert not switched.trust.is_trusted and plain.trust is None


def test_without_feedback_nothing_is_revealed_and_the_network_decides():
    env = perfect_env(duration=60.0, feedback="none")
    switched = DQNAgent(checkpoint_config(V2, trust_rms=0.25))
    plain = DQNAgent(checkpoint_config(V2, trust_rms=0.0))
    assert play_from(switched, env, start_hole=3) == play_from(plain, env, start_hole=3)
    assert switched.trust.n_revealed == 0


def test_a_biased_regressor_is_trusted_after_calibration_but_not_raw():
    # Every prediction 1 Å above the truth, otherwise exact: calibrated, the predictions fit the revealed
    # CTFs; raw they miss by 1 Å, and the plan (made from the raw predictions, which call good holes bad)
    # is not followed.
    truth = [4.2, 4.5, 5.0, 5.4, 5.6, 6.5, 6.8, 6.9] * 3  # within the window 6 +- 2 Å, predictions too
    predicted = [t + 1.0 for t in truth]
    patch = [i // 8 for i in range(24)]
    env = hand_env(patch, [0, 1, 2], [0, 0, 0], predicted, true=truth, duration=30.0)
    raw = DQNAgent(checkpoint_config(V2, trust_rms=0.25, trust_test="raw"))
    play_from(raw, env, start_hole=0)
    assert not raw.trust.is_trusted and raw.trust.rms == pytest.approx(1.0, abs=1e-6)
    calibrated = DQNAgent(checkpoint_config(V2, trust_rms=0.25, trust_test="calibrated"))
    play_from(calibrated, env, start_hole=0)
    assert calibrated.trust.rms < 0.25


def test_the_raw_tests_running_sums_equal_the_rms_recomputed_from_every_revealed_hole():
    rng = np.random.default_rng(3)
    grid = make_grid(4, tiles=2, squares_per_tile=2, patches_per_square=3, holes_per_patch=12)
    predicted = np.minimum(grid.ctf, CTF_CAP) + rng.normal(0.0, 0.6, grid.n_holes)
    world = World(grid, predicted, get_profile("paper"), duration=90.0, feedback=Feedback.parse("queue:3"))
    env = CryoEMSessionEnv.from_world(world)
    agent = DQNAgent(checkpoint_config(V2, trust_rms=0.25, trust_test="raw"))
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    low, high = world.threshold - 2.0, world.threshold + 2.0
    for _ in range(40):
        agent.trust.trusted(obs)
        shown = np.flatnonzero(obs["revealed"])
        x = np.clip(predicted[shown], low, high)
        y = np.clip(np.asarray(obs["revealed_ctf"])[shown], low, high)
        telling = ~(((x <= low) & (y <= low)) | ((x >= high) & (y >= high)))
        expected = np.sqrt(np.mean((y - x)[telling] ** 2)) if telling.any() else np.inf
        assert agent.trust.rms == pytest.approx(expected, rel=1e-9)
        obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
        if terminated or truncated:
            break
    assert agent.trust.n_revealed >= 20  # the queue delayed reveals, in batches, were all counted


def test_the_raw_test_clips_to_bayes_lookaheads_window():
    assert TRUST_WINDOW == CalibrationPriors().window


def test_an_unknown_trust_test_is_refused_in_one_line():
    with pytest.raises(
        InputError, match=r"^DQN hyperparameter 'trust_test': expected one of raw, calibrated, got 'exact'$"
    ):
        DQNConfig(trust_test="exact")


@pytest.mark.parametrize(("name", "value"), [("trust_rms", -0.1), ("trust_holes", 0), ("trust_rms", float("nan"))])
def test_bad_trust_hyperparameters_are_refused_in_one_line(name, value):
    with pytest.raises(InputError, match=rf"^DQN hyperparameter '{name}': expected .*, got") as raised:
        DQNConfig(**{name: value})
    assert "\n" not in str(raised.value)
