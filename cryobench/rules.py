"""The session's rules that hold whatever the state: move levels, feedback modes, the paper's defaults.

One home for each: the simulator, the features, the agents' planning tables and the CLI all
call these, so an agent can never plan with a cost rule the simulator no longer uses.

Vocabulary: a *move level* (0-3, :data:`MOVE_LEVELS`) says how far a move goes in the grid's
hierarchy; the hierarchy's own levels (patch, square, tile) are called *hierarchy levels*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryobench.errors import InputError

MOVE_LEVELS = ("patch", "square", "tile", "grid")

#: The paper's rules: a hole is good when its CTFMaxRes is below this (Å) ...
PAPER_THRESHOLD_ANGSTROM = 6.0
#: ... and a session lasts this long (minutes).
PAPER_SESSION_MINUTES = 480.0


def move_level(same_tile: Any, same_square: Any, same_patch: Any) -> Any:
    """The level of a move from which groups its two holes share: the one rule every cost comes from.

    0 same patch, 1 another patch of the same square, 2 another square of the same tile,
    3 another tile (patches nest in squares, squares in tiles, so the shared groups count the
    level). Elementwise on numpy bool arrays of any broadcastable shapes (int8 result), or on
    single bools (an int).
    """
    if isinstance(same_tile, (bool, np.bool_)):  # one move (the simulator's step): plain ints are 4x faster
        return 3 - int(same_tile) - int(same_square) - int(same_patch)
    shared = np.add(np.add(same_tile, same_square, dtype=np.int8), same_patch, dtype=np.int8)
    return 3 - shared


#: The inverse of :func:`move_level`: per level (rows), whether the holes share their tile,
#: square and patch (columns), e.g. for the "same tile / square / patch" features.
SHARED_GROUPS_BY_LEVEL = np.array([[True, True, True], [True, True, False], [True, False, False], [False] * 3])
SHARED_GROUPS_BY_LEVEL.flags.writeable = False


@dataclass(frozen=True)
class Feedback:
    """When exposed holes' true CTFMaxRes become visible: ``inspection``, ``queue:K`` or ``none``."""

    mode: str
    batch: int = 1

    @classmethod
    def parse(cls, value: str | Feedback) -> Feedback:
        if isinstance(value, Feedback):
            return value
        if not isinstance(value, str):
            raise InputError(f"argument 'feedback': expected 'inspection', 'queue:K' or 'none', got {value!r}")
        if value in ("inspection", "none"):
            return cls(value, 1)
        queue = re.fullmatch(r"queue:([1-9][0-9]{0,8})", value)  # digits only: no sign, space or underscore
        if queue:
            return cls("queue", int(queue.group(1)))
        raise InputError(
            f"argument 'feedback': expected 'inspection', 'queue:K' (K a positive integer) or 'none', got {value!r}"
        )

    def __str__(self) -> str:
        return f"queue:{self.batch}" if self.mode == "queue" else self.mode

    @property
    def reveals(self) -> bool:
        """Whether exposed holes' true CTFMaxRes ever become visible (not ``none``)."""
        return self.mode != "none"


def hole_index(action: Any) -> int | None:
    """The hole an action names, or None when it is not an integer index.

    An action is a Python int, a numpy integer scalar or a 0-d integer array (what SB3's
    ``predict`` returns), and nothing else: not a bool, a float (12.7 is not hole 12), a string
    ("5" is not hole 5), None or a larger array. The range is the caller's to check.
    """
    if isinstance(action, bool | np.bool_):
        return None
    if isinstance(action, int | np.integer):
        return int(action)
    if isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu":
        return int(action[()])
    return None
