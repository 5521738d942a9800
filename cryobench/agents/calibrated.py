"""A belief over hole quality whose trust in the regressor is learned from the session itself.

The revealed CTFs are modelled as Gaussian on the scale ``clip(ctf, threshold - window,
threshold + window)``, the predictions on the same scale: what matters is whether a hole is
below the threshold. Without the window the long tail of bad holes and failed fits (100000 Å)
dominates every variance, and a poor regressor's wild predictions (bad holes predicted at
0.5 Å) its slopes; within it, the patch's mean prediction ranks patches by their true good share
about as well as Predict-Rank's count of predicted-good holes on every v2 condition (training
worlds), where the log of the capped prediction did not (Aldolase noise 2: -0.23 against +0.21).

    q(hole) = alpha + between * (patch's mean prediction - grid's) + within * (prediction - patch's mean)
                + tile + square + patch + field + noise

- ``alpha``, ``between``, ``within``: the regressor's calibration. Two slopes, because a regressor's
  error is often shared by a patch's holes (then the ranking inside a patch is worth more than
  the patch's mean prediction, or the reverse). ``within`` is fitted on the revealed holes'
  deviations from their patch's revealed mean (group effects cancel there); ``alpha`` and
  ``between`` by weighted least squares on the revealed patches' means. Each has a prior at
  "the prediction is right" (alpha at the grid's mean prediction, slopes 1) worth a few holes or
  patches, so a perfect regressor is trusted from the first decision and a poor or uninformative
  one is discounted as soon as the revealed CTFs disagree with it.
- ``tile``, ``square``, ``patch``: Gaussian group effects; their posterior is exact on the tree
  (one upward and one downward pass of bincounts). Their variances (the total, and the patch's
  share of it) and the noise variance are re-estimated at every full refit by the method of
  moments, shrunk toward the card's values with the weight of a few patches or holes
  (empirical Bayes).
- ``field``: revealed holes of the same patch within ``neighbour_radius`` pitches predict a hole's
  residual with correlation ``neighbour_correlation ** (distance / pitch) ** 2`` (about 0.48 at
  one pitch on the measured Aldolase data).

P(good) of a hole is the predictive probability of its CTF below the threshold. A full refit is
O(revealed) plus a few bincounts over the holes; while the stage stays in a patch only that
patch's effect and field are updated (``patch_probabilities``, O(patch)), in one or many
simulated futures at once (the lookahead's rollouts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from cryobench.agents.common import Hierarchy
from cryobench.agents.hierarchical import neighbour_pairs


@dataclass
class CalibrationPriors:
    """What the belief assumes before the session reveals anything, and how strongly."""

    #: the model's scale: CTFs and predictions clipped to the threshold +- this (Å)
    window: float = 2.0
    #: slopes of the truth on the prediction before any CTF is seen (1: the prediction is right)
    slope: float = 1.0
    #: weight of that prior: as many revealed holes (within) or patches (between) of typical spread
    slope_holes: float = 10.0
    slope_patches: float = 1.0
    #: sd (Å, model scale) of the regressor's overall bias before any CTF is seen
    bias_sd: float = 0.5
    #: noise sd (Å, model scale) of a hole around its patch's mean, and its weight in revealed holes
    noise_sd: float = 1.0
    noise_holes: float = 10.0
    #: sd (Å, model scale) of a patch's total group effect (tile + square + patch), and its weight in patches
    group_sd: float = 0.6
    group_patches: float = 3.0
    #: share of the group variance that is the patch's own (the rest: square and tile, half each)
    patch_share: float = 0.7
    #: weight of that share in revealed pairs of patches of one square
    share_patches: float = 3.0
    #: correlation of two holes' residuals one lattice pitch apart, and the neighbours' radius (pitches)
    neighbour_correlation: float = 0.48
    neighbour_radius: float = 1.6
    #: smallest noise and group sd (Å, model scale) the moments may give (a perfect regressor's are 0)
    min_sd: float = 0.02


class CalibratedBelief:
    """P(good) of every hole from the predictions and the revealed CTFs (see the module)."""

    def __init__(self, hierarchy: Hierarchy, priors: CalibrationPriors) -> None:
        h = self.hierarchy = hierarchy
        self.priors = q = priors
        self.threshold = h.threshold
        self.low, self.high = h.threshold - q.window, h.threshold + q.window
        x = self.to_model(h.predicted_ctf)
        sizes = np.bincount(h.patch, minlength=h.n_patches)
        patch_mean = np.bincount(h.patch, weights=x, minlength=h.n_patches) / np.maximum(sizes, 1)
        self.x0 = float(x.mean())
        self.u = patch_mean - self.x0  # per patch: its mean prediction about the grid's
        self.d = x - patch_mean[h.patch]  # per hole: its prediction about its patch's mean
        self.within_spread = max(float(np.mean(self.d**2)), 1e-6)
        self.between_spread = max(float(np.mean(self.u**2)), 1e-6)
        # Calibration and variances: the priors until the first refit.
        self.alpha, self.between, self.within = self.x0, q.slope, q.slope
        self.noise_var = q.noise_sd**2
        self.group_var = q.group_sd**2
        self.split_group_variance(q.patch_share * self.group_var)
        # Neighbour pairs (i, j, c_ij) with c_ij = rho_ij / (1 - rho_ij): one neighbour at
        # correlation rho moves the hole's residual by rho times its own.
        pair_i, pair_j, weight = neighbour_pairs(h, q.neighbour_radius)
        squared = -2.0 * np.log(np.maximum(weight, 1e-300))  # (distance / pitch) ** 2
        rho = np.minimum(q.neighbour_correlation**squared, 0.95)
        by_source = np.argsort(pair_j, kind="stable")
        self.pair_i, self.pair_c = pair_i[by_source], (rho / (1.0 - rho))[by_source]
        self.pair_start = np.searchsorted(pair_j[by_source], np.arange(h.n_holes + 1))
        # The same as one dense (target x source) matrix per patch, holes in ascending index.
        order = np.argsort(h.patch, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)])
        self.members = [order[starts[p] : starts[p + 1]] for p in range(h.n_patches)]
        local = np.zeros(h.n_holes, dtype=np.int64)
        local[order] = np.arange(h.n_holes) - starts[h.patch[order]]
        self.patch_c = [np.zeros((size, size)) for size in sizes]
        for i, j, c in zip(pair_i, pair_j, rho / (1.0 - rho), strict=True):
            self.patch_c[h.patch[i]][local[i], local[j]] = c
        # The group effect's prior of every patch before its own revealed holes (the cavity).
        self.cavity_mean = np.zeros(h.n_patches)
        self.cavity_var = np.full(h.n_patches, self.group_var)
        self.p_good = self.probabilities(np.zeros(0, dtype=np.int64), np.zeros(0))
        self.residual_rms, self.revealed = np.inf, 0

    def to_model(self, ctf: np.ndarray) -> np.ndarray:
        """CTFs (Å) on the model's scale: clipped to the threshold +- ``window``."""
        return np.clip(np.asarray(ctf, dtype=np.float64), self.low, self.high)

    def split_group_variance(self, patch_var: float) -> None:
        """Patch, square and tile variances from the total group variance and the patch's part."""
        self.patch_var = min(max(patch_var, 0.0), self.group_var)
        self.square_var = self.tile_var = max(0.5 * (self.group_var - self.patch_var), 0.25 * self.priors.min_sd**2)
        self.patch_var = max(self.patch_var, 0.25 * self.priors.min_sd**2)

    def hole_mean(self, holes: np.ndarray) -> np.ndarray:
        """The calibrated prediction of ``holes`` (model scale), before group effects."""
        return self.alpha + self.between * self.u[self.hierarchy.patch[holes]] + self.within * self.d[holes]

    def refit(self, shown: np.ndarray, ctf: np.ndarray) -> None:
        """Refit calibration, variances and group effects to the revealed holes ``shown`` with
        CTFs ``ctf`` (Å); update ``p_good`` of every hole."""
        y = self.to_model(ctf)
        if len(shown):
            self.fit_calibration(shown, y)
        self.p_good = self.probabilities(shown, y)

    def fit_calibration(self, shown: np.ndarray, y: np.ndarray) -> None:
        """Empirical Bayes: slopes, bias, noise and group variances from the revealed holes."""
        h, q = self.hierarchy, self.priors
        patch = h.patch[shown]
        n_p = np.bincount(patch, minlength=h.n_patches).astype(np.float64)
        seen = np.flatnonzero(n_p)
        safe = np.maximum(n_p, 1.0)
        d = self.d[shown]
        y_bar = np.bincount(patch, weights=y, minlength=h.n_patches) / safe
        d_bar = np.bincount(patch, weights=d, minlength=h.n_patches) / safe
        # Within patches: the slope and the noise (group effects cancel in the deviations).
        dc, yc = d - d_bar[patch], y - y_bar[patch]
        prior_sxx = q.slope_holes * self.within_spread
        self.within = float((dc @ yc + prior_sxx * q.slope) / (dc @ dc + prior_sxx))
        residual = yc - self.within * dc
        df = len(shown) - len(seen)
        self.noise_var = max((residual @ residual + q.noise_holes * q.noise_sd**2) / (df + q.noise_holes), q.min_sd**2)
        # All three jointly (generalised least squares with the patch effects as noise): the
        # deviations within patches inform ``within``; each patch's revealed mean informs the bias,
        # ``between`` and ``within`` too (a patch's best-predicted hole that disappoints is evidence
        # against ``within`` even when it is the only hole revealed there).
        y_seen, u, n, d_seen = y_bar[seen], self.u[seen], n_p[seen], d_bar[seen]
        w = 1.0 / (self.group_var + self.noise_var / n)
        typical = 1.0 / (self.group_var + self.noise_var / 10.0)
        prior_precision = np.array(
            [
                1.0 / q.bias_sd**2,
                q.slope_patches * typical * self.between_spread,
                q.slope_holes * self.within_spread / self.noise_var,
            ]
        )
        prior_mean = np.array([self.x0, q.slope, q.slope])
        design = np.column_stack([np.ones(len(seen)), u, d_seen])
        a = (design * w[:, None]).T @ design + np.diag(prior_precision)
        a[2, 2] += dc @ dc / self.noise_var
        b = design.T @ (w * y_seen) + prior_precision * prior_mean
        b[2] += dc @ yc / self.noise_var
        self.alpha, self.between, self.within = (float(v) for v in np.linalg.solve(a, b))
        z = y_seen - self.within * d_seen
        r = z - self.alpha - self.between * u
        moments = r**2 - self.noise_var / n
        self.group_var = max(
            (moments.sum() + q.group_patches * q.group_sd**2) / (len(seen) + q.group_patches), q.min_sd**2
        )
        # The patch's share: spread of revealed patches about their square's revealed mean.
        square = h.patch_square[seen]
        m_q = np.bincount(square, minlength=h.n_squares)
        r_q = np.bincount(square, weights=r, minlength=h.n_squares) / np.maximum(m_q, 1)
        pooled = m_q[square] >= 2
        df_share = float(np.sum(m_q[m_q >= 2] - 1))
        prior_patch = q.patch_share * self.group_var
        if df_share > 0:
            spread = np.sum((r[pooled] - r_q[square[pooled]]) ** 2) / df_share - np.mean(self.noise_var / n[pooled])
            patch_var = (df_share * max(spread, 0.0) + q.share_patches * prior_patch) / (df_share + q.share_patches)
        else:
            patch_var = prior_patch
        self.split_group_variance(patch_var)
        # How far the revealed CTFs are from the calibrated predictions, before any group effect,
        # on the holes that can tell: not those whose prediction and CTF are both clipped at one
        # end of the window (a clearly good hole predicted clearly good agrees whatever the regressor).
        x = self.to_model(h.predicted_ctf[shown])
        telling = ~(((x <= self.low) & (y <= self.low)) | ((x >= self.high) & (y >= self.high)))
        residual = (y - self.hole_mean(shown))[telling]
        self.revealed = len(residual)
        self.residual_rms = float(np.sqrt(np.mean(residual**2))) if len(residual) else np.inf

    def probabilities(self, shown: np.ndarray, y: np.ndarray) -> np.ndarray:
        """P(good) of every hole given revealed ``shown`` with ``y`` on the model's scale: the
        group effects' posterior on the tree, then the neighbours' field."""
        h = self.hierarchy
        mean = self.hole_mean(np.arange(h.n_holes))
        patch = h.patch[shown]
        n_p = np.bincount(patch, minlength=h.n_patches).astype(np.float64)
        r_sum = np.bincount(patch, weights=y - mean[shown], minlength=h.n_patches)
        r = r_sum / np.maximum(n_p, 1.0)
        # Upward: each revealed patch's message about its square's total effect, each square's about its tile's.
        a = np.where(n_p > 0, 1.0 / (self.patch_var + self.noise_var / np.maximum(n_p, 1.0)), 0.0)
        prec_q = np.bincount(h.patch_square, weights=a, minlength=h.n_squares)
        sum_q = np.bincount(h.patch_square, weights=a * r, minlength=h.n_squares)
        m_q = sum_q / np.maximum(prec_q, 1e-300)
        b = np.where(prec_q > 0, 1.0 / (self.square_var + 1.0 / np.maximum(prec_q, 1e-300)), 0.0)
        tile_prec = 1.0 / self.tile_var + np.bincount(h.square_tile, weights=b, minlength=h.n_tiles)
        tile_sum = np.bincount(h.square_tile, weights=b * m_q, minlength=h.n_tiles)
        # Downward: each square from its tile without its own message, then each patch likewise.
        t = h.square_tile
        cavity_prec = tile_prec[t] - b
        cavity_mean = (tile_sum[t] - b * m_q) / cavity_prec
        prior_prec = 1.0 / (1.0 / cavity_prec + self.square_var)
        square_prec = prior_prec + prec_q
        square_mean = (prior_prec * cavity_mean + sum_q) / square_prec
        s = h.patch_square
        patch_cavity_prec = square_prec[s] - a
        self.cavity_mean = (square_prec[s] * square_mean[s] - a * r) / patch_cavity_prec
        self.cavity_var = 1.0 / patch_cavity_prec + self.patch_var
        group_prec = 1.0 / self.cavity_var + n_p / self.noise_var
        group_mean = (self.cavity_mean / self.cavity_var + r_sum / self.noise_var) / group_prec
        # The field: revealed neighbours' residuals about their patch's effect.
        field, strength = np.zeros(h.n_holes), np.zeros(h.n_holes)
        lengths = self.pair_start[shown + 1] - self.pair_start[shown]
        total = int(lengths.sum())
        if total:
            offsets = np.repeat(self.pair_start[shown] - np.cumsum(lengths) + lengths, lengths)
            pairs = offsets + np.arange(total)
            source = np.repeat(y - mean[shown] - group_mean[patch], lengths)
            i, c = self.pair_i[pairs], self.pair_c[pairs]
            strength = np.bincount(i, weights=c, minlength=h.n_holes)
            field = np.bincount(i, weights=c * source, minlength=h.n_holes) / (1.0 + strength)
        return self._good(mean + group_mean[h.patch] + field, 1.0 / group_prec[h.patch], strength / (1.0 + strength))

    def _good(self, mean: np.ndarray, group_var: np.ndarray, explained: np.ndarray) -> np.ndarray:
        """P(CTF < threshold) of holes with this predictive mean and group variance; ``explained``:
        the share of the neighbour correlation the revealed neighbours take out of the noise."""
        self.last_mean, self.last_sd = mean, np.sqrt(self.predictive_var(group_var, explained))
        return ndtr((self.threshold - mean) / self.last_sd)

    def predictive_var(self, group_var: np.ndarray, explained: np.ndarray) -> np.ndarray:
        return group_var + self.noise_var * (1.0 - self.priors.neighbour_correlation * explained)

    def patch_probabilities(self, patch: int, shown: np.ndarray, y: np.ndarray) -> np.ndarray:
        """P(good) of a patch's holes (``members[patch]``, ascending) in one or many futures at once:
        ``shown`` (futures x holes, bool) and ``y`` (their CTFs on the model's scale, ``to_model``;
        anything where not shown).

        The patch's effect from its cavity prior and its revealed holes, then the field; the
        calibration, variances and the other groups stay as the last refit left them. Equal to
        ``probabilities`` on the patch's holes when nothing else changed. The predictive mean and
        sd of every hole's CTF stay in ``last_mean`` and ``last_sd`` (for sampling futures).
        """
        mean = self.hole_mean(self.members[patch])
        shown_f = np.atleast_2d(shown).astype(np.float64)
        y = np.atleast_2d(y)
        residual = np.where(shown_f > 0, y - mean, 0.0)
        n = shown_f.sum(axis=1, keepdims=True)
        prior_var = self.cavity_var[patch]
        group_prec = 1.0 / prior_var + n / self.noise_var
        group_mean = (
            self.cavity_mean[patch] / prior_var + residual.sum(axis=1, keepdims=True) / self.noise_var
        ) / group_prec
        c = self.patch_c[patch]
        strength = shown_f @ c.T
        field = ((residual - group_mean) * shown_f) @ c.T / (1.0 + strength)
        return self._good(mean + group_mean + field, 1.0 / group_prec, strength / (1.0 + strength))
