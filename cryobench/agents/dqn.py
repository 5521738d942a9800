"""cryoRL's deep-Q network: one small MLP shared by every hole, greedy masked argmax at test time.

Read top to bottom:

1. :class:`DQNConfig`, every hyperparameter (the card ``agents/dqn.yaml`` gives the values).
2. :class:`HoleQNetwork`, the per-hole MLP on the last ``history`` steps' features
   (``cryobench.features``, 42 per hole, so ``42 * history`` inputs) giving one Q-value per hole.
3. The patch decomposition that makes it fast. Of a hole's 42 features only four belong to the
   hole itself (predicted CTF, visited, revealed, revealed CTF); every other column is shared by
   all holes of its patch (group counts and histograms, the move level from the current hole,
   the time left). An unvisited hole has never been visited nor revealed, so its input is its
   patch's *context* plus its predicted CTF repeated in every history slot, and the first layer
   splits exactly: ``W1 x = W1 context[patch] + pred * sum_k W1[:, pred column of slot k]``.
   The first layer then runs once per patch instead of once per hole; the masked argmax over
   unvisited holes is unchanged (a test checks it against the plain network).
   :func:`context_from_features` builds those contexts from an observation.
4. Checkpoints (``torch.load(weights_only=True)``) that record the feature layout.
5. :class:`DQNAgent`, the agent the registry loads (``cryobench run --agent dqn``).

Training (replay, n-step double DQN, parallel sessions) lives in ``cryobench.agents.dqn_train``,
which imports this module and never the other way round: the agent names its trainer as a
string (``DQNAgent.trainer``) that ``cryobench train`` resolves.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import pickle
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cryobench.agents.base import Agent
from cryobench.agents.common import Hierarchy
from cryobench.agents.predict_rank import nested_plan
from cryobench.errors import InputError
from cryobench.features import (
    FEATURE_LAYOUT_VERSION,
    FEATURE_NAMES,
    HOLE_OWN_COLUMNS,
    N_FEATURES,
    PREDICTED_CTF_COLUMN,
    RELIABILITY_LAYOUT_NAMES,
    RELIABILITY_LAYOUT_VERSION,
    REVEALED_COLUMN,
    REVEALED_CTF_COLUMN,
    RevealedSums,
    first_hole_of_each_patch,
    reliability_features,
)
from cryobench.files import write_atomic
from cryobench.grid import CTF_CAP

CHECKPOINT_FORMAT = "cryobench-dqn/1"


# ---- 1. hyperparameters ------------------------------------------------------------------
@dataclass
class DQNConfig:
    """Every hyperparameter of the network, its training and its use (see ``agents/dqn.yaml``)."""

    # The network (the paper: 128 -> 256 -> 128 -> 1 on 32 features x 4 steps).
    checkpoint: str = "checkpoints/dqn-v3-seed0.pt"  # relative to the agents' card folder, or a path
    history: int = 4
    # The network's inputs: the environment's 42 columns, or those followed by the reliability columns
    # (``cryobench.features.reliability_features``: how far this session's revealed CTFs bore out the
    # predictions), so one network can tell a perfect regressor from a poor one. A checkpoint records
    # its feature set; the agent computes whatever its checkpoint was trained on.
    reliability_features: bool = False
    # Version 3: the environment's columns followed by two static patch columns (``plan_columns``): the
    # patch's place in Predict-Rank's plan and the session's threshold, so the network can follow the
    # plan (or leave it) instead of rebuilding the ranking from the group counts. Not with reliability_features.
    plan_features: bool = True
    # Residual on Predict-Rank (needs plan_features): Q = prior_scale * prior + the network, where the
    # prior ranks holes as Predict-Rank's plan does (``plan_prior``) and the network's last layer starts
    # at zero, so the untrained agent plays Predict-Rank and training moves it only where the data say so.
    prior_scale: float = 1.0
    # Version 3: follow Predict-Rank's plan while the session's revealed CTFs show a near-perfect
    # regressor (``cryobench.agents.calibrated``: at least ``trust_holes`` revealed CTFs that can tell,
    # within ``trust_rms`` Å rms of the calibrated predictions), the network otherwise. With perfect
    # predictions Predict-Rank's plan is the oracle's, which a network that imitates a per-minute planner
    # does not reproduce (v2: P(dqn > predict-rank) = 0.03 there). 0 turns it off (versions 1 and 2).
    trust_rms: float = 0.25
    trust_holes: int = 5
    # What the revealed CTFs are compared with. "raw" (version 4): the predictions as they are, the plan's
    # own input, kept as running sums (O(new reveals) a step). "calibrated" (version 3): the predictions
    # after bayes-lookahead's calibration, refitted after every reveal (about 0.45 ms a decision).
    trust_test: str = "raw"
    hidden1: int = 64
    hidden2: int = 32
    # Double DQN with n-step returns (the paper: gamma 0.9 per step, 3 steps).
    gamma: float = 0.9
    # Discount per microscope minute (a step of t minutes is discounted by gamma ** t) instead of per
    # step: with a per-step discount a 2-minute patch change looks as cheap as a 1-minute hole in
    # the same patch, and the network learned to hop between patches (68 patch moves in 310 exposures).
    discount_per_minute: bool = True
    n_step: int = 3
    learning_rate: float = 0.001
    batch_size: int = 64
    buffer_size: int = 20000
    target_update: int = 320  # gradient steps between target-network syncs (when target_tau is 0)
    # Soft (Polyak) target updates: after every gradient step target <- tau * online + (1 - tau) * target.
    # 0 means hard syncs every ``target_update`` gradient steps.
    target_tau: float = 0.0
    train_every: int = 5  # environment steps per gradient step
    learning_starts: int = 1000  # environment steps before the first gradient step
    grad_clip: float = 10.0
    # Exploration: epsilon decays linearly between two environment-step counts.
    epsilon_start: float = 0.1
    epsilon_end: float = 0.01
    epsilon_decay_start: int = 1000
    epsilon_decay_end: int = 2000
    # Data: parallel sessions and the training worlds.
    num_envs: int = 8
    total_steps: int = 2000  # environment steps
    extra_worlds: int = 0  # worlds besides the training environment's own (new prediction draws / twins)
    extra_worlds_regressor: str = "resnet50-aldolase"  # their regressor on measured data (twins: their own)
    # Regressor noise levels the extra worlds cycle through, comma-separated ("": the environment's own), so
    # the network meets predictions of several qualities and can learn when revealed CTFs should overrule them.
    extra_worlds_noise: str = ""
    # The target's maximum runs over each patch's unvisited holes of lowest predicted CTF (a hole's
    # Q depends on its patch and its predicted CTF only); 0 means every unvisited hole.
    target_candidates_per_patch: int = 4
    # The same at test time: the greedy argmax runs over these candidates (0: every unvisited hole, versions
    # 1-3). Version 4: 4, which halves the decision time; on the validation subset the sessions' good
    # exposures were those of every hole's argmax.
    act_candidates_per_patch: int = 4
    # Checkpoint selection: greedy episodes on the training environment's world with seeds unused in training.
    validate_every: int = 1000  # environment steps
    validation_episodes: int = 3
    validation_seed: int = 1_000_000
    # A held-out world for checkpoint selection besides the training world: an environment's short
    # name whose ``validation_twin_split`` world is played greedily from the same seeds ("" for none). The
    # validation score is the mean over both worlds' episodes.
    validation_twin: str = ""
    # Which split of that twin: "test" is a simulated world shaped like the measured test split (more
    # squares, fewer good holes than the train split) that is not the measured test data.
    validation_twin_split: str = "test"
    # The twin's regressor noise levels to validate on, comma-separated, one world each ("": its default):
    # "1,2" also rewards networks that hold up when the regressor is poor.
    validation_twin_noise: str = ""
    # Twin worlds of another layout trained on alongside (procedurally generated: simulated CTFs and
    # predictions, new world seeds): an environment's short name, its split and how many worlds.
    # Sessions, replay and batches are shared out evenly between the layouts.
    extra_twin: str = ""
    extra_twin_split: str = "test"
    extra_twin_worlds: int = 0
    # Protocol v2's training worlds instead of the environment's world (``cryobench train --env training``):
    # ``training_pool`` worlds drawn as cryobench/Training-v0 draws them (a new training layout and quality
    # and new conditions: regressor error model and quality, timings, session length, threshold, feedback),
    # shared out over the twins of ``training_twins``. Layouts of one twin share sessions and a replay.
    training_pool: int = 16
    training_twins: str = "aldolase,apoferritin,rnapii,aldolaseau"
    # Which regressors the pool's (and validation pool's) conditions draw: "all" or "poor"
    # (cryobench.training_env.REGRESSOR_RANGES).
    training_regressors: str = "all"
    # Checkpoint selection on ``validation_pool`` more such worlds, drawn from ``validation_seed`` (so every
    # training seed selects on the same worlds; none is trained on): the score is the mean over worlds of
    # good exposures relative to predict-rank's on that world. Replaces the environment's world and
    # ``validation_twin`` when above 0.
    validation_pool: int = 8
    # Learning from demonstrations (DQfD, Hester et al. 2018): episodes of another agent on the training
    # worlds are kept in a second replay that is never overwritten; the network first learns from them
    # alone (``pretrain_steps`` gradient steps), then every gradient step adds ``demo_batch_size`` of them
    # to the agent's own batch. On demonstration samples a large-margin loss pushes the demonstrator's
    # hole ``margin`` above every other: max_a [Q(s, a) + margin * (a != a_E)] - Q(s, a_E).
    # An agent name ("" for none: plain DQN from scratch), or several comma-separated: each plays the
    # same ``demo_episodes_per_world`` episodes on a training world and the one with the most good
    # exposures there demonstrates on it (which behaviour fits which conditions).
    demonstrator: str = "greedy"
    demo_episodes_per_world: int = 2
    pretrain_steps: int = 1000
    demo_batch_size: int = 16
    margin: float = 0.8
    margin_weight: float = 1.0
    # Torch intra-op threads for training and inference. The per-step tensors are small, and with
    # 2 threads on a busy 2-core machine OpenMP's spin-waits made a forward pass 30x slower (measured).
    torch_threads: int = 1

    #: Hyperparameters added after results were recorded, with the value those results ran with: a recorded
    #: card without one (versions 1 and 2 of dqn, dqn-noise-robust) re-runs with it, so it decides as it did
    #: (``cryobench.agents.registry.recorded_hyperparameters``).
    ADDED_AFTER_RECORDING: ClassVar[dict[str, Any]] = {
        "reliability_features": False,
        "training_regressors": "all",
        "plan_features": False,
        "trust_rms": 0.0,
        "trust_holes": 5,
        "prior_scale": 0.0,
        "trust_test": "calibrated",
    }

    def __post_init__(self) -> None:
        for name, allowed in HYPERPARAMETER_RANGES.items():
            allowed.check(name, getattr(self, name))
        if self.plan_features and self.reliability_features:
            raise InputError(
                "DQN hyperparameters 'plan_features' and 'reliability_features': a network reads one extra "
                "feature set, not both; set one of them to false"
            )
        if self.prior_scale > 0 and not self.plan_features:
            raise InputError(
                "DQN hyperparameter 'prior_scale': the Predict-Rank prior reads the plan feature set; "
                "set plan_features to true (or prior_scale to 0)"
            )
        if self.trust_test not in TRUST_TESTS:
            raise InputError(
                f"DQN hyperparameter 'trust_test': expected one of {', '.join(TRUST_TESTS)}, got {self.trust_test!r}"
            )
        if self.training_regressors not in ("all", "poor"):  # cryobench.training_env.REGRESSOR_RANGES
            raise InputError(
                f"DQN hyperparameter 'training_regressors': expected one of all, poor, got {self.training_regressors!r}"
            )


#: The calibration switch's tests (``DQNConfig.trust_test``).
TRUST_TESTS = ("raw", "calibrated")
#: The switch compares CTFs clipped to the threshold +- this (Å): bayes-lookahead's window
#: (``cryobench.agents.calibrated.CalibrationPriors.window``, which imports scipy: 0.2 s of start-up).
TRUST_WINDOW = 2.0


@dataclass(frozen=True)
class Range:
    """The values a numeric hyperparameter may take: ``low`` (excluded when ``low_open``) to ``high``, finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = True

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"

    def check(self, name: str, value: Any) -> None:
        number = not isinstance(value, bool) and isinstance(value, int if self.integer else int | float)
        inside = (
            number
            and math.isfinite(value)
            and (self.low is None or (value > self.low if self.low_open else value >= self.low))
            and (self.high is None or value <= self.high)
        )
        if not inside:
            raise InputError(f"DQN hyperparameter {name!r}: expected {self}, got {value!r}")


