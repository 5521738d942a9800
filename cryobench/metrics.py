"""Standard metrics: per episode, between trajectories (Jaccard), and aggregated over episodes.

One module used by the CLI, the leaderboards and the tests. Per-episode metrics are
computed from a finished session and the world's ground truth (scoring may see the
truth; agents may not). Aggregates follow Agarwal et al. (2021, "Deep RL at the edge of
the statistical precipice"): interquartile mean with stratified bootstrap confidence
intervals and the probability of improvement, implemented on numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.profiles import MOVE_LEVELS
from cryobench.simulator import SessionState, World

# The paper's bins for exposures (Å): < 4, 4-5, 5-6, > 6.
PAPER_BIN_EDGES = (0.0, 4.0, 5.0, 6.0, np.inf)
PAPER_BIN_LABELS = ("<4", "4-5", "5-6", ">6")


def episode_metrics(world: World, state: SessionState) -> dict:
    """The standard metrics of one finished (or running) session."""
    exposures = np.asarray(state.exposures, dtype=np.int64)
    ctf = world.grid.ctf[exposures]
    good = world.true_good[exposures]
    squares = world.grid.square[exposures]
    minutes = np.asarray(state.exposure_minutes, dtype=np.float64)
    bins = np.histogram(ctf, bins=PAPER_BIN_EDGES)[0]
    per_square = np.bincount(squares, minlength=world.grid.n_squares)
    visited_squares = per_square[per_square > 0]
    row = {
        "good_exposures": int(good.sum()),
        "exposures": len(exposures),
        "good_fraction": float(good.mean()) if len(exposures) else 0.0,
        "bins": {label: int(c) for label, c in zip(PAPER_BIN_LABELS, bins, strict=True)},
        "total_reward": float(np.sum(state.rewards)),
        "minutes": float(state.elapsed),
        "moves": {level: int(c) for level, c in zip(MOVE_LEVELS, state.moves, strict=True)},
        "invalid_moves": int(state.invalid_moves),
        "tiles_visited": int(len(np.unique(world.grid.tile[exposures]))),
        "squares_visited": int(len(visited_squares)),
        "patches_visited": int(len(np.unique(world.grid.patch[exposures]))),
        "exposures_per_square": float(visited_squares.mean()) if len(visited_squares) else 0.0,
        "good_curve": {"minutes": minutes.tolist(), "good": np.cumsum(good).astype(int).tolist()},
        "start": int(state.start),
        "trajectory": exposures.tolist(),
        "trajectory_good": good.astype(int).tolist(),
        "trajectory_ctf": ctf.tolist(),
    }
    per_hole = world.profile.exposures_per_hole
    if per_hole != 1:  # beam-image-shift profiles: every hole action collects this many movies, of the hole's quality
        row["movies"] = per_hole * len(exposures)
        row["good_movies"] = per_hole * int(good.sum())
    if state.imaged is not None:  # staged acquisition: the squares imaged, in order
        row["squares_imaged"] = [int(square) for square in state.squares_imaged]
    if state.grid_minutes is not None:  # cassettes: minutes spent and good exposures per grid
        row["grids"] = {
            "minutes": state.grid_minutes.round(6).tolist(),
            "good_exposures": np.bincount(world.cassette[exposures], weights=good, minlength=world.n_grids)
            .astype(int)
            .tolist(),
            "exchanges": int(state.grid_exchanges),
        }
    return row


# ---- the registry of headline metrics ---------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One per-episode metric, registered once and shown by everything that lists metrics:
    results summaries, ``cryobench compare``, the human-track table and plots (see DEVELOPERS.md)."""

    name: str  # key in results summaries and compare tables (and, by default, in episode rows)
    label: str  # words for a column header or an axis
    digits: int = 1  # decimals of a mean in tables
    integer: bool = False  # one episode's value is a whole number (shown without decimals)
    unit: str = ""  # shown on axes, e.g. "min"
    higher_is_better: bool = True
    # From an episode row (a results file's or a submission's); None reads row[name].
    compute: Callable[[Mapping[str, Any]], float] | None = None

    def value(self, row: Mapping[str, Any]) -> float:
        try:
            value = row[self.name] if self.compute is None else self.compute(row)
        except KeyError as exc:  # a hand-made or older results file
            raise InputError(f"metric {self.name!r}: an episode lacks the field {exc.args[0]!r}") from None
        # float() would read the string "999" or true as a count: only real numbers are one.
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
            raise InputError(f"metric {self.name!r}: expected a number, got {value!r:.60}")
        return float(value)

    def values(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        return np.array([self.value(row) for row in rows], dtype=float)

    def format(self, value: float, one_episode: bool = False) -> str:
        """``value`` as tables print it: a mean with :attr:`digits` decimals, one episode's whole number bare."""
        return f"{value:.0f}" if one_episode and self.integer else f"{value:.{self.digits}f}"

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


#: Every registered metric, in the order tables show them; add one with :func:`register_metric`.
METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`METRICS` (its name must be new); returns it."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is registered already")
    METRICS[metric.name] = metric
    return metric


