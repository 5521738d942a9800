"""Protocol v2 (``leaderboards/protocol-v2.yaml``): held-out test worlds under families of conditions.

Procgen's lesson: a leaderboard of fixed worlds rewards fitting those worlds. Protocol v2
scores agents on *test worlds* that differ from every training world in layout as well as
quality (seeds from :data:`cryobench.seeding.TEST_SEED_START` on), under *task families*
that vary what a facility varies (regressor quality and error model, timings, session
length, threshold, feedback). A run is one test world; its score is the mean over the
protocol's start seeds. The measured Aldolase data is a separate real-data track: one world.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cryobench.errors import InputError
from cryobench.protocol import MEASURED, VERSIONED_ID, protocol_path, seed_range
from cryobench.rules import Feedback
from cryobench.seeding import SEED_BOUND, TEST_SEED_START

VERSION = 2
#: The first *validation world*: training seeds (below TEST_SEED_START) on which protocol v2's
#: tasks can be played to choose designs, hyperparameters and checkpoints (``--tier validation``).
#: They are training worlds under the rule, kept apart from the seeds Training-v0 and the
#: DQN's pools usually draw only by convention: using them for selection never touches a test world.
VALIDATION_FIRST = 2**29


@dataclass(frozen=True)
class ProtocolTask:
    """An environment with conditions, played on every test world (or, if measured, on its one world)."""

    name: str
    env: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = ""
    measured: bool = False
    starts: tuple[int, ...] = ()  # the measured track's own start seeds

    @property
    def blind(self) -> bool:
        return not Feedback.parse(self.kwargs.get("feedback", "inspection")).reveals

    def not_applicable_reason(self, needs_feedback: bool) -> str | None:
        if self.blind and needs_feedback:
            return "the agent learns from revealed CTFs; this task reveals none (feedback: none)"
        return None

    def world_kwargs(self, world: int | None, data: Path | None = None) -> dict[str, Any]:
        """The ``gym.make`` arguments of this task on test world ``world`` (None: the measured world)."""
        kwargs = dict(self.kwargs)
        if self.measured:
            if data is None:
                raise InputError(f"task {self.name!r} needs the measured data (--data PATH)")
            kwargs["data"] = str(data)
        else:
            kwargs["world_seed"] = kwargs["layout_seed"] = int(world)
        return kwargs

    def public_kwargs(self, world: int | None) -> dict[str, Any]:
        """The arguments as results record them (no machine paths)."""
        if self.measured:
            return {**self.kwargs, "data": MEASURED}
        return self.world_kwargs(world)


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    tasks: tuple[ProtocolTask, ...]


@dataclass(frozen=True)
class HeldOutProtocol:
    """Protocol v2, validated. ``worlds`` are the test world seeds every (non-measured) task is played on."""

    version: int
    description: str
    worlds: tuple[int, ...]
    starts: tuple[int, ...]
    decision_seconds_cap: float
    families: tuple[Family, ...]
    measured: tuple[ProtocolTask, ...]
    quick_tasks: tuple[str, ...]
    quick_worlds: int
    quick_starts: tuple[int, ...]
    references: dict[str, dict[str, Any]]
    tier: str = "full"

    @property
    def tasks(self) -> tuple[ProtocolTask, ...]:
        return tuple(task for family in self.families for task in family.tasks)

    def task(self, name: str) -> ProtocolTask:
        for task in (*self.tasks, *self.measured):
            if task.name == name:
                return task
        raise InputError(f"protocol v{self.version} has no task {name!r}")

    def family(self, name: str) -> Family:
        for family in self.families:
            if family.name == name:
                return family
        raise InputError(f"protocol v{self.version} has no family {name!r}")

    def quick(self) -> HeldOutProtocol:
        """The quick tier (people's CI): a few tasks, worlds and starts; its results say so."""
        families = []
        for family in self.families:
            tasks = tuple(t for t in family.tasks if t.name in self.quick_tasks)
            if tasks:
                families.append(Family(family.name, family.title, tasks))
        return HeldOutProtocol(
            self.version,
            self.description,
            self.worlds[: self.quick_worlds],
            self.quick_starts,
            self.decision_seconds_cap,
            tuple(families),
            (),
            self.quick_tasks,
            self.quick_worlds,
            self.quick_starts,
            self.references,
            tier="quick",
        )

    def validation(self) -> HeldOutProtocol:
        """The validation tier: every task on as many *training* worlds, the measured task on its train split.

        For selecting designs, hyperparameters and checkpoints under protocol v2's conditions without
        looking at a test world (DEVELOPERS.md, "Training and test worlds"); never a leaderboard entry.
        """
        worlds = tuple(range(VALIDATION_FIRST, VALIDATION_FIRST + len(self.worlds)))
        measured = tuple(replace(task, kwargs={**task.kwargs, "split": "train"}) for task in self.measured)
        return replace(self, worlds=worlds, measured=measured, tier="validation")

    def with_worlds(self, worlds: tuple[int, ...]) -> HeldOutProtocol:
        """The same tasks on other test worlds (e.g. a second independent draw, to measure rank stability)."""
        for world in worlds:
            if not TEST_SEED_START <= world < SEED_BOUND:
                raise InputError(f"world {world} is not a test world (seeds {TEST_SEED_START} to {SEED_BOUND - 1})")
        return replace(self, worlds=tuple(worlds), tier="draw")


def load_heldout_protocol(version: int = VERSION) -> HeldOutProtocol:
    path = protocol_path(version)
    if not path.is_file():
        raise InputError(f"no protocol version {version}: {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_heldout_protocol(doc, str(path))


def _task(raw: Any, where: str, family: str, measured: bool) -> ProtocolTask:
    allowed = {"name", "env", "kwargs"} | ({"starts"} if measured else set())
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping with name, env, kwargs")
    unknown = set(raw) - allowed
    if unknown:
        raise InputError(f"{where}: unknown field(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-." for c in name):
        raise InputError(f"{where}: field 'name' must be a non-empty name of letters, digits, '-' and '.'")
    if not isinstance(raw.get("env"), str) or not VERSIONED_ID.match(raw["env"]):
        raise InputError(f"{where}: field 'env' must be a versioned environment id, got {raw.get('env')!r}")
    kwargs = raw.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InputError(f"{where}: field 'kwargs' must be a mapping")
    for reserved in ("data", "world_seed", "layout_seed", "new_world_each_reset", "new_layout_each_reset"):
        if reserved in kwargs:
            raise InputError(f"{where}: field 'kwargs' must not set {reserved!r}: the protocol chooses the worlds")
    starts = seed_range(raw["starts"], f"{where}: field 'starts'") if measured else ()
    return ProtocolTask(name, raw["env"], dict(kwargs), family, measured, starts)


def parse_heldout_protocol(doc: Any, source: str) -> HeldOutProtocol:
    """Protocol v2 from its YAML mapping; errors name ``source`` and the field."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: a protocol must be a mapping")
    known = {
        "version",
        "description",
        "test_worlds",
        "starts",
        "decision_seconds_cap",
        "quick",
        "families",
        "measured",
        "references",
    }
    unknown = set(doc) - known
    if unknown:
        raise InputError(f"{source}: unknown field(s) {sorted(unknown)}")
    if doc.get("version") != VERSION:
        raise InputError(f"{source}: field 'version' is {doc.get('version')!r}, expected {VERSION}")
    worlds = doc.get("test_worlds")
    if not (isinstance(worlds, dict) and set(worlds) == {"first", "count"}):
        raise InputError(f"{source}: field 'test_worlds' must be {{first: SEED, count: N}}")
    first, count = worlds["first"], worlds["count"]
    if type(first) is not int or type(count) is not int or count < 2 or first < TEST_SEED_START:
        raise InputError(
            f"{source}: field 'test_worlds': first must be a test seed (>= {TEST_SEED_START}) and count >= 2"
        )
    if first + 2 * count > SEED_BOUND:
        raise InputError(f"{source}: field 'test_worlds' runs past the largest seed {SEED_BOUND - 1}")
    starts = seed_range(doc.get("starts"), f"{source}: field 'starts'")
    cap = doc.get("decision_seconds_cap")
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not 0 < cap < 3600:
        raise InputError(f"{source}: field 'decision_seconds_cap' must be a positive number of seconds")
    raw_families = doc.get("families")
    if not isinstance(raw_families, list) or not raw_families:
        raise InputError(f"{source}: field 'families' must be a non-empty list")
    families = []
    for i, raw in enumerate(raw_families):
        where = f"{source}: families[{i}]"
        if not isinstance(raw, dict) or set(raw) - {"name", "title", "tasks"} or not isinstance(raw.get("name"), str):
            raise InputError(f"{where}: expected a mapping with name, title, tasks")
        raw_tasks = raw.get("tasks")
        if not isinstance(raw_tasks, list) or not raw_tasks:
            raise InputError(f"{where}: field 'tasks' must be a non-empty list")
        tasks = tuple(_task(t, f"{where}.tasks[{j}]", raw["name"], False) for j, t in enumerate(raw_tasks))
        families.append(Family(raw["name"], str(raw.get("title", raw["name"])), tasks))
    raw_measured = doc.get("measured") or []
    if not isinstance(raw_measured, list):
        raise InputError(f"{source}: field 'measured' must be a list")
    measured = tuple(_task(t, f"{source}: measured[{j}]", "measured", True) for j, t in enumerate(raw_measured))
    names = [t.name for f in families for t in f.tasks] + [t.name for t in measured]
    repeated = sorted({n for n in names if names.count(n) > 1})
    family_names = [f.name for f in families]
    if repeated or len(set(family_names)) != len(family_names):
        raise InputError(f"{source}: task and family names must be unique; repeated: {repeated or family_names}")
    quick = doc.get("quick")
    if not (isinstance(quick, dict) and set(quick) == {"tasks", "worlds", "starts"}):
        raise InputError(f"{source}: field 'quick' must be {{tasks: [...], worlds: N, starts: [FIRST, LAST]}}")
    unknown_quick = sorted(set(quick["tasks"]) - set(names))
    if unknown_quick or type(quick["worlds"]) is not int or not 1 <= quick["worlds"] <= count:
        raise InputError(f"{source}: field 'quick': unknown tasks {unknown_quick} or worlds not in 1..{count}")
    references = doc.get("references") or {}
    if not isinstance(references, dict) or set(references) - set(names):
        raise InputError(f"{source}: field 'references' must map task names to reference points")
    for name, points in references.items():
        if not (isinstance(points, dict) and {"random", "upper_bound"} <= set(points)):
            raise InputError(f"{source}: references[{name!r}] needs 'random' and 'upper_bound'")
    return HeldOutProtocol(
        version=VERSION,
        description=str(doc.get("description", "")).strip(),
        worlds=tuple(range(first, first + count)),
        starts=starts,
        decision_seconds_cap=float(cap),
        families=tuple(families),
        measured=measured,
        quick_tasks=tuple(quick["tasks"]),
        quick_worlds=int(quick["worlds"]),
        quick_starts=seed_range(quick["starts"], f"{source}: field 'quick.starts'"),
        references={name: dict(points) for name, points in references.items()},
    )


def second_draw(protocol: HeldOutProtocol) -> tuple[int, ...]:
    """An independent draw of test worlds of the protocol's size: the next ``count`` test seeds."""
    count = len(protocol.worlds)
    return tuple(range(protocol.worlds[-1] + 1, protocol.worlds[-1] + 1 + count))
