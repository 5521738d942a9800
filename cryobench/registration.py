"""Gymnasium registration from the environment cards in ``envs/``, and short names for the CLI."""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from cryobench.cards import show_value, yaml_error
from cryobench.errors import InputError
from cryobench.facility_table import env_id_of, imported_datasets
from cryobench.resources import card_dir

ENTRY_POINT = "cryobench.env:CryoEMSessionEnv"
#: ``gym.make_vec``'s native batched environment, for the paper sessions of the default class.
VECTOR_ENTRY_POINT = "cryobench.vector_env:CryoEMVectorEnv"
_CARD_FIELDS = {
    "id": str,
    "short_name": str,
    "title": str,
    "kwargs": dict,
    "description": str,
    "paper": str,
    "simulated": bool,
}
#: Optional card fields: another environment class (``module:Class``, a subclass of the default).
_OPTIONAL_FIELDS = {"entry_point": str}

_ID_PATTERN = re.compile(r"cryobench/[A-Za-z][A-Za-z0-9]*-v\d+")
_SHORT_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")


def _read_env_card(path: Path, taken: dict[str, Path]) -> dict:
    """One environment card, validated; a bad one is an InputError naming the file and the field."""
    try:
        card = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the environment card: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte offset {exc.start}); expected a YAML card") from None
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    if not isinstance(card, dict):
        raise InputError(f"{path}: an environment card must be a mapping of fields")
    for field, kind in _CARD_FIELDS.items():
        if not isinstance(card.get(field), kind):
            raise InputError(f"{path}: field {field!r} must be a {kind.__name__}, got {show_value(card.get(field))}")
    for field, pattern, expected in (
        ("id", _ID_PATTERN, "cryobench/<Name>-v<N>"),
        ("short_name", _SHORT_NAME_PATTERN, "lower-case letters, digits and '-'"),
    ):
        if not pattern.fullmatch(card[field]):
            raise InputError(f"{path}: field {field!r} must look like {expected}, got {show_value(card[field])}")
    unknown = set(card) - set(_CARD_FIELDS) - set(_OPTIONAL_FIELDS)
    if unknown:
        raise InputError(f"{path}: unknown field(s) {sorted(map(str, unknown))}; expected {sorted(_CARD_FIELDS)}")
    entry_point = card.get("entry_point", ENTRY_POINT)
    if not isinstance(entry_point, str) or not re.fullmatch(r"cryobench(\.[a-z_]+)+:[A-Za-z]+", entry_point):
        raise InputError(
            f"{path}: field 'entry_point' must be 'cryobench.<module>:<Class>', got {show_value(entry_point)}"
        )
    for field in ("id", "short_name"):
        other = taken.get(f"{field}:{card[field]}")
        if other is not None:
            raise InputError(f"{path}: field {field!r}: {card[field]!r} is already the {field} of {other}")
    return card


@functools.cache
def _load_env_cards() -> tuple[dict[str, dict], dict[Path, tuple[str, str]]]:
    """(environment id -> card) of the good cards and (card file -> (id or name, one-line error)) of the bad.

    A bad card must not make ``import cryobench`` fail: it is left out, and its error is
    raised when that environment is asked for (by id, short name or file name) or listed.
    """
    cards: dict[str, dict] = {}
    errors: dict[Path, tuple[str, str]] = {}
    taken: dict[str, Path] = {}
    for path in sorted(card_dir("envs").glob("*.yaml")):
        try:
            card = _read_env_card(path, taken)
        except InputError as exc:
            errors[path] = (_card_id(path), str(exc))
            continue
        cards[card["id"]] = card
        taken.update({f"id:{card['id']}": path, f"short_name:{card['short_name']}": path})
    for name, folder in imported_datasets().items():
        card = imported_env_card(name, folder)
        other = taken.get(f"short_name:{name}") or taken.get(f"id:{card['id']}")
        if other is not None:
            errors[folder] = (card["id"], f"{folder}: imported dataset {name!r}: the name is taken by {other}")
            continue
        cards[card["id"]] = card
    return cards, errors


def imported_env_card(name: str, folder: Path) -> dict:
    """The environment card of a dataset imported by name (``cryobench datasets import-table --name``)."""
    return {
        "id": env_id_of(name),
        "short_name": name,
        "title": f"Imported facility data: {name}",
        "kwargs": {"data": str(folder)},
        "description": f"A facility table imported into {folder} (cryobench datasets import-table).",
        "paper": "",
        "simulated": False,
    }


def _card_id(path: Path) -> str:
    """The id a bad card declares, if it can be read at all (to refuse ``gym.make`` of it clearly)."""
    try:
        card = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ""
    return card["id"] if isinstance(card, dict) and isinstance(card.get("id"), str) else ""


def env_cards() -> dict[str, dict]:
    """Environment id -> its card, from ``envs/*.yaml``: the cards that are valid."""
    return _load_env_cards()[0]


def env_card_errors() -> list[str]:
    """One line per environment card that could not be loaded (file, field and what was expected)."""
    return [message for _, message in _load_env_cards()[1].values()]


def _refuse_bad_card(message: str, **_kwargs: object) -> None:
    raise InputError(message)


def short_names() -> dict[str, str]:
    """Short name -> environment id."""
    return {card["short_name"]: env_id for env_id, card in env_cards().items()}


def register_envs() -> None:
    """Register every cryobench environment (idempotent); a bad card's id, where readable, refuses with its error."""
    # An older cryobench version is asked for on purpose (protocols pin -v0 ids): gymnasium's
    # "is out of date, consider upgrading" would only be noise on every protocol run.
    warnings.filterwarnings("ignore", message=r".*cryobench/\w+-v\d+ is out of date", category=DeprecationWarning)
    for env_id, card in env_cards().items():
        if env_id not in gym.registry:
            entry_point = card.get("entry_point", ENTRY_POINT)
            kwargs = card["kwargs"]
            paper_sessions = kwargs.get("acquisition", "paper") == "paper" and "grids" not in kwargs
            batched = entry_point == ENTRY_POINT and paper_sessions
            vector_entry_point = VECTOR_ENTRY_POINT if batched else None
            gym.register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=vector_entry_point,
                kwargs=dict(card["kwargs"]),
            )
    for env_id, message in _load_env_cards()[1].values():
        if _ID_PATTERN.fullmatch(env_id) and env_id not in gym.registry:
            gym.register(id=env_id, entry_point=functools.partial(_refuse_bad_card, message))


def resolve_env_id(name: str) -> str:
    """A full environment id from a short name (``aldolaseau``) or an id."""
    if name in env_cards():
        return name
    names = short_names()
    if name.lower() in names:
        return names[name.lower()]
    for path, (env_id, message) in _load_env_cards()[1].items():
        if name in (env_id, path.stem) or name.lower() == path.stem.lower():
            raise InputError(message)
    example = f" or an id like {next(iter(env_cards()))}" if env_cards() else ""
    raise InputError(f"unknown environment {name!r}; expected one of {', '.join(names)}{example}")


def make_env(env: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make`` by short name or id, with argument errors reported as InputError."""
    env_id = resolve_env_id(env)
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except TypeError as exc:  # an unknown keyword argument
        # gymnasium re-raises a creator's TypeError with where it came from appended: not needed here.
        message = str(exc).split(" was raised from the environment creator")[0]
        if isinstance(exc, InputError):  # the environment's own message (it names what is accepted)
            raise type(exc)(message) from None
        raise InputError(f"environment {env_id}: {message}") from None
