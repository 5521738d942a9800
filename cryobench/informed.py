"""What the informed upper bound knows: each hole's chance of being good from its patch's
quality and the regressor's calibration, without the hole's own noise (issue 14, "Know the headroom").

- On a twin, the patch quality is the generator's latent (``cryobench.twin.patch_latent_quality``:
  tile, square and patch effects and the patch's mean of the smooth field), turned into P(good)
  by ``cryobench.twin.latent_good_probability``.
- A grid without a generator (measured data, hand-made grids) has no latent; its stand-in is the
  patch's good share among its *other* holes (leave one out), pooled toward the square's share
  with the weight of ``POOLING_HOLES`` holes: what the patch's other holes say about it.
- Either way, the prediction is added by a logistic regression of the grid's good holes on
  (that probability's logit, the capped prediction): three grid-wide numbers, nothing per hole,
  so a biased or uninformative regressor is weighted as it deserves. That is calibration
  ``"logistic"`` (the informed bound's versions 1 and 2). Calibration ``"hinged"`` (version 3)
  lets the prediction enter piecewise linearly, with knots at its quintiles: seven grid-wide
  numbers. A regressor that compresses the CTF range (the ResNet-50's calibration: too high
  between 4 and 8 Å) makes P(good) bend with the prediction, and a straight line
  underestimated the best-predicted holes, Predict-Rank's plan (11 good exposures short on
  AldolaseAu training worlds, so the bound preferred a worse plan).
"""

from __future__ import annotations

import numpy as np

from cryobench.grid import CTF_CAP

#: The square's share counts as this many holes in the leave-one-out patch share.
POOLING_HOLES = 2.0
#: How the prediction enters the calibration (see the module docstring).
CALIBRATIONS = ("logistic", "hinged")
#: The hinged calibration's knots: these quantiles of the grid's capped predictions.
HINGE_QUANTILES = (0.2, 0.4, 0.6, 0.8)


def leave_one_out_patch_share(patch: np.ndarray, square: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Per hole: the good share of the other holes of its patch, pooled toward its square's share."""
    good = np.asarray(good, dtype=np.float64)
    patch_good = np.bincount(patch, weights=good)[patch] - good
    patch_size = np.bincount(patch)[patch] - 1.0
    square_good = np.bincount(square, weights=good)[square] - good
    square_share = square_good / np.maximum(np.bincount(square)[square] - 1.0, 1.0)
    return (patch_good + POOLING_HOLES * square_share) / (patch_size + POOLING_HOLES)


def with_predictions(
    known: np.ndarray, predicted_ctf: np.ndarray, good: np.ndarray, calibration: str = "logistic"
) -> np.ndarray:
    """P(good | known probability, prediction): a logistic regression fitted on the grid's holes,
    the prediction linear (``"logistic"``) or piecewise linear (``"hinged"``) in it."""
    from scipy.special import expit, logit  # here, not at the top: scipy's import cost

    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r}: expected one of {', '.join(CALIBRATIONS)}")
    predicted = np.minimum(predicted_ctf, CTF_CAP)
    columns = [np.ones(len(known)), logit(np.clip(known, 1e-6, 1 - 1e-6)), predicted]
    if calibration == "hinged":
        columns += [np.maximum(predicted - knot, 0.0) for knot in np.quantile(predicted, HINGE_QUANTILES)]
    features = np.column_stack(columns)
    if calibration == "hinged":  # standardised, so the ridge shrinks every slope alike
        spread = features[:, 1:].std(axis=0)
        features[:, 1:] = (features[:, 1:] - features[:, 1:].mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return expit(features @ logistic_fit(features, np.asarray(good, dtype=np.float64)))


def logistic_fit(features: np.ndarray, y: np.ndarray, ridge: float = 1e-2, steps: int = 30) -> np.ndarray:
    """Coefficients of a ridge-penalised logistic regression by Newton's method (a few features;
    the ridge keeps them finite when a perfect regressor separates good from bad)."""
    from scipy.special import expit

    w = np.zeros(features.shape[1])
    penalty = ridge * np.eye(len(w))
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(steps):
        p = expit(features @ w)
        gradient = features.T @ (y - p) - penalty @ w
        hessian = (features * (p * (1 - p))[:, None]).T @ features + penalty
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w
