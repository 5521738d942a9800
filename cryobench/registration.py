"""Gymnasium registration of cryobench's environments, and their short names for the CLI."""

from __future__ import annotations

import gymnasium as gym

ENTRY_POINT = "cryobench.env:CryoEMSessionEnv"

#: Environment id -> the keyword arguments that define it.
ENV_IDS: dict[str, dict] = {
    "cryobench/Aldolase-v0": {"dataset": "aldolase"},
    "cryobench/Apoferritin-v0": {"dataset": "apoferritin"},
    "cryobench/RNAPII-v0": {"dataset": "rnapii"},
    "cryobench/AldolaseAu-v0": {"dataset": "aldolaseau"},
    "cryobench/CryoRL-v0": {},
}

#: Short names used by ``cryobench run --env``.
SHORT_NAMES: dict[str, str] = {
    "aldolase": "cryobench/Aldolase-v0",
    "apoferritin": "cryobench/Apoferritin-v0",
    "rnapii": "cryobench/RNAPII-v0",
    "aldolaseau": "cryobench/AldolaseAu-v0",
    "cryorl": "cryobench/CryoRL-v0",
}


def register_envs() -> None:
    """Register every cryobench environment (idempotent)."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=dict(kwargs))


def resolve_env_id(name: str) -> str:
    """A full environment id from a short name (``aldolaseau``) or an id."""
    from cryobench.errors import InputError

    if name in ENV_IDS:
        return name
    key = name.lower()
    if key in SHORT_NAMES:
        return SHORT_NAMES[key]
    raise InputError(f"unknown environment {name!r}; expected one of {', '.join(SHORT_NAMES)} or {', '.join(ENV_IDS)}")
