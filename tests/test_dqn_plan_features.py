"""DQN version 3's plan feature set: each patch's place in Predict-Rank's plan and the threshold, the
same in the agent and the trainer, recorded in the checkpoint; other layouts refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryobench.agents.common import Hierarchy
from cryobench.agents.dqn import (
    PLAN_LAYOUT_NAMES,
    PLAN_LAYOUT_VERSION,
    DQNAgent,
    DQNConfig,
    checkpoint_config,
    load_checkpoint,
    make_network,
    plan_columns,
    plan_prior,
    save_checkpoint,
)
from cryobench.agents.dqn_train import Sessions, WorldIndex, _state_action_input
from cryobench.agents.predict_rank import PredictRankAgent
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.features import FEATURE_NAMES, N_FEATURES
from tests.hand_grids import hand_env, play_from
from tests.test_dqn_reliability import SMALL, make_world, play_alongside_the_trainer


def test_plan_columns_rank_patches_as_predict_ranks_plan_enters_them():
    # Square 0: patch 0 (1 predicted-good hole of 3), patch 1 (3 of 3); square 1: patch 2 (2 of 3);
    # patch 3 in square 1 has none. Predict-Rank: square 0 first (4 good), its patch 1 then patch 0,
    # then square 1's patch 2; patch 3 last.
    predicted = [5.0, 8.0, 9.0] + [4.0, 4.5, 5.5] + [5.0, 5.2, 9.0] + [8.0, 9.0, 10.0]
    env = hand_env([0] * 3 + [1] * 3 + [2] * 3 + [3] * 3, [0, 0, 1, 1], [0, 0], predicted)
    env.reset(seed=0)
    columns = plan_columns(Hierarchy.from_layout(env.unwrapped.layout))
    # places 1, 0, 2, 3 over 3 patches with a predicted-good hole, halved (capped at 1)
    np.testing.assert_allclose(columns[:, 0], [1 / 6, 0.0, 2 / 6, 0.5])
    np.testing.assert_allclose(columns[:, 1], 6.0 / 20.0)


def test_the_agent_reads_the_trainers_plan_contexts(tmp_path):
    world = make_world(seed=5, noise=1.5, **SMALL)
    config = DQNConfig(plan_features=True, hidden1=16, hidden2=8)
    torch.manual_seed(0)
    network = make_network(config)
    path = save_checkpoint(tmp_path / "plan.pt", network, config, {})
    agent = play_alongside_the_trainer(world, WorldIndex(world, plan=True), network, path)
    assert agent.plan is not None and not agent.reliability


def test_a_plan_checkpoint_records_its_feature_set_and_loads(tmp_path):
    config = DQNConfig(plan_features=True, hidden1=8, hidden2=4)
    path = save_checkpoint(tmp_path / "p.pt", make_network(config), config, {})
    network, document = load_checkpoint(path)
    assert document["feature_layout_version"] == PLAN_LAYOUT_VERSION == "cryobench-features-v1+plan-v1"
    assert tuple(document["feature_names"]) == PLAN_LAYOUT_NAMES == FEATURE_NAMES + ("patch_plan_rank", "threshold")
    assert network.layer1.in_features == 4 * (N_FEATURES + 2)


def test_a_checkpoint_of_another_feature_layout_is_refused_in_one_line(tmp_path):
    config = DQNConfig(plan_features=True, hidden1=8, hidden2=4)
    path = save_checkpoint(tmp_path / "p.pt", make_network(config), config, {})
    document = torch.load(path, weights_only=True)
    document["feature_layout_version"] = "cryobench-features-v1+plan-v2"  # a later layout this code does not know
    torch.save(document, tmp_path / "later.pt")
    with pytest.raises(InputError) as raised:
        load_checkpoint(tmp_path / "later.pt")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"DQN checkpoint {tmp_path / 'later.pt'} was trained on feature layout ")
    assert "'cryobench-features-v1+plan-v2' (44 features)" in message and "'cryobench-features-v1+plan-v1'" in message


def test_plan_and_reliability_features_together_are_refused():
    with pytest.raises(InputError, match="^DQN hyperparameters 'plan_features' and 'reliability_features'"):
        DQNConfig(plan_features=True, reliability_features=True)


def test_an_untrained_residual_network_plays_predict_rank(tmp_path):
    # Q = prior_scale * Predict-Rank's prior + a network whose last layer starts at zero: the same patches
    # in the same order and the same holes as Predict-Rank (inside a patch two predictions a few 1e-4 Å
    # apart may swap: float32 cannot resolve the tie-break there, and in-patch moves all cost the same).
    config = DQNConfig(plan_features=True, prior_scale=1.0, hidden1=16, hidden2=8)
    path = save_checkpoint(tmp_path / "prior.pt", make_network(config), config, {})
    for seed in range(3):
        world = make_world(seed=seed, duration=120.0, noise=1.0, **SMALL)
        env = CryoEMSessionEnv.from_world(world)
        actions = play_from(DQNAgent(checkpoint_config(str(path))), env, start_hole=5)
        ranked = play_from(PredictRankAgent(), env, start_hole=5)
        patch = world.grid.patch
        assert sorted(actions) == sorted(ranked)
        assert list(patch[actions]) == list(patch[ranked])


def test_the_prior_is_the_same_in_the_plain_network_and_the_patch_decomposition():
    world = make_world(seed=4, noise=1.0, **SMALL)
    config = DQNConfig(plan_features=True, prior_scale=2.0, hidden1=16, hidden2=8)
    torch.manual_seed(0)
    network = make_network(config)
    torch.nn.init.normal_(network.layer3.weight, std=0.1)
    index = WorldIndex(world, plan=True)
    sessions = Sessions([index], 1, 4, np.random.default_rng(0))
    sessions.start(0, world_id=0, start_hole=3)
    sessions.step(np.array([4]))
    context, hole_patch = sessions.stacked_context(), sessions.hole_patch
    pred = torch.from_numpy(index.hole_pred[None])
    decomposed = network.unvisited_q(context, hole_patch, pred)[0]
    every_hole = context.expand(index.n_holes, -1, -1)
    plain = network(_state_action_input(every_hole, hole_patch[0], pred[0], network.n_features))
    torch.testing.assert_close(plain, decomposed, atol=1e-5, rtol=1e-5)
    prior = plan_prior(pred[0], torch.from_numpy(index.plan[index.hole_patch, 0]), torch.tensor(0.3))
    good = index.hole_pred < world.threshold / 20
    assert (prior.numpy()[~good] <= 0).all() and (prior.numpy()[good] > 0).all()


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        (
            dict(plan_features=False, prior_scale=1.0),
            "^DQN hyperparameter 'prior_scale': the Predict-Rank prior reads the plan feature set",
        ),
        (dict(plan_features=True, prior_scale=-1.0), "^DQN hyperparameter 'prior_scale': expected a number >= 0"),
    ],
)
def test_a_prior_without_its_features_or_below_zero_is_refused(hyperparameters, message):
    with pytest.raises(InputError, match=message):
        DQNConfig(**hyperparameters)


def test_a_checkpoint_recording_a_prior_on_another_layout_is_refused(tmp_path):
    config = DQNConfig(plan_features=False, prior_scale=0.0, hidden1=8, hidden2=4)
    path = save_checkpoint(tmp_path / "plain.pt", make_network(config), config, {})
    document = torch.load(path, weights_only=True)
    document["hyperparameters"]["prior_scale"] = 1.0
    torch.save(document, tmp_path / "prior.pt")
    with pytest.raises(InputError, match="prior_scale 1.0 needs feature layout 'cryobench-features-v1\\+plan-v1'"):
        load_checkpoint(tmp_path / "prior.pt")
