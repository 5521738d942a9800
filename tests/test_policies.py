"""cryobench.policies: the per-hole SB3 policy shares its weights across holes.

What sharing promises, checked on the network itself: the parameter count does not grow with
the number of holes; permuting the holes permutes the logits and leaves the value alone; the
logits are the per-hole scores, masked; and a model trained on one split plays another.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import cryobench  # noqa: F401  (registers the environments)
from cryobench.errors import InputError
from cryobench.features import N_FEATURES

pytest.importorskip("sb3_contrib", reason="sb3-contrib is not installed (pip install 'cryobench[sb3]')")

from sb3_contrib import MaskablePPO  # noqa: E402

from cryobench.examples.common import small_twin_card  # noqa: E402
from cryobench.policies import PerHoleExtractor, PerHolePolicy, load_per_hole_model  # noqa: E402

EMBEDDING, HIDDEN = 16, 8
POLICY_KWARGS = dict(features_extractor_kwargs=dict(embedding=EMBEDDING), head_hidden=HIDDEN)


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return small_twin_card(tmp_path_factory.mktemp("card"))


def _env(card, split):
    return gym.make("cryobench/Aldolase-v1", dataset=card, split=split, duration=60.0)


def _model(env, seed=0):
    return MaskablePPO(
        PerHolePolicy, env, n_steps=64, batch_size=32, seed=seed, device="cpu", policy_kwargs=POLICY_KWARGS
    )


def _logits_and_value(model, obs):
    tensor, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        features = model.policy.extract_features(tensor)
        logits = model.policy.action_net(model.policy.mlp_extractor.forward_actor(features))
        value = model.policy.value_net(model.policy.mlp_extractor.forward_critic(features))
    return logits[0].numpy(), float(value[0, 0])


def test_the_parameter_count_does_not_depend_on_the_number_of_holes(card):
    train, test = _env(card, "train"), _env(card, "test")
    assert train.action_space.n != test.action_space.n
    counts = [sum(p.numel() for p in _model(env).policy.parameters()) for env in (train, test)]
    embed = (N_FEATURES + 1) * EMBEDDING + (EMBEDDING + 1) * EMBEDDING
    score = (EMBEDDING + 1) * HIDDEN + (HIDDEN + 1) + N_FEATURES  # the MLP and the linear term
    pooled = (2 * EMBEDDING + 1) * HIDDEN
    value = HIDDEN + 1
    assert counts == [embed + score + pooled + value] * 2


def test_permuting_holes_permutes_the_logits_and_keeps_the_value(card):
    env = _env(card, "test")
    model = _model(env)
    obs, _ = env.reset(seed=3)
    for hole in (5, 17):  # a few steps: visited holes, revealed CTFs, a moved stage
        obs, *_ = env.step(hole)
    logits, value = _logits_and_value(model, obs)
    order = np.random.default_rng(0).permutation(env.action_space.n)
    shuffled = {**obs, "features": obs["features"][order], "action_mask": obs["action_mask"][order]}
    shuffled_logits, shuffled_value = _logits_and_value(model, shuffled)
    np.testing.assert_allclose(shuffled_logits, logits[order], rtol=1e-5, atol=1e-6)
    assert shuffled_value == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_the_logits_are_the_per_hole_scores_and_visited_holes_are_never_chosen(card):
    env = _env(card, "test")
    model = _model(env)
    obs, _ = env.reset(seed=1)
    logits, _ = _logits_and_value(model, obs)
    # one hole's logit is its own row's score: the same row alone gives the same number
    with torch.no_grad():
        row = torch.as_tensor(obs["features"][7:8])
        single = model.policy.mlp_extractor.forward_actor(
            torch.cat([row, model.policy.features_extractor.embed(row)], -1)
        )
    assert float(single[0]) == pytest.approx(logits[7], rel=1e-5, abs=1e-6)
    mask = obs["action_mask"].astype(bool)
    mask[: len(mask) // 2] = False
    tensor, _ = model.policy.obs_to_tensor(obs)
    distribution = model.policy.get_distribution(tensor, action_masks=mask[None])
    probabilities = distribution.distribution.probs[0].detach().numpy()
    assert probabilities[~mask].max() == 0.0 and probabilities[mask].sum() == pytest.approx(1.0, rel=1e-5)


def test_a_model_trained_on_the_train_split_plays_the_test_split(card, tmp_path):
    train, test = _env(card, "train"), _env(card, "test")
    model = _model(train)
    model.save(tmp_path / "model.zip")
    loaded = load_per_hole_model(str(tmp_path / "model.zip"), test, device="cpu")
    assert loaded.action_space.n == test.action_space.n
    for name, weights in model.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], weights, rtol=0, atol=0)
    obs, _ = test.reset(seed=0)
    terminated, steps = False, 0
    while not terminated:
        action, _ = loaded.predict(obs, action_masks=obs["action_mask"].astype(bool), deterministic=True)
        obs, _, terminated, _, info = test.step(int(action))
        assert not info["invalid_action"]
        steps += 1
    assert steps == info["exposures"]


def test_the_extractor_refuses_an_observation_without_per_hole_features():
    with pytest.raises(InputError, match="'features' key"):
        PerHoleExtractor(gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (3,))}))
    with pytest.raises(InputError, match=r"shape \(holes, columns\)"):
        PerHoleExtractor(gym.spaces.Dict({"features": gym.spaces.Box(0, 1, (3,))}))