def _at_least(low: int) -> Range:
    return Range(low)


_FRACTION = Range(0.0, 1.0, integer=False)
_POSITIVE = Range(0.0, low_open=True, integer=False)
#: The valid values of every numeric hyperparameter; a value outside is refused when the config is made.
HYPERPARAMETER_RANGES: dict[str, Range] = {
    "history": _at_least(1),
    "trust_rms": Range(0.0, integer=False),
    "prior_scale": Range(0.0, integer=False),
    "trust_holes": _at_least(1),
    "hidden1": _at_least(1),
    "hidden2": _at_least(1),
    "gamma": _FRACTION,
    "n_step": _at_least(1),
    "learning_rate": _POSITIVE,
    "batch_size": _at_least(1),
    "buffer_size": _at_least(1),
    "target_update": _at_least(1),
    "target_tau": _FRACTION,
    "train_every": _at_least(1),
    "learning_starts": _at_least(0),
    "grad_clip": _POSITIVE,
    "epsilon_start": _FRACTION,
    "epsilon_end": _FRACTION,
    "epsilon_decay_start": _at_least(0),
    "epsilon_decay_end": _at_least(0),
    "num_envs": _at_least(1),
    "total_steps": _at_least(0),
    "extra_worlds": _at_least(0),
    "target_candidates_per_patch": _at_least(0),  # 0: every unvisited hole
    "act_candidates_per_patch": _at_least(0),
    "validate_every": _at_least(1),
    "validation_episodes": _at_least(1),
    "validation_seed": _at_least(0),
    "extra_twin_worlds": _at_least(0),
    "training_pool": _at_least(0),
    "validation_pool": _at_least(0),
    "demo_episodes_per_world": _at_least(1),
    "pretrain_steps": _at_least(0),
    "demo_batch_size": _at_least(0),
    "margin": Range(0.0, integer=False),
    "margin_weight": Range(0.0, integer=False),
    "torch_threads": _at_least(1),
}


