"""Regressor models: what the agent is told about each hole's CTFMaxRes, and how good that is.

Every model maps the true CTFMaxRes (capped at 20 Å) to a prediction; a scalar ``noise``
scales the model's error: 0 gives perfect predictions, 1 the model as specified (each
dataset's default regressor), larger is worse. Models (``spec["model"]``):

- ``measured``: the dataset's real prediction file; ``noise`` scales its real errors
  (``truth + noise * (measured - truth)``).
- ``resnet50-aldolase``: calibrated to the paper's ResNet-50 on the measured Aldolase data:
  the mean prediction and its spread per true-CTF bin (compressed range: too high between 4
  and 8 Å, far too low above 15 Å), with a share of the error common to a patch (about 10%).
- ``gaussian``: ``truth + bias + sigma * e``, ``e`` standard normal with ``patch_share`` of its
  variance common to the hole's patch.
- ``perfect``: the truth (capped).
- ``uninformative``: the true values shuffled across holes: the right distribution, no information.

Predictions are clipped to [``MIN_PREDICTION``, 20] Å and are deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from cryobench.errors import InputError
from cryobench.grid import CTF_CAP, Grid

MIN_PREDICTION = 0.5
MODELS = ("measured", "resnet50-aldolase", "gaussian", "perfect", "uninformative")

# Measured Aldolase (both splits, 3538 holes): mean and sd of the ResNet-50's prediction by
# true CTFMaxRes (bin means). Derived once from the data with `cryobench datasets show`'s code path.
RESNET50_TRUE = np.array([3.35, 3.71, 4.25, 4.72, 5.24, 5.76, 6.52, 7.53, 8.49, 9.47, 10.95, 13.33, 18.21, 20.0])
RESNET50_MEAN = np.array([4.46, 4.69, 4.95, 5.35, 6.51, 6.88, 8.22, 8.85, 9.20, 9.73, 10.40, 10.49, 10.88, 10.9])
RESNET50_SD = np.array([0.89, 1.08, 1.46, 1.93, 2.61, 2.69, 2.66, 2.17, 1.95, 1.81, 1.99, 2.27, 2.43, 2.43])
RESNET50_PATCH_SHARE = 0.1

_SPEC_FIELDS = {
    "measured": set(),
    "resnet50-aldolase": {"patch_share", "spread"},
    "gaussian": {"sigma", "bias", "patch_share"},
    "perfect": set(),
    "uninformative": set(),
}


def _field(spec: Mapping, key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise InputError(f"regressor {spec.get('model')!r}: {key!r} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A validated regressor spec: a known model and only its own fields."""
    if not isinstance(spec, Mapping) or "model" not in spec:
        raise InputError(f"argument 'regressor': expected a model name or a mapping with 'model', got {spec!r}")
    model = spec["model"]
    if model not in MODELS:
        raise InputError(f"argument 'regressor': unknown model {model!r}; expected one of {', '.join(MODELS)}")
    unknown = set(spec) - {"model"} - _SPEC_FIELDS[model]
    if unknown:
        raise InputError(
            f"argument 'regressor': model {model!r} takes {sorted(_SPEC_FIELDS[model]) or 'no parameters'}, "
            f"not {sorted(unknown)}"
        )
    return dict(spec)


def _correlated_noise(rng: np.random.Generator, patch: np.ndarray, share: float) -> np.ndarray:
    """Standard normal per hole with ``share`` of its variance common to the hole's patch."""
    per_patch = rng.standard_normal(int(patch.max()) + 1)[patch]
    per_hole = rng.standard_normal(len(patch))
    return np.sqrt(share) * per_patch + np.sqrt(1.0 - share) * per_hole


def predict(
    grid: Grid,
    spec: Mapping[str, Any],
    noise: float = 1.0,
    seed: int = 0,
    measured: np.ndarray | None = None,
) -> np.ndarray:
    """Predicted CTFMaxRes per hole of ``grid`` from the model ``spec`` at ``noise`` (see module)."""
    spec = check_spec(spec)
    model = spec["model"]
    truth = grid.ctf_capped()
    rng = np.random.default_rng([int(seed), MODELS.index(model)])
    if model == "perfect":
        error = np.zeros_like(truth)
    elif model == "uninformative":
        return np.clip(rng.permutation(truth), MIN_PREDICTION, CTF_CAP)
    elif model == "measured":
        if measured is None:
            raise InputError(f"regressor 'measured': dataset {grid.name!r} has no measured predictions")
        error = np.asarray(measured, dtype=float) - truth
    elif model == "resnet50-aldolase":
        share = _field(spec, "patch_share", RESNET50_PATCH_SHARE, 0.0, 1.0)
        spread = _field(spec, "spread", 1.0, 0.0, 10.0)
        mean = np.interp(truth, RESNET50_TRUE, RESNET50_MEAN)
        sd = np.interp(truth, RESNET50_TRUE, RESNET50_SD) * spread
        error = mean - truth + sd * _correlated_noise(rng, grid.patch, share)
    else:  # gaussian
        sigma = _field(spec, "sigma", 2.0, 0.0, 20.0)
        bias = _field(spec, "bias", 0.0, -10.0, 10.0)
        share = _field(spec, "patch_share", 0.1, 0.0, 1.0)
        error = bias + sigma * _correlated_noise(rng, grid.patch, share)
    return np.clip(truth + float(noise) * error, MIN_PREDICTION, CTF_CAP)


def regressor_quality(
    predicted: np.ndarray, ctf: np.ndarray, patch: np.ndarray | None = None, threshold: float = 6.0
) -> dict[str, float]:
    """MAE, RMSE, Pearson and Spearman against the capped truth; precision/recall of "good" at
    ``threshold``; with ``patch``, the correlation of predicted and true good fractions per patch."""
    truth = np.minimum(np.asarray(ctf, dtype=float), CTF_CAP)
    predicted = np.asarray(predicted, dtype=float)
    good, called = truth < threshold, predicted < threshold
    tp, fp, fn = int(np.sum(good & called)), int(np.sum(~good & called)), int(np.sum(good & ~called))
    constant = np.ptp(predicted) == 0 or np.ptp(truth) == 0
    out = {
        "mae": float(np.mean(np.abs(predicted - truth))),
        "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
        "pearson": float("nan") if constant else float(stats.pearsonr(predicted, truth).statistic),
        "spearman": float("nan") if constant else float(stats.spearmanr(predicted, truth).statistic),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": int(np.sum(~good & ~called)),
    }
    if patch is not None:
        sizes = np.bincount(patch)
        true_frac = np.bincount(patch, weights=good) / sizes
        pred_frac = np.bincount(patch, weights=called) / sizes
        spread = np.ptp(true_frac) > 0 and np.ptp(pred_frac) > 0
        out["patch_good_fraction_r"] = float(np.corrcoef(true_frac, pred_frac)[0, 1]) if spread else float("nan")
    return out