def metric(name: str) -> Metric:
    """The registered metric called ``name``."""
    try:
        return METRICS[name]
    except KeyError:
        raise InputError(f"unknown metric {name!r}; registered: {', '.join(METRICS)}") from None


for _metric in (
    Metric("good_exposures", "good exposures", integer=True),
    Metric("exposures", "exposures", integer=True),
    Metric("good_fraction", "good fraction", digits=2),
    Metric("total_reward", "total reward"),
    Metric("squares_visited", "squares visited", integer=True),
    Metric("exposures_per_square", "exposures / square"),
):
    register_metric(_metric)


def good_at_minutes(curve: dict, minutes: np.ndarray) -> np.ndarray:
    """Good exposures collected by each time in ``minutes`` (a step function of the curve)."""
    t = np.asarray(curve["minutes"], dtype=float)
    g = np.asarray(curve["good"], dtype=float)
    idx = np.searchsorted(t, minutes, side="right") - 1
    return np.where(idx >= 0, g[np.clip(idx, 0, None)] if len(g) else 0.0, 0.0)


# ---- overlap between trajectories ----------------------------------------------------
def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|A ∩ B| / |A ∪ B| of two sets of exposed holes (1.0 for two empty sets)."""
    set_a, set_b = set(map(int, a)), set(map(int, b))
    union = set_a | set_b
    return len(set_a & set_b) / len(union) if union else 1.0


def jaccard_matrix(trajectories: Sequence[Sequence[int]], good: np.ndarray | None = None) -> np.ndarray:
    """Pairwise Jaccard similarities (the paper's Fig. 4E); with ``good`` (a per-hole bool
    mask), only the good exposures of each trajectory are compared."""
    n_holes = 1 + max((max(t) for t in trajectories if len(t)), default=0)
    if good is not None:
        n_holes = max(n_holes, len(good))
    sets = np.zeros((len(trajectories), n_holes), dtype=np.float64)
    for i, traj in enumerate(trajectories):
        sets[i, np.asarray(traj, dtype=np.int64)] = 1.0
    if good is not None:
        sets[:, : len(good)] *= good
        sets[:, len(good) :] = 0.0
    inter = sets @ sets.T
    sizes = sets.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)


def mean_pairwise(matrix: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a similarity matrix."""
    n = len(matrix)
    if n < 2:
        return float("nan")
    return float((matrix.sum() - np.trace(matrix)) / (n * (n - 1)))


# ---- scores and aggregates -------------------------------------------------------------
def normalised_score(value: np.ndarray | float, random: float, oracle: float) -> np.ndarray | float:
    """100 (x - random) / (oracle - random): 0 is the random policy, 100 the ground-truth bound."""
    span = oracle - random
    if span <= 0:
        raise ValueError(f"normalised score undefined: oracle ({oracle}) does not beat random ({random})")
    return 100.0 * (np.asarray(value, dtype=float) - random) / span


def reference_points(runs: Iterable[tuple[str, bool, float]]) -> tuple[float | None, float | None]:
    """The two ends of the normalised score on one setting, from ``(agent name, upper bound?, mean
    good exposures)`` of the runs on it: the ``random`` agent's mean and the best upper bound's.

    Either is None when absent; the bound is None too when it does not beat random (the score
    is then undefined, shown blank rather than as a division by ~0).
    """
    random_mean = None
    bounds = []
    for name, upper_bound, mean in runs:
        if name == "random":
            random_mean = float(mean)
        if upper_bound:
            bounds.append(float(mean))
    bound = max(bounds) if bounds else None
    if random_mean is not None and bound is not None and bound <= random_mean:
        bound = None
    return random_mean, bound