# ---- 2. the network -----------------------------------------------------------------------
class HoleQNetwork(nn.Module):
    """One Q-value per hole from that hole's features over the last ``history`` steps."""

    def __init__(
        self, history: int, hidden1: int, hidden2: int, n_features: int = N_FEATURES, prior_scale: float = 0.0
    ) -> None:
        super().__init__()
        self.history, self.n_features, self.prior_scale = history, n_features, prior_scale
        self.layer1 = nn.Linear(history * n_features, hidden1)
        self.layer2 = nn.Linear(hidden1, hidden2)
        self.layer3 = nn.Linear(hidden2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain per-hole evaluation: (..., history * n_features) -> (...)."""
        q = self.layer3(torch.relu(self.layer2(torch.relu(self.layer1(x))))).squeeze(-1)
        if self.prior_scale > 0:  # the newest history slot's columns
            now = x[..., (self.history - 1) * self.n_features :]
            q = q + self.prior_scale * plan_prior(
                now[..., PREDICTED_CTF_COLUMN], now[..., N_FEATURES], now[..., N_FEATURES + 1]
            )
        return q

    def pred_weight(self) -> torch.Tensor:
        """First-layer weight of the predicted CTF summed over history slots (hidden1,)."""
        return self.layer1.weight[:, PREDICTED_CTF_COLUMN :: self.n_features].sum(dim=1)

    def unvisited_q(self, context: torch.Tensor, hole_patch: torch.Tensor, hole_pred: torch.Tensor) -> torch.Tensor:
        """Q-values of holes given as unvisited, through the patch decomposition.

        context: (S, P, history * n_features) patch contexts (hole columns zero);
        hole_patch: (H,) or (S, H) the holes' patch ids; hole_pred: (S, H) their predicted-CTF feature.
        Returns (S, H).
        """
        n_states, n_patches = context.shape[0], context.shape[1]
        per_patch = self.layer1(context).reshape(n_states * n_patches, -1)  # bias included once per patch
        rows = hole_patch + (torch.arange(n_states) * n_patches).unsqueeze(1)  # (S, H) rows of per_patch
        hidden = per_patch.index_select(0, rows.reshape(-1))
        hidden = hidden + hole_pred.reshape(-1, 1) * self.pred_weight()
        hidden = torch.relu(self.layer2(torch.relu(hidden)))
        q = self.layer3(hidden).reshape(n_states, -1)
        if self.prior_scale > 0:
            now = context[:, :, (self.history - 1) * self.n_features :]  # (S, P, n_features)
            plan = now[:, :, N_FEATURES:].reshape(n_states * n_patches, -1).index_select(0, rows.reshape(-1))
            prior = plan_prior(hole_pred.reshape(-1), plan[:, 0], plan[:, 1])
            q = q + self.prior_scale * prior.reshape(n_states, -1)
        return q


#: The prior's tie-break inside a patch: below the smallest gap between two patches' ranks.
PRIOR_PREDICTION_WEIGHT = 1e-4


def plan_prior(pred: torch.Tensor, patch_plan_rank: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Predict-Rank's order as a score: a predicted-good hole scores 1 - its patch's plan rank (``plan_columns``),
    a predicted-bad one 0, less a tie-break by prediction, so the highest unvisited hole is the plan's next."""
    good = (pred < threshold).to(pred.dtype)
    return good * (1.0 - patch_plan_rank) - PRIOR_PREDICTION_WEIGHT * pred


#: The plan feature set (``DQNConfig.plan_features``): per patch, its place in Predict-Rank's plan
#: (``plan_columns``) and the threshold, after the environment's columns.
PLAN_FEATURE_NAMES = ("patch_plan_rank", "threshold")
PLAN_LAYOUT_VERSION = f"{FEATURE_LAYOUT_VERSION}+plan-v1"
PLAN_LAYOUT_NAMES = FEATURE_NAMES + PLAN_FEATURE_NAMES

#: The feature sets a network may read: layout version -> feature names.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    FEATURE_LAYOUT_VERSION: FEATURE_NAMES,
    RELIABILITY_LAYOUT_VERSION: RELIABILITY_LAYOUT_NAMES,
    PLAN_LAYOUT_VERSION: PLAN_LAYOUT_NAMES,
}


