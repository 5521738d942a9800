"""The versioned evaluation protocol of the leaderboards (``leaderboards/protocol-v<N>.yaml``).

A protocol is a list of entries (an environment and its ``gym.make`` arguments) and a
range of seeds. Entries marked ``measured`` need a folder of measured data in the CryoRL
format, given by ``--data`` or ``$CRYOBENCH_ALDOLASE_DATA``; they are skipped, and say
so, where it is absent. Results never record the machine's path of that folder, only
the placeholder ``$MEASURED`` and the files' checksum.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cryobench.errors import InputError
from cryobench.resources import card_dir

CURRENT_VERSION = 1
MEASURED = "$MEASURED"


@dataclass(frozen=True)
class Entry:
    """One row of the protocol: an environment with arguments, evaluated on every seed."""

    name: str
    env: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    measured: bool = False
    group: str = "core"

    def resolved_kwargs(self, data: Path | None) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if self.measured:
            if data is None:
                raise InputError(f"protocol entry {self.name!r} needs measured data (--data PATH)")
            kwargs["data"] = str(data)
        return kwargs


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


def protocol_path(version: int = CURRENT_VERSION) -> Path:
    return card_dir("leaderboards") / f"protocol-v{version}.yaml"


def load_protocol(version: int = CURRENT_VERSION) -> Protocol:
    """The protocol of a version, validated."""
    path = protocol_path(version)
    if not path.is_file():
        raise InputError(f"no protocol version {version}: {path} does not exist")
    doc = yaml.safe_load(path.read_text())
    try:
        if doc["version"] != version:
            raise InputError(f"{path}: 'version' is {doc['version']}, expected {version}")
        first, last = doc["seeds"]
        entries = tuple(
            Entry(
                name=str(e["name"]),
                env=str(e["env"]),
                kwargs=dict(e.get("kwargs") or {}),
                measured=bool(e.get("measured", False)),
                group=str(e.get("group", "core")),
            )
            for e in doc["entries"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed protocol ({type(exc).__name__}: {exc})") from None
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: entry names must be unique")
    return Protocol(version, tuple(range(int(first), int(last) + 1)), entries, str(doc.get("description", "")))


def measured_data_folder(data: str | Path | None = None) -> Path | None:
    """The measured data folder: ``data``, else ``$CRYOBENCH_ALDOLASE_DATA``; None where absent."""
    candidate = data or os.environ.get("CRYOBENCH_ALDOLASE_DATA")
    if candidate is None:
        return None
    path = Path(candidate).expanduser()
    return path if path.is_dir() else None


def folder_checksum(folder: Path) -> str:
    """sha256 over the names and contents of a folder's files (identifies measured data)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
