"""Find agents by name: built-in and third-party alike, through the ``cryobench.agents`` entry points.

A third-party package exposes ``[project.entry-points."cryobench.agents"] myagent = "pkg.mod:MyAgent"``;
cryobench's own agents are declared the same way in its ``pyproject.toml``. An agent's card
``agents/<name>.yaml`` (hyperparameters) is optional for third-party agents (defaults of its Config).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from cryobench.agents.base import GROUP, Agent
from cryobench.errors import InputError
from cryobench.resources import card_dir


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


#: Card fields that let an agent be listed without importing its module (and torch with it).
CARD_LISTING_FIELDS = ("summary", "upper_bound", "needs_feedback")


def agent_names() -> list[str]:
    """The names of every agent that can be asked for (entry points; nothing is imported)."""
    return sorted(_entry_points())


def list_agents(load: bool = False) -> list[dict[str, Any]]:
    """Every agent by name, with its summary, whether it is an upper bound, needs feedback and plays
    staged sessions.

    Read from the agent's card where the card has those fields, so listing imports no agent
    module (the DQN's imports torch: seconds). Agents without such a card, and every agent
    when ``load`` is true, are imported; a broken one is reported in ``error``, never fatal.
    """
    rows = []
    for name, ep in sorted(_entry_points().items()):
        row: dict[str, Any] = {"name": name, "source": ep.value, "error": None}
        try:
            card = load_card(name)
        except InputError as exc:
            card = {}
            row["error"] = str(exc)
        if not load and all(field in card for field in CARD_LISTING_FIELDS):
            row.update(
                upper_bound=bool(card["upper_bound"]),
                needs_feedback=bool(card["needs_feedback"]),
                # optional: absent means the Agent's default, False (a test checks each built-in card against its class)
                plays_staged=bool(card.get("plays_staged", False)),
                doc=" ".join(str(card["summary"]).split()),
            )
        else:
            try:
                cls = ep.load()
                row.update(
                    upper_bound=bool(cls.uses_ground_truth),
                    needs_feedback=bool(cls.needs_feedback),
                    plays_staged=bool(cls.plays_staged),
                )
                row["doc"] = _first_line(cls)
            except Exception as exc:  # a broken plugin is reported, never fatal to the listing
                row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def _first_line(cls) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def agent_class(name: str) -> type[Agent]:
    eps = _entry_points()
    if name not in eps:
        close = difflib.get_close_matches(name, sorted(eps), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown agent {name!r}{hint}; available: {', '.join(sorted(eps))}")
    try:
        cls = eps[name].load()
    except Exception as exc:
        raise InputError(f"agent {name!r} ({eps[name].value}) failed to load: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise InputError(f"agent {name!r} ({eps[name].value}) is not a subclass of cryobench.agents.base.Agent")
    return cls


def load_card(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """The agent's card (YAML): ``agents/<name>.yaml`` or an explicit path; {} if there is none."""
    card_path = Path(path) if path else card_dir("agents") / f"{name}.yaml"
    if not card_path.is_file():
        if path:
            raise InputError(f"agent card {card_path} not found")
        return {}
    try:
        card = yaml.safe_load(card_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{card_path}: not valid YAML: {exc}") from None
    if not isinstance(card, dict):
        raise InputError(f"{card_path}: expected a mapping at the top level")
    return card


def card_ranges(card: dict[str, Any], source: str) -> dict[str, dict[str, float]]:
    """The card's ``ranges``: per hyperparameter, ``min`` / ``max`` (inclusive) and ``above`` (exclusive)."""
    ranges = card.get("ranges") or {}
    if not isinstance(ranges, dict):
        raise InputError(f"{source}: field 'ranges' must map hyperparameters to {{min, max, above}}")
    for name, bounds in ranges.items():
        if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max", "above"}:
            raise InputError(f"{source}: ranges.{name} must be a mapping of min, max and/or above")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds.values()):
            raise InputError(f"{source}: ranges.{name}: bounds must be numbers")
    return ranges


def _range_text(bounds: dict[str, float]) -> str:
    parts = [f">= {bounds['min']:g}"] if "min" in bounds else []
    parts += [f"> {bounds['above']:g}"] if "above" in bounds else []
    parts += [f"<= {bounds['max']:g}"] if "max" in bounds else []
    return " and ".join(parts)


def make_config(
    cls: type[Agent],
    hyperparameters: dict[str, Any],
    source: str,
    ranges: dict[str, dict[str, float]] | None = None,
    sources: dict[str, str] | None = None,
) -> Any:
    """The agent's Config from a mapping, refusing unknown, mistyped, non-finite or out-of-range values.

    ``ranges`` are the card's (:func:`card_ranges`); ``sources`` names where a given value came
    from when it is not ``source`` (e.g. ``option -H``), so an error blames the right place.
    """
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = set(hyperparameters) - set(fields)
    if unknown:
        where = (sources or {}).get(sorted(unknown)[0], source)
        close = [m for key in sorted(unknown) for m in difflib.get_close_matches(key, fields, n=1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        known = f"it takes {', '.join(sorted(fields))}" if fields else "it takes no hyperparameters"
        raise InputError(f"{where}: unknown hyperparameter(s) {sorted(unknown)} for agent {cls.name!r}{hint}; {known}")
    values = {}
    for key, value in hyperparameters.items():
        where = (sources or {}).get(key, source)
        default = fields[key].default
        if default is not dataclasses.MISSING and default is not None:
            kind = type(default)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise InputError(
                    f"{where}: hyperparameter {key!r} of agent {cls.name!r} must be {kind.__name__}, got {value!r}"
                )
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: hyperparameter {key!r} of agent {cls.name!r} must be finite, got {value!r}")
        bounds = (ranges or {}).get(key)
        if bounds and isinstance(value, int | float) and not isinstance(value, bool):
            inside = (
                value >= bounds.get("min", -math.inf)
                and value > bounds.get("above", -math.inf)
                and value <= bounds.get("max", math.inf)
            )
            if not inside:
                raise InputError(
                    f"{where}: hyperparameter {key!r} of agent {cls.name!r} must be {_range_text(bounds)}, "
                    f"got {value!r}"
                )
        values[key] = value
    return cls.Config(**values)


def recorded_hyperparameters(name: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a recorded card ran with: its own, plus every hyperparameter the agent gained
    since at the value the recorded version ran with (``Config.ADDED_AFTER_RECORDING``), so an old entry
    re-runs its own version and not today's card values. Names that are not registered agents: as recorded."""
    if name not in _entry_points():
        return dict(recorded)
    added = getattr(getattr(agent_class(name), "Config", None), "ADDED_AFTER_RECORDING", {})
    return {**{key: value for key, value in added.items() if key not in recorded}, **recorded}


def agent_version(agent: Agent, card: dict[str, Any]) -> dict[str, str | None]:
    """Digests that pin which version of an agent ran: its card's name and hyperparameters
    (canonical JSON) and, for a trained agent (a Config with ``checkpoint``), its checkpoint's bytes.

    An improved agent is a new version: a new checkpoint file (the old one stays in the
    repository) or new hyperparameters; results record the version, and verification re-runs it.
    """
    return _version(card, getattr(agent.config, "checkpoint", None))


def card_version(card: dict[str, Any]) -> dict[str, str | None]:
    """The version (as :func:`agent_version`) of the agent a *recorded* card describes: what a
    results file or submission says ran, checked without loading the agent."""
    return _version(card, (card.get("hyperparameters") or {}).get("checkpoint"))


def _version(card: dict[str, Any], checkpoint: Any) -> dict[str, str | None]:
    defining = {"name": card.get("name"), "hyperparameters": card.get("hyperparameters")}
    card_digest = hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()
    checkpoint_digest = None
    if isinstance(checkpoint, str) and checkpoint:
        path = checkpoint_path(checkpoint)
        checkpoint_digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return {"card_sha256": card_digest, "checkpoint_sha256": checkpoint_digest}


def checkpoint_path(name: str) -> Path:
    """A checkpoint's path: absolute or relative to the working directory, else in the agents' card folder."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.is_file():
        return path
    return card_dir("agents") / name


def load_agent(name: str, overrides: dict[str, Any] | None = None, card_path: str | Path | None = None):
    """An agent instance by name, configured from its card and then ``overrides``.

    Returns ``(agent, card)`` where card is the effective card (with the overrides applied).
    """
    cls = agent_class(name)
    card = load_card(name, card_path)
    hyper = dict(card.get("hyperparameters") or {})
    hyper.update(overrides or {})
    source = str(card_path or card_dir("agents") / f"{name}.yaml")
    # Options of staged sessions (squares=..., min_pool=...) are given like hyperparameters but are
    # not the agent's: they go to the StagedDriver (cryobench.agents.staged, imported only here:
    # listing agents imports no agent module).
    from cryobench.agents.staged import STAGED_OPTION_NAMES, staged_options

    staged = {key: hyper.pop(key) for key in STAGED_OPTION_NAMES if key in hyper}
    given = {key: "the hyperparameters given (-H)" for key in overrides or {}}
    agent = cls(make_config(cls, hyper, source, card_ranges(card, source), given))
    effective = dict(card)
    effective["name"] = name
    effective["hyperparameters"] = dataclasses.asdict(agent.config)
    if staged:
        if not cls.plays_staged:
            raise InputError(f"{source}: agent {name!r} does not play staged sessions; options {sorted(staged)} unused")
        agent.staged_options = staged_options(staged, source)
        effective["staged"] = dataclasses.asdict(agent.staged_options)
    return agent, effective