def feature_set(config: DQNConfig) -> str:
    """The layout version of the features a network trained with ``config`` reads."""
    if config.plan_features:
        return PLAN_LAYOUT_VERSION
    return RELIABILITY_LAYOUT_VERSION if config.reliability_features else FEATURE_LAYOUT_VERSION


def make_network(config: DQNConfig) -> HoleQNetwork:
    n_features = len(FEATURE_SETS[feature_set(config)])
    network = HoleQNetwork(config.history, config.hidden1, config.hidden2, n_features, config.prior_scale)
    if config.prior_scale > 0:  # the untrained network adds nothing to the prior
        nn.init.zeros_(network.layer3.weight)
        nn.init.zeros_(network.layer3.bias)
    return network


# ---- 3. patch contexts ----------------------------------------------------------------------
def context_from_features(hole_features: np.ndarray, patch_representative: np.ndarray) -> np.ndarray:
    """Patch contexts (P, N_FEATURES) from an observation's feature matrix (N, N_FEATURES)."""
    context = hole_features[patch_representative].copy()
    context[:, list(HOLE_OWN_COLUMNS)] = 0.0  # left to the hole's own input
    return context


def plan_columns(hierarchy: Hierarchy) -> np.ndarray:
    """The plan feature set's columns (P, 2), the same at every step of a session.

    ``patch_plan_rank``: the patch's place in Predict-Rank's plan (the order in which the plan first
    enters each patch) over the number of patches holding a predicted-good hole, capped at 2 and
    halved: 0 is the plan's first patch, 0.5 its last patch with a predicted-good hole, 1 the rest.
    ``threshold``: the session's threshold on the predicted-CTF column's scale (``/ CTF_CAP``), so
    the network can tell a predicted-good hole from its predicted CTF under any threshold.
    """
    h = hierarchy
    plan = nested_plan(h, h.predicted_ctf, h.threshold, "count", False)
    entered = np.unique(h.patch[plan], return_index=True)[1]  # each patch's first place in the plan
    rank = np.empty(h.n_patches)
    rank[np.argsort(entered, kind="stable")] = np.arange(h.n_patches)
    good_patches = int(np.count_nonzero(np.bincount(h.patch[h.predicted_ctf < h.threshold], minlength=h.n_patches)))
    columns = np.empty((h.n_patches, 2), dtype=np.float32)
    columns[:, 0] = np.minimum(rank / max(good_patches, 1), 2.0) / 2.0
    columns[:, 1] = min(h.threshold, CTF_CAP) / CTF_CAP
    return columns


def reliability_context(
    hole_features: np.ndarray, hole_patch: np.ndarray, patch_square: np.ndarray, threshold: float
) -> np.ndarray:
    """The reliability columns (P, N_RELIABILITY_FEATURES) of one observation's feature matrix."""
    return reliability_features(
        hole_features[:, PREDICTED_CTF_COLUMN],
        hole_features[None, :, REVEALED_COLUMN] > 0,
        hole_features[None, :, REVEALED_CTF_COLUMN],
        hole_patch,
        patch_square,
        threshold,
    )[0]


