"""Offline planners: a genetic algorithm and simulated annealing over the order of patches.

After Fan et al. 2022 (a genetic algorithm with order genes, and simulated annealing with
geometric cooling), as the cryoRL paper's "planning" baselines. At the first step of a
session the agent plans an ORDER of patches starting from the start hole, then executes
it hole by hole:

- **Executing a plan.** Walk the patches in order; in each, expose the unvisited holes
  worth taking, best first; then move to the next patch.
- **Holes worth taking.** A hole's chance of being good comes from its predicted CTF
  through a logistic of width ``prior_scale`` Å centred on the threshold (the prior). A
  hole is taken when that chance exceeds ``take_probability``: 0.5 would take exactly the
  predicted-good holes; the default 0.4 (chosen on train splits) with ``prior_scale`` 1 takes
  holes predicted up to 0.4 Å above the threshold too (the measured regressor reads high
  between 4 and 8 Å). Holes predicted worse are never planned by the offline planners. They
  are taken only (a) by the replanning variants, when what was revealed in the hole's patch
  or square lifts its chance above the cut, and
  (b) as a fallback when no patch has a hole worth taking left and time remains: then the
  hole with the best chance per minute of stage move is exposed, so the session is used.
- **A plan's value.** The expected good exposures that fit in the time left, under the
  episode rules (``cryobench.simulator``): a move costs the profile's minutes for its level
  (same patch / other patch / other square / other tile) and may start while the elapsed
  time is at most the duration, so the last patch of a plan may be cut short. The value is
  computed for a whole population at once (numpy): per-patch cumulative values of its
  holes, best first, and the cost of every patch-to-patch move from the hierarchy.
- **Search.** GA: tournament selection, order crossover (OX), swap and inversion mutation,
  elitism. SA: independent chains advanced together, one 2-opt (segment reversal), swap or
  insert move per chain per step, Metropolis acceptance, geometric cooling. Both start
  from a population of ranked orders (squares by predicted-good value or value per minute,
  patches by value; as Predict-Rank ranks) and perturbed copies of them, plus random
  orders (``greedy_seed=False``: random orders only).

The offline planners never look at the revealed CTFs: the paper's point is that such
planners cannot correct a poor prediction. The ``*-replan`` variants (``needs_feedback``)
do: each hole's chance is shrunk toward what was revealed in its patch and square (a
hierarchical, pseudo-count weighted mean of "revealed good minus expected good"), and the
rest of the plan is re-optimised, warm-started from the current plan, whenever the current
patch has no hole worth taking left (and every ``replan_every`` exposures). A re-optimised
plan is charged ``square_change_penalty`` expected good per move to another square on top of
its minutes: a few revealed holes are noisy evidence, and reacting to every dip made the
replan variants hop between squares (15 squares per session against the offline plans' 10
on the AldolaseAu twin) and lose good exposures to the 6-8 minute moves.

Every random choice comes from ``self.rng`` (seeded by ``reset``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.base import Agent
from cryobench.agents.common import Hierarchy
from cryobench.rules import move_level

#: Slack (minutes) in time comparisons, so float32 time left and sums of minutes compare safely.
TIME_TOLERANCE = 1e-4


# ---- hole values --------------------------------------------------------------------------
def prior_good_probability(predicted_ctf: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """Chance that each hole is good given its predicted CTF: a logistic of width ``scale`` Å.

    ``scale = 0`` gives 1 for predicted-good holes and 0 otherwise (a plan then counts
    predicted-good exposures).
    """
    predicted_ctf = np.asarray(predicted_ctf, dtype=np.float64)
    if scale <= 0:
        return (predicted_ctf < threshold).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-(threshold - predicted_ctf) / scale))


def shrunk_good_probability(
    prior: np.ndarray,
    revealed: np.ndarray,
    revealed_good: np.ndarray,
    hierarchy: Hierarchy,
    patch_pseudo_count: float,
    square_pseudo_count: float,
    grid_pseudo_count: float,
) -> tuple[np.ndarray, float]:
    """The prior shifted by what was revealed: over the grid, per square, then per patch.

    A revealed hole's residual is ``good - prior``. The grid's shift is the sum of all
    residuals over (revealed + ``grid_pseudo_count``): it recalibrates a regressor that is
    too optimistic or pessimistic everywhere. A square's shift is its residuals plus
    ``square_pseudo_count`` pseudo-holes at the grid's shift, over (revealed + pseudo-holes);
    a patch's shift likewise leans on its square's. Unrevealed patches thus inherit their
    square's shift, unrevealed squares the grid's.

    Returns each hole's shifted chance and the grid's shift (callers move their cut for
    "worth taking" by it, so a global recalibration changes values but not which holes are
    better than the rest).
    """
    residual = np.where(revealed, revealed_good.astype(np.float64) - prior, 0.0)
    count = revealed.astype(np.float64)
    patch, square = hierarchy.patch, hierarchy.square
    grid_shift = residual.sum() / (count.sum() + grid_pseudo_count)
    square_shift = (np.bincount(square, residual, hierarchy.n_squares) + square_pseudo_count * grid_shift) / (
        np.bincount(square, count, hierarchy.n_squares) + square_pseudo_count
    )
    patch_shift = (
        np.bincount(patch, residual, hierarchy.n_patches) + patch_pseudo_count * square_shift[hierarchy.patch_square]
    ) / (np.bincount(patch, count, hierarchy.n_patches) + patch_pseudo_count)
    return np.clip(prior + patch_shift[patch], 0.0, 1.0), float(grid_shift)


# ---- the grid's hierarchy and the planning problem -----------------------------------------
def holes_by_patch(hierarchy: Hierarchy) -> tuple[np.ndarray, ...]:
    """The holes of every patch, ascending index."""
    order = np.argsort(hierarchy.patch, kind="stable")
    sizes = np.bincount(hierarchy.patch, minlength=hierarchy.n_patches)
    return tuple(np.split(order, np.cumsum(sizes)[:-1]))


def patch_to_patch_minutes(hierarchy: Hierarchy, from_patches: np.ndarray, to_patches: np.ndarray) -> np.ndarray:
    """Minutes of a move from a hole of each ``from`` patch to one of each ``to`` patch (outer)."""
    a, b = np.asarray(from_patches)[:, None], np.asarray(to_patches)[None, :]
    return hierarchy.minutes[
        move_level(
            hierarchy.patch_tile[a] == hierarchy.patch_tile[b],
            hierarchy.patch_square[a] == hierarchy.patch_square[b],
            a == b,
        )
    ]


@dataclass(frozen=True)
class PlanProblem:
    """Order the patches that have holes worth taking, to maximise the expected good in the time left.

    A plan (an "order") is a permutation of ``0..n_genes-1``; gene ``g`` is patch ``patches[g]``.
    """

    patches: np.ndarray  # (G,) patch id of each gene
    holes: tuple[np.ndarray, ...]  # per gene: the holes to take, best first
    cumulative_value: np.ndarray  # (G, K + 1): expected good of the first k holes of each gene
    hole_counts: np.ndarray  # (G,)
    start_minutes: np.ndarray  # (G,): the move from the current hole into each gene's patch
    transition_minutes: np.ndarray  # (G, G): the move between two genes' patches
    in_patch_minutes: float
    time_left: float
    # Expected good charged for a move into each gene's patch from the current hole (G,), and
    # between genes (G, G), on top of its minutes; None: nothing charged (the offline plans).
    start_charge: np.ndarray | None = None
    transition_charge: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        hierarchy: Hierarchy,
        holes_of_patch: tuple[np.ndarray, ...],
        probability: np.ndarray,
        unvisited: np.ndarray,
        current_hole: int,
        time_left: float,
        take_probability: float,
        square_change_penalty: float = 0.0,
    ) -> PlanProblem:
        """The problem from each hole's chance of being good: holes worth taking are unvisited, above the cut.

        ``square_change_penalty``: expected good charged per move to another square.
        """
        worth = unvisited & (probability > take_probability)
        patches = np.unique(hierarchy.patch[worth])
        holes = []
        for patch in patches:
            members = holes_of_patch[patch]
            members = members[worth[members]]
            # Best first; ties by hole index so the plan is the same on every machine.
            holes.append(members[np.lexsort((members, -probability[members]))])
        counts = np.array([len(h) for h in holes], dtype=np.int64)
        cumulative = np.zeros((len(patches), int(counts.max(initial=0)) + 1))
        for gene, members in enumerate(holes):
            cumulative[gene, 1 : len(members) + 1] = np.cumsum(probability[members])
            cumulative[gene, len(members) + 1 :] = cumulative[gene, len(members)]
        start_charge = transition_charge = None
        if square_change_penalty > 0:
            square = hierarchy.patch_square[patches]
            start_charge = square_change_penalty * (square != hierarchy.square[current_hole])
            transition_charge = square_change_penalty * (square[:, None] != square[None, :])
        return cls(
            patches=patches,
            holes=tuple(holes),
            cumulative_value=cumulative,
            hole_counts=counts,
            start_minutes=hierarchy.patch_minutes(current_hole)[patches],
            transition_minutes=patch_to_patch_minutes(hierarchy, patches, patches),
            in_patch_minutes=float(hierarchy.minutes[0]),
            time_left=float(time_left),
            start_charge=start_charge,
            transition_charge=transition_charge,
        )

    @property
    def n_genes(self) -> int:
        return len(self.patches)

    def holes_taken(self, orders: np.ndarray) -> np.ndarray:
        """(B, G) how many holes of each position's patch fit in the time left, for B orders."""
        orders = np.atleast_2d(orders)
        move_in = np.concatenate(
            [self.start_minutes[orders[:, :1]], self.transition_minutes[orders[:, :-1], orders[:, 1:]]], axis=1
        )
        count = self.hole_counts[orders]
        spent = move_in + (count - 1) * self.in_patch_minutes
        begin = np.cumsum(spent, axis=1) - spent
        # A move may start while elapsed <= duration (the move that crosses it still counts).
        after_first = begin + move_in
        more = np.floor((self.time_left - after_first) / self.in_patch_minutes + TIME_TOLERANCE) + 1
        more = np.clip(np.minimum(count - 1, more), 0, None).astype(np.int64)
        return np.where(begin <= self.time_left + TIME_TOLERANCE, 1 + more, 0)

    def value(self, orders: np.ndarray) -> np.ndarray:
        """(B,) expected good exposures of B orders (B, G), less the charges for the moves they make."""
        return self.value_and_taken(orders)[0]

    def value_and_taken(self, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The value of B orders and ``holes_taken`` (which the annealing needs too)."""
        orders = np.atleast_2d(orders)
        taken = self.holes_taken(orders)
        value = self.cumulative_value[orders, taken].sum(axis=1)
        if self.transition_charge is not None:
            charge = np.concatenate(
                [self.start_charge[orders[:, :1]], self.transition_charge[orders[:, :-1], orders[:, 1:]]], axis=1
            )
            value = value - np.where(taken > 0, charge, 0.0).sum(axis=1)  # moves the time left allows
        return value, taken

    def minutes_used(self, order: np.ndarray) -> float:
        """Minutes the plan spends on the holes that fit (may pass the time left by one move)."""
        order = np.asarray(order)
        taken = self.holes_taken(order)[0]
        used = order[taken > 0]
        if len(used) == 0:
            return 0.0
        moves = self.start_minutes[used[0]] + self.transition_minutes[used[:-1], used[1:]].sum()
        return float(moves + (taken[taken > 0] - 1).sum() * self.in_patch_minutes)

    def ranked_orders(self, hierarchy: Hierarchy) -> np.ndarray:
        """Two Predict-Rank-like orders: squares by expected good, and by expected good per minute.

        Within a square, patches by expected good. These seed the search.
        """
        gene_value = self.cumulative_value[np.arange(self.n_genes), self.hole_counts]
        square = hierarchy.patch_square[self.patches]
        square_value = np.bincount(square, gene_value, hierarchy.n_squares)
        gene_minutes = self.hole_counts * self.in_patch_minutes + hierarchy.minutes[1]
        square_rate = square_value / np.maximum(np.bincount(square, gene_minutes, hierarchy.n_squares), 1e-9)
        by_value = np.lexsort((np.arange(self.n_genes), -gene_value, square, -square_value[square]))
        by_rate = np.lexsort((np.arange(self.n_genes), -gene_value, square, -square_rate[square]))
        return np.stack([by_value, by_rate])


# ---- search operators (vectorised over a population; positions, not genes) ------------------
def _position_pairs(rng: np.random.Generator, rows: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(length, size=rows), rng.integers(length, size=rows)


def swap_sources(a: np.ndarray, b: np.ndarray, length: int) -> np.ndarray:
    """(rows, length) source positions that swap positions a and b of each row."""
    idx = np.broadcast_to(np.arange(length), (len(a), length))
    src = np.where(idx == a[:, None], b[:, None], idx)
    return np.where(idx == b[:, None], a[:, None], src)


def reversal_sources(a: np.ndarray, b: np.ndarray, length: int) -> np.ndarray:
    """Source positions that reverse the segment between a and b (inversion, a 2-opt move)."""
    lo, hi = np.minimum(a, b)[:, None], np.maximum(a, b)[:, None]
    idx = np.arange(length)[None, :]
    return np.where((idx >= lo) & (idx <= hi), lo + hi - idx, idx)


def insert_sources(a: np.ndarray, b: np.ndarray, length: int) -> np.ndarray:
    """Source positions that move the element at a to position b, shifting those in between."""
    a, b = a[:, None], b[:, None]
    idx = np.arange(length)[None, :]
    src = np.where((a < b) & (idx >= a) & (idx < b), idx + 1, idx)
    src = np.where((a > b) & (idx > b) & (idx <= a), idx - 1, src)
    return np.where(idx == b, a, src)


def order_crossover(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OX: each child keeps a random segment of ``first`` in place, the rest in ``second``'s order."""
    rows, length = first.shape
    a, b = _position_pairs(rng, rows, length)
    lo, hi = np.minimum(a, b)[:, None], np.maximum(a, b)[:, None]
    idx = np.arange(length)[None, :]
    in_segment = (idx >= lo) & (idx <= hi)
    gene_in_segment = np.zeros((rows, length), dtype=bool)
    np.put_along_axis(gene_in_segment, first, in_segment, axis=1)
    keep_from_second = ~np.take_along_axis(gene_in_segment, second, axis=1)
    child = first.copy()
    # Row-major boolean indexing fills each row's free positions with that row's kept genes, in order.
    child[~in_segment] = second[keep_from_second]
    return child


def mutate(orders: np.ndarray, rate: float, sources, rng: np.random.Generator) -> np.ndarray:
    """Apply a move (``sources``: swap or reversal) to each row with probability ``rate``."""
    rows, length = orders.shape
    a, b = _position_pairs(rng, rows, length)
    src = sources(a, b, length)
    src = np.where(rng.random(rows)[:, None] < rate, src, np.arange(length)[None, :])
    return np.take_along_axis(orders, src, axis=1)


def initial_population(
    problem: PlanProblem, seeds: list[np.ndarray], size: int, random_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Seeds, perturbed copies of them (1-3 swaps/reversals), and random orders."""
    length = problem.n_genes
    n_random = size - len(seeds) if not seeds else int(round(random_fraction * size))
    population = [np.asarray(s) for s in seeds][:size]
    while len(population) < size - n_random:
        copy = seeds[len(population) % len(seeds)][None, :]
        for _ in range(int(rng.integers(1, 4))):
            copy = mutate(copy, 1.0, swap_sources if rng.random() < 0.5 else reversal_sources, rng)
        population.append(copy[0])
    while len(population) < size:
        population.append(rng.permutation(length))
    return np.stack(population).astype(np.int64)


@dataclass
class SearchResult:
    order: np.ndarray
    value: float
    history: np.ndarray  # best value after each generation / step (index 0: the initial population)


def genetic_search(
    problem: PlanProblem, population: np.ndarray, generations: int, config, rng: np.random.Generator
) -> SearchResult:
    """A generational GA with tournament selection, OX, swap + inversion mutation and elitism."""
    fitness = problem.value(population)
    history = [fitness.max()]
    size, length = population.shape
    elite = min(config.elite, size)
    for _ in range(generations):
        if length < 2:
            break
        n_children = size - elite
        contestants = rng.integers(size, size=(2, n_children, config.tournament_size))
        winners = np.take_along_axis(contestants, fitness[contestants].argmax(axis=-1)[..., None], axis=-1)[..., 0]
        first, second = population[winners[0]], population[winners[1]]
        crossed = order_crossover(first, second, rng)
        children = np.where(rng.random(n_children)[:, None] < config.crossover_rate, crossed, first)
        children = mutate(children, config.swap_rate, swap_sources, rng)
        children = mutate(children, config.inversion_rate, reversal_sources, rng)
        elites = population[np.argsort(-fitness, kind="stable")[:elite]]
        population = np.concatenate([elites, children])
        fitness = problem.value(population)
        history.append(fitness.max())
    best = int(np.argmax(fitness))
    return SearchResult(population[best], float(fitness[best]), np.array(history))


def annealing_search(
    problem: PlanProblem,
    chains: np.ndarray,
    steps: int,
    initial_temperature: float,
    config,
    rng: np.random.Generator,
) -> SearchResult:
    """Simulated annealing: parallel chains, 2-opt / swap / insert moves, geometric cooling.

    Each step draws one kind of move (by the config's weights) for all chains, each chain its
    own positions: one index table per step instead of three keeps a step cheap (the chains are
    few, so numpy's per-call overhead dominates).
    """
    state = chains.copy()
    value, taken = problem.value_and_taken(state)
    used = (taken > 0).sum(axis=1)
    best_at = int(np.argmax(value))
    best_order, best_value = state[best_at].copy(), float(value[best_at])
    history = [best_value]
    n_chains, length = state.shape
    if length < 2:
        return SearchResult(best_order, best_value, np.array(history))
    weights = np.array([config.reverse_weight, config.swap_weight, config.insert_weight], dtype=np.float64)
    move_sources = (reversal_sources, swap_sources, insert_sources)
    kinds = rng.choice(3, size=steps, p=weights / weights.sum())
    final = min(config.final_temperature, initial_temperature)
    temperatures = initial_temperature * (final / initial_temperature) ** (np.arange(steps) / max(steps - 1, 1))
    for kind, temperature in zip(kinds, temperatures, strict=True):
        # One end of each move inside the part of the plan that fits in time (or just after it):
        # moves entirely in the unused tail change nothing.
        a = (rng.random(n_chains) * np.minimum(used + 1, length)).astype(np.int64)
        b = rng.integers(length, size=n_chains)
        proposal = np.take_along_axis(state, move_sources[kind](a, b, length), axis=1)
        proposed_value, proposed_taken = problem.value_and_taken(proposal)
        # Metropolis: always accept improvements, worse moves with probability exp(delta / T).
        delta = proposed_value - value
        accept = rng.random(n_chains) < np.exp(np.minimum(delta, 0.0) / temperature)
        state[accept], value[accept] = proposal[accept], proposed_value[accept]
        used[accept] = (proposed_taken[accept] > 0).sum(axis=1)
        if value.max() > best_value:
            best_at = int(np.argmax(value))
            best_order, best_value = state[best_at].copy(), float(value[best_at])
        history.append(best_value)
    return SearchResult(best_order, best_value, np.array(history))


# ---- the agents ------------------------------------------------------------------------------
@dataclass
class PlanConfig:
    """What every planner shares: how predictions become chances, and how the search starts."""

    greedy_seed: bool = True
    """start from ranked orders (as Predict-Rank) and perturbed copies; False: random orders only"""
    random_fraction: float = 0.25
    """share of random orders in the initial population (or chains) when greedy_seed"""
    prior_scale: float = 1.0
    """width (Å) of the logistic from predicted CTF to the chance of a good hole; 0: count predicted-good"""
    take_probability: float = 0.4
    """holes with a chance of being good above this are worth taking (0.5: the predicted-good ones)"""


@dataclass
class ReplanConfig:
    """What the replanning variants add: how revealed CTFs move the chances, and when to re-optimise."""

    replan_every: int = 0
    """re-optimise every this many exposures too (0: only when a patch is done)"""
    patch_pseudo_count: float = 8.0
    """weight of the square's shift in a patch's shift, in revealed holes"""
    square_pseudo_count: float = 8.0
    """weight of the grid's shift in a square's shift, in revealed holes"""
    grid_pseudo_count: float = 30.0
    """weight of no shift in the grid's shift, in revealed holes"""
    square_change_penalty: float = 1.0
    """expected good charged to a re-optimised plan per move to another square, on top of its minutes"""


@dataclass
class GeneticConfig(PlanConfig):
    population: int = 48
    """orders in the population"""
    generations: int = 150
    """generations of the plan made at the start of a session"""
    tournament_size: int = 3
    """orders drawn per tournament; the best becomes a parent"""
    elite: int = 2
    """best orders copied unchanged to the next generation"""
    crossover_rate: float = 0.9
    """chance that a child is an order crossover of its parents (else a copy of the first)"""
    swap_rate: float = 0.3
    """chance that a child gets a swap of two patches"""
    inversion_rate: float = 0.3
    """chance that a child gets a reversed segment"""


@dataclass
class GeneticReplanConfig(ReplanConfig, GeneticConfig):
    replan_generations: int = 10
    """generations of each re-optimisation, warm-started from the current plan"""


@dataclass
class AnnealingConfig(PlanConfig):
    chains: int = 16
    """independent annealing chains, advanced together (numpy); the best end state is the plan"""
    steps: int = 1200
    """annealing steps of the plan made at the start of a session"""
    initial_temperature: float = 0.5
    """temperature at the first step, in expected good exposures"""
    final_temperature: float = 0.01
    """temperature at the last step (geometric cooling in between)"""
    reverse_weight: float = 0.4
    """relative frequency of 2-opt moves (reverse a segment)"""
    swap_weight: float = 0.3
    """relative frequency of swapping two patches"""
    insert_weight: float = 0.3
    """relative frequency of moving one patch elsewhere"""


@dataclass
class AnnealingReplanConfig(ReplanConfig, AnnealingConfig):
    replan_steps: int = 15
    """annealing steps of each re-optimisation, warm-started from the current plan"""
    replan_initial_temperature: float = 0.2
    """starting temperature of a re-optimisation (lower: stay near the current plan)"""


class _PatchOrderPlanner(Agent):
    """Shared execution: plan an order of patches at the first step, then walk it hole by hole."""

    reads_features = False  # never reads obs["features"] (sealed runs: not built)

    replans: bool = False
    plays_staged = True

    def reset(self, env, seed: int) -> None:
        super().reset(env, seed)
        self.hierarchy = Hierarchy.from_layout(self.layout)
        self.holes_of_patch = holes_by_patch(self.hierarchy)
        self.prior = prior_good_probability(self.layout.predicted_ctf, self.layout.threshold, self.config.prior_scale)
        self.plan: list[int] | None = None  # patches still to visit, the current one first
        self.last_search: SearchResult | None = None  # kept for inspection and tests
        self.last_problem: PlanProblem | None = None
        self.exposures_since_plan = 0

    # -- what subclasses change --
    population_size_field: str = "population"

    def optimise(self, problem: PlanProblem, start: np.ndarray, first: bool) -> SearchResult:
        """Improve the starting orders (or chains); ``first``: the session's first plan, else a re-optimisation."""
        raise NotImplementedError

    def good_probability(self, obs: dict) -> tuple[np.ndarray, float]:
        """The chance each hole is good, and the cut above which a hole is worth taking.

        Offline planners use the prior only: they ignore what is revealed.
        """
        return self.prior, self.config.take_probability

    def square_change_penalty(self, first: bool) -> float:
        """Expected good a plan is charged per move to another square (offline plans: none)."""
        return 0.0

    # -- planning and execution --
    def plan_problem(
        self, obs: dict, info: dict, probability: np.ndarray, cut: float, unvisited: np.ndarray
    ) -> PlanProblem:
        """The patches worth visiting from the current hole, in the minutes left (what a plan orders)."""
        elapsed = info.get("elapsed_minutes")
        time_left = self.layout.duration - elapsed if elapsed is not None else float(obs["time_left"][0])
        return PlanProblem.build(
            self.hierarchy,
            self.holes_of_patch,
            probability,
            unvisited,
            int(obs["current_hole"]),
            time_left,
            cut,
            self.square_change_penalty(self.plan is None),
        )

    def make_plan(self, obs: dict, info: dict, probability: np.ndarray, cut: float, unvisited: np.ndarray) -> list[int]:
        """Optimise the order of the patches with holes worth taking, from the current hole."""
        first = self.plan is None
        problem = self.plan_problem(obs, info, probability, cut, unvisited)
        if problem.n_genes == 0:
            return []
        seeds = []
        if not first:  # warm start: the current plan's order, new patches after it by rank
            gene_of_patch = {int(p): g for g, p in enumerate(problem.patches)}
            kept = [gene_of_patch[p] for p in self.plan if p in gene_of_patch]
            kept_set = set(kept)
            rest = [g for g in problem.ranked_orders(self.hierarchy)[0] if g not in kept_set]
            seeds.append(np.array(kept + rest, dtype=np.int64))
        if self.config.greedy_seed:
            seeds.extend(problem.ranked_orders(self.hierarchy))
        size = getattr(self.config, self.population_size_field)
        start = initial_population(problem, seeds, size, self.config.random_fraction, self.rng)
        self.last_search = self.optimise(problem, start, first)
        self.last_problem = problem
        self.exposures_since_plan = 0
        return [int(problem.patches[g]) for g in self.last_search.order]

    def should_replan(self) -> bool:
        return False

    def act(self, obs: dict, info: dict) -> int:
        unvisited = obs["action_mask"].astype(bool)
        probability, cut = self.good_probability(obs)
        if self.plan is None or self.should_replan():
            self.plan = self.make_plan(obs, info, probability, cut, unvisited)
        while self.plan:
            members = self.holes_of_patch[self.plan[0]]
            worth = members[unvisited[members] & (probability[members] > cut)]
            if len(worth):
                self.exposures_since_plan += 1
                return int(worth[np.lexsort((worth, -probability[worth]))[0]])
            self.plan.pop(0)  # this patch is done
            if self.replans:  # (even with the plan used up: reveals may have lifted other patches)
                self.plan = self.make_plan(obs, info, probability, cut, unvisited)
        # Nothing worth taking is left: the best chance per minute of move, so the session's time is used.
        # (A tiny floor on the chance makes the cheapest move win among holes with no chance at all.)
        chance = np.where(unvisited, probability + 1e-6, -1.0)
        rate = chance / self.hierarchy.hole_minutes(int(obs["current_hole"]))
        return int(np.argmax(rate))


class GeneticAgent(_PatchOrderPlanner):
    """Genetic algorithm over the order of patches (OX, swap/inversion, tournament, elitism); offline."""

    name = "genetic"
    Config = GeneticConfig
    reads_feedback = False  # a fixed plan from the predictions (sealed runs: no feedback wait)

    def optimise(self, problem: PlanProblem, start: np.ndarray, first: bool) -> SearchResult:
        generations = self.config.generations if first else self.config.replan_generations
        return genetic_search(problem, start, generations, self.config, self.rng)


class AnnealingAgent(_PatchOrderPlanner):
    """Simulated annealing over the order of patches (2-opt/swap/insert, geometric cooling); offline."""

    name = "annealing"
    Config = AnnealingConfig
    reads_feedback = False  # a fixed plan from the predictions (sealed runs: no feedback wait)
    population_size_field = "chains"

    def optimise(self, problem: PlanProblem, start: np.ndarray, first: bool) -> SearchResult:
        if first:
            steps, temperature = self.config.steps, self.config.initial_temperature
        else:
            steps, temperature = self.config.replan_steps, self.config.replan_initial_temperature
        return annealing_search(problem, start, steps, temperature, self.config, self.rng)


class _ReplanMixin:
    """Shrink each hole's chance toward what was revealed nearby, and re-optimise as the session goes."""

    needs_feedback = True
    reads_feedback = True
    replans = True

    def good_probability(self, obs: dict) -> tuple[np.ndarray, float]:
        revealed = obs["revealed"].astype(bool)
        revealed_good = obs["revealed_ctf"] < self.layout.threshold
        probability, grid_shift = shrunk_good_probability(
            self.prior,
            revealed,
            revealed_good,
            self.hierarchy,
            self.config.patch_pseudo_count,
            self.config.square_pseudo_count,
            self.config.grid_pseudo_count,
        )
        return probability, self.config.take_probability + grid_shift

    def square_change_penalty(self, first: bool) -> float:
        # Only re-optimisations are charged: they react to a few revealed holes, and a noisy
        # dip in the current square must not send the stage away (and back) for 6-8 minutes.
        return 0.0 if first else self.config.square_change_penalty

    def should_replan(self) -> bool:
        return 0 < self.config.replan_every <= self.exposures_since_plan


class GeneticReplanAgent(_ReplanMixin, GeneticAgent):
    """Genetic planner that re-optimises after each patch from revealed CTFs (needs feedback)."""

    name = "genetic-replan"
    Config = GeneticReplanConfig


class AnnealingReplanAgent(_ReplanMixin, AnnealingAgent):
    """Annealing planner that re-optimises after each patch from revealed CTFs (needs feedback)."""

    name = "annealing-replan"
    Config = AnnealingReplanConfig
