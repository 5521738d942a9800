"""The versioned evaluation protocol of the leaderboards (``leaderboards/protocol-v<N>.yaml``).

A protocol is a list of entries (a versioned environment id and its ``gym.make`` arguments)
and a range of seeds. Entries pin full ids such as ``cryobench/Aldolase-v0``: a change to
an environment's dynamics must bump its id (``-v1``), which no protocol of old results names,
so old scores are never silently moved (see ``leaderboards/README.md``).

Entries marked ``measured`` need a folder of measured data in the CryoRL format, given by
``--data`` or ``$CRYOBENCH_ALDOLASE_DATA``; they are skipped, and say so, where it is absent.
Results never record the machine's path of that folder, only the placeholder ``$MEASURED``
and the files' checksum.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cryobench.errors import InputError
from cryobench.resources import card_dir
from cryobench.rules import Feedback

CURRENT_VERSION = 1
MEASURED = "$MEASURED"
GROUPS = ("core", "measured", "noise")
VERSIONED_ID = re.compile(r"^cryobench/[A-Za-z0-9]+-v\d+$")


@dataclass(frozen=True)
class Entry:
    """One row of the protocol: an environment with arguments, evaluated on every seed."""

    name: str
    env: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    measured: bool = False
    group: str = "core"

    @property
    def blind(self) -> bool:
        """The paper's setting: no CTF is revealed during the session."""
        return not Feedback.parse(self.kwargs.get("feedback", "inspection")).reveals

    def resolved_kwargs(self, data: Path | None) -> dict[str, Any]:
        """The ``gym.make`` arguments, with the measured data folder filled in."""
        kwargs = dict(self.kwargs)
        if self.measured:
            if data is None:
                raise InputError(f"protocol entry {self.name!r} needs measured data (--data PATH)")
            kwargs["data"] = str(data)
        return kwargs

    def not_applicable_reason(self, agent_class: type) -> str | None:
        """Why an agent cannot run on this entry (None when it can).

        Agents that learn from revealed CTFs refuse the blind setting by design; the tables
        show them as not applicable there rather than as failures.
        """
        if self.blind and getattr(agent_class, "needs_feedback", False):
            return "the agent learns from revealed CTFs; this entry reveals none (feedback: none)"
        return None


@dataclass(frozen=True)
class Protocol:
    version: int
    seeds: tuple[int, ...]
    entries: tuple[Entry, ...]
    description: str

    def entry(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise InputError(f"protocol v{self.version} has no entry {name!r}")

    def reduced(self, seeds: tuple[int, ...] | None = None, entries: tuple[str, ...] | None = None) -> Protocol:
        """A subset of this protocol (quick checks, CI, examples); results say they are reduced."""
        chosen_seeds = self.seeds if seeds is None else tuple(int(s) for s in seeds)
        unknown = sorted(set(chosen_seeds) - set(self.seeds))
        if unknown:
            raise InputError(f"seeds {unknown} are not part of protocol v{self.version} (seeds {self.seed_range})")
        chosen = self.entries if entries is None else tuple(self.entry(name) for name in entries)
        return replace(self, seeds=chosen_seeds, entries=chosen)

    @property
    def seed_range(self) -> str:
        return f"{self.seeds[0]}-{self.seeds[-1]}" if self.seeds else "none"


def protocol_path(version: int = CURRENT_VERSION) -> Path:
    return card_dir("leaderboards") / f"protocol-v{version}.yaml"


def known_versions() -> list[int]:
    """Every protocol version that has a definition file."""
    found = []
    for path in card_dir("leaderboards").glob("protocol-v*.yaml"):
        suffix = path.stem.removeprefix("protocol-v")
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def load_protocol(version: int = CURRENT_VERSION) -> Protocol:
    """The protocol of a version, validated (errors name the file and the field)."""
    path = protocol_path(version)
    if not path.is_file():
        raise InputError(f"no protocol version {version}: {path} does not exist (known: {known_versions()})")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    return parse_protocol(doc, str(path), version)


def seed_range(value: Any, where: str) -> tuple[int, ...]:
    """A protocol file's ``[FIRST, LAST]`` field as the seeds it names; ``where`` names the field in errors."""
    if not (isinstance(value, list) and len(value) == 2 and all(type(s) is int for s in value)):
        raise InputError(f"{where} must be [FIRST, LAST] (integers), got {value!r}")
    if not 0 <= value[0] <= value[1]:
        raise InputError(f"{where} must satisfy 0 <= FIRST <= LAST, got {value!r}")
    return tuple(range(value[0], value[1] + 1))


def parse_protocol(doc: Any, source: str, version: int | None = None) -> Protocol:
    """A protocol from its YAML mapping; ``source`` names it in errors."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: a protocol must be a mapping")
    if not isinstance(doc.get("version"), int) or (version is not None and doc["version"] != version):
        raise InputError(f"{source}: field 'version' is {doc.get('version')!r}, expected {version}")
    seeds = seed_range(doc.get("seeds"), f"{source}: field 'seeds'")
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise InputError(f"{source}: field 'entries' must be a non-empty list")
    entries = []
    for index, raw in enumerate(raw_entries):
        where = f"{source}: entries[{index}]"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a mapping with name, env, kwargs")
        unknown = set(raw) - {"name", "env", "kwargs", "measured", "group"}
        if unknown:
            raise InputError(f"{where}: unknown field(s) {sorted(unknown)}")
        if not isinstance(raw.get("name"), str) or not raw["name"]:
            raise InputError(f"{where}: field 'name' must be a non-empty string")
        if not isinstance(raw.get("env"), str) or not VERSIONED_ID.match(raw["env"]):
            raise InputError(
                f"{where}: field 'env' must be a versioned environment id like 'cryobench/Aldolase-v0', "
                f"got {raw.get('env')!r}"
            )
        kwargs = raw.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise InputError(f"{where}: field 'kwargs' must be a mapping")
        if "data" in kwargs:
            raise InputError(f"{where}: field 'kwargs' must not name a data folder; mark the entry 'measured: true'")
        group = raw.get("group", "core")
        if group not in GROUPS:
            raise InputError(f"{where}: field 'group' must be one of {GROUPS}, got {group!r}")
        measured = raw.get("measured", False)
        if not isinstance(measured, bool):
            raise InputError(f"{where}: field 'measured' must be true or false")
        entries.append(Entry(raw["name"], raw["env"], dict(kwargs), measured, group))
    names = [e.name for e in entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{source}: entry names must be unique; repeated: {duplicated}")
    return Protocol(int(doc["version"]), seeds, tuple(entries), str(doc.get("description", "")))


def measured_data_folder(data: str | Path | None = None) -> Path | None:
    """The measured data folder: ``data``, else ``$CRYOBENCH_ALDOLASE_DATA``; None where absent.

    An explicit ``data`` that is not a folder is an error (a typo should not silently drop
    the measured entries); the environment variable is only a default.
    """
    if data is not None:
        path = Path(data).expanduser()
        if not path.is_dir():
            raise InputError(f"option --data: {path} is not a folder of measured data")
        return path.resolve()
    candidate = os.environ.get("CRYOBENCH_ALDOLASE_DATA")
    if candidate and Path(candidate).expanduser().is_dir():
        return Path(candidate).expanduser().resolve()
    return None


def folder_checksum(folder: Path) -> str:
    """sha256 over the names and contents of a folder's files (identifies measured data)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