# ---- 4. checkpoints ------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, network: HoleQNetwork, config: DQNConfig, meta: dict[str, Any]) -> Path:
    """Weights, hyperparameters, feature layout and provenance in one small file."""
    layout = feature_set(config)
    if len(FEATURE_SETS[layout]) != network.n_features:
        raise ValueError(f"a network of {network.n_features} features cannot be saved as feature set {layout!r}")
    document = {
        "format": CHECKPOINT_FORMAT,
        "feature_layout_version": layout,
        "feature_names": list(FEATURE_SETS[layout]),
        "hyperparameters": dataclasses.asdict(config),
        "meta": meta,
        # Contiguous copies: a view would save its whole base storage.
        "state_dict": {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()},
    }
    return write_atomic(path, lambda file: torch.save(document, file))


def load_checkpoint(path: str | Path) -> tuple[HoleQNetwork, dict[str, Any]]:
    """The network and the checkpoint document; refuses another format or feature layout."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"DQN checkpoint {path} is a folder; expected a checkpoint file (-H checkpoint=FILE.pt)")
    if not path.is_file():
        raise InputError(
            f"DQN checkpoint {path} not found; train one with `cryobench train --agent dqn --env ...` "
            "or pass -H checkpoint=PATH"
        )
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # torch's safe loader met bytes it cannot parse, not a Python object
            raise InputError(
                f"DQN checkpoint {path}: cannot be read as a torch file (it is not a torch checkpoint)"
            ) from None
        raise InputError(
            f"DQN checkpoint {path}: cannot be read safely: it holds Python objects besides tensors and plain "
            "data, and loading those could run code; a cryobench DQN checkpoint holds only plain data"
        ) from None
    except Exception as exc:  # not a torch file, truncated, empty
        if path.stat().st_size == 0:
            reason = "the file is empty"
        elif isinstance(exc, RuntimeError) and str(exc).strip():  # torch's reader: its first sentence says what
            reason = str(exc).splitlines()[0].split(". ")[0]
        else:  # a KeyError or an unpickling error on some byte says nothing useful
            reason = "it is not a torch checkpoint"
        raise InputError(f"DQN checkpoint {path}: cannot be read as a torch file ({reason})") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"DQN checkpoint {path}: not a cryobench DQN checkpoint (expected {CHECKPOINT_FORMAT!r})")
    layout, names = document.get("feature_layout_version"), tuple(document.get("feature_names") or ())
    known = FEATURE_SETS.get(layout, FEATURE_NAMES)
    if layout not in FEATURE_SETS or names != known:
        differing = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(names, known, strict=False)) if a != b][:3]
        computed = " or ".join(f"{version!r} ({len(n)} features)" for version, n in FEATURE_SETS.items())
        raise InputError(
            f"DQN checkpoint {path} was trained on feature layout {layout!r} ({len(names)} features) but this "
            f"cryobench computes {computed}"
            + (f"; first differences {differing}" if differing else "")
            + ". Retrain it with `cryobench train --agent dqn`."
        )
    sizes = _network_sizes(path, document)
    weights = _checked_weights(path, document, sizes, len(names))
    prior_scale = _prior_scale(path, document, layout)
    network = HoleQNetwork(*sizes, len(names), prior_scale)
    network.load_state_dict(weights)
    network.eval()
    return network, document


def _prior_scale(path: Path, document: dict[str, Any], layout: str) -> float:
    """The recorded ``prior_scale`` (0 when a checkpoint predates it); a prior needs the plan feature set."""
    value = (
        document["hyperparameters"].get("prior_scale", 0.0)
        if isinstance(document.get("hyperparameters"), dict)
        else 0.0
    )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(f"DQN checkpoint {path}: hyperparameter 'prior_scale' must be a number >= 0, got {value!r}")
    if value > 0 and layout != PLAN_LAYOUT_VERSION:
        raise InputError(
            f"DQN checkpoint {path}: prior_scale {value} needs feature layout {PLAN_LAYOUT_VERSION!r}, not {layout!r}"
        )
    return float(value)


def _network_sizes(path: Path, document: dict[str, Any]) -> tuple[int, int, int]:
    """``history``, ``hidden1``, ``hidden2`` from a checkpoint's hyperparameters, each a positive integer."""
    hyper = document.get("hyperparameters")
    if not isinstance(hyper, dict):
        raise InputError(f"DQN checkpoint {path}: no 'hyperparameters' mapping (history, hidden1, hidden2)")
    sizes = []
    for name in ("history", "hidden1", "hidden2"):
        value = hyper.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(
                f"DQN checkpoint {path}: hyperparameter {name!r} must be a positive integer, got {value!r}"
            )
        sizes.append(value)
    return sizes[0], sizes[1], sizes[2]


