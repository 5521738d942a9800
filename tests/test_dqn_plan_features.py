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
    load_checkpoint,
    make_network,
    plan_columns,
    save_checkpoint,
)
from cryobench.agents.dqn_train import Sessions, WorldIndex
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.features import FEATURE_NAMES, N_FEATURES
from tests.hand_grids import hand_env
from tests.test_dqn_reliability import SMALL, make_world


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
    sessions = Sessions([WorldIndex(world, plan=True)], 1, 4, np.random.default_rng(0))
    sessions.start(0, world_id=0, start_hole=7)
    env = CryoEMSessionEnv.from_world(world)
    agent = DQNAgent(DQNConfig(checkpoint=str(path)))
    obs, info = env.reset(seed=0, options={"start_hole": 7})
    agent.reset(env, 0)
    assert agent.plan is not None and not agent.reliability
    for _ in range(12):
        q = sessions.q_values(network)[0]
        np.testing.assert_allclose(q, agent.q_values(obs), rtol=1e-5, atol=1e-5)
        action = int(np.argmax(q))
        obs = env.step(action)[0]
        sessions.step(np.array([action]))


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
