"""Orienteering re-solve: a prize-collecting route over patches by a routing library, re-solved as the session goes.

The session is an *orienteering problem* (a prize-collecting travelling salesman with a time
budget): the stage starts at the current hole, every patch is a node whose prize is the expected
good exposures of its holes worth taking, travel between nodes costs the minutes of a move at
its level (``cryobench.rules.move_level``, the profile's minutes; ``planners.PlanProblem``
builds the tables), a node's service is its in-patch moves, and the route must fit in the
minutes left. A well-kept solver finds the route:

- ``solver: ortools`` (default) -- Google OR-Tools' routing library: one vehicle from a start
  node (the current hole) to a free end node, a time dimension capped at the minutes left, a
  disjunction per patch whose penalty is its prize (dropping a patch forfeits its prize), local
  search to a local optimum (at most ``solver_solutions`` improving solutions: a count, not a
  clock, so runs are reproducible) with the eight operators in ``ORTOOLS_OPERATORS`` (the others never
  improved a route on training worlds and cost a third of the search).
- ``solver: pyvrp`` -- PyVRP's prize-collecting mode (optional clients with prizes, a shift
  duration), stopped after ``solver_iterations`` iterations with the episode's seed.

Both are warm-started from the route being followed (the first solve from a Predict-Rank-like
order cut to the budget). Integer data: minutes in hundredths, prizes in ten-thousandths of a
good exposure. Moves also cost a tiny amount per minute (a shorter route wins a tie of prizes)
and, on re-solves, ``square_change_penalty`` expected good per move to another square, as the
``*-replan`` planners do (a few revealed holes are noisy; chasing every dip hops squares).

Only the ``max_patches`` most promising patches become nodes (squares ranked by expected good
per minute, then their patches, plus the route being followed): a session visits 30-60
patches, and the solver's time grows with the nodes.

Executing: walk the route's patches; in each, expose the holes worth taking (chance of being
good above the cut), best first; when a patch is done, re-solve from the current hole with the
chances updated by what was revealed (hierarchical shrinkage toward the patch's, square's and
grid's residuals, ``planners.shrunk_good_probability``) when the feedback reveals CTFs. Blind
(feedback ``none``) a patch change teaches nothing: the agent follows its route and solves again
only when the route runs out. Nothing worth taking left: the best chance per minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryobench.agents.planners import (
    PlanProblem,
    SearchResult,
    _PatchOrderPlanner,
    shrunk_good_probability,
)
from cryobench.errors import InputError

#: Integer scales of the solvers' data: minutes -> hundredths, expected good -> ten-thousandths.
MINUTE_UNITS = 100
PRIZE_UNITS = 10_000
#: Cost of a minute of moving, in prize units (1e-3 good per minute: only breaks ties of prizes).
MINUTE_COST = 10

SOLVERS = ("ortools", "pyvrp")
#: OR-Tools local search operators the agent uses; every other one is switched off. Chosen on training
#: worlds: over 396 re-solves of 8 training episodes (4 tasks' conditions, world seeds 303 and 404)
#: OR-Tools' default set and this one returned the same route every time, and the others (Or-opt,
#: cross, the pickup-and-delivery and insertion-LNS operators) cost a third of the search (Or-opt
#: most) without ever improving a route: our routes visit patches once and have no pairs.
ORTOOLS_OPERATORS = (
    "use_relocate",
    "use_exchange",
    "use_two_opt",
    "use_lin_kernighan",
    "use_make_active",
    "use_make_inactive",
    "use_swap_active",
    "use_swap_active_chain",
)
EXTRA_HINT = "install the solvers with: pip install 'cryobench[planners]'"


@dataclass
class OrienteeringConfig:
    """Hyperparameters of the orienteering re-solve agent."""

    #: routing library: "ortools" (routing + disjunctions) or "pyvrp" (prize-collecting)
    solver: str = "ortools"
    #: width (Å) of the logistic from predicted CTF to the chance of a good hole
    prior_scale: float = 1.0
    #: holes whose chance of being good is above this are worth taking (and make a patch's prize)
    take_probability: float = 0.4
    #: patches the solver sees (the most promising ones, see the module docstring)
    max_patches: int = 60
    #: OR-Tools: local search stops at a local optimum or after this many improving solutions
    solver_solutions: int = 100
    #: PyVRP: iterations of its iterated local search
    solver_iterations: int = 50
    #: expected good charged per move to another square on re-solves (not the first solve)
    square_change_penalty: float = 1.0
    #: weight of the square's shift in a patch's shift, in revealed holes
    patch_pseudo_count: float = 8.0
    #: weight of the grid's shift in a square's shift, in revealed holes
    square_pseudo_count: float = 8.0
    #: weight of no shift in the grid's shift, in revealed holes
    grid_pseudo_count: float = 30.0


# ---- the instance ------------------------------------------------------------------------------
def candidate_genes(problem: PlanProblem, hierarchy, keep: np.ndarray, max_patches: int) -> np.ndarray:
    """The genes (patches) the solver sees: ``keep`` first, then by square rate, then patch value.

    A square's rate is its expected good over the minutes of collecting it (one square move, a
    patch move per patch, the in-patch moves), so a few rich squares beat many thin ones.
    """
    if problem.n_genes <= max_patches:
        return np.arange(problem.n_genes)
    by_rate = problem.ranked_orders(hierarchy)[1]
    ranked = np.concatenate([np.asarray(keep, dtype=np.int64), by_rate])
    _, first = np.unique(ranked, return_index=True)
    return ranked[np.sort(first)][:max_patches]


@dataclass(frozen=True)
class RoutingInstance:
    """The orienteering problem on ``genes`` as integer matrices; node 0 start, 1..n genes, n + 1 end."""

    genes: np.ndarray
    travel: np.ndarray  # (n + 2, n + 2) minutes units of a move i -> j (to the end: 0)
    service: np.ndarray  # (n + 2,) minutes units spent in each node's patch after arriving
    cost: np.ndarray  # (n + 2, n + 2) prize units charged for a move (tie-break + square changes)
    prize: np.ndarray  # (n + 2,) prize units of visiting each node (0 for start and end)
    budget: int  # minutes units

    @classmethod
    def build(cls, problem: PlanProblem, genes: np.ndarray) -> RoutingInstance:
        n = len(genes)
        minutes = np.zeros((n + 2, n + 2))
        minutes[0, 1 : n + 1] = problem.start_minutes[genes]
        minutes[1 : n + 1, 1 : n + 1] = problem.transition_minutes[np.ix_(genes, genes)]
        charge = np.zeros((n + 2, n + 2))
        if problem.transition_charge is not None:
            charge[0, 1 : n + 1] = problem.start_charge[genes]
            charge[1 : n + 1, 1 : n + 1] = problem.transition_charge[np.ix_(genes, genes)]
        np.fill_diagonal(minutes, 0.0)  # staying at a node is no move (the solvers ask for a zero diagonal)
        np.fill_diagonal(charge, 0.0)
        service = np.zeros(n + 2)
        service[1 : n + 1] = (problem.hole_counts[genes] - 1) * problem.in_patch_minutes
        prize = np.zeros(n + 2)
        prize[1 : n + 1] = problem.cumulative_value[genes, problem.hole_counts[genes]]
        travel = np.rint(minutes * MINUTE_UNITS).astype(np.int64)
        return cls(
            genes=np.asarray(genes, dtype=np.int64),
            travel=travel,
            service=np.rint(service * MINUTE_UNITS).astype(np.int64),
            cost=np.rint(charge * PRIZE_UNITS).astype(np.int64) + travel * MINUTE_COST // MINUTE_UNITS,
            prize=np.rint(prize * PRIZE_UNITS).astype(np.int64),
            budget=int(np.floor(problem.time_left * MINUTE_UNITS)),
        )

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def fitting_prefix(self, nodes: list[int]) -> list[int]:
        """The longest prefix of a route (nodes 1..n) that fits in the budget: a feasible warm start."""
        used, previous, kept = 0, 0, []
        for node in nodes:
            used += self.travel[previous, node] + self.service[node]
            if used > self.budget:
                break
            kept.append(node)
            previous = node
        return kept


# ---- the solvers -------------------------------------------------------------------------------
def require_solver(solver: str) -> tuple:
    """The solver's modules (imported on first use: listing agents imports no solver), or a one-line InputError."""
    try:
        if solver == "ortools":
            from ortools.constraint_solver import pywrapcp, routing_enums_pb2

            return pywrapcp, routing_enums_pb2
        import pyvrp
        from pyvrp.stop import MaxIterations

        return pyvrp, MaxIterations
    except ImportError:
        library = {"ortools": "OR-Tools", "pyvrp": "PyVRP"}[solver]
        raise InputError(f"agent 'orienteering' with solver {solver!r} needs {library}; {EXTRA_HINT}") from None


