"""Protocol v2's statistics: rliable's aggregate set over test worlds, on numpy, and the ranking rule.

A *run* is one test world: its score is the agent's mean over the world's start holes. Scores
come as one array of shape ``(agents, worlds, tasks)``; every agent plays the same worlds and
tasks. A *scope* is a set of tasks: one task family, or all tasks ("overall"). Per scope this
module gives, after Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice")
and their library rliable:

- IQM, mean and optimality gap with stratified bootstrap CIs (worlds resampled with
  replacement within every task, the percentile interval) -- ``aggregates``;
- the probability of improvement P(X > Y) of every ordered pair with its CI -- the per-task
  Mann-Whitney U / (n m), averaged over tasks; X's and Y's worlds are resampled independently,
  as rliable's ``StratifiedIndependentBootstrap`` does -- ``probability_of_improvement``;
- performance profiles: the fraction of (world, task) scores above each tau, with CIs --
  ``performance_profiles``;
- the leaderboard's ranking rule -- ``rank_agents``.

Every result equals rliable's (1.2.0) to 1e-9, point estimates and CIs alike
(tests/fixtures/rliable_expected.json). rliable draws bootstrap indices with
``np.random.choice`` from numpy's legacy ``RandomState``; here every bootstrap -- one agent or
one ordered pair, in one scope -- starts from ``RandomState(seed)`` and draws the same indices
rliable draws after ``np.random.seed(seed)``. So all agents are resampled with the same
indices (common random numbers): an agent's CIs do not depend on which other agents are in the
table, and the ``RandomState`` stream is frozen by numpy's compatibility policy (NEP 19).

Instead of building every resampled score matrix (rliable's loop costs minutes for a full
table), a replicate is held as *counts*: how often each world is drawn in each task. Means,
optimality gaps and profiles are then matrix products, the IQM a weighted trimmed mean over
the sorted scores, and the Mann-Whitney U a bilinear form of the two agents' counts. Counts
and U are small integers (halves for ties), exact in floating point, so P(improvement)
matches rliable bit for bit.

Normalised scores follow protocol-v2.yaml (D4RL style): 100 (x - random) / (upper_bound - random)
per task, so 0 is the random policy and 100 the best upper bound (``normalise``); the optimality
gap's threshold ``gamma`` is 100 on that scale (rliable's 1 on its fraction scale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cryobench.errors import InputError

OVERALL = "overall"
AGGREGATES = ("iqm", "mean", "optimality_gap")
BOUND = 100.0  # the normalised score of the best upper bound (random scores 0)
DEFAULT_TAUS = np.linspace(0.0, 120.0, 25)  # normalised scores: random to past the upper bound
_IQM_CUT = 0.25  # cut from each end: the interquartile mean


# ---- input -------------------------------------------------------------------------------
def check_scores(
    scores: np.ndarray,
    agents: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
) -> np.ndarray:
    """``scores`` as a float array of shape (agents, worlds, tasks), or an InputError saying what is wrong."""
    try:
        values = np.ascontiguousarray(scores, dtype=np.float64)  # the same sums whatever the memory layout
    except (TypeError, ValueError) as error:
        raise InputError(f"scores: expected numbers of shape (agents, worlds, tasks) ({error})") from None
    if values.ndim != 3:
        raise InputError(f"scores: expected shape (agents, worlds, tasks), got {values.ndim} dimension(s)")
    n_agents, n_worlds, n_tasks = values.shape
    agents = list(agents) if agents is not None else [f"#{k}" for k in range(n_agents)]
    tasks = list(tasks) if tasks is not None else [f"#{t}" for t in range(n_tasks)]
    for what, names, size in (("agents", agents, n_agents), ("tasks", tasks, n_tasks)):
        if len(names) != size:
            raise InputError(f"{what}: {len(names)} names for {size} in the scores of shape {values.shape}")
        if len(set(names)) != len(names):
            raise InputError(f"{what}: names repeat ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    if families is not None and len(families) != n_tasks:
        raise InputError(f"families: {len(families)} given for {n_tasks} tasks (one family per task)")
    if n_agents < 1 or n_tasks < 1:
        raise InputError(f"scores: no {'agents' if n_agents < 1 else 'tasks'} (shape {values.shape})")
    if n_worlds < 2:
        raise InputError(f"scores: {n_worlds} test world(s) per task; a bootstrap over worlds needs at least 2")
    bad = ~np.isfinite(values)
    if bad.any():
        k, w, t = np.argwhere(bad)[0]
        raise InputError(
            f"scores: {int(bad.sum())} non-finite value(s), the first {values[k, w, t]} "
            f"(agent {agents[k]!r}, world {w}, task {tasks[t]!r})"
        )
    return values


def score_array(results: Mapping[str, Mapping[str, Sequence[float]]], tasks: Sequence[str]) -> np.ndarray:
    """(agents, worlds, tasks) from ``{agent: {task: per-world scores}}``; every agent needs every task
    and the same number of worlds (the protocol's test worlds)."""
    rows, n_worlds = [], None
    for agent, per_task in results.items():
        missing, extra = set(tasks) - set(per_task), set(per_task) - set(tasks)
        if missing or extra:
            raise InputError(
                f"agent {agent!r}: tasks do not match the protocol"
                + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                + (f"; unknown {', '.join(sorted(extra))}" if extra else "")
            )
        for task in tasks:
            if n_worlds is None:
                n_worlds = len(per_task[task])
            if len(per_task[task]) != n_worlds:
                raise InputError(
                    f"agent {agent!r}, task {task!r}: {len(per_task[task])} world scores, expected {n_worlds} "
                    "(every agent plays the same test worlds)"
                )
        rows.append([list(per_task[task]) for task in tasks])
    if not rows:
        raise InputError("results: no agents")
    try:
        return np.asarray(rows, dtype=np.float64).transpose(0, 2, 1)
    except (TypeError, ValueError) as error:
        raise InputError(f"results: world scores must be numbers ({error})") from None


# ---- normalisation (D4RL / Minari style) ----------------------------------------------------
@dataclass(frozen=True)
class ReferencePoints:
    """A task's reference scores: what the random policy scores, and the best upper bound."""

    random: float
    upper_bound: float


def parse_references(section: Mapping, source: str = "references") -> dict[str, ReferencePoints]:
    """Per-task reference points from a protocol's ``references`` mapping::

        references:
          aldolase-noise-2: {random: 22.0, upper_bound: 422.0}

    ``source`` names where the mapping came from in error messages (a file and its key).
    """
    if not isinstance(section, Mapping):
        raise InputError(f"{source}: expected a mapping of task -> {{random: R, upper_bound: U}}")
    if not section:
        raise InputError(f"{source}: no reference points stated yet (per task: random and upper_bound)")
    points = {}
    for task, entry in section.items():
        if not isinstance(entry, Mapping) or not {"random", "upper_bound"} <= set(entry):
            raise InputError(f"{source}: task {task!r} needs the keys random and upper_bound")
        try:
            random, upper = float(entry["random"]), float(entry["upper_bound"])
        except (TypeError, ValueError):
            raise InputError(f"{source}: task {task!r}: random and upper_bound must be numbers") from None
        if not (np.isfinite(random) and np.isfinite(upper) and upper > random):
            raise InputError(
                f"{source}: task {task!r}: upper_bound ({upper}) must be finite and above random ({random})"
            )
        points[str(task)] = ReferencePoints(random, upper)
    return points


def load_references(path: str | Path, key: str = "references") -> dict[str, ReferencePoints]:
    """The reference points stated in a protocol file (YAML) under ``key``."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read the protocol ({str(error).splitlines()[0]})") from None
    if not isinstance(document, Mapping) or key not in document:
        raise InputError(f"{path}: no {key!r} section (per-task random and upper_bound scores)")
    return parse_references(document[key], source=f"{path}: {key}")


def normalise(raw: np.ndarray, tasks: Sequence[str], references: Mapping[str, ReferencePoints]) -> np.ndarray:
    """100 (raw - random) / (upper_bound - random) per task (the last axis of ``raw``): 0 is random, 100 the bound."""
    missing = [t for t in tasks if t not in references]
    if missing:
        raise InputError(f"reference points: none for task(s) {', '.join(missing)}")
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape[-1:] != (len(tasks),):
        raise InputError(f"normalise: the last axis of the scores ({raw.shape}) must be the {len(tasks)} tasks")
    random = np.array([references[t].random for t in tasks])
    upper = np.array([references[t].upper_bound for t in tasks])
    return BOUND * (raw - random) / (upper - random)


# ---- point estimates (rliable's definitions, on a (worlds, tasks) matrix) --------------------
def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all (world, task) scores: scipy's trim_mean(scores, 0.25, axis=None)."""
    values = np.sort(np.asarray(scores, dtype=np.float64), axis=None)
    cut = int(_IQM_CUT * values.size)
    return float(values[cut : values.size - cut].mean())


def optimality_gap(scores: np.ndarray, gamma: float = BOUND) -> float:
    """How far the scores fall short of ``gamma``; scores above it count as ``gamma``."""
    return float(gamma - np.mean(np.minimum(scores, gamma)))


def improvement_probability(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of two (worlds, tasks) matrices: per task U / (n m), ties counting one half, averaged."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    beats = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(beats + 0.5 * ties))


# ---- the bootstrap, as counts of resampled worlds --------------------------------------------
# Arrays keep the replicates on the last axis: cumulative sums and gathers then move whole
# contiguous rows, several times faster than along a short last axis.
@lru_cache(maxsize=4)  # a scope's aggregates and profiles use the same draw
def _resample_counts(n_worlds: int, n_tasks: int, reps: int, seed: int, samples: int = 1) -> np.ndarray:
    """(samples, tasks, worlds, reps) float32: how often each world is drawn, per task, in each replicate.

    The draw is rliable's: per replicate, ``np.random.choice(n_worlds, (n_worlds, n_tasks))`` for each
    of ``samples`` independently resampled arrays in turn, from ``RandomState(seed)``. Counts are
    whole numbers <= n_worlds, exact in float32. Read-only: the array is shared (cached).
    """
    draws = np.random.RandomState(seed).randint(0, n_worlds, size=(reps, samples, n_worlds, n_tasks))
    # One bincount over all replicates: key = ((sample, task, drawn world), replicate) flattened.
    sample_task = np.arange(samples)[:, None] * n_tasks + np.arange(n_tasks)  # (samples, tasks)
    keys = (sample_task[None, :, None, :] * n_worlds + draws) * reps + np.arange(reps)[:, None, None, None]
    counts = np.bincount(keys.ravel(), minlength=samples * n_tasks * n_worlds * reps)
    counts = counts.reshape(samples, n_tasks, n_worlds, reps).astype(np.float32)
    counts.flags.writeable = False
    return counts


def _cumulative_rows(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cumulative sums over axis 0, row by row: numpy's cumsum along a leading axis is ~25x slower."""
    out[0] = rows[0]
    for i in range(1, len(rows)):
        np.add(out[i - 1], rows[i], out=out[i])
    return out


def _percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile CI over the last axis, computed as arch's ``conf_int(method="percentile")`` does."""
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(replicates, [100 * alpha, 100 * (1.0 - alpha)], axis=-1)
    return low, high


def _weighted_iqm(sorted_values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """IQM of each replicate: ``counts`` (N, reps) copies of ``sorted_values`` (N,), ascending.

    Value i, drawn c_i times, fills positions [C_i, C_i+1) of the replicate's sorted sample (C the
    cumulative counts, C_0 = 0, C_N = N); the IQM keeps positions [cut, N - cut), so value i
    keeps K_i+1 - K_i copies, K = C clipped to [cut, N - cut]. Summed by parts,
    sum_i v_i (K_i+1 - K_i) = v_N-1 K_N - v_0 K_0 - sum_i=1..N-1 (v_i - v_i-1) K_i: one product.
    """
    n, reps = counts.shape
    cut = int(_IQM_CUT * n)
    inner = _cumulative_rows(counts[:-1], np.empty((n - 1, reps), dtype=counts.dtype))  # C_1 .. C_N-1
    np.clip(inner, cut, n - cut, out=inner)
    kept_sum = sorted_values[-1] * (n - cut) - sorted_values[0] * cut - np.diff(sorted_values) @ inner
    return kept_sum / (n - 2 * cut)


@dataclass(frozen=True)
class Interval:
    """Point estimates with the low and high ends of their CIs (arrays of the same shape)."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def as_dict(self) -> dict:
        return {"point": self.point.tolist(), "low": self.low.tolist(), "high": self.high.tolist()}


def _check_bootstrap(reps: int, confidence: float) -> None:
    if not (isinstance(reps, int | np.integer) and reps >= 1):
        raise InputError(f"reps: expected a whole number of bootstrap replicates >= 1, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence: expected a coverage between 0 and 1, got {confidence!r}")


def aggregates(
    scores: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0, gamma: float = BOUND
) -> dict[str, Interval]:
    """IQM, mean and optimality gap of each agent, with stratified bootstrap CIs.

    ``scores``: (agents, worlds, tasks). Returns ``{"iqm" | "mean" | "optimality_gap": Interval}``
    with arrays of shape (agents,).
    """
    _check_bootstrap(reps, confidence)
    scores = check_scores(scores)
    n_agents, n_worlds, n_tasks = scores.shape
    by_task = scores.transpose(0, 2, 1).reshape(n_agents, -1)  # (agents, tasks * worlds), the counts' order
    counts = _resample_counts(n_worlds, n_tasks, reps, seed)[0].reshape(-1, reps)
    n = by_task.shape[1]
    order = np.argsort(by_task, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(by_task, order, axis=1)
    replicates = {
        "iqm": np.stack([_weighted_iqm(sorted_scores[k], np.take(counts, order[k], axis=0)) for k in range(n_agents)]),
        "mean": by_task @ counts / n,
        "optimality_gap": gamma - np.minimum(by_task, gamma) @ counts / n,
    }
    points = {
        "iqm": np.array([iqm(s) for s in scores]),
        "mean": scores.mean(axis=1).mean(axis=1),
        "optimality_gap": np.array([optimality_gap(s, gamma) for s in scores]),
    }
    return {name: Interval(points[name], *_percentile_interval(replicates[name], confidence)) for name in AGGREGATES}


def _below_counts_index(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each agent's scores fall among every agent's sorted scores, for one task.

    ``values`` (agents, worlds). Returns each agent's sorting order (agents, worlds), the end of
    each sorted score's tie group (agents, worlds), and ``rows`` (worlds, X agents * Y agents): the
    row of ``_half_wins_tables`` that holds "Y's resampled worlds below x, ties counting one half"
    for each score x of X -- the cumulative count at x's rank among Y's scores, or, where x ties
    with some of Y's scores, the row of that tie group.
    """
    n_agents, n_worlds = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    sorted_values = np.take_along_axis(values, order, axis=1)
    x, y = values[:, :, None, None], sorted_values[None, None, :, :]  # [X, a, Y, b]
    below, up_to = (y < x).sum(axis=3), (y <= x).sum(axis=3)
    row = np.where(below == up_to, below, n_worlds + 1 + below)
    rows = row + np.arange(n_agents) * (2 * n_worlds + 1)  # Y's block of the table
    tie_end = np.stack([np.searchsorted(sorted_row, sorted_row, side="right") for sorted_row in sorted_values])
    return order, tie_end, rows.transpose(1, 0, 2).reshape(n_worlds, -1)


def _half_wins_tables(counts: np.ndarray, order: np.ndarray, tie_end: np.ndarray) -> np.ndarray:
    """(agents * (2n + 1), reps): per agent Y, n + 1 rows of cumulative counts of Y's sorted worlds
    (how many resampled worlds lie below each rank), then for the tie group starting at each rank
    the count below it plus half the group (n rows)."""
    n_worlds, reps = counts.shape
    n_agents = len(order)
    tables = np.zeros((n_agents, 2 * n_worlds + 1, reps), dtype=counts.dtype)
    cumulative = tables[:, : n_worlds + 1]
    _cumulative_rows(np.take(counts, order.T, axis=0), out=cumulative[:, 1:].transpose(1, 0, 2))  # over ranks
    group_top = np.take(tables.reshape(-1, reps), tie_end + np.arange(n_agents)[:, None] * (2 * n_worlds + 1), axis=0)
    ties = tables[:, n_worlds + 1 :]
    np.add(cumulative[:, :-1], group_top, out=ties)
    ties *= 0.5
    return tables.reshape(-1, reps)


def probability_of_improvement(
    scores: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """P(row agent > column agent) for every ordered pair, with bootstrap CIs; (agents, agents), NaN diagonal.

    Per task, U(X, Y) = sum over X's worlds a of (times a is drawn) * (Y's resampled worlds below
    x_a, ties counting one half). Y's part is a cumulative count over Y's sorted scores, shared by
    every X, and x_a's place among them is fixed: per world of X, one gather and a weighted sum.
    Counts, halves and U are exact in float32 up to 2048 worlds (U <= n^2 < 2^24), so the sums
    equal rliable's Mann-Whitney U exactly.
    """
    _check_bootstrap(reps, confidence)
    scores = check_scores(scores)
    n_agents, n_worlds, n_tasks = scores.shape
    if n_worlds > 2048:
        raise InputError(f"scores: {n_worlds} test worlds; P(improvement) is exact up to 2048")
    counts = _resample_counts(n_worlds, n_tasks, reps, seed, samples=2)  # X's, then Y's
    u_sum = np.zeros((n_agents * n_agents, reps))
    block = 128  # replicates at a time: the working arrays stay in cache
    for task in range(n_tasks):
        order, tie_end, rows = _below_counts_index(scores[:, :, task])
        tables = _half_wins_tables(counts[1, task], order, tie_end)
        for start in range(0, reps, block):
            table = np.ascontiguousarray(tables[:, start : start + block])
            x_counts = counts[0, task, :, start : start + block]
            below = np.empty((n_agents * n_agents, table.shape[1]), dtype=np.float32)
            u_block = np.zeros_like(below)
            for world in range(n_worlds):
                np.take(table, rows[world], axis=0, out=below, mode="clip")  # "clip": unbuffered; rows in range
                below *= x_counts[world]
                u_block += below
            u_sum[:, start : start + block] += u_block
    replicates = (u_sum / (n_worlds * n_worlds) / n_tasks).reshape(n_agents, n_agents, reps)
    point = np.array([[improvement_probability(sx, sy) for sy in scores] for sx in scores])
    low, high = _percentile_interval(replicates, confidence)
    for matrix in (point, low, high):
        np.fill_diagonal(matrix, np.nan)
    return Interval(point, low, high)


def performance_profiles(
    scores: np.ndarray, taus: np.ndarray = DEFAULT_TAUS, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Fraction of (world, task) scores strictly above each tau, with CIs; arrays of shape (agents, taus)."""
    _check_bootstrap(reps, confidence)
    taus = np.asarray(taus, dtype=np.float64)
    if taus.ndim != 1 or not taus.size or not np.isfinite(taus).all():
        raise InputError(f"taus: expected a non-empty list of finite thresholds, got {taus!r}")
    scores = check_scores(scores)
    n_agents, n_worlds, n_tasks = scores.shape
    by_task = scores.transpose(0, 2, 1).reshape(n_agents, -1)
    above = (by_task[:, None, :] > taus[:, None]).astype(np.float32)  # (agents, taus, N)
    counts = _resample_counts(n_worlds, n_tasks, reps, seed)[0].reshape(-1, reps)
    counted = (above.reshape(-1, by_task.shape[1]) @ counts).astype(np.float64)  # whole numbers < 2^24: exact
    replicates = counted.reshape(n_agents, len(taus), reps) / by_task.shape[1]
    return Interval(above.mean(axis=2, dtype=np.float64), *_percentile_interval(replicates, confidence))


# ---- the ranking rule -----------------------------------------------------------------------
@dataclass(frozen=True)
class Ranking:
    """Agents ordered by IQM, best first, with their ranks and the evidence for each step down.

    ``ranks`` are competition ranks: tied agents share the best rank of their group, and the
    next group's rank is 1 + the number of agents above it (1, 1, 3). ``labels`` mark shared
    ranks with "=" (1=, 1=, 3). ``evidence[i]`` compares agent i + 1 with the agent just above
    it: P(above > it) and its CI; the ranks differ exactly when that CI lies wholly above 0.5.
    """

    agents: tuple[str, ...]
    iqm: tuple[float, ...]
    ranks: tuple[int, ...]
    labels: tuple[str, ...]
    evidence: tuple[dict, ...]


def rank_agents(agents: Sequence[str], iqm_points: np.ndarray, improvement: Interval) -> Ranking:
    """The leaderboard's ranking rule.

    Agents are ordered by IQM, best first (equal IQMs by name, so the order is deterministic). An
    agent shares the rank of the agent above it unless the CI of P(above > it) lies wholly above
    0.5 (its low end > 0.5). Only neighbours are compared, so a chain of overlapping neighbours
    shares one rank even when its ends are told apart.
    """
    iqm_points = np.asarray(iqm_points, dtype=np.float64)
    if iqm_points.shape != (len(agents),) or improvement.point.shape != (len(agents), len(agents)):
        raise InputError(
            f"rank_agents: IQMs {iqm_points.shape} and P(improvement) {improvement.point.shape} "
            f"do not fit {len(agents)} agents"
        )
    order = sorted(range(len(agents)), key=lambda k: (-iqm_points[k], agents[k]))
    ranks, evidence = [1], []
    for position in range(1, len(order)):
        above, it = order[position - 1], order[position]
        low = float(improvement.low[above, it])
        separated = low > 0.5
        ranks.append(position + 1 if separated else ranks[-1])
        evidence.append(
            {
                "above": agents[above],
                "agent": agents[it],
                "p_improvement": float(improvement.point[above, it]),
                "low": low,
                "high": float(improvement.high[above, it]),
                "separated": separated,
            }
        )
    shared = {r for r in ranks if ranks.count(r) > 1}
    return Ranking(
        agents=tuple(agents[k] for k in order),
        iqm=tuple(float(iqm_points[k]) for k in order),
        ranks=tuple(ranks),
        labels=tuple(f"{r}=" if r in shared else str(r) for r in ranks),
        evidence=tuple(evidence),
    )


# ---- everything, per family and overall --------------------------------------------------------
@dataclass(frozen=True)
class ScopeSummary:
    """The statistics of one scope (a task family, or all tasks)."""

    scope: str
    tasks: tuple[str, ...]
    aggregates: dict[str, Interval]
    improvement: Interval
    taus: np.ndarray
    profiles: Interval
    ranking: Ranking

    def as_dict(self, agents: Sequence[str]) -> dict:
        """JSON-ready: per-agent aggregates, the P(improvement) matrix (rows beat columns), profiles, ranking."""
        return {
            "scope": self.scope,
            "tasks": list(self.tasks),
            "agents": list(agents),
            "aggregates": {name: interval.as_dict() for name, interval in self.aggregates.items()},
            "probability_of_improvement": {
                key: np.where(np.isnan(m), None, m).tolist()
                for key, m in (
                    ("point", self.improvement.point),
                    ("low", self.improvement.low),
                    ("high", self.improvement.high),
                )
            },
            "taus": self.taus.tolist(),
            "profiles": self.profiles.as_dict(),
            "ranking": {
                "agents": list(self.ranking.agents),
                "iqm": list(self.ranking.iqm),
                "ranks": list(self.ranking.ranks),
                "labels": list(self.ranking.labels),
                "evidence": list(self.ranking.evidence),
            },
        }


def summarise_scope(
    scores: np.ndarray,
    agents: Sequence[str],
    tasks: Sequence[str],
    scope: str = OVERALL,
    *,
    taus: np.ndarray = DEFAULT_TAUS,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    gamma: float = BOUND,
) -> ScopeSummary:
    """The statistics of one scope: ``scores`` (agents, worlds, tasks) over exactly its ``tasks``."""
    scores = check_scores(scores, agents, tasks)
    stats = aggregates(scores, reps=reps, confidence=confidence, seed=seed, gamma=gamma)
    improvement = probability_of_improvement(scores, reps=reps, confidence=confidence, seed=seed)
    return ScopeSummary(
        scope=scope,
        tasks=tuple(tasks),
        aggregates=stats,
        improvement=improvement,
        taus=np.asarray(taus, dtype=np.float64),
        profiles=performance_profiles(scores, taus, reps=reps, confidence=confidence, seed=seed),
        ranking=rank_agents(agents, stats["iqm"].point, improvement),
    )


def summarise(
    scores: np.ndarray,
    agents: Sequence[str],
    tasks: Sequence[str],
    families: Sequence[str],
    *,
    taus: np.ndarray = DEFAULT_TAUS,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    gamma: float = BOUND,
) -> dict[str, ScopeSummary]:
    """Statistics per task family (in order of first appearance) and ``"overall"`` (all tasks).

    ``scores``: (agents, worlds, tasks) normalised scores, one run per test world. Every scope's
    bootstraps start from ``seed``, so a family's results equal ``summarise_scope`` of the family alone.
    """
    scores = check_scores(scores, agents, tasks, families)
    if OVERALL in families:
        raise InputError(f"families: {OVERALL!r} names the scope of all tasks; choose another family name")
    scopes = {family: [t for t, f in enumerate(families) if f == family] for family in dict.fromkeys(families)}
    scopes[OVERALL] = list(range(len(tasks)))
    settings = {"taus": taus, "reps": reps, "confidence": confidence, "seed": seed, "gamma": gamma}
    return {
        scope: summarise_scope(scores[:, :, columns], agents, [tasks[t] for t in columns], scope, **settings)
        for scope, columns in scopes.items()
    }
