"""Runs in a fresh worker process for tests/test_any_policy.py: imports gymnasium only, never cryobench."""

from __future__ import annotations

import gymnasium as gym


def make_and_close(env_id: str) -> str:
    """'ok', or the error gym.make raised (type and message)."""
    try:
        gym.make(env_id).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"
