"""Regressor models: what the agent is told about each hole's CTFMaxRes, and how good that is.

Every model maps the true CTFMaxRes (capped at 20 Å) to a prediction; a scalar ``noise``
scales the model's error: 0 gives perfect predictions, 1 the model as specified (each
dataset's default regressor), larger is worse. Models (``spec["model"]``):

- ``measured``: the dataset's real prediction file; ``noise`` scales its real errors
  (``truth + noise * (measured - truth)``).
- ``resnet50-aldolase``: calibrated to the paper's ResNet-50 on the measured Aldolase data:
  the quantiles of its prediction per true-CTF bin (compressed range: too high between 4 and
  8 Å, far too low above 15 Å; skewed), with a share of the error common to a patch (about
  10%); ``spread`` scales the spread around the bin's median; ``patch_context`` (default 0) takes
  that share of the patch's mean compression error back out of every hole's prediction: the
  measured ResNet-50's patch-level residuals offset its compression (a bad patch is predicted
  worse than the compression curve says), so only 14.5% of its log error is shared within a patch.
- ``gaussian``: ``truth + bias + sigma * e``, ``e`` standard normal with ``patch_share`` of its
  variance common to the hole's patch and then (default 0) ``square_share`` of it common to the
  hole's square (a regressor miscalibrated square by square, as on a grid type it never saw).
- ``perfect``: the truth (capped).
- ``uninformative``: the true values shuffled across holes: the right distribution, no information.

Predictions are clipped to [``MIN_PREDICTION``, 20] Å and are deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import ndtr

from cryobench.errors import InputError
from cryobench.grid import CTF_CAP, Grid
from cryobench.rules import PAPER_THRESHOLD_ANGSTROM

MIN_PREDICTION = 0.5
MODELS = ("measured", "resnet50-aldolase", "gaussian", "perfect", "uninformative")

# Measured Aldolase (both splits, 3538 holes): quantiles of the ResNet-50's prediction (rows) for
# holes binned by true CTFMaxRes (RESNET50_TRUE: each bin's mean truth). The conditional
# distribution is skewed (a long tail of high predictions), so quantiles, not a mean and sd.
RESNET50_TRUE = np.array([3.29, 3.71, 4.25, 4.72, 5.24, 5.76, 6.52, 7.53, 8.49, 9.47, 10.95, 13.33, 18.21])
RESNET50_LEVELS = np.array([0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98])
RESNET50_QUANTILES = np.array(
    [
        [3.44, 3.67, 3.98, 4.34, 4.87, 5.70, 9.69],
        [3.63, 3.80, 4.08, 4.45, 4.93, 5.62, 7.44],
        [3.56, 3.85, 4.14, 4.55, 5.23, 6.19, 10.48],
        [3.61, 3.93, 4.18, 4.77, 5.83, 6.68, 12.31],
        [3.87, 4.17, 4.61, 5.49, 7.18, 11.65, 12.53],
        [3.94, 4.24, 4.91, 5.93, 8.15, 11.63, 12.98],
        [4.19, 4.67, 5.96, 8.12, 10.36, 11.86, 13.26],
        [4.65, 5.94, 7.41, 8.86, 10.28, 11.96, 12.94],
        [4.71, 6.75, 8.21, 9.14, 10.37, 11.80, 13.23],
        [5.33, 7.80, 8.69, 9.61, 10.69, 12.15, 13.58],
        [5.91, 8.01, 9.22, 10.33, 11.77, 13.04, 14.16],
        [4.86, 7.03, 9.30, 10.75, 11.95, 13.18, 14.32],
        [4.55, 6.76, 10.07, 11.37, 12.39, 13.38, 14.37],
    ]
)
RESNET50_PATCH_SHARE = 0.1

_SPEC_FIELDS = {
    "measured": set(),
    "resnet50-aldolase": {"patch_share", "spread", "patch_context"},
    "gaussian": {"sigma", "bias", "patch_share", "square_share"},
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
        # A quantile level per hole (patch-correlated), read off the measured conditional quantiles,
        # interpolated between the two nearest true-CTF bins; ``spread`` widens it around the median.
        level = ndtr(_correlated_noise(rng, grid.patch, share))
        row = np.interp(truth, RESNET50_TRUE, np.arange(len(RESNET50_TRUE)))
        low, frac = np.floor(row).astype(int), row - np.floor(row)
        high = np.minimum(low + 1, len(RESNET50_TRUE) - 1)
        at_level = np.array([np.interp(level, RESNET50_LEVELS, q) for q in RESNET50_QUANTILES])  # (bins, n)
        holes = np.arange(len(truth))
        predicted = (1 - frac) * at_level[low, holes] + frac * at_level[high, holes]
        median = (1 - frac) * RESNET50_QUANTILES[low, 3] + frac * RESNET50_QUANTILES[high, 3]
        error = median + spread * (predicted - median) - truth
        context = _field(spec, "patch_context", 0.0, 0.0, 1.0)
        if context:  # absent (0): the v0 twins' predictions, bit for bit
            compression = median - truth
            error = (
                error - context * (np.bincount(grid.patch, weights=compression) / np.bincount(grid.patch))[grid.patch]
            )
    else:  # gaussian
        sigma = _field(spec, "sigma", 2.0, 0.0, 20.0)
        bias = _field(spec, "bias", 0.0, -10.0, 10.0)
        share = _field(spec, "patch_share", 0.1, 0.0, 1.0)
        square_share = _field(spec, "square_share", 0.0, 0.0, 1.0 - share)
        unit = _correlated_noise(rng, grid.patch, share)
        if square_share:  # absent (0): the v0 twins' predictions, bit for bit
            per_square = rng.standard_normal(int(grid.square.max()) + 1)[grid.square]
            unit = np.sqrt(1.0 - square_share) * unit + np.sqrt(square_share) * per_square
        error = bias + sigma * unit
    return np.clip(truth + float(noise) * error, MIN_PREDICTION, CTF_CAP)


def regressor_quality(
    predicted: np.ndarray, ctf: np.ndarray, patch: np.ndarray | None = None, threshold: float = PAPER_THRESHOLD_ANGSTROM
) -> dict[str, float]:
    """MAE, RMSE, Pearson and Spearman against the capped truth; precision/recall of "good" at
    ``threshold``; with ``patch``, the correlation of predicted and true good fractions per patch."""
    from scipy import stats

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