def solve_ortools(instance: RoutingInstance, warm: list[int], solutions: int) -> list[int]:
    """OR-Tools routing: disjunction penalties = prizes, time dimension = budget; nodes of the route."""
    pywrapcp, routing_enums_pb2 = require_solver("ortools")
    from ortools.util.optional_boolean_pb2 import BOOL_FALSE, BOOL_TRUE

    n_nodes = instance.n_genes + 2
    manager = pywrapcp.RoutingIndexManager(n_nodes, 1, [0], [n_nodes - 1])
    routing = pywrapcp.RoutingModel(manager)
    # Arrival at j after leaving i: the move, then j's in-patch moves (service counted on arrival).
    transit = instance.travel + instance.service[None, :]
    time_index = routing.RegisterTransitMatrix(transit.tolist())
    routing.AddDimension(time_index, 0, instance.budget, True, "time")
    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(instance.cost.tolist()))
    for node in range(1, n_nodes - 1):
        routing.AddDisjunction([manager.NodeToIndex(node)], int(instance.prize[node]))
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    # Local search to a local optimum, capped at ``solutions`` improving solutions: a count, not a clock,
    # so the route is the same on every machine. (Guided local search never stops by itself once it
    # finds no more improving solutions: with a count only, it can run forever.)
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GREEDY_DESCENT
    params.solution_limit = solutions
    operators = params.local_search_operators
    for field in operators.DESCRIPTOR.fields:  # a whitelist: operators a newer OR-Tools adds stay off
        setattr(operators, field.name, BOOL_TRUE if field.name in ORTOOLS_OPERATORS else BOOL_FALSE)
    routing.CloseModelWithParameters(params)
    start = routing.ReadAssignmentFromRoutes([warm], True) if warm else None
    solution = (
        routing.SolveFromAssignmentWithParameters(start, params) if start else routing.SolveWithParameters(params)
    )
    if solution is None:
        return warm
    route, index = [], routing.Start(0)
    while not routing.IsEnd(index):
        node = manager.IndexToNode(index)
        if node:
            route.append(node)
        index = solution.Value(routing.NextVar(index))
    return route


