"""Gymnasium registration from the environment cards in ``envs/``, and short names for the CLI."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import yaml

from cryobench.errors import InputError
from cryobench.resources import card_dir

ENTRY_POINT = "cryobench.env:CryoEMSessionEnv"
_CARD_FIELDS = {
    "id": str,
    "short_name": str,
    "title": str,
    "kwargs": dict,
    "description": str,
    "paper": str,
    "simulated": bool,
}


@functools.cache
def env_cards() -> dict[str, dict]:
    """Environment id -> its card, from ``envs/*.yaml``, validated."""
    cards = {}
    for path in sorted(card_dir("envs").glob("*.yaml")):
        card = yaml.safe_load(path.read_text())
        if not isinstance(card, dict):
            raise InputError(f"{path}: an environment card must be a mapping")
        for field, kind in _CARD_FIELDS.items():
            if not isinstance(card.get(field), kind):
                raise InputError(f"{path}: field {field!r} must be a {kind.__name__}, got {card.get(field)!r}")
        unknown = set(card) - set(_CARD_FIELDS)
        if unknown:
            raise InputError(f"{path}: unknown field(s) {sorted(unknown)}; expected {sorted(_CARD_FIELDS)}")
        cards[card["id"]] = card
    return cards


def short_names() -> dict[str, str]:
    """Short name -> environment id."""
    return {card["short_name"]: env_id for env_id, card in env_cards().items()}


def register_envs() -> None:
    """Register every cryobench environment (idempotent)."""
    for env_id, card in env_cards().items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=dict(card["kwargs"]))


def resolve_env_id(name: str) -> str:
    """A full environment id from a short name (``aldolaseau``) or an id."""
    if name in env_cards():
        return name
    names = short_names()
    if name.lower() in names:
        return names[name.lower()]
    raise InputError(
        f"unknown environment {name!r}; expected one of {', '.join(names)} or an id like {next(iter(env_cards()))}"
    )


def make_env(env: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make`` by short name or id, with argument errors reported as InputError."""
    env_id = resolve_env_id(env)
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except TypeError as exc:  # an unknown keyword argument
        raise InputError(f"environment {env_id}: {exc}") from None
