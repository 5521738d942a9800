"""The import graph of cryobench/: no cycles, and no import from a lower layer up to a higher one.

Every module is parsed with ``ast`` (nothing is imported), and every ``import`` counts, those
inside functions included: a deferred import still ties the two modules together. The layers
are those of DEVELOPERS.md's layout, lowest first; a module may import from its own layer and
from the layers below it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cryobench"

# Lowest first. A name stands for that module, or for a whole subpackage (cryobench.agents).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # What every layer may use: errors, card folders, files, seeds and the paper's rules.
    (
        "foundation",
        ("cryobench.errors", "cryobench.resources", "cryobench.files", "cryobench.seeding", "cryobench.rules"),
    ),
    (
        "world",
        (
            "cryobench.grid",
            "cryobench.cards",
            "cryobench.twin",
            "cryobench.cryorl_format",
            "cryobench.facility_table",
            "cryobench.regressors",
            "cryobench.stats",
            "cryobench.twin_fidelity",
            "cryobench.informed",
            "cryobench.profiles",
        ),
    ),
    # catalog builds the simulator's World from a dataset, so it sits on top of simulator.
    # The package itself (cryobench/__init__.py) registers the environments.
    (
        "session",
        (
            "cryobench.simulator",
            "cryobench.features",
            "cryobench.candidates",
            "cryobench.catalog",
            "cryobench.env",
            "cryobench.vector_env",
            "cryobench.training_env",
            "cryobench.registration",
            "cryobench.render",
            "cryobench",
        ),
    ),
    # policies: networks for RL libraries (sb3), on the observation alone, like the agents
    ("agents", ("cryobench.agents", "cryobench.policies")),
    (
        "measuring",
        (
            "cryobench.results",
            "cryobench.evaluate",
            "cryobench.sealed",
            "cryobench.sealed_mirror",
            "cryobench.metrics",
            "cryobench.aggregate",
            "cryobench.compare",
            "cryobench.plots",
            "cryobench.result_sets",
            "cryobench.sweep",
            "cryobench.protocol",
            "cryobench.heldout",
            "cryobench.leaderboard",
            "cryobench.check",
            "cryobench.export",
        ),
    ),
    # examples: scripts a user runs (python -m cryobench.examples.NAME), on top of everything
    ("shells", ("cryobench.cli", "cryobench.play", "cryobench.pytest_plugin", "cryobench.examples")),
)

# Violations on main still to be fixed; each has a strict xfail test below that fails (XPASS) the
# day the fix lands, so the entry is removed then. Never add to this list to make a new violation
# pass: fix the import. (The dqn <-> dqn_train cycle and dqn_train -> evaluate were fixed in f571906.)
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    file: str  # relative to the checkout, e.g. cryobench/agents/dqn.py
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.imported}"


def parse_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    """Every import of a cryobench module in one file, at any depth (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from cryobench import simulator` imports the module cryobench.simulator
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
            ]
        for target in targets:
            if target.split(".")[0] != "cryobench":
                continue
            while target not in modules:  # cryobench.agents.dqn.DQNAgent -> cryobench.agents.dqn
                target = target.rpartition(".")[0]
            if target != name:
                found.append(Import(name, target, path.relative_to(root).as_posix(), node.lineno))
    return found


def import_graph(package: Path = PACKAGE) -> list[Import]:
    modules = parse_modules(package)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules, package.parent)]


def layer_of(module: str) -> int | None:
    """Index of the module's layer: an exact name, else the longest subpackage that holds it."""
    best, best_length = None, -1
    for index, (_, names) in enumerate(LAYERS):
        for entry in names:
            exact = module == entry
            inside = entry != "cryobench" and module.startswith(entry + ".")
            if (exact or inside) and len(entry) > best_length:
                best, best_length = index, len(entry) + (1 if exact else 0)
    return best


def upward_imports(edges: list[Import]) -> list[Import]:
    return [e for e in edges if layer_of(e.imported) > layer_of(e.importer)]


def describe_upward(edge: Import) -> str:
    below, above = LAYERS[layer_of(edge.importer)][0], LAYERS[layer_of(edge.imported)][0]
    return f"{edge} ({below} -> {above}: a lower layer may not import a higher one)"


def cycles(edges: list[Import]) -> list[list[Import]]:
    """One closed path of imports per strongly connected group of modules (Tarjan's algorithm)."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, {}).setdefault(edge.imported, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(sorted(group)[0], group, graph) for group in groups]


def _closed_path(start: str, group: set[str], graph: dict[str, dict[str, Import]]) -> list[Import]:
    """The shortest path of imports from start back to start inside one group (breadth first)."""
    previous: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt, edge in sorted(graph.get(node, {}).items()):
                if nxt not in group or nxt in previous:
                    continue
                previous[nxt] = edge
                if nxt == start:
                    path, at = [], start
                    while True:
                        path.append(previous[at])
                        at = previous[at].importer
                        if at == start:
                            return path[::-1]
                following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def describe_cycle(path: list[Import]) -> str:
    return " -> ".join([path[0].importer] + [e.imported for e in path]) + "\n    " + "\n    ".join(map(str, path))


EDGES = import_graph()


# ---- the rules --------------------------------------------------------------------------------
def test_every_module_has_a_layer():
    unplaced = sorted(name for name in parse_modules() if layer_of(name) is None)
    assert not unplaced, f"{unplaced}: add each to LAYERS in tests/test_layering.py (and DEVELOPERS.md's layout)"


def test_no_import_cycles():
    found = cycles(EDGES)
    assert not found, "import cycles:\n" + "\n".join(describe_cycle(path) for path in found)


def test_no_import_from_a_lower_layer_up_to_a_higher_one():
    new = [e for e in upward_imports(EDGES) if (e.importer, e.imported) not in KNOWN_UPWARD]
    assert not new, "\n".join(describe_upward(e) for e in new)


@pytest.mark.parametrize(
    "edge",
    [pytest.param(edge, marks=pytest.mark.xfail(strict=True, reason=why)) for edge, why in KNOWN_UPWARD.items()],
    ids=lambda edge: f"{edge[0]}->{edge[1]}",
)
def test_known_upward_import_is_gone(edge):
    """Fails (xfail) while the violation is on main; XPASS, hence a failure, once it is fixed:
    then remove the entry from KNOWN_UPWARD."""
    found = [e for e in upward_imports(EDGES) if (e.importer, e.imported) == edge]
    assert not found, "\n".join(describe_upward(e) for e in found)


# ---- the checker itself, on a package written for the purpose ----------------------------------
def test_the_checker_finds_cycles_and_upward_imports_inside_functions(tmp_path):
    package = tmp_path / "cryobench"
    (package / "agents").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "agents" / "__init__.py").write_text("")
    (package / "agents" / "a.py").write_text("from . import b\n")
    (package / "agents" / "b.py").write_text("def later():\n    from cryobench.agents.a import x\n")
    (package / "evaluate.py").write_text("from cryobench.agents import a\n")
    (package / "grid.py").write_text("import cryobench.errors\n\n\ndef f():\n    from cryobench import evaluate\n")
    edges = import_graph(package)
    (cycle,) = cycles(edges)
    assert describe_cycle(cycle).startswith("cryobench.agents.a -> cryobench.agents.b -> cryobench.agents.a")
    assert [(e.importer, e.line) for e in cycle] == [("cryobench.agents.a", 1), ("cryobench.agents.b", 2)]
    (upward,) = upward_imports(edges)
    assert (upward.importer, upward.imported, upward.line) == ("cryobench.grid", "cryobench.evaluate", 5)
    assert describe_upward(upward).endswith(
        "imports cryobench.evaluate (world -> measuring: a lower layer may not import a higher one)"
    )
