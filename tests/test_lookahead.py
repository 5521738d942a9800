"""The Bayesian lookahead agent: a belief whose trust in the regressor is learned from the revealed
CTFs (it ignores an uninformative regressor, trusts a perfect one), an in-patch update equal to
the full refit, and rollouts that stay where a reveal can pay."""

from __future__ import annotations

import numpy as np
import pytest

from cryobench.agents.calibrated import CalibratedBelief, CalibrationPriors
from cryobench.agents.common import Hierarchy
from cryobench.agents.registry import load_agent
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.evaluate import play_episode
from cryobench.grid import Grid
from cryobench.profiles import get_profile
from cryobench.rules import Feedback
from cryobench.simulator import World
from tests.conftest import make_grid, make_world
from tests.hand_grids import hand_env, play_from


def lattice_grid(patch_ctf: list[float], holes_per_side: int = 3) -> Grid:
    """One square of patches, each a ``holes_per_side`` square lattice of holes of one CTF (Å)."""
    size = holes_per_side**2
    n = size * len(patch_ctf)
    lattice = np.array([(i % holes_per_side, i // holes_per_side) for i in range(size)], dtype=float) * 2.5
    return Grid(
        name="hand-made",
        tile=np.zeros(n, dtype=np.int32),
        square=np.zeros(n, dtype=np.int32),
        patch=np.repeat(np.arange(len(patch_ctf)), size).astype(np.int32),
        x_um=np.tile(lattice[:, 0], len(patch_ctf)),
        y_um=np.tile(lattice[:, 1], len(patch_ctf)),
        ctf=np.repeat(np.asarray(patch_ctf, dtype=float), size),
        confidence=np.full(n, np.nan),
        failed=np.zeros(n, dtype=bool),
        hole_names=tuple(f"h{i}" for i in range(n)),
        square_xy_um=np.zeros((1, 2)),
        pitch_um=2.5,
    )


def hand_made_env(patch_ctf, patch_predicted, duration: float, feedback: str = "inspection") -> CryoEMSessionEnv:
    grid = lattice_grid(patch_ctf)
    predicted = np.repeat(np.asarray(patch_predicted, dtype=float), len(grid.ctf) // len(patch_ctf))
    world = World(grid, predicted, get_profile("paper"), duration=duration, feedback=Feedback.parse(feedback))
    return CryoEMSessionEnv.from_world(world)


def belief_for(env: CryoEMSessionEnv) -> CalibratedBelief:
    env.reset(seed=0)
    return CalibratedBelief(Hierarchy.from_layout(env.unwrapped.layout), CalibrationPriors())


def test_it_learns_to_ignore_an_uninformative_regressor():
    # Ten patches whose predictions say nothing of their truth (every other patch good, the
    # predictions alternate out of step). Eight revealed: the slope between patches falls from the
    # prior's 1 toward 0 (the prior weighs as one patch) and the two unrevealed patches, predicted
    # 4 and 8 Å, are no longer told apart by their predictions.
    truth = [3.5, 9.0] * 5
    predicted = [4.0, 4.0, 8.0, 8.0, 4.0, 4.0, 8.0, 8.0, 4.0, 8.0]
    env = hand_made_env(truth, predicted, 480.0)
    belief = belief_for(env)
    before = belief.p_good.reshape(10, 9).mean(axis=1)
    assert before[8] > 0.9 and before[9] < 0.1  # before any CTF: the prediction is trusted
    shown = np.arange(72)  # patches 0-7
    belief.refit(shown, env.unwrapped.ground_truth_ctf()[shown])
    assert abs(belief.between) < 0.2  # (``within`` has no data here: a patch's predictions are all equal)
    after = belief.p_good.reshape(10, 9).mean(axis=1)
    assert after[8] - after[9] < 0.35
    assert after[0] > 0.9 and after[1] < 0.1  # the revealed patches follow their CTFs


def test_it_trusts_a_perfect_regressor():
    truth = [3.5, 9.0, 5.0, 7.0, 3.5, 9.0, 5.5, 6.5]
    env = hand_made_env(truth, truth, 480.0)
    belief = belief_for(env)
    shown = np.arange(27)  # patches 0-2
    belief.refit(shown, env.unwrapped.ground_truth_ctf()[shown])
    assert belief.between == pytest.approx(1.0, abs=0.05) and belief.within == pytest.approx(1.0, abs=0.05)
    assert belief.alpha == pytest.approx(belief.x0, abs=0.05)
    # The noise: 24 revealed deviations of 0 against the prior's 1 Å worth 10 holes: sqrt(10 / 34).
    assert np.sqrt(belief.noise_var) == pytest.approx(np.sqrt(10 / 34), abs=1e-9)
    after = belief.p_good.reshape(8, 9).mean(axis=1)
    assert after[4] > 0.95 and after[5] < 0.05 and after[6] > 0.6 and after[7] < 0.4


def test_with_a_perfect_regressor_it_switches_to_predict_rank_and_stays_there():
    grid = make_grid(2, tiles=2, squares_per_tile=2, patches_per_square=3, holes_per_patch=12)
    world = World(
        grid, np.minimum(grid.ctf, 20.0), get_profile("paper"), duration=120.0, feedback=Feedback.parse("inspection")
    )
    env = CryoEMSessionEnv.from_world(world)
    agent, _ = load_agent("bayes-lookahead")
    row = play_episode(env, agent, 0)
    assert agent.trusting and agent.belief.residual_rms == pytest.approx(0.0, abs=1e-9)
    # After the switch its exposures follow Predict-Rank's plan order.
    tail = np.array(row["trajectory"][-20:])
    position = np.argsort(agent.fixed_plan)[tail]
    assert (np.diff(position) > 0).all()


def test_its_session_beats_predict_rank_where_the_regressor_misleads():
    # Same grid, predictions out of step with the truth: Predict-Rank follows them into the bad
    # patches; the agent learns from the first revealed CTFs and moves to the good ones.
    truth = [3.5, 9.0, 3.5, 9.0, 3.5, 9.0, 3.5, 9.0]
    predicted = [8.0, 4.0, 8.0, 4.0, 8.0, 4.0, 8.0, 4.0]
    env = hand_made_env(truth, predicted, 40.0)
    agent, _ = load_agent("bayes-lookahead")
    plain, _ = load_agent("predict-rank")
    row, plain_row = play_episode(env, agent, 0), play_episode(env, plain, 0)
    assert plain_row["good_exposures"] <= 5
    assert row["good_exposures"] >= plain_row["good_exposures"] + 15
    assert agent.belief.between < 0  # it learned that the predictions mislead


def test_in_patch_update_equals_the_full_refit():
    env = CryoEMSessionEnv.from_world(make_world(3, tiles=2, squares_per_tile=2, holes_per_patch=12))
    agent, _ = load_agent("bayes-lookahead")
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    for _ in range(12):
        obs, _, _, _, info = env.step(agent.act(obs, info))
    agent.refit_beliefs(obs)
    revealed = obs["revealed"].astype(bool)
    patch = int(np.argmax(np.bincount(agent.hierarchy.patch[revealed], minlength=agent.hierarchy.n_patches)))
    members = agent.belief.members[patch]
    assert obs["revealed"][members].sum() >= 3
    # One future: the in-patch update of the patch's revealed holes.
    shown = obs["revealed"][members].astype(bool)
    y = agent.belief.to_model(obs["revealed_ctf"][members])
    assert agent.belief.patch_probabilities(patch, shown, y)[0] == pytest.approx(agent.p_good[members], abs=1e-12)
    # Many futures at once: each row is the single update of its own revealed holes.
    batched = agent.belief.patch_probabilities(patch, np.stack([shown, np.zeros_like(shown)]), np.stack([y, y]))
    assert batched[0] == pytest.approx(agent.p_good[members], abs=1e-12)
    alone = agent.belief.patch_probabilities(patch, np.zeros_like(shown), y)[0]
    assert batched[1] == pytest.approx(alone, abs=1e-12)


def test_it_never_moves_to_a_visited_hole_in_a_long_session():
    env = CryoEMSessionEnv.from_world(make_world(1, tiles=1, squares_per_tile=2, holes_per_patch=8, duration=2000.0))
    agent, _ = load_agent("bayes-lookahead")
    row = play_episode(env, agent, 0)
    # Every hole but the start's (visited already), none twice.
    assert row["invalid_moves"] == 0 and row["exposures"] == env.action_space.n - 1


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


def test_on_perfect_predictions_it_plays_predict_ranks_session_from_the_first_decision():
    # Version 2 followed greedy's planner until five revealed CTFs could tell (holes predicted and
    # found clearly good cannot), 10-44 exposures on the perfect-regressor tasks' training worlds,
    # and ended a little below Predict-Rank. With trust_first (version 3) every action is Predict-Rank's.
    grid = make_grid(2, tiles=2, squares_per_tile=2, patches_per_square=3, holes_per_patch=12)
    world = World(
        grid, np.minimum(grid.ctf, 20.0), get_profile("paper"), duration=120.0, feedback=Feedback.parse("inspection")
    )
    env = CryoEMSessionEnv.from_world(world)
    agent, _ = load_agent("bayes-lookahead")
    plain, _ = load_agent("predict-rank")
    for seed in (0, 1, 2):
        row, plain_row = play_episode(env, agent, seed), play_episode(env, plain, seed)
        assert row["trajectory"] == plain_row["trajectory"]
        assert agent.trusting
    version2, _ = load_agent("bayes-lookahead", {"trust_first": False, "move_caution": 1.0})
    assert play_episode(env, version2, 0)["trajectory"][:10] != play_episode(env, plain, 0)["trajectory"][:10]


def test_it_stops_following_predict_rank_at_the_first_revealed_ctf_that_disagrees():
    truth = [3.5, 9.0, 3.5, 9.0, 3.5, 9.0, 3.5, 9.0]
    predicted = [8.0, 4.0, 8.0, 4.0, 8.0, 4.0, 8.0, 4.0]
    env = hand_made_env(truth, predicted, 40.0)
    agent, _ = load_agent("bayes-lookahead")
    plain, _ = load_agent("predict-rank")
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    plain.reset(env, 0)
    first = agent.act(obs, info)
    assert first == plain.act(obs, info) and agent.trusting  # nothing revealed yet: Predict-Rank's hole
    assert env.unwrapped.ground_truth_ctf()[first] == 9.0  # predicted 4 Å, found 9 Å: it can tell
    obs, _, _, _, info = env.step(first)
    agent.act(obs, info)
    assert not agent.trusting and agent.belief.revealed == 1


def test_move_caution_keeps_it_in_its_square_where_version_2_left_for_another_tile():
    # Patch 0 (square 0, tile 0): ten holes predicted 5.7 Å; square 1 (tile 1): eight patches of ten
    # holes predicted 4 Å, an 8-minute move away, in a 60-minute session. Version 2's planner moves
    # at once; counting that move as 1.5 times its minutes, the planner stays for patch 0's holes.
    patch = [0] * 10 + [p for p in range(1, 9) for _ in range(10)]
    env = hand_env(patch, [0] + [1] * 8, [0, 1], [5.7] * 10 + [4.0] * 80, duration=60.0)
    first = {}
    for caution in (1.0, 1.5):
        agent, _ = load_agent("bayes-lookahead", {"move_caution": caution, "trust_rms": 0.0})
        first[caution] = play_from(agent, env, 0, steps=1)[0]
        assert agent.planner.hierarchy.minutes.tolist() == [1.0, 2.0, 6.0 * caution, 8.0 * caution]
        assert agent.hierarchy.minutes.tolist() == [1.0, 2.0, 6.0, 8.0]  # the belief and rollouts: true minutes
    assert first == {1.0: 10, 1.5: 1}
