"""Ecosystem proof: sb3-contrib's MaskablePPO trains on a registered cryobench environment as is.

No cryobench-specific adapter: ``gym.make`` with the registered id, sb3's own ``MultiInputPolicy``
for the Dict observation, and the environment's ``action_masks()`` that MaskablePPO looks for.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import cryobench  # noqa: F401  (registers the environments)
from cryobench.metrics import episode_metrics
from cryobench.resources import card_dir

pytestmark = pytest.mark.slow  # a short training run

sb3_contrib = pytest.importorskip(
    "sb3_contrib", reason="sb3-contrib is not installed (pip install 'cryobench[sb3]'; .ci/run installs it)"
)


@pytest.fixture
def small_twin_card(tmp_path):
    """The AldolaseAu card shrunk to a few squares: a dataset card, the ordinary way to make a twin."""
    card = yaml.safe_load((card_dir("datasets") / "aldolaseau.yaml").read_text())
    card["name"] = "aldolaseau-small"
    card["layout"]["tiles"]["value"] = 2
    card["layout"]["squares"]["value"] = 4
    card["layout"]["holes"]["value"] = 300
    card["layout"]["patches_per_square"]["value"] = {"min": 2, "median": 4, "max": 6}
    path = tmp_path / "aldolaseau-small.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


@pytest.mark.filterwarnings("ignore:Evaluation environment is not wrapped with a ..Monitor")
def test_maskable_ppo_trains_on_the_registered_environment(small_twin_card):
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.evaluation import evaluate_policy

    env = gym.make("cryobench/AldolaseAu-v0", dataset=str(small_twin_card), duration=120.0)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only contend with the other tests' processes
    try:
        model.learn(total_timesteps=2048)
    finally:
        torch.set_num_threads(threads)
    assert model.num_timesteps >= 2048

    # The trained policy acts through the same masks: it never picks a visited hole.
    obs, _ = env.reset(seed=1)
    terminated, steps, total = False, 0, 0.0
    while not terminated:
        mask = env.unwrapped.action_masks()
        action, _ = model.predict(obs, action_masks=mask, deterministic=True)
        assert mask[int(action)]
        obs, reward, terminated, truncated, info = env.step(int(action))
        assert not info["invalid_action"] and not truncated
        steps, total = steps + 1, total + reward
    played = episode_metrics(env.unwrapped.world, env.unwrapped.state)
    assert played["exposures"] == steps == info["exposures"] and played["total_reward"] == pytest.approx(total)
    assert played["minutes"] > 120.0  # the session ran to its end
    rewards, lengths = evaluate_policy(model, env, n_eval_episodes=2, use_masking=True, return_episode_rewards=True)
    assert len(rewards) == len(lengths) == 2 and all(np.isfinite(rewards))
