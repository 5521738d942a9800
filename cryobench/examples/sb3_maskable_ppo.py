"""sb3-contrib's MaskablePPO with the per-hole policy, trained on training worlds, scored on the test split.

    python -m cryobench.examples.sb3_maskable_ppo --cpu-minutes 10 --threads 1 --out sb3-aldolase  # the README's
    python -m cryobench.examples.sb3_maskable_ppo --small                          # a minute, a small grid

Trains on the Aldolase twin's train split with a new training world at every reset (seeds below
2**30), for ``--cpu-minutes`` of CPU time or ``--timesteps`` steps, then plays the twin's test
split (the card's world: what ``cryobench run --agent snowball --env aldolase`` scores) with
seeds 0 .. episodes-1 and prints both. ``--out DIR`` keeps the model (``model.zip``), the
training curve (``curve.csv``, ``curve.png``) and the scores (``scores.json``); ``--load DIR``
scores such a folder's model again without training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from cryobench.evaluate import evaluate
from cryobench.examples.common import ENV_ID, env_kwargs, make_training_env
from cryobench.policies import PerHolePolicy, load_per_hole_model

#: Chosen on training worlds (the train split); small networks: the cost is N holes per sample.
HYPERPARAMETERS = dict(
    n_steps=128,  # per environment; 4 environments: 512 steps per update
    batch_size=64,
    n_epochs=4,
    learning_rate=2e-3,  # logits must reach ~10 to pick among 1,000 holes within a few hundred updates
    gamma=0.99,
    gae_lambda=0.95,
    ent_coef=0.0,
    policy_kwargs=dict(features_extractor_kwargs=dict(embedding=16), head_hidden=16),
)
N_ENVS = 4
VALIDATION_SEED = 10**6


class TrainingCurve(BaseCallback):
    """Records (steps, CPU seconds, good exposures) per finished episode; stops at the CPU-time budget.

    CPU time, not wall time: on a machine shared with other work the wall clock says little, and
    CPU seconds of all threads never exceed the wall time of the same cores given to this process.
    """

    def __init__(self, cpu_seconds: float | None) -> None:
        super().__init__()
        self.cpu_seconds, self.rows = cpu_seconds, []

    def _on_training_start(self) -> None:
        self.start = time.process_time()

    def _on_step(self) -> bool:
        spent = time.process_time() - self.start
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.rows.append((self.num_timesteps, spent, info["good_exposures"]))
        return self.cpu_seconds is None or spent < self.cpu_seconds


def train(
    small: bool, timesteps: int, cpu_seconds: float | None, seed: int, verbose: int = 0
) -> tuple[MaskablePPO, TrainingCurve]:
    env = make_vec_env(lambda: make_training_env(small), n_envs=N_ENVS, seed=seed)
    model = MaskablePPO(PerHolePolicy, env, seed=seed, device="cpu", verbose=verbose, **HYPERPARAMETERS)
    curve = TrainingCurve(cpu_seconds)
    model.learn(total_timesteps=timesteps, callback=curve)
    return model, curve


def compare(saved: Path, kwargs: dict, episodes: int, seed: int) -> dict:
    """Mean good exposures of the saved policy and of snowball on the same seeded sessions."""
    # loaded with this environment's spaces: its hole count may differ from the training's
    model = load_per_hole_model(str(saved), gym.make(ENV_ID, **kwargs), device="cpu")
    # cryobench.evaluate plays an SB3 model as it is: deterministic actions, the mask as bool
    ours = evaluate(env=ENV_ID, env_kwargs=kwargs, policy=model, episodes=episodes, seed=seed, progress=False)
    snowball = evaluate("snowball", ENV_ID, kwargs, episodes=episodes, seed=seed, progress=False)
    return {
        "per_hole_ppo": ours["summary"]["good_exposures"]["mean"],
        "snowball": snowball["summary"]["good_exposures"]["mean"],
        "seeds": [seed, seed + episodes - 1],
    }


def plot_curve(rows: np.ndarray, snowball_training: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, seconds, good = rows.T
    window = max(1, min(20, len(good) // 5))
    smooth = np.convolve(good, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, good, ".", alpha=0.3, label="training episode (a new training world each)")
    ax.plot(steps[window - 1 :], smooth, label=f"mean of the last {window}")
    ax.axhline(snowball_training, color="k", ls="--", label="snowball on training worlds")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("good exposures per session")
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda s: np.interp(s, steps, seconds) / 60, lambda m: np.interp(m * 60, seconds, steps)),
    )
    top.set_xlabel("CPU minutes of training")
    ax.set_title("MaskablePPO + PerHolePolicy, Aldolase twin, train split", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measure_speed(small: bool, steps: int = 1024) -> dict[str, float]:
    """Steps per CPU second, rollout and update together, of PerHolePolicy and of SB3's MultiInputPolicy
    with the same MaskablePPO settings on the training environment (after one warm-up update)."""
    speeds = {}
    for name, policy in (("PerHolePolicy", PerHolePolicy), ("MultiInputPolicy", "MultiInputPolicy")):
        env = make_vec_env(lambda: make_training_env(small), n_envs=N_ENVS, seed=0)
        settings = {
            key: value for key, value in HYPERPARAMETERS.items() if policy is PerHolePolicy or key != "policy_kwargs"
        }
        model = MaskablePPO(policy, env, seed=0, device="cpu", **settings)
        model.learn(N_ENVS * HYPERPARAMETERS["n_steps"])  # warm-up
        start = time.process_time()
        model.learn(steps, reset_num_timesteps=False)
        speeds[name] = steps / (time.process_time() - start)
        parameters = sum(p.numel() for p in model.policy.parameters())
        print(f"{name}: {parameters} parameters, {speeds[name]:.0f} steps per CPU second")
    return speeds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 600-hole twin, 120-minute sessions (tests)")
    parser.add_argument("--cpu-minutes", type=float, default=None, help="budget of the training in CPU minutes")
    parser.add_argument(
        "--timesteps", type=int, default=None, help="environment steps (default 2,048 --small, else 1e6)"
    )
    parser.add_argument("--episodes", type=int, default=50, help="test-split episodes to score (seeds 0..)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--verbose", action="store_true", help="SB3's progress tables")
    parser.add_argument("--no-test", action="store_true", help="score on training worlds only (while tuning)")
    parser.add_argument("--out", type=Path, default=None, help="folder for model.zip, curve.csv/png, scores.json")
    parser.add_argument("--speed", action="store_true", help="measure steps per CPU second against MultiInputPolicy")
    parser.add_argument("--load", type=Path, default=None, help="score the model an earlier --out folder holds")
    args = parser.parse_args(argv)
    if args.episodes < 1 or (args.cpu_minutes is not None and args.cpu_minutes <= 0):
        parser.error("--episodes and --cpu-minutes must be positive")
    torch.set_num_threads(args.threads)
    timesteps = args.timesteps or (2048 if args.small else 1_000_000)
    if args.speed:
        return measure_speed(args.small)

    if args.load is None:
        out = args.out or Path(tempfile.mkdtemp(prefix="cryobench-sb3-"))
        out.mkdir(parents=True, exist_ok=True)
        cpu_seconds = None if args.cpu_minutes is None else 60 * args.cpu_minutes
        scores = train_and_save(args.small, timesteps, cpu_seconds, args.seed, args.verbose, out)
        scores["threads"] = args.threads
    else:
        out = args.load
        if not (out / "model.zip").is_file():
            parser.error(f"--load {out}: no model.zip there (a folder written by --out)")
        scores = json.loads((out / "scores.json").read_text()) if (out / "scores.json").is_file() else {}

    # Training worlds the training never drew (seeds from 10**6): what designs were chosen on.
    kwargs = env_kwargs(args.small)
    training_kwargs = {**kwargs, "split": "train", "new_world_each_reset": True}
    scores["episodes"] = args.episodes
    scores["training_worlds"] = compare(out / "model.zip", training_kwargs, args.episodes, VALIDATION_SEED)
    if not args.no_test:
        # The weights do not depend on the hole count: the train split's model plays the test split.
        scores["test_split"] = compare(out / "model.zip", {**kwargs, "split": "test"}, args.episodes, 0)
    for where in ("training_worlds", "test_split"):
        if where in scores:
            pair = scores[where]
            print(
                f"{where}, seeds {pair['seeds'][0]}..{pair['seeds'][1]}: per-hole PPO "
                f"{pair['per_hole_ppo']:.1f} good exposures, snowball {pair['snowball']:.1f}"
            )
    if (out / "curve.csv").is_file():
        rows = np.loadtxt(out / "curve.csv", delimiter=",", skiprows=1, ndmin=2)
        if len(rows):
            plot_curve(rows, scores["training_worlds"]["snowball"], out / "curve.png")
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(f"wrote {out}/scores.json" + ("" if args.load else ", model.zip, curve.csv, curve.png"))
    return scores


def train_and_save(small: bool, timesteps: int, cpu_seconds: float | None, seed: int, verbose: bool, out: Path) -> dict:
    """Trains, writes ``model.zip`` and ``curve.csv`` into ``out``; returns the training's numbers."""
    start, cpu_start = time.perf_counter(), time.process_time()
    model, curve = train(small, timesteps, cpu_seconds, seed, int(verbose))
    train_seconds, spent = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        f"trained {model.num_timesteps} steps in {train_seconds:.0f} s ({spent:.0f} CPU s): "
        f"{model.num_timesteps / spent:.0f} steps per CPU second"
    )
    model.save(out / "model.zip")
    rows = np.array(curve.rows, dtype=float).reshape(-1, 3)
    np.savetxt(out / "curve.csv", rows, delimiter=",", header="steps,cpu_seconds,good_exposures", comments="", fmt="%g")
    return {
        "timesteps": int(model.num_timesteps),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(spent, 1),
        "steps_per_cpu_second": round(model.num_timesteps / spent, 1),
    }


if __name__ == "__main__":
    main()