def _checked_weights(
    path: Path, document: dict[str, Any], sizes: tuple[int, int, int], n_features: int = N_FEATURES
) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, refused unless they are exactly the network's: names, shapes, float32, finite."""
    weights = document.get("state_dict")
    if not isinstance(weights, dict):
        raise InputError(f"DQN checkpoint {path}: no 'state_dict' mapping of weights")
    with torch.device("meta"):  # shapes only: recorded sizes are not trusted with memory before they are checked
        expected = {name: tuple(tensor.shape) for name, tensor in HoleQNetwork(*sizes, n_features).state_dict().items()}
    described = "history {}, hidden1 {}, hidden2 {}".format(*sizes)
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected), key=str)
    if missing or unexpected:
        found = "; ".join(
            f"{what} {names}" for what, names in (("missing weights", missing), ("unexpected", unexpected)) if names
        )
        raise InputError(f"DQN checkpoint {path}: {found} (a network of {described} has {sorted(expected)})")
    for name, shape in expected.items():
        tensor = weights[name]
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise InputError(f"DQN checkpoint {path}: weight {name!r} is {kind}, expected a float32 tensor")
        if tuple(tensor.shape) != shape:
            raise InputError(
                f"DQN checkpoint {path}: weight {name!r} has shape {tuple(tensor.shape)}, expected {shape} "
                f"for the hyperparameters it records ({described}, {n_features} features per hole)"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise InputError(f"DQN checkpoint {path}: weight {name!r} holds NaN or infinite values")
    return weights


def checkpoint_config(checkpoint: str | Path, **hyperparameters: Any) -> DQNConfig:
    """A config for ``checkpoint`` whose network hyperparameters (sizes, feature set, prior) are the
    checkpoint's, the others the defaults or ``hyperparameters``: what ``-H checkpoint=...`` plus the
    ``-H`` values the refusal below names give on the command line."""
    network, document = load_checkpoint(resolve_checkpoint(str(checkpoint)))
    trained = _network_hyperparameters(network, document)
    return DQNConfig(**{**trained, "checkpoint": str(checkpoint), **hyperparameters})


def _network_hyperparameters(network: HoleQNetwork, document: dict[str, Any]) -> dict[str, Any]:
    layout = document["feature_layout_version"]
    return {
        "history": network.history,
        "hidden1": network.layer2.in_features,
        "hidden2": network.layer3.in_features,
        "plan_features": layout == PLAN_LAYOUT_VERSION,
        "reliability_features": layout == RELIABILITY_LAYOUT_VERSION,
        "prior_scale": network.prior_scale,
    }


def _check_config_matches(path: Path, config: DQNConfig, network: HoleQNetwork, document: dict[str, Any]) -> None:
    """Refuse a run whose hyperparameters say another network than its checkpoint holds: the checkpoint
    decides the sizes, the feature set and the prior, and a results file records the hyperparameters."""
    trained = _network_hyperparameters(network, document)
    differing = [name for name, value in trained.items() if getattr(config, name) != value]
    if differing:
        found = ", ".join(
            f"{name} {_shown(trained[name])} (this run: {_shown(getattr(config, name))})" for name in differing
        )
        passed = " ".join(f"-H {name}={_shown(trained[name])}" for name in differing)
        raise InputError(
            f"DQN checkpoint {path} holds a network of {found}; pass {passed} with it, so the results record "
            "the network that decided (an older version's other values: its card's previous_version)"
        )


def _shown(value: Any) -> str:
    """A hyperparameter's value as it is written after -H."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


@functools.lru_cache(maxsize=8)
def _cached_checkpoint(path: str, sha256: str) -> tuple[HoleQNetwork, dict[str, Any]]:
    return load_checkpoint(path)  # keyed by content: a checkpoint replaced in place is read again


def resolve_checkpoint(name: str) -> Path:
    """A checkpoint path (:func:`cryobench.agents.registry.checkpoint_path`)."""
    from cryobench.agents.registry import checkpoint_path

    return checkpoint_path(name)


# ---- 5. the agent --------------------------------------------------------------------------
class DQNAgent(Agent):
    """cryoRL's deep-Q network: a per-hole MLP over 4 steps of features, greedy over unvisited holes."""

    name = "dqn"
    Config = DQNConfig
    #: What ``cryobench train`` calls (see agents/README.md): training lives apart from the agent.
    trainer = "cryobench.agents.dqn_train:train"

    def __init__(self, config: DQNConfig | None = None) -> None:
        super().__init__(config)
        self.network: HoleQNetwork | None = None

    def fit(self, env, seed: int = 0) -> None:
        """Load the checkpoint (training is ``cryobench train --agent dqn``, not part of a run)."""
        self._load()

    def _load(self) -> HoleQNetwork:
        if self.network is None:
            path = resolve_checkpoint(self.config.checkpoint)
            if not path.exists() and not Path(self.config.checkpoint).expanduser().is_absolute():
                raise InputError(
                    f"DQN checkpoint {self.config.checkpoint!r} not found in the working directory ({Path.cwd()}) "
                    f"nor in the agents' card folder (as {path}); -H checkpoint=PATH takes a path relative to either"
                )
            if not path.is_file():
                load_checkpoint(path)  # raises the friendly error
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            network, document = _cached_checkpoint(str(path.resolve()), digest)
            _check_config_matches(path, self.config, network, document)
            self.network, self.document = network, document
            self.history = self.network.history
        return self.network

    def reset(self, env, seed: int) -> None:
        super().reset(env, seed)
        self._load()
        torch.set_num_threads(self.config.torch_threads)
        names = tuple(getattr(self.env, "feature_names", FEATURE_NAMES))
        trained_on = tuple(self.document["feature_names"])
        # The reliability and plan feature sets are the environment's columns followed by columns computed here.
        self.reliability = trained_on == RELIABILITY_LAYOUT_NAMES
        self.plan = plan_columns(Hierarchy.from_layout(self.layout)) if trained_on == PLAN_LAYOUT_NAMES else None
        extended = self.reliability or self.plan is not None
        if names != (trained_on[:N_FEATURES] if extended else trained_on):
            raise InputError(
                "the environment's features differ from those the DQN checkpoint was trained on; retrain it"
            )
        patch = np.asarray(self.layout.patch, dtype=np.int64)
        self.patch_representative = first_hole_of_each_patch(patch)
        if self.reliability:  # running sums of this session's reveals (the columns in O(new reveals) a step)
            patch_square = np.asarray(self.layout.square, dtype=np.int64)[self.patch_representative]
            self._revealed_sums = RevealedSums(patch, patch_square, self.layout.threshold)
        self._hole_patch = patch
        net = self.network
        self._weights = tuple(
            t.detach().contiguous()
            for t in (
                net.layer1.weight.T,
                net.layer1.bias,
                net.pred_weight(),
                net.layer2.weight.T,
                net.layer2.bias,
                net.layer3.weight[0],
                net.layer3.bias,
            )
        )
        self.contexts: deque[np.ndarray] = deque(maxlen=self.history)
        self.trust = (
            TrustedPlan(self.layout, self.config.trust_holes, self.config.trust_rms, self.config.trust_test)
            if self.config.trust_rms > 0
            else None
        )
        self._patch_candidates = None  # another environment may have other predictions
        self._prior_pred = None

    def q_values(self, obs: dict) -> np.ndarray:
        """Q-values of every hole (-inf for visited ones and, with candidates, for the others skipped)."""
        holes, q = self._evaluate(obs)
        out = np.full(len(obs["action_mask"]), -np.inf, dtype=np.float32)
        out[holes] = q
        return out

    def _evaluate(self, obs: dict) -> tuple[np.ndarray, np.ndarray]:
        """The holes evaluated (ascending) and their Q-values."""
        feats = self._push_context(obs)
        mask = np.asarray(obs["action_mask"]).astype(bool)
        if self.config.act_candidates_per_patch > 0:
            holes = self._candidates(mask, feats[:, PREDICTED_CTF_COLUMN])
        else:
            holes = np.flatnonzero(mask)
        # HoleQNetwork.unvisited_q on detached weights with plain tensor calls: at one state and a few
        # thousand holes, nn.Module and autograd overhead cost more than the arithmetic (measured).
        w1, b1, w_pred, w2, b2, w3, b3 = self._weights
        per_patch = torch.addmm(b1, torch.from_numpy(np.concatenate(list(self.contexts), axis=1)), w1)
        hidden = per_patch.index_select(0, torch.from_numpy(self._hole_patch[holes]))
        hidden.addcmul_(torch.from_numpy(feats[holes, PREDICTED_CTF_COLUMN, None]), w_pred).relu_()
        hidden = torch.addmm(b2, hidden, w2).relu_()
        q = torch.addmv(b3, hidden, w3)
        if self.network.prior_scale > 0:
            q += self._scaled_prior(feats[:, PREDICTED_CTF_COLUMN], "imaged" in obs)[torch.from_numpy(holes)]
        return holes, q.numpy()

    def _scaled_prior(self, pred: np.ndarray, staged: bool) -> torch.Tensor:
        """``prior_scale * plan_prior`` of every hole, recomputed only when the predictions change (it is
        elementwise, so the same values as computed on the candidates alone). They change only in staged
        sessions (a newly imaged square's holes get theirs), so only there are they compared each step."""
        if self._prior_pred is None or (staged and not np.array_equal(pred, self._prior_pred)):
            self._prior_pred = pred.copy()
            plan = torch.from_numpy(self.plan[self._hole_patch])
            prior = plan_prior(torch.from_numpy(self._prior_pred), plan[:, 0], plan[:, 1])
            self._prior = self.network.prior_scale * prior
        return self._prior

    def _push_context(self, obs: dict) -> np.ndarray:
        """Append this step's patch contexts to the history; returns the observation's feature matrix."""
        feats = np.asarray(obs["features"], dtype=np.float32)
        if feats.shape[1] != N_FEATURES:
            raise InputError(f"observation has {feats.shape[1]} features per hole; the DQN expects {N_FEATURES}")
        context = context_from_features(feats, self.patch_representative)
        if self.reliability:
            extra = self._revealed_sums.columns(
                feats[:, PREDICTED_CTF_COLUMN], feats[:, REVEALED_COLUMN] > 0, feats[:, REVEALED_CTF_COLUMN]
            )
            context = np.concatenate([context, extra], axis=1)
        elif self.plan is not None:
            context = np.concatenate([context, self.plan], axis=1)
        if not self.contexts:  # the session's first step: repeat it to fill the history
            self.contexts.extend([context] * self.history)
        else:
            self.contexts.append(context)
        return feats

    def _candidates(self, mask: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """The ``act_candidates_per_patch`` unvisited holes of lowest predicted CTF in every patch, ascending.

        Kept between steps (``PatchCandidates``): a step usually only takes holes away, and each one
        taken is replaced by its patch's next; a hole that becomes available rebuilds the set.
        """
        if self._patch_candidates is None:
            self._patch_candidates = PatchCandidates(self._hole_patch, pred, self.config.act_candidates_per_patch)
        return self._patch_candidates.update(mask)

    def act(self, obs: dict, info: dict) -> int:
        if self.trust is not None and self.trust.trusted(obs):
            self._push_context(obs)  # the history stays whole for when the network decides again
            return self.trust.next_hole(obs["action_mask"])
        holes, q = self._evaluate(obs)
        if not len(holes):
            return 0  # nothing left to take (the session is over); what argmax over all -inf gave
        return int(holes[np.argmax(q)])  # ties: the lowest index (holes ascend), as argmax over q_values


class PatchCandidates:
    """The ``per_patch`` available holes of lowest prediction in every patch, updated as holes are taken.

    Holes are ordered by patch, then prediction (ties by index). Each patch keeps a frontier: every hole
    before it is a candidate or unavailable. Taking a candidate moves the frontier to the patch's next
    available hole (O(holes skipped)); a hole that becomes available again (a staged session's newly
    imaged square) rebuilds everything, so the set is always the one recomputed from scratch.
    """

    def __init__(self, hole_patch: np.ndarray, predicted: np.ndarray, per_patch: int) -> None:
        self.order = np.lexsort((predicted, hole_patch))
        sorted_patch = hole_patch[self.order]
        self.hole_patch, self.per_patch = hole_patch, per_patch
        self.segment_start = np.searchsorted(sorted_patch, sorted_patch, side="left")
        n_patches = int(hole_patch.max()) + 1 if len(hole_patch) else 0
        self.patch_end = np.searchsorted(sorted_patch, np.arange(n_patches), side="right")
        self.available: np.ndarray | None = None

    def rebuild(self, mask: np.ndarray) -> None:
        available = mask[self.order]
        seen = np.cumsum(available)
        rank = seen - (seen[self.segment_start] - available[self.segment_start]) - 1
        chosen = np.flatnonzero(available & (rank < self.per_patch))
        self.is_candidate = np.zeros(len(mask), dtype=bool)
        self.is_candidate[self.order[chosen]] = True
        # The frontier: after the patch's last candidate (or its start when it has none).
        self.frontier = np.searchsorted(self.hole_patch[self.order], np.arange(len(self.patch_end)), side="left")
        np.maximum.at(self.frontier, self.hole_patch[self.order[chosen]], chosen + 1)
        self.available = mask.copy()

    def update(self, mask: np.ndarray) -> np.ndarray:
        """The candidates under ``mask`` (True: available), in ascending hole order."""
        if self.available is None:
            self.rebuild(mask)
        else:
            changed = np.flatnonzero(mask != self.available)
            if mask[changed].any():
                self.rebuild(mask)
            else:
                self.available[changed] = False
                for hole in changed[self.is_candidate[changed]]:
                    self.is_candidate[hole] = False
                    self._advance(int(self.hole_patch[hole]))
        return np.flatnonzero(self.is_candidate)

    def _advance(self, patch: int) -> None:
        """Make the patch's next available hole past its frontier a candidate."""
        position, end = int(self.frontier[patch]), int(self.patch_end[patch])
        while position < end and not self.available[self.order[position]]:
            position += 1
        if position < end:
            self.is_candidate[self.order[position]] = True
            position += 1
        self.frontier[patch] = position


class TrustedPlan:
    """Predict-Rank's plan, and whether this session's revealed CTFs show the regressor near-perfect.

    Both tests look only at the revealed holes that can tell: not those whose prediction and CTF lie
    beyond one end of the window threshold +- 2 Å (a clearly good hole predicted clearly good agrees
    whatever the regressor), on that window's clipped scale.

    - ``"raw"`` (version 4): the rms of revealed CTF - prediction, from running sums over the holes
      revealed since the last step (O(new reveals)). The plan is made from these very predictions.
    - ``"calibrated"`` (version 3): bayes-lookahead's test (``cryobench.agents.lookahead``): the
      calibration of ``CalibratedBelief`` refitted to every revealed CTF (O(revealed), redone whenever
      more are revealed), then the rms about the calibrated predictions.
    """

    def __init__(self, layout, trust_holes: int, trust_rms: float, test: str = "calibrated") -> None:
        hierarchy = Hierarchy.from_layout(layout)
        self.test = test
        self.belief = None
        if test == "calibrated":
            from cryobench.agents.calibrated import CalibratedBelief, CalibrationPriors

            self.belief = CalibratedBelief(hierarchy, CalibrationPriors())
        self.low, self.high = hierarchy.threshold - TRUST_WINDOW, hierarchy.threshold + TRUST_WINDOW
        self.predicted = np.clip(hierarchy.predicted_ctf, self.low, self.high)
        self.plan = nested_plan(hierarchy, hierarchy.predicted_ctf, hierarchy.threshold, "count", False)
        self.position = 0
        self.trust_holes, self.trust_rms = trust_holes, trust_rms
        self.n_revealed, self.is_trusted = 0, False
        self.rms = math.inf  # of the revealed CTFs that can tell about the (raw or calibrated) predictions
        self.was_revealed = np.zeros(hierarchy.n_holes, dtype=bool)
        self.telling, self.squared_error = 0, 0.0  # the raw test's running sums

    def trusted(self, obs: dict) -> bool:
        revealed = np.asarray(obs["revealed"])
        new = np.flatnonzero(revealed > self.was_revealed)  # revealed since the last call (none is ever hidden)
        if len(new):
            self.was_revealed[new] = True
            self.n_revealed += len(new)
            if self.belief is not None:
                shown = np.flatnonzero(self.was_revealed)
                belief = self.belief
                belief.fit_calibration(shown, belief.to_model(np.asarray(obs["revealed_ctf"])[shown]))
                self.rms = belief.residual_rms
                self.is_trusted = belief.revealed >= self.trust_holes and self.rms <= self.trust_rms
            else:
                x = self.predicted[new]
                y = np.minimum(np.maximum(np.asarray(obs["revealed_ctf"], dtype=np.float64)[new], self.low), self.high)
                telling = ~(((x <= self.low) & (y <= self.low)) | ((x >= self.high) & (y >= self.high)))
                self.telling += int(np.count_nonzero(telling))
                self.squared_error += float(np.sum((y - x)[telling] ** 2))
                self.rms = math.sqrt(self.squared_error / self.telling) if self.telling else math.inf
                self.is_trusted = self.telling >= self.trust_holes and self.rms <= self.trust_rms
        return self.is_trusted

    def next_hole(self, available: np.ndarray) -> int:
        """The plan's next unvisited hole (the pointer only moves forward)."""
        while not available[self.plan[self.position]]:
            self.position += 1
        return int(self.plan[self.position])


class NoiseRobustDQNAgent(DQNAgent):
    """cryoRL's deep-Q network trained beside worlds of noisier predictions (card ``dqn-noise-robust``)."""

    name = "dqn-noise-robust"
