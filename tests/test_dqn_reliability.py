"""The DQN's reliability feature set and its demonstrations chosen per world: the columns against a
slow reference, the agent's contexts against the trainer's, old checkpoints unchanged, reproducibility."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from cryobench import simulator
from cryobench.agents.dqn import (
    DQNAgent,
    HoleQNetwork,
    checkpoint_config,
    load_checkpoint,
    make_network,
    reliability_context,
    save_checkpoint,
)
from cryobench.agents.dqn import DQNConfig as _DQNConfig
from cryobench.agents.dqn_train import Sessions, WorldIndex, _demonstrator, _play, demonstrations, train_on_worlds
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from cryobench.features import (
    FEATURE_NAMES,
    N_FEATURES,
    PREDICTED_CTF_COLUMN,
    RELIABILITY_FEATURE_NAMES,
    RELIABILITY_LAYOUT_NAMES,
    RELIABILITY_LAYOUT_VERSION,
    RESIDUAL_SCALE,
    REVEALED_COLUMN,
    REVEALED_CTF_COLUMN,
    SESSION_REVEALED_CAP,
    RevealedSums,
    hole_features,
)
from cryobench.grid import CTF_CAP
from cryobench.seeding import SEED_BOUND
from tests.conftest import make_world as _make_world


def DQNConfig(**values) -> _DQNConfig:  # noqa: N802 - stands in for the class
    """Version 2's recipe, which these tests pin: the hyperparameters added since at their version-2 values
    (``DQNConfig.ADDED_AFTER_RECORDING``; version 3's plan features, prior and switch are tested apart)."""
    # (and every hole's argmax, act_candidates_per_patch 0, until version 4)
    return _DQNConfig(**{**_DQNConfig.ADDED_AFTER_RECORDING, "act_candidates_per_patch": 0, **values})


SMALL = dict(tiles=2, squares_per_tile=3, patches_per_square=4, holes_per_patch=8)  # 192 holes


def make_world(seed: int = 0, noise: float = 1.5, **kwargs) -> simulator.World:
    """``tests.conftest.make_world`` with predictions of another noise (0: the true CTFs, capped)."""
    base = _make_world(seed, **kwargs)
    rng = np.random.default_rng(seed + 2)
    predicted = np.clip(np.minimum(base.grid.ctf, CTF_CAP) + rng.normal(0, noise, base.n_holes), 0.5, CTF_CAP)
    if noise == 0:
        predicted = np.minimum(base.grid.ctf, CTF_CAP)
    return simulator.World(base.grid, predicted, base.profile, duration=base.duration, feedback=base.feedback)


def _reference(world: simulator.World, state: simulator.SessionState) -> np.ndarray:
    """The reliability columns of one session, hole by hole and patch by patch in plain Python."""
    grid = world.grid
    capped = lambda value: float(np.float32(min(value, CTF_CAP) / CTF_CAP)) * CTF_CAP  # noqa: E731
    revealed = [h for h in range(world.n_holes) if state.revealed[h]]
    truth = {h: capped(grid.ctf[h]) for h in revealed}
    guess = {h: capped(world.predicted_ctf[h]) for h in revealed}

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    residuals = [truth[h] - guess[h] for h in revealed]
    agree = [(truth[h] < world.threshold) == (guess[h] < world.threshold) for h in revealed]
    correlation = 0.0
    if len(revealed) >= 3:
        t, g = np.array([truth[h] for h in revealed]), np.array([guess[h] for h in revealed])
        if t.std() > 1e-9 and g.std() > 1e-9:
            correlation = float(np.corrcoef(t, g)[0, 1])
    n_patches = int(grid.patch.max()) + 1
    out = np.zeros((n_patches, len(RELIABILITY_FEATURE_NAMES)))
    for patch in range(n_patches):
        square = int(grid.square[np.flatnonzero(grid.patch == patch)[0]])
        in_patch = [truth[h] - guess[h] for h in revealed if grid.patch[h] == patch]
        in_square = [truth[h] - guess[h] for h in revealed if grid.square[h] == square]
        out[patch] = [
            min(len(revealed) / SESSION_REVEALED_CAP, 1.0),
            min(mean([abs(r) for r in residuals]) / RESIDUAL_SCALE, 1.0),
            np.clip(mean(residuals) / RESIDUAL_SCALE, -1, 1),
            2 * mean([float(a) for a in agree]) - 1 if revealed else 0.0,
            correlation,
            np.clip(mean(in_patch) / RESIDUAL_SCALE, -1, 1),
            np.clip(mean(in_square) / RESIDUAL_SCALE, -1, 1),
            world.threshold / CTF_CAP,
        ]
    return out


def _sessions(world: simulator.World, count: int, seed: int) -> list[simulator.SessionState]:
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(count):
        state = simulator.start_session(world, int(rng.integers(world.n_holes)))
        for _ in range(int(rng.integers(0, 50))):
            if simulator.is_over(world, state):
                break
            simulator.expose(world, state, int(rng.choice(np.flatnonzero(~state.visited))))
        states.append(state)
    return states


@pytest.mark.parametrize(("feedback", "noise"), [("inspection", 1.0), ("queue:3", 2.0), ("inspection", 0.0)])
def test_reliability_columns_equal_a_slow_reference(feedback, noise):
    world = make_world(seed=3, feedback=feedback, noise=noise, **SMALL)
    states = _sessions(world, 5, seed=1)
    index = WorldIndex(world, reliability=True)
    fast = index.context_of_masks(
        np.stack([s.visited for s in states]),
        np.stack([s.revealed for s in states]),
        np.array([s.current for s in states]),
        np.array([s.elapsed for s in states]),
    )[..., N_FEATURES:]
    assert any(s.revealed.sum() >= 3 for s in states)
    for state, columns in zip(states, fast, strict=True):
        np.testing.assert_allclose(columns, _reference(world, state), rtol=1e-6, atol=1e-6)


def test_perfect_predictions_read_as_perfectly_reliable():
    world = make_world(seed=3, noise=0.0, **SMALL)
    state = _sessions(world, 1, seed=4)[0]
    assert state.revealed.sum() >= 3
    columns = WorldIndex(world, reliability=True).context_of_state(state)[:, N_FEATURES:]
    by_name = dict(zip(RELIABILITY_FEATURE_NAMES, columns[0], strict=True))
    assert by_name["session_abs_residual"] == 0.0 and by_name["session_residual"] == 0.0
    assert by_name["session_agreement"] == 1.0
    assert by_name["session_correlation"] == pytest.approx(1.0)
    assert by_name["session_revealed"] == pytest.approx(state.revealed.sum() / SESSION_REVEALED_CAP)


def test_no_reveal_gives_zero_reliability_columns():
    world = make_world(seed=3, feedback="none", **SMALL)
    state = _sessions(world, 1, seed=4)[0]
    assert state.visited.sum() > 3 and not state.revealed.any()
    columns = WorldIndex(world, reliability=True).context_of_state(state)[:, N_FEATURES:]
    assert not columns[:, :-1].any()  # every column but the threshold's
    np.testing.assert_array_equal(columns[:, -1], np.float32(world.threshold / CTF_CAP))


def test_the_agent_computes_the_trainers_reliability_contexts_from_its_observation():
    """The agent reads the columns off the observation (features / 20, capped), the trainer off the
    world's masks and CTFs: the same values, bit for bit, so Q-values agree."""
    world = make_world(seed=6, feedback="queue:3", **SMALL)
    index = WorldIndex(world, reliability=True)
    env = CryoEMSessionEnv.from_world(world)
    agent_layout = env.layout
    patch_square = np.asarray(agent_layout.square)[index.patch_representative]
    for state in _sessions(world, 4, seed=2):
        from_observation = reliability_context(
            hole_features(world, state), world.grid.patch.astype(np.int64), patch_square, agent_layout.threshold
        )
        np.testing.assert_array_equal(from_observation, index.context_of_state(state)[:, N_FEATURES:])


def test_running_sums_give_the_batched_columns_at_every_step():
    """The agent's running sums (O(new reveals) a step) against the batched columns from scratch."""
    world = make_world(seed=7, feedback="queue:3", noise=1.0, **SMALL)
    index = WorldIndex(world, reliability=True)
    sums = RevealedSums(index.hole_patch, index.patch_square, world.threshold)
    state = simulator.start_session(world, 5)
    rng = np.random.default_rng(0)
    while not simulator.is_over(world, state):
        features = hole_features(world, state)
        running = sums.columns(
            features[:, PREDICTED_CTF_COLUMN], features[:, REVEALED_COLUMN] > 0, features[:, REVEALED_CTF_COLUMN]
        )
        np.testing.assert_allclose(running, index.context_of_state(state)[:, N_FEATURES:], rtol=0, atol=1e-6)
        simulator.expose(world, state, int(rng.choice(np.flatnonzero(~state.visited))))
    assert state.revealed.sum() >= 10


def test_sessions_with_reliability_give_the_agents_q_values(tmp_path):
    world = make_world(seed=5, noise=1.5, **SMALL)
    config = DQNConfig(reliability_features=True, hidden1=16, hidden2=8)
    torch.manual_seed(0)
    network = make_network(config)
    path = save_checkpoint(tmp_path / "reliable.pt", network, config, {})
    agent = play_alongside_the_trainer(world, WorldIndex(world, reliability=True), network, path)
    assert agent.reliability


def play_alongside_the_trainer(world, index, network, path) -> DQNAgent:
    """Twelve steps of the trainer's sessions and the agent (loaded from ``path``) in lockstep from
    hole 7, their Q-values equal at every step; returns the agent."""
    sessions = Sessions([index], 1, 4, np.random.default_rng(0))
    sessions.start(0, world_id=0, start_hole=7)
    env = CryoEMSessionEnv.from_world(world)
    agent = DQNAgent(checkpoint_config(str(path), act_candidates_per_patch=0))  # the trainer's: every hole
    obs, info = env.reset(seed=0, options={"start_hole": 7})
    agent.reset(env, 0)
    for _ in range(12):
        q = sessions.q_values(network)[0]
        np.testing.assert_allclose(q, agent.q_values(obs), rtol=1e-5, atol=1e-5)
        action = int(np.argmax(q))
        obs = env.step(action)[0]
        sessions.step(np.array([action]))
    return agent


def test_a_reliability_checkpoint_records_its_feature_set_and_loads(tmp_path):
    config = DQNConfig(reliability_features=True, hidden1=8, hidden2=4)
    path = save_checkpoint(tmp_path / "r.pt", make_network(config), config, {})
    network, document = load_checkpoint(path)
    assert document["feature_layout_version"] == RELIABILITY_LAYOUT_VERSION
    assert tuple(document["feature_names"]) == FEATURE_NAMES + RELIABILITY_FEATURE_NAMES
    assert network.n_features == len(RELIABILITY_LAYOUT_NAMES) == N_FEATURES + 8
    assert network.layer1.in_features == 4 * (N_FEATURES + 8)


def test_a_checkpoint_whose_names_do_not_match_its_feature_set_is_refused(tmp_path):
    config = DQNConfig(reliability_features=True, hidden1=8, hidden2=4)
    path = save_checkpoint(tmp_path / "r.pt", make_network(config), config, {})
    document = torch.load(path, weights_only=True)
    document["feature_names"] = list(FEATURE_NAMES)  # the old names under the new version
    torch.save(document, tmp_path / "mixed.pt")
    with pytest.raises(InputError, match="feature layout 'cryobench-features-v1\\+reliability-1' \\(42 features\\)"):
        load_checkpoint(tmp_path / "mixed.pt")


# Greedy decisions of the shipped checkpoints on one small world, recorded before the reliability
# feature set existed: the old checkpoints still read the 42 columns and decide exactly as before.
# (sha256 of the int64 actions, first 16 hex digits; measured with the code of commit 26f15e7.)
OLD_CHECKPOINT_ACTIONS = {
    "checkpoints/dqn-aldolase.pt": "f8fc615f7f0bf372",  # 34 exposures
    "checkpoints/dqn-v2-seed0.pt": "78e5f3e99ce9d362",  # 46
    "checkpoints/dqn-v2-seed1.pt": "4df23f1e4e6525c0",  # 44
    "checkpoints/dqn-v2-seed2.pt": "b10091d4dbaefbd3",  # 48
}


@pytest.mark.parametrize("checkpoint", sorted(OLD_CHECKPOINT_ACTIONS))
def test_old_checkpoints_decide_as_before(checkpoint):
    env = CryoEMSessionEnv.from_world(make_world(seed=8, duration=60.0, noise=1.0, **SMALL))
    agent = DQNAgent(checkpoint_config(checkpoint))
    obs, info = env.reset(seed=3)
    agent.reset(env, 3)
    assert not agent.reliability
    actions, over = [], False
    while not over:
        actions.append(int(agent.act(obs, info)))
        obs, _, over, _, info = env.step(actions[-1])
    digest = hashlib.sha256(np.array(actions, dtype=np.int64).tobytes()).hexdigest()[:16]
    assert digest == OLD_CHECKPOINT_ACTIONS[checkpoint], (len(actions), digest)


def test_several_demonstrators_each_world_shows_the_best_of_them():
    worlds = [make_world(seed=20 + i, duration=40.0, noise=noise, **SMALL) for i, noise in enumerate([0.0, 2.5])]
    config = DQNConfig(demonstrator="predict-rank,greedy,random", demo_episodes_per_world=2)
    demos = demonstrations(worlds, config, seed=0)
    names = ["predict-rank", "greedy", "random"]
    rng = np.random.default_rng([0, 1])
    for world_id, world in enumerate(worlds):
        seeds = [int(s) for s in rng.integers(SEED_BOUND, size=2)]
        env = CryoEMSessionEnv.from_world(world)
        goods = [sum(_play(env, _demonstrator(name), 0, seeds)) for name in names]
        assert demos.demonstrators[world_id] == names[int(np.argmax(goods))]
        recorded = demos.world[0, : demos.steps] == world_id
        chosen = _demonstrator(demos.demonstrators[world_id])
        chosen.fit(env, seed=0)
        replayed = []
        for seed in seeds:  # the recorded actions are the chosen agent's
            obs, info = env.reset(seed=seed)
            chosen.reset(env, seed)
            over = False
            while not over:
                replayed.append(int(chosen.act(obs, info)))
                obs, _, over, _, info = env.step(replayed[-1])
        assert demos.action[0, : demos.steps][recorded].tolist() == replayed


def test_an_agent_needing_feedback_is_not_scored_where_nothing_is_revealed():
    world = make_world(seed=21, duration=40.0, feedback="none", **SMALL)
    demos = demonstrations([world], DQNConfig(demonstrator="ucb,predict-rank", demo_episodes_per_world=1), seed=0)
    assert demos.demonstrators == ["predict-rank"]


@pytest.mark.slow
def test_training_with_reliability_and_several_demonstrators_is_reproducible_from_its_seed(tmp_path):
    config = DQNConfig(
        reliability_features=True,
        demonstrator="predict-rank,greedy",
        demo_episodes_per_world=1,
        pretrain_steps=10,
        hidden1=16,
        hidden2=8,
        num_envs=2,
        total_steps=120,
        learning_starts=40,
        batch_size=8,
        demo_batch_size=4,
        buffer_size=400,
        validate_every=60,
        validation_episodes=1,
        training_pool=0,
        validation_pool=0,
    )
    digests = []
    for run in ("first", "second"):
        worlds = [make_world(seed=10 + i, duration=40.0, noise=noise, **SMALL) for i, noise in enumerate([0, 2])]
        summary = train_on_worlds(config, worlds, seed=3, out=tmp_path / f"{run}.pt", progress=False)
        state = torch.load(tmp_path / f"{run}.pt", weights_only=True)["state_dict"]
        digests.append(hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest())
    assert digests[0] == digests[1]
    assert summary["gradient_steps"] == 10 + (120 - 40) // 5
    assert sum(summary["demonstrated_by"].values()) == 2 and set(summary["demonstrated_by"]) <= {
        "predict-rank",
        "greedy",
    }
    network, document = load_checkpoint(tmp_path / "first.pt")
    assert isinstance(network, HoleQNetwork) and network.n_features == len(RELIABILITY_LAYOUT_NAMES)
    assert document["feature_layout_version"] == RELIABILITY_LAYOUT_VERSION
