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

A level's minutes are everything one hole action costs: the move *and* the hole's exposures.
A profile with ``exposures_per_hole`` > 1 (beam-image-shift collection: several movies per
hole, seconds each) folds them into its minutes, so the simulator's rule stays one function
(``simulator.expose``) and a hole action still means "collect this hole". All exposures of a
hole share the hole's quality: a good hole gives ``exposures_per_hole`` good movies.

Staged acquisition (``acquisition="staged"``) also needs ``square_minutes``: imaging one
square at medium magnification and finding its holes. Cassettes need
``grid_exchange_minutes``: unloading one grid and loading the next.

Every number of a profile carries its source in ``sources``: ``paper``, ``measured`` or
``assumption``, then what it is (as the twins' cards do).
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cryobench.errors import InputError
from cryobench.rules import MOVE_LEVELS

__all__ = ["MOVE_LEVELS", "PROFILES", "InstrumentProfile", "fit_profile", "get_profile", "partial_reward_factor"]

#: The kinds of source a profile's number may have.
SOURCE_KINDS = ("paper", "measured", "assumption")
#: The numbers of a profile that carry a source (``minutes`` for all four levels at once, or per level).
PROFILE_NUMBERS = (
    "minutes",
    *(f"minutes_{level}" for level in MOVE_LEVELS),
    "beta",
    "square_minutes",
    "grid_exchange_minutes",
    "exposures_per_hole",
)


#: The longest move a profile may state (minutes: a year), so every feature stays finite in float32.
MAX_MINUTES = 525_600.0


@dataclass(frozen=True)
class InstrumentProfile:
    """Minutes per move at each level (see module docstring) and the reward's decay rate.

    Attributes:
        name: profile name.
        minutes: minutes for a move within a patch, to another patch, square, tile.
        beta: decay rate of the reward with the move's minutes (per minute).
        source: where the numbers come from, in one line.
        square_minutes: imaging one square and finding its holes (staged acquisition); None: unknown.
        grid_exchange_minutes: exchanging the grid on the stage (cassettes); None: unknown.
        exposures_per_hole: movies collected per hole action (all share the hole's quality).
        sources: per number (``PROFILE_NUMBERS``), ``"paper | measured | assumption: what"``.
    """

    name: str
    minutes: tuple[float, float, float, float]
    beta: float
    source: str
    square_minutes: float | None = None
    grid_exchange_minutes: float | None = None
    exposures_per_hole: int = 1
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        m = self.minutes
        where = f"argument 'profile' ({self.name!r})"
        # features divide minutes in float32: beyond a year of minutes they would overflow to inf/NaN
        if len(m) != 4 or any(not np.isfinite(x) or x <= 0 or x > MAX_MINUTES for x in m):
            raise InputError(f"{where}: minutes must be 4 positive numbers up to {MAX_MINUTES:g}, got {m!r}")
        if any(b < a for a, b in zip(m, m[1:], strict=False)):
            raise InputError(f"{where}: minutes must not decrease with the move's level, got {m!r}")
        if not np.isfinite(self.beta) or self.beta < 0:
            raise InputError(f"{where}: beta must be a non-negative number, got {self.beta!r}")
        for name in ("square_minutes", "grid_exchange_minutes"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value <= 0):
                raise InputError(f"{where}: {name} must be a positive number of minutes or absent, got {value!r}")
        if isinstance(self.exposures_per_hole, bool) or not isinstance(self.exposures_per_hole, int | np.integer):
            raise InputError(f"{where}: exposures_per_hole must be a positive integer, got {self.exposures_per_hole!r}")
        if self.exposures_per_hole < 1:
            raise InputError(f"{where}: exposures_per_hole must be a positive integer, got {self.exposures_per_hole!r}")
        for number, text in self.sources:
            if number not in PROFILE_NUMBERS:
                raise InputError(f"{where}: sources name {number!r}; expected some of {', '.join(PROFILE_NUMBERS)}")
            if text.split(":", 1)[0].strip() not in SOURCE_KINDS:
                raise InputError(
                    f"{where}: the source of {number!r} must start with one of {', '.join(SOURCE_KINDS)}, got {text!r}"
                )

    def source_of(self, number: str) -> str | None:
        """Where ``number`` (one of ``PROFILE_NUMBERS``) comes from, or None when not stated."""
        return dict(self.sources).get(number)

    def require(self, number: str, needed_for: str) -> float:
        """The value of ``square_minutes`` or ``grid_exchange_minutes``, or a one-line error saying what needs it."""
        value = getattr(self, number)
        if value is None:
            raise InputError(
                f"argument 'profile' ({self.name!r}): {needed_for} needs the profile's {number!r}, which it does not "
                f"give; use a profile that has it ({', '.join(n for n, p in PROFILES.items() if getattr(p, number))}) "
                f"or add it to a custom profile"
            )
        return float(value)

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


#: Imaging one square in the measured Aldolase session (Leginon, Talos Arctica): the median time
#: from a square's first image to its first patch (hole-magnification) image, over its 34 squares
#: (``fit_profile`` on its timestamps.csv: 4.33 min).
ALDOLASE_SQUARE_MINUTES = 4.3
_ALDOLASE_SQUARE_SOURCE = (
    "measured: median time from a square's first image to its first patch image in the measured Aldolase "
    "session (timestamps.csv, `cryobench datasets fit-profile`)"
)
#: Beam-image-shift collection (EPU): seconds per movie and movies per hole in the public EPU sessions
#: of jruickoldt/CryoCrane (MIT), sessions/617-2.csv: movies 12 s apart within a hole, 3-5 per hole.
BIS_SECONDS_PER_MOVIE = 12.0
BIS_EXPOSURES_PER_HOLE = 4
#: Exchanging the grid on the stage (cassettes): autoloader exchange, eucentric height, the new grid's
#: atlas reused. An assumption: no public session in the project's sources times it.
GRID_EXCHANGE_MINUTES = 15.0
_GRID_EXCHANGE_SOURCE = "assumption: autoloader exchange, eucentric height and alignments; the atlas is reused"
_BIS_MOVIES = BIS_EXPOSURES_PER_HOLE * BIS_SECONDS_PER_MOVIE / 60.0  # 0.8 min of movies per hole
#: The move part of each level (before the hole's movies): image shift to another hole of the same
#: stage position; a stage move to another patch (stage position) with its autofocus; another square;
#: another tile.
BIS_MOVE_MINUTES = (0.1, 1.0, 3.1, 3.2)

PROFILES: dict[str, InstrumentProfile] = {
    p.name: p
    for p in (
        InstrumentProfile(
            "paper",
            (1.0, 2.0, 6.0, 8.0),
            0.1,
            "cryoRL paper, Extended Data Table 2 (default)",
            square_minutes=ALDOLASE_SQUARE_MINUTES,
            grid_exchange_minutes=GRID_EXCHANGE_MINUTES,
            sources=(
                ("minutes", "paper: Extended Data Table 2, 1/2/6/8 min"),
                ("beta", "paper: reward exp(-0.1 (t - t0))"),
                ("square_minutes", _ALDOLASE_SQUARE_SOURCE),
                ("grid_exchange_minutes", _GRID_EXCHANGE_SOURCE),
            ),
        ),
        InstrumentProfile(
            "arxiv",
            (2.0, 5.0, 10.0, 20.0),
            0.185,
            "earlier version of the work, arXiv 2204.07543",
            sources=(("minutes", "paper: arXiv 2204.07543, 2/5/10/20 min"), ("beta", "paper: arXiv 2204.07543")),
        ),
        InstrumentProfile(
            "measured-aldolase",
            (1.52, 3.1, 3.1, 3.2),
            0.1,
            "median gaps between exposures in the measured Aldolase session (timestamps.csv); beta as the paper",
            square_minutes=ALDOLASE_SQUARE_MINUTES,
            grid_exchange_minutes=GRID_EXCHANGE_MINUTES,
            sources=(
                ("minutes", "measured: median gaps between exposures by move level, Aldolase timestamps.csv"),
                ("beta", "paper: as the paper's profile"),
                ("square_minutes", _ALDOLASE_SQUARE_SOURCE),
                ("grid_exchange_minutes", _GRID_EXCHANGE_SOURCE),
            ),
        ),
        InstrumentProfile(
            "bis-modern",
            tuple(round(move + _BIS_MOVIES, 3) for move in BIS_MOVE_MINUTES),
            0.1,
            "beam-image-shift collection (EPU, 2025): 4 movies of 12 s per hole; see sources per number",
            square_minutes=ALDOLASE_SQUARE_MINUTES,
            grid_exchange_minutes=GRID_EXCHANGE_MINUTES,
            exposures_per_hole=BIS_EXPOSURES_PER_HOLE,
            sources=(
                (
                    "minutes_patch",
                    "assumption: 0.1 min image shift to another hole of the same stage position (a few seconds "
                    "of settling), plus the hole's movies",
                ),
                (
                    "minutes_square",
                    "measured: 1.0 min stage move and autofocus to another patch (stage position): about 60 s "
                    "from a hole's last movie to the next position's first in CryoCrane sessions/617-2.csv; "
                    "plus the hole's movies",
                ),
                ("minutes_tile", "measured: 3.1 min to another square (Aldolase timestamps.csv), plus the movies"),
                ("minutes_grid", "measured: 3.2 min to another tile (Aldolase timestamps.csv), plus the movies"),
                ("beta", "assumption: the paper's 0.1 per minute"),
                ("square_minutes", _ALDOLASE_SQUARE_SOURCE),
                ("grid_exchange_minutes", _GRID_EXCHANGE_SOURCE),
                (
                    "exposures_per_hole",
                    "measured: 3-5 movies per hole, 12 s apart, in CryoCrane's EPU sessions (617-2.csv); 4 taken, "
                    "0.8 min per hole added to every level",
                ),
            ),
        ),
    )
}


def get_profile(profile: str | Mapping | InstrumentProfile) -> InstrumentProfile:
    """A profile by name (``paper``, ``arxiv``, ``measured-aldolase``, ``bis-modern``), from a
    mapping, or from a YAML file holding such a mapping (what ``cryobench datasets fit-profile`` writes).

    A mapping needs ``minutes`` (4 numbers) and may give ``beta`` (default 0.1), ``name``,
    ``source``, ``square_minutes``, ``grid_exchange_minutes``, ``exposures_per_hole`` and
    ``sources`` (number -> "paper | measured | assumption: what").
    """
    if isinstance(profile, InstrumentProfile):
        return profile
    if isinstance(profile, str) and profile.endswith((".yaml", ".yml")):
        return _profile_file(Path(profile))
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise InputError(
                f"argument 'profile': unknown profile {profile!r}; expected one of {', '.join(PROFILES)} "
                "or the path of a profile file (.yaml)"
            )
        return PROFILES[profile]
    if isinstance(profile, Mapping):
        unknown = set(profile) - {"name", "minutes", "beta", "source", "sources", *PROFILE_NUMBERS}
        if unknown or "minutes" not in profile:
            raise InputError(
                "argument 'profile': a custom profile is a mapping with 'minutes' (4 numbers for a move within a "
                "patch, to another patch, square, tile) and optional 'beta', 'name', 'square_minutes', "
                f"'grid_exchange_minutes', 'exposures_per_hole', 'sources'; got keys {sorted(profile)}"
            )
        minutes = profile["minutes"]
        # a list of real numbers: not a string ("1268" is not 1/2/6/8), not bools, not numeric strings
        if not isinstance(minutes, list | tuple) or len(minutes) != 4 or not all(map(_is_real, minutes)):
            raise InputError(f"argument 'profile': 'minutes' must be a list of 4 numbers, got {minutes!r}")
        for name in ("beta", "square_minutes", "grid_exchange_minutes", "exposures_per_hole"):
            if profile.get(name) is not None and not _is_real(profile[name]):
                raise InputError(f"argument 'profile': {name!r} must be a number, got {profile[name]!r}")
        sources = profile.get("sources") or {}
        if not isinstance(sources, Mapping):
            raise InputError(f"argument 'profile': 'sources' must map numbers to their sources, got {sources!r}")
        try:
            values = tuple(float(x) for x in minutes)
            beta = float(profile.get("beta", 0.1))
            optional = {
                name: None if profile.get(name) is None else float(profile[name])
                for name in ("square_minutes", "grid_exchange_minutes")
            }
        except (TypeError, ValueError) as exc:
            raise InputError(f"argument 'profile': minutes and beta must be numbers ({exc})") from None
        return InstrumentProfile(
            str(profile.get("name", "custom")),
            values,
            beta,
            str(profile.get("source", "user")),
            exposures_per_hole=profile.get("exposures_per_hole", 1),
            sources=tuple((str(k), str(v)) for k, v in sources.items()),
            **optional,
        )
    raise InputError(f"argument 'profile': expected a profile name or a mapping, got {type(profile).__name__}")


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def partial_reward_factor(ctf: np.ndarray, threshold: float) -> np.ndarray:
    """The paper's partial credit for a hole above the threshold: 1 at ``T``, 0 from about ``T + 2.1`` Å."""
    return np.maximum(1.2 * np.exp(-1.7 * (np.asarray(ctf) - threshold) / 2.0) - 0.2, 0.0)


def _profile_file(path: Path) -> InstrumentProfile:
    import yaml

    if not path.is_file():
        raise InputError(f"argument 'profile': profile file {str(path)!r} not found")
    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(mapping, Mapping):
        raise InputError(f"{path}: a profile file holds a mapping with 'minutes' (see cryobench datasets fit-profile)")
    try:
        return get_profile(mapping)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def profile_mapping(profile: InstrumentProfile) -> dict[str, Any]:
    """A profile as a plain mapping (what :func:`get_profile` reads back, e.g. from YAML)."""
    out: dict[str, Any] = {"name": profile.name, "minutes": list(profile.minutes), "beta": profile.beta}
    for name in ("square_minutes", "grid_exchange_minutes"):
        if getattr(profile, name) is not None:
            out[name] = getattr(profile, name)
    out["exposures_per_hole"] = profile.exposures_per_hole
    out["source"] = profile.source
    out["sources"] = dict(profile.sources)
    return out


# ---- fitting a profile to a session's timestamps ------------------------------------------------


@dataclass(frozen=True)
class ProfileFit:
    """A profile fitted from timestamps, with the evidence: gaps counted per move level."""

    profile: InstrumentProfile
    gaps_per_level: tuple[int, int, int, int]
    square_images: int
    session: str


def _read_timestamps(path: Path) -> list[tuple[int, str, float]]:
    """(line, name, minutes since the epoch) of every row of a ``name,YYYY-MM-DD HH:MM:SS`` file."""
    rows = []
    with path.open(newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) != 2:
                raise InputError(f"{path}, line {lineno}: expected 'name,date time', got {len(row)} fields")
            try:
                moment = _dt.datetime.fromisoformat(row[1].strip())
            except ValueError:
                raise InputError(
                    f"{path}, line {lineno}: {row[1]!r} is not a date and time (expected YYYY-MM-DD HH:MM:SS)"
                ) from None
            rows.append((lineno, row[0].strip(), moment.timestamp() / 60.0))
    return rows


def fit_profile(path: str | Path, beta: float = 0.1, name: str | None = None) -> ProfileFit:
    """Fit a profile's minutes from a session's timestamps (a CryoRL folder's ``timestamps.csv``).

    Exposures are the Leginon names of hole exposures (``..._NNNNNen``, without a derived
    suffix like ``-a``), of the session prefix with the most of them. Sorted by time, each gap
    between consecutive exposures is a move at the level the two holes' names say (same patch,
    other patch, other square, other tile); a level's minutes are the median of its gaps.
    Square imaging is the median time from a square's first image (``..._NNNNNsq``) to its first
    patch image (``..._NNNNNhl``): the square image, its re-centred versions and the targeting.
    Medians, because a session's gaps include pauses (refills, operator breaks).
    """
    from cryobench.cryorl_format import LEGINON_NAME

    path = Path(path).expanduser()
    file = path / "timestamps.csv" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"fit-profile: {str(path)!r} is neither a timestamps file nor a folder holding timestamps.csv")
    rows = _read_timestamps(file)
    exposures: dict[str, list[tuple[float, str, str, str]]] = {}
    square_started: dict[tuple[str, str], float] = {}  # (session, square) -> its first square image
    patch_started: dict[tuple[str, str], float] = {}  # (session, square) -> its first patch image
    image = re.compile(r"^(?P<prefix>.+?)_(?P<square>\d+gr_\d+sq)(?P<rest>(?:_v\d+)?(?:_\d+hl)?)$")
    for _, hole_name, minute in sorted(rows, key=lambda row: row[2]):
        match = LEGINON_NAME.match(hole_name)
        if match and hole_name.endswith("en"):
            exposures.setdefault(match["prefix"], []).append((minute, match["tile"], match["square"], match["patch"]))
            continue
        match = image.match(hole_name)
        if match:
            key = (match["prefix"], match["square"])
            if match["rest"] == "":
                square_started.setdefault(key, minute)
            elif match["rest"].endswith("hl"):
                patch_started.setdefault(key, minute)
    if not exposures:
        raise InputError(f"{file}: no hole exposures (Leginon names ending in 'en'); nothing to fit")
    session = max(exposures, key=lambda prefix: len(exposures[prefix]))
    ordered = sorted(exposures[session])
    times = np.array([row[0] for row in ordered])
    groups = np.array([row[1:] for row in ordered])
    same = groups[1:] == groups[:-1]  # tile, square, patch shared with the previous exposure
    levels = 3 - same[:, 0].astype(int) - (same[:, 0] & same[:, 1]) - (same[:, 0] & same[:, 1] & same[:, 2])
    gaps = np.diff(times)
    counts = tuple(int(np.sum(levels == level)) for level in range(4))
    missing = [MOVE_LEVELS[level] for level in range(4) if counts[level] == 0]
    if missing:
        raise InputError(f"{file}: no move at level(s) {', '.join(missing)} in session {session!r}; cannot fit them")
    minutes = tuple(round(float(np.median(gaps[levels == level])), 2) for level in range(4))
    # Medians of different levels can cross (few moves at the coarse levels): keep them non-decreasing.
    minutes = tuple(float(m) for m in np.maximum.accumulate(minutes))
    square_waits = [
        patch_started[key] - started
        for key, started in square_started.items()
        if key[0] == session and patch_started.get(key, -np.inf) >= started
    ]
    square_minutes = round(float(np.median(square_waits)), 2) if square_waits else None
    source = f"fitted by cryobench datasets fit-profile from {file.name} (session {session})"
    sources = [("minutes", f"measured: median gaps between exposures per move level, {file.name}")]
    sources.append(("beta", "assumption: the paper's 0.1 per minute" if beta == 0.1 else "assumption: given"))
    if square_minutes is not None:
        sources.append(
            ("square_minutes", f"measured: median from a square's first image to its first patch image, {file.name}")
        )
    profile = InstrumentProfile(
        name or f"fitted-{session}",
        minutes,
        float(beta),
        source,
        square_minutes=square_minutes,
        sources=tuple(sources),
    )
    return ProfileFit(profile, counts, len(square_waits), session)
