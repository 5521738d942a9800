"""TorchRL's PPO on cryobench: ``GymWrapper``, a masked categorical actor over holes, ``ClipPPOLoss``.

    python -m cryobench.examples.torchrl_ppo --small            # under a minute
    python -m cryobench.examples.torchrl_ppo --frames 200000

The environment is TorchRL's ``GymEnv`` by its registered id, with integer actions and
``mask_dtype="bool"``: TorchRL's ``ActionMask`` transform and ``MaskedCategorical`` need a bool
mask (cryobench's default is int8, as gymnasium's ``MultiBinary``). The actor scores every hole with one shared
MLP (``cryobench.examples.networks``); the critic pools the holes. Trains on the train split's
training worlds and prints the mean good exposures of the last sessions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import ActionMask, GymEnv, TransformedEnv
from torchrl.modules import MaskedCategorical, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from cryobench.examples.common import ENV_ID, env_kwargs, good_exposures_per_episode
from cryobench.examples.networks import HoleScores, PooledValue


def make_env(small: bool, seed: int) -> TransformedEnv:
    # training worlds only: the train split, a new training world at every reset
    base = GymEnv(
        ENV_ID,
        split="train",
        new_world_each_reset=True,
        mask_dtype="bool",
        categorical_action_encoding=True,
        **env_kwargs(small),
    )
    env = TransformedEnv(base, ActionMask())  # the action spec's mask follows the observation's
    env.set_seed(seed)
    return env


def train(small: bool, frames: int, frames_per_batch: int = 256, seed: int = 0) -> list[int]:
    """PPO for ``frames`` steps; returns the good exposures of every finished session."""
    torch.manual_seed(seed)
    env = make_env(small, seed)
    actor = ProbabilisticActor(
        TensorDictModule(HoleScores(), in_keys=["features"], out_keys=["logits"]),
        in_keys={"logits": "logits", "mask": "action_mask"},
        distribution_class=MaskedCategorical,
        spec=env.action_spec,
        return_log_prob=True,
    )
    critic = ValueOperator(PooledValue(), in_keys=["features"])
    collector = Collector(
        env, actor, frames_per_batch=frames_per_batch, total_frames=frames, auto_register_policy_transforms=False
    )
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=critic)
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=0.01)
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-4)
    buffer = ReplayBuffer(storage=LazyTensorStorage(frames_per_batch), sampler=SamplerWithoutReplacement())

    rewards, dones = [], []
    for batch in collector:
        rewards.append(batch["next", "reward"].numpy())
        dones.append(batch["next", "done"].numpy())
        for _epoch in range(4):
            with torch.no_grad():
                advantage(batch)
            buffer.extend(batch.reshape(-1))
            for _ in range(frames_per_batch // 64):
                parts = loss(buffer.sample(64))
                total = parts["loss_objective"] + parts["loss_critic"] + parts["loss_entropy"]
                optimizer.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), 0.5)
                optimizer.step()
        collector.update_policy_weights_()
    collector.shutdown()
    return good_exposures_per_episode(np.concatenate(rewards), np.concatenate(dones))


def main(argv: list[str] | None = None) -> list[int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 600-hole twin, 120-minute sessions (tests)")
    parser.add_argument("--frames", type=int, default=None, help="environment steps (default 1,024 --small, else 1e5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frames = args.frames or (1024 if args.small else 100_000)
    torch.set_num_threads(1)
    start = time.perf_counter()
    good = train(args.small, frames, seed=args.seed)
    seconds = time.perf_counter() - start
    last = good[-10:]
    print(
        f"{frames} steps in {seconds:.0f} s ({frames / seconds:.0f} steps/s); "
        f"{len(good)} sessions, the last {len(last)}: {np.mean(last):.1f} good exposures"
    )
    return good


if __name__ == "__main__":
    main()