def iqm(values: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% of the values (along ``axis``)."""
    # scipy.stats.trim_mean(values, 0.25, axis) by its definition (cut int(n / 4) from each end of the
    # sorted values, average the rest) without importing scipy.stats, a 0.45 s import for every run.
    values = np.asarray(values, dtype=float)
    if axis is None:
        values, axis = values.ravel(), 0
    n = values.shape[axis]
    cut = int(0.25 * n)
    kept = np.take(np.partition(values, (cut, n - cut - 1), axis=axis), np.arange(cut, n - cut), axis=axis)
    out = np.mean(kept, axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(
    scores: Sequence[np.ndarray],
    statistic=iqm,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and stratified bootstrap CI of ``statistic`` over episodes.

    ``scores`` holds one array of per-episode values per stratum (e.g. per environment);
    each bootstrap replicate resamples episodes within every stratum, then pools them.
    ``statistic(values, axis=1)`` is applied to all replicates at once (a (reps, n) array).
    """
    rng = np.random.default_rng(seed)
    strata = [np.asarray(s, dtype=float) for s in scores]
    point = float(statistic(np.concatenate(strata)))
    replicates = np.concatenate([s[rng.integers(len(s), size=(reps, len(s)))] for s in strata], axis=1)
    values = statistic(replicates, axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def probability_of_improvement(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    """P(X > Y): the chance that an episode of agent X beats one of agent Y, averaged over strata
    (Mann-Whitney U statistic / (n m), ties counting one half)."""
    from scipy import stats

    values = []
    for xs, ys in zip(x, y, strict=True):
        u = stats.mannwhitneyu(np.asarray(xs, float), np.asarray(ys, float), alternative="two-sided").statistic
        values.append(u / (len(xs) * len(ys)))
    return float(np.mean(values))


def summarise(values: np.ndarray) -> dict[str, float]:
    """Mean, sd, IQM and its 95% stratified-bootstrap CI of one metric over episodes."""
    values = np.asarray(values, dtype=float)
    point, low, high = bootstrap_ci([values])
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "iqm": point,
        "iqm_ci_low": low,
        "iqm_ci_high": high,
        "n": len(values),
    }


# ---- headroom: adaptive agents against fixed plans and the informed bound ----------------------
# The fixed plans an adaptive agent is measured against are the agents that declare they never read
# a revealed CTF (``reads_feedback = False`` on the agent class, see cryobench.agents.base) and are no
# upper bound: Predict-Rank, greedy, genetic, annealing, and snowball and random, which ignore the
# predictions too. The leaderboard takes that list from the declarations (this module sits below the
# agents and does not import them); "the best fixed plan" on a task is the one with the highest mean.
#: The informed bound (cryobench.agents.oracles.OracleInformedAgent), the top of the headroom.
INFORMED_BOUND = "oracle-informed"
#: A task has headroom when the informed bound is at least this much above Predict-Rank (issue 14: 5%).
HEADROOM_MIN_RATIO = 1.05


def adaptivity_gain(agent_mean: float, fixed_plan_means: Mapping[str, float]) -> float:
    """Good exposures an agent gains over the best fixed plan made from the same predictions.

    ``agent_mean`` and ``fixed_plan_means`` (fixed plan's name -> mean) are means of good exposures
    over the same worlds and starts of one task; the best fixed plan is the highest of those means.
    Positive: adapting to what the session reveals paid; zero or below: the agent did no better
    than a plan it could have fixed before the first exposure.
    """
    if not fixed_plan_means:
        raise InputError("adaptivity gain needs the results of at least one fixed plan (reads_feedback = False)")
    return float(agent_mean) - max(float(v) for v in fixed_plan_means.values())


def headroom_closed(agent_mean: float, predict_rank_mean: float, informed_mean: float) -> float | None:
    """The share of the Predict-Rank -> informed-bound gap an agent closes on one task:
    (agent - Predict-Rank) / (informed - Predict-Rank), from means over the same worlds and
    starts; None where the task has no headroom (informed below 1.05 x Predict-Rank)."""
    if informed_mean < HEADROOM_MIN_RATIO * predict_rank_mean:
        return None
    return (float(agent_mean) - float(predict_rank_mean)) / (float(informed_mean) - float(predict_rank_mean))
