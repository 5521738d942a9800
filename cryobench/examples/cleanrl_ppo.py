"""A CleanRL-style single-file PPO with action masking and a per-hole network, in plain PyTorch.

    python -m cryobench.examples.cleanrl_ppo --small            # under a minute
    python -m cryobench.examples.cleanrl_ppo --total-timesteps 200000

Everything is in this file, as in CleanRL's ``ppo.py``: the environments (gymnasium's
``SyncVectorEnv``), the network (one MLP scores every hole's feature row, the scores are the
logits, visited holes masked; the value from the rows pooled over holes), the rollout, GAE and
the clipped update. It trains on the train split's training worlds and prints the mean good
exposures of the last episodes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from cryobench.examples.common import make_training_env
from cryobench.features import N_FEATURES


@dataclass
class Args:
    small: bool = False
    seed: int = 0
    total_timesteps: int = 100_000
    num_envs: int = 2
    num_steps: int = 128
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 32


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Pointer-style actor-critic: nothing depends on the number of holes."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            layer_init(nn.Linear(N_FEATURES, hidden)), nn.ReLU(), layer_init(nn.Linear(hidden, hidden)), nn.ReLU()
        )
        self.score = nn.Sequential(
            layer_init(nn.Linear(hidden, hidden)), nn.ReLU(), layer_init(nn.Linear(hidden, 1), 0.01)
        )
        self.critic = nn.Sequential(
            layer_init(nn.Linear(2 * hidden, hidden)), nn.ReLU(), layer_init(nn.Linear(hidden, 1), 1.0)
        )

    def get_value(self, features: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(features)
        return self.critic(torch.cat([embedded.mean(-2), embedded.amax(-2)], -1)).squeeze(-1)

    def get_action_and_value(self, features: torch.Tensor, mask: torch.Tensor, action: torch.Tensor | None = None):
        embedded = self.embed(features)
        logits = self.score(embedded).squeeze(-1).masked_fill(~mask, -1e8)  # visited holes: never chosen
        probs = Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        value = self.critic(torch.cat([embedded.mean(-2), embedded.amax(-2)], -1)).squeeze(-1)
        return action, probs.log_prob(action), probs.entropy(), value


def make_envs(args: Args) -> gym.vector.SyncVectorEnv:
    # SAME_STEP: a finished session's last step already returns the next session's first observation
    return gym.vector.SyncVectorEnv(
        [lambda: make_training_env(args.small) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def train(args: Args) -> list[int]:
    """PPO; returns the good exposures of every finished training episode, in order."""
    torch.manual_seed(args.seed)
    envs = make_envs(args)
    n_holes = envs.single_action_space.n
    agent = Agent(args.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches

    features = torch.zeros((args.num_steps, args.num_envs, n_holes, N_FEATURES))
    masks = torch.zeros((args.num_steps, args.num_envs, n_holes), dtype=torch.bool)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))

    good_per_episode: list[int] = []
    obs, _ = envs.reset(seed=args.seed)
    next_done = torch.zeros(args.num_envs)
    for _update in range(max(1, args.total_timesteps // batch_size)):
        for step in range(args.num_steps):
            features[step] = torch.as_tensor(obs["features"])
            masks[step] = torch.as_tensor(obs["action_mask"].astype(bool))
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(features[step], masks[step])
            actions[step], logprobs[step], values[step] = action, logprob, value
            obs, reward, terminated, truncated, infos = envs.step(action.numpy())
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_done = torch.as_tensor(terminated | truncated, dtype=torch.float32)
            for i in np.flatnonzero(terminated | truncated):  # the finished session's last info
                good_per_episode.append(int(infos["final_info"]["good_exposures"][i]))

        with torch.no_grad():  # GAE
            next_value = agent.get_value(torch.as_tensor(obs["features"]))
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                not_done = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
                following = next_value if t == args.num_steps - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * following * not_done - values[t]
                advantages[t] = last = delta + args.gamma * args.gae_lambda * not_done * last
            returns = advantages + values

        b_features, b_masks = features.reshape(batch_size, n_holes, N_FEATURES), masks.reshape(batch_size, n_holes)
        b_actions, b_logprobs = actions.reshape(-1), logprobs.reshape(-1)
        b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
        for _epoch in range(args.update_epochs):
            order = torch.randperm(batch_size)
            for start in range(0, batch_size, minibatch_size):
                mb = order[start : start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_features[mb], b_masks[mb], b_actions[mb]
                )
                ratio = (newlogprob - b_logprobs[mb]).exp()
                mb_adv = (b_advantages[mb] - b_advantages[mb].mean()) / (b_advantages[mb].std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef))
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
                loss = pg_loss.mean() - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
    envs.close()
    return good_per_episode


def main(argv: list[str] | None = None) -> list[int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in vars(Args()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    if args.small and args.total_timesteps == Args.total_timesteps:
        args.total_timesteps = 1024
    torch.set_num_threads(1)
    start = time.perf_counter()
    good = train(args)
    seconds = time.perf_counter() - start
    last = good[-10:]
    print(
        f"{args.total_timesteps} steps in {seconds:.0f} s ({args.total_timesteps / seconds:.0f} steps/s); "
        f"{len(good)} episodes, the last {len(last)}: {np.mean(last):.1f} good exposures"
    )
    return good


if __name__ == "__main__":
    main()
