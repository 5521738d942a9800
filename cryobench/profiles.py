"""Instrument profiles: minutes per move by hierarchy level, and the reward they imply.

A move's level is where the next hole sits relative to the current one:

=====  ==============================  ======================
level  next hole is in                 paper's minutes
=====  ==============================  ======================
0      the same patch                  1
1      another patch, same square      2
2      another square, same tile       6
3      another atlas tile              8
=====  ==============================  ======================

The reward for a good hole is ``exp(-beta * (t - t0))`` with ``t`` the move's minutes and
``t0`` the cheapest move (same patch), so it is derived from the cost table and stays
right when a profile changes the costs (the original code hard-coded the rewards).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.rules import MOVE_LEVELS

__all__ = ["MOVE_LEVELS", "PROFILES", "InstrumentProfile", "get_profile", "partial_reward_factor"]


@dataclass(frozen=True)
class InstrumentProfile:
    """Minutes per move at each level (see module docstring) and the reward's decay rate.

    Attributes:
        name: profile name.
        minutes: minutes for a move within a patch, to another patch, square, tile.
        beta: decay rate of the reward with the move's minutes (per minute).
        source: where the numbers come from.
    """

    name: str
    minutes: tuple[float, float, float, float]
    beta: float
    source: str

    def __post_init__(self) -> None:
        m = self.minutes
        where = f"argument 'profile' ({self.name!r})"
        if len(m) != 4 or any(not np.isfinite(x) or x <= 0 for x in m):
            raise InputError(f"{where}: minutes must be 4 positive numbers, got {m!r}")
        if any(b < a for a, b in zip(m, m[1:], strict=False)):
            raise InputError(f"{where}: minutes must not decrease with the move's level, got {m!r}")
        if not np.isfinite(self.beta) or self.beta < 0:
            raise InputError(f"{where}: beta must be a non-negative number, got {self.beta!r}")

    @property
    def t0(self) -> float:
        """The cheapest move's minutes: a good hole reached at this cost earns reward 1."""
        return self.minutes[0]

    def rewards(self) -> np.ndarray:
        """Reward of a good hole per move level: ``exp(-beta * (minutes - t0))``."""
        return np.exp(-self.beta * (np.asarray(self.minutes) - self.t0))

    def move_minutes(self, level: Any) -> Any:
        """Minutes of moves at ``level`` (an int or an array of levels, see :func:`move_level`)."""
        return np.asarray(self.minutes, dtype=np.float64)[level]


PROFILES: dict[str, InstrumentProfile] = {
    p.name: p
    for p in (
        InstrumentProfile("paper", (1.0, 2.0, 6.0, 8.0), 0.1, "cryoRL paper, Extended Data Table 2 (default)"),
        InstrumentProfile("arxiv", (2.0, 5.0, 10.0, 20.0), 0.185, "earlier version of the work, arXiv 2204.07543"),
        InstrumentProfile(
            "measured-aldolase",
            (1.52, 3.1, 3.1, 3.2),
            0.1,
            "median gaps between exposures in the measured Aldolase session (timestamps.csv); beta as the paper",
        ),
    )
}


def get_profile(profile: str | Mapping | InstrumentProfile) -> InstrumentProfile:
    """A profile by name (``paper``, ``arxiv``, ``measured-aldolase``) or from a mapping.

    A mapping needs ``minutes`` (4 numbers) and may give ``beta`` (default 0.1) and ``name``.
    """
    if isinstance(profile, InstrumentProfile):
        return profile
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise InputError(f"argument 'profile': unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
        return PROFILES[profile]
    if isinstance(profile, Mapping):
        unknown = set(profile) - {"name", "minutes", "beta", "source"}
        if unknown or "minutes" not in profile:
            raise InputError(
                "argument 'profile': a custom profile is a mapping with 'minutes' (4 numbers for a move within a "
                f"patch, to another patch, square, tile) and optional 'beta', 'name'; got keys {sorted(profile)}"
            )
        minutes = profile["minutes"]
        if not isinstance(minutes, Sequence) or len(minutes) != 4:
            raise InputError(f"argument 'profile': 'minutes' must be a list of 4 numbers, got {minutes!r}")
        try:
            values = tuple(float(x) for x in minutes)
            beta = float(profile.get("beta", 0.1))
        except (TypeError, ValueError) as exc:
            raise InputError(f"argument 'profile': minutes and beta must be numbers ({exc})") from None
        return InstrumentProfile(str(profile.get("name", "custom")), values, beta, str(profile.get("source", "user")))
    raise InputError(f"argument 'profile': expected a profile name or a mapping, got {type(profile).__name__}")


def partial_reward_factor(ctf: np.ndarray, threshold: float) -> np.ndarray:
    """The paper's partial credit for a hole above the threshold: 1 at ``T``, 0 from about ``T + 2.1`` Å."""
    return np.maximum(1.2 * np.exp(-1.7 * (np.asarray(ctf) - threshold) / 2.0) - 0.2, 0.0)