def solve_pyvrp(instance: RoutingInstance, warm: list[int], iterations: int, seed: int) -> list[int]:
    """PyVRP's prize-collecting mode: optional clients with prizes, the budget as shift duration."""
    pyvrp, MaxIterations = require_solver("pyvrp")
    n = instance.n_genes
    # PyVRP orders depots first: location 0 start, 1 end, 2.. the genes (our nodes 1..n).
    order = np.concatenate([[0, n + 1], np.arange(1, n + 1)])
    travel = instance.travel[np.ix_(order, order)]
    cost = instance.cost[np.ix_(order, order)]
    data = pyvrp.ProblemData(
        locations=[pyvrp.Location(0.0, 0.0) for _ in range(n + 2)],
        clients=[
            pyvrp.Client(
                location=2 + i,
                service_duration=int(instance.service[i + 1]),
                prize=int(instance.prize[i + 1]),
                required=False,
            )
            for i in range(n)
        ],
        depots=[pyvrp.Depot(location=0), pyvrp.Depot(location=1)],
        vehicle_types=[pyvrp.VehicleType(1, start_depot=0, end_depot=1, shift_duration=instance.budget)],
        distance_matrices=[cost],
        duration_matrices=[travel],
    )
    initial = pyvrp.Solution(data, [[node - 1 for node in warm]]) if warm else None  # client i is our node i + 1
    result = pyvrp.solve(data, MaxIterations(iterations), seed=seed, collect_stats=False, initial_solution=initial)
    if not result.is_feasible():
        return warm
    routes = result.best.routes()
    if not routes:
        return []
    client = pyvrp.ActivityType.CLIENT
    return [int(step.idx) + 1 for step in routes[0].schedule() if step.type == client]


# ---- the agent ---------------------------------------------------------------------------------
class OrienteeringAgent(_PatchOrderPlanner):
    """Prize-collecting orienteering over patches (OR-Tools or PyVRP), re-solved after each patch."""

    name = "orienteering"
    Config = OrienteeringConfig
    replans = True
    plays_staged = False

    def reset(self, env, seed: int) -> None:
        if self.config.solver not in SOLVERS:
            raise InputError(
                f"hyperparameter 'solver': expected one of {', '.join(SOLVERS)}, got {self.config.solver!r}"
            )
        require_solver(self.config.solver)  # refuse before the session starts, not at its first decision
        super().reset(env, seed)
        if not np.isfinite(self.layout.duration):
            raise InputError(
                "agent 'orienteering' plans within the session's minutes; this environment has no time budget"
            )
        self.solver_seed = int(self.rng.integers(2**31))
        self.solves = 0
        # Blind (feedback none) nothing new is learnt at a patch change: follow the route, and solve
        # again only when it runs out (``should_replan``); with feedback, re-solve after every patch.
        self.replans = self.layout.feedback.reveals

    def good_probability(self, obs: dict) -> tuple[np.ndarray, float]:
        if not self.layout.feedback.reveals:
            return self.prior, self.config.take_probability
        probability, grid_shift = shrunk_good_probability(
            self.prior,
            obs["revealed"].astype(bool),
            obs["revealed_ctf"] < self.layout.threshold,
            self.hierarchy,
            self.config.patch_pseudo_count,
            self.config.square_pseudo_count,
            self.config.grid_pseudo_count,
        )
        return probability, self.config.take_probability + grid_shift

    def should_replan(self) -> bool:
        """Blind: the route ran out after some exposures (time is left: a new route may fit)."""
        return not self.replans and not self.plan and self.exposures_since_plan > 0

    def square_change_penalty(self, first: bool) -> float:
        return 0.0 if first else self.config.square_change_penalty

    def make_plan(self, obs: dict, info: dict, probability: np.ndarray, cut: float, unvisited: np.ndarray) -> list[int]:
        problem = self.plan_problem(obs, info, probability, cut, unvisited)
        self.last_problem = problem
        self.exposures_since_plan = 0
        if problem.n_genes == 0:
            return []
        gene_of_patch = {int(p): g for g, p in enumerate(problem.patches)}
        following = [gene_of_patch[p] for p in (self.plan or []) if p in gene_of_patch]
        if not following:  # the first solve (or the route ran out): a Predict-Rank-like order
            following = [int(g) for g in problem.ranked_orders(self.hierarchy)[1]]
        genes = candidate_genes(
            problem, self.hierarchy, np.asarray(following[: self.config.max_patches]), self.config.max_patches
        )
        instance = RoutingInstance.build(problem, genes)
        node_of_gene = {int(g): i + 1 for i, g in enumerate(genes)}
        warm = instance.fitting_prefix([node_of_gene[g] for g in following if g in node_of_gene])
        route = self.solve(instance, warm)
        order = [int(genes[node - 1]) for node in route]
        self.solves += 1
        value = float(problem.value(np.asarray(order))[0]) if order else 0.0  # the route's expected good
        self.last_search = SearchResult(np.asarray(order, dtype=np.int64), value, np.zeros(0))
        return [int(problem.patches[g]) for g in order]

    def solve(self, instance: RoutingInstance, warm: list[int]) -> list[int]:
        if self.config.solver == "pyvrp":
            return solve_pyvrp(instance, warm, self.config.solver_iterations, self.solver_seed + self.solves)
        return solve_ortools(instance, warm, self.config.solver_solutions)
