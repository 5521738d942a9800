"""Dataset cards: the YAML files in ``datasets/`` that define each simulated twin.

A card names the dataset and gives every parameter of its twin as a mapping
``{value: ..., source: paper | measured | assumption, note: ...}``, so each number says where
it comes from: ``paper`` (the cryoRL paper's text), ``measured`` (statistics of the measured
Aldolase data, facts §5) or ``assumption`` (chosen by cryobench where the paper is silent).
See ``datasets/README.md`` for the fields and ``cryobench/twin.py`` for what they drive.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from cryobench.errors import InputError
from cryobench.resources import card_dir

SOURCES = ("paper", "measured", "assumption")
KINDS = ("simulated-twin", "synthetic")

# section -> parameter -> expected type of its value (a tuple of types for alternatives)
_NUMBER = (int, float)
SCHEMA: dict[str, dict[str, Any]] = {
    "layout": {
        "tiles": int,
        "squares": int,
        "holes": int,
        "patches_per_square": dict,
        "holes_per_patch": dict,
        "pitch_um": _NUMBER,
        "test_fraction": _NUMBER,
    },
    "quality": {
        "ctf_quantiles": list,
        "failed_fraction": _NUMBER,
        "variance": dict,
        "field_length_pitches": _NUMBER,
    },
    "regressor": {"model": str, "parameters": dict},
}
_TOP = {"name": str, "kind": str, "title": str, "description": str, "world_seed": int, "layout_seed": int}
_OPTIONAL_TOP = {"paper": str, "notes": str, "generator": int}
#: The twin generators (cryobench.twin): 0 for the v0 cards (the default), 1 since issue 12.
GENERATORS = (0, 1)
#: Parameters only generator 1 reads: section -> parameter -> (type, required with generator 1).
GENERATOR_1_SCHEMA: dict[str, dict[str, tuple[Any, bool]]] = {
    "layout": {"holes_per_square": (dict, True)},
    "quality": {"ctf_per_split": (bool, False), "within_class_correlation": (_NUMBER, False)},
}
_SIZE_KEYS = ("min", "median", "max")
#: The largest grid a card may ask for (the synthetic benchmark grid has 100,000 holes).
MAX_HOLES = 1_000_000
#: A twin's patch is a block of 5 x 5 lattice sites (twin.PATCH_SIDE; tested equal).
MAX_HOLES_PER_PATCH = 25
_VARIANCE_KEYS = ("tile", "square", "patch", "field", "hole")


#: A shipped card's name (a path to another card must end in .yaml).
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def show_value(value: Any) -> str:
    """A value echoed in an error message: cut short, nested structures (even YAML alias bombs) bounded."""
    bounded = reprlib.Repr()
    bounded.maxstring, bounded.maxother, bounded.maxlevel, bounded.maxlist, bounded.maxdict = 60, 60, 2, 4, 4
    text = bounded.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def list_dataset_cards() -> list[str]:
    """Names of the dataset cards shipped with cryobench."""
    return sorted(p.stem for p in card_dir("datasets").glob("*.yaml"))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for names the system refuses (too long, a NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def card_path(name_or_path: str | Path) -> Path:
    """The card file for a dataset name or an explicit ``.yaml`` path."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")):
        path = Path(text).expanduser()
        if not _is_file(path):
            raise InputError(f"argument 'dataset': dataset card {show_value(text)} not found")
        return path
    path = card_dir("datasets") / f"{text}.yaml"
    if not _NAME.fullmatch(text) or not _is_file(path):
        known = ", ".join(list_dataset_cards())
        raise InputError(
            f"argument 'dataset': unknown dataset {show_value(text)}; expected one of {known} or a card path (.yaml)"
        )
    return path


def _type_name(kind: Any) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def _is(value: Any, kind: Any) -> bool:
    """``isinstance``, except that a bool is no number (YAML's ``true`` is not 1)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _line_of(text: str, key: str) -> str:
    """' (line N)' of the first line that defines ``key`` in the card, for error messages."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(f"{key}:"):
            return f", line {number}"
    return ""


def validate_card(card: Any, path: Path, text: str = "") -> dict[str, Any]:
    """Check a card's fields and types; errors name the file, the field (and line) and what was expected."""
    if not isinstance(card, dict):
        raise InputError(f"{path}: a dataset card must be a mapping of fields")
    for key, kind in _TOP.items():
        if key not in card:
            raise InputError(f"{path}: missing field {key!r} (expected a {_type_name(kind)})")
        if not _is(card[key], kind):
            raise InputError(
                f"{path}{_line_of(text, key)}: field {key!r} must be a {_type_name(kind)}, got {show_value(card[key])}"
            )
    for key, kind in _OPTIONAL_TOP.items():
        if key in card and not _is(card[key], kind):
            raise InputError(f"{path}{_line_of(text, key)}: field {key!r} must be a {_type_name(kind)}")
    if card["kind"] not in KINDS:
        raise InputError(
            f"{path}{_line_of(text, 'kind')}: field 'kind' must be one of {KINDS}, got {show_value(card['kind'])}"
        )
    unknown = set(card) - set(_TOP) - set(_OPTIONAL_TOP) - set(SCHEMA)
    if unknown:
        raise InputError(f"{path}: unknown field(s) {sorted(map(str, unknown))}")
    if card.get("generator", 0) not in GENERATORS:
        raise InputError(
            f"{path}{_line_of(text, 'generator')}: field 'generator' must be one of {GENERATORS}, "
            f"got {show_value(card['generator'])}"
        )
    version_1 = card.get("generator", 0) == 1
    for section, base in SCHEMA.items():
        block = card.get(section)
        if not isinstance(block, dict):
            raise InputError(f"{path}{_line_of(text, section)}: missing section {section!r} (a mapping)")
        newer = {k: kind for k, (kind, _) in GENERATOR_1_SCHEMA.get(section, {}).items()}
        params = {**base, **newer} if version_1 else base
        extra = set(block) - set(params)
        if extra:
            newer_only = " (generator 1 only)" if extra & set(newer) else ""
            raise InputError(
                f"{path}: unknown field(s) {sorted(map(str, extra))} in {section!r}{newer_only}; "
                f"expected {sorted(params)}"
            )
        for key, kind in params.items():
            where = f"{path}{_line_of(text, key)}: {section}.{key}"
            entry = block.get(key)
            if entry is None and key in newer and not GENERATOR_1_SCHEMA[section][key][1]:
                continue  # optional with generator 1
            if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
                raise InputError(f"{where} must be a mapping with 'value' and 'source' ({'/'.join(SOURCES)})")
            extra_keys = set(entry) - {"value", "source", "note"}
            if extra_keys:
                raise InputError(
                    f"{where}: unknown key(s) {sorted(map(str, extra_keys))}; expected value, source, note"
                )
            if not isinstance(entry.get("note", ""), str):
                raise InputError(f"{where}: note must be a text, got a {type(entry['note']).__name__}")
            if entry["source"] not in SOURCES:
                raise InputError(f"{where}: source must be one of {SOURCES}, got {show_value(entry['source'])}")
            if not _is(entry["value"], kind):
                raise InputError(f"{where}: value must be a {_type_name(kind)}, got {show_value(entry['value'])}")
    _check_values(card, path)
    _check_regressor(card, path, text)
    return card


def _one_hole() -> Any:
    """A grid of one hole, to try a card's regressor on (every check of a spec, no copy of the ranges)."""
    import numpy as np

    from cryobench.grid import Grid

    ids = np.zeros(1, dtype=np.int32)
    return Grid(
        name="card check",
        tile=ids,
        square=ids,
        patch=ids,
        x_um=np.zeros(1),
        y_um=np.zeros(1),
        ctf=np.array([5.0]),
        confidence=np.array([np.nan]),
        failed=np.zeros(1, dtype=bool),
        hole_names=("hole",),
        square_xy_um=np.zeros((1, 2)),
        pitch_um=2.5,
    )


def _check_regressor(card: dict, path: Path, text: str) -> None:
    """The regressor section is a model a twin can use with its own parameters, in their ranges."""
    from cryobench.regressors import predict

    where = f"{path}{_line_of(text, 'regressor')}: regressor"
    model, parameters = card["regressor"]["model"]["value"], card["regressor"]["parameters"]["value"]
    for key, number in parameters.items():
        if key == "model" or not isinstance(key, str) or not _is(number, _NUMBER) or not math.isfinite(number):
            raise InputError(
                f"{where}.parameters: expected parameter names with finite numbers, "
                f"got {show_value(key)}: {show_value(number)}"
            )
    if model == "measured":
        raise InputError(f"{where}.model: 'measured' reads a data folder's prediction files; a twin names a model")
    try:
        predict(_one_hole(), {"model": model, **parameters})
    except InputError as exc:
        reason = str(exc).removeprefix("argument 'regressor': ")
        raise InputError(f"{where}: {reason}") from None


def _check_values(card: dict, path: Path) -> None:
    layout, quality = card["layout"], card["quality"]
    # Shapes first (a YAML alias bomb or a wrong shape fails fast), then finite numbers, then ranges.
    size_keys = ("patches_per_square", "holes_per_patch") + (
        ("holes_per_square",) if "holes_per_square" in layout else ()
    )
    for key in size_keys:
        sizes = layout[key]["value"]
        if set(sizes) != set(_SIZE_KEYS) or not all(_is(sizes[k], _NUMBER) for k in _SIZE_KEYS):
            raise InputError(f"{path}: layout.{key} must give numbers min, median, max; got {show_value(sizes)}")
    knots = quality["ctf_quantiles"]["value"]
    ok = all(isinstance(k, list) and len(k) == 2 and all(_is(x, _NUMBER) for x in k) for k in knots)
    if not ok or len(knots) < 2:
        raise InputError(f"{path}: quality.ctf_quantiles must be a list of [cumulative fraction, CTFMaxRes Å] pairs")
    variance = quality["variance"]["value"]
    if set(variance) != set(_VARIANCE_KEYS) or not all(_is(variance[k], _NUMBER) for k in variance):
        raise InputError(f"{path}: quality.variance must give numbers for {', '.join(_VARIANCE_KEYS)}")
    for section in ("layout", "quality"):
        for key, entry in card[section].items():
            value = entry["value"]
            if key == "ctf_quantiles":
                numbers = [x for pair in value for x in pair]
            else:
                numbers = list(value.values()) if isinstance(value, dict) else [value]
            if not all(math.isfinite(x) for x in numbers):
                raise InputError(f"{path}: {section}.{key} must hold finite numbers, got {show_value(value)}")
    for key in ("tiles", "squares", "holes"):
        if not 1 <= layout[key]["value"] <= MAX_HOLES:
            raise InputError(f"{path}: layout.{key} must be from 1 to {MAX_HOLES:,}, got {layout[key]['value']}")
    if layout["tiles"]["value"] < 2:
        raise InputError(f"{path}: layout.tiles must be at least 2 (the train and test splits are disjoint tiles)")
    for section, key in (("layout", "pitch_um"), ("quality", "field_length_pitches")):
        if not card[section][key]["value"] > 0:
            raise InputError(f"{path}: {section}.{key} must be positive, got {card[section][key]['value']}")
    if layout["squares"]["value"] < layout["tiles"]["value"]:
        raise InputError(f"{path}: layout.squares must be at least layout.tiles (every tile has a square)")
    for key in size_keys:
        sizes = layout[key]["value"]
        if not 1 <= sizes["min"] <= sizes["median"] <= sizes["max"] <= MAX_HOLES:
            raise InputError(
                f"{path}: layout.{key} needs 1 <= min <= median <= max <= {MAX_HOLES:,}; got {show_value(sizes)}"
            )
    pps, hpp = layout["patches_per_square"]["value"], layout["holes_per_patch"]["value"]
    if hpp["max"] > MAX_HOLES_PER_PATCH:
        raise InputError(
            f"{path}: layout.holes_per_patch max must be at most {MAX_HOLES_PER_PATCH} (a twin's patch is "
            f"5 x 5 lattice sites), got {hpp['max']}"
        )
    squares, holes = layout["squares"]["value"], layout["holes"]["value"]
    fewest, most = squares * pps["min"] * hpp["min"], squares * pps["max"] * hpp["max"]
    if not fewest <= holes <= most or pps["max"] * hpp["min"] > holes:
        raise InputError(
            f"{path}: layout.holes is {holes}, but {squares} squares of {pps['min']}-{pps['max']} patches of "
            f"{hpp['min']}-{hpp['max']} holes hold {fewest:g} to {most:g} (one square up to "
            f"{pps['max'] * hpp['min']:g}); expected sizes that fit"
        )
    if "holes_per_square" in layout:
        sizes, squares, holes = (
            layout["holes_per_square"]["value"],
            layout["squares"]["value"],
            layout["holes"]["value"],
        )
        # Generator 1 puts one square at the min and one at the max, the rest in between.
        rest = holes - (sizes["min"] + sizes["max"] if squares >= 3 else 0)
        others = squares - 2 if squares >= 3 else squares
        if not others * sizes["min"] <= rest <= others * sizes["max"]:
            raise InputError(
                f"{path}: layout.holes_per_square {show_value(sizes)} cannot give {holes} holes in {squares} squares"
            )
    if not 0.0 < layout["test_fraction"]["value"] < 1.0:
        raise InputError(f"{path}: layout.test_fraction must be between 0 and 1")
    fractions, ctfs = [k[0] for k in knots], [k[1] for k in knots]
    if fractions[0] != 0 or fractions[-1] != 1 or any(b <= a for a, b in zip(fractions, fractions[1:], strict=False)):
        raise InputError(f"{path}: quality.ctf_quantiles fractions must rise strictly from 0 to 1")
    if ctfs[0] <= 0 or any(b < a for a, b in zip(ctfs, ctfs[1:], strict=False)):
        raise InputError(f"{path}: quality.ctf_quantiles CTFMaxRes values must be positive and non-decreasing")
    if not all(variance[k] >= 0 for k in variance):
        raise InputError(f"{path}: quality.variance must give non-negative numbers for {', '.join(_VARIANCE_KEYS)}")
    link = quality.get("within_class_correlation", {"value": 0.0})["value"]
    if not -1.0 <= link <= 1.0:
        raise InputError(f"{path}: quality.within_class_correlation must be in [-1, 1], got {link}")
    if not 0.0 <= quality["failed_fraction"]["value"] < 0.5:
        raise InputError(f"{path}: quality.failed_fraction must be in [0, 0.5)")


MAX_CARD_BYTES = 1 * 2**20


def read_card_text(path: Path) -> str:
    """The text of a card file; an unreadable or non-UTF-8 file is an InputError naming it."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the card: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_CARD_BYTES:
        raise InputError(f"{path}: larger than {MAX_CARD_BYTES // 2**20} MB; expected a YAML dataset card")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); expected a YAML card"
        ) from None


# Keyed by the card's text, not its path or time: an edited card is parsed again.
@functools.lru_cache(maxsize=32)
def _parse(path: str, text: str) -> dict[str, Any]:
    file = Path(path)
    try:
        card = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(file, exc) from None
    return validate_card(card, file, text)


def yaml_error(path: Path, exc: yaml.YAMLError) -> InputError:
    """A YAML parse error as one line naming the file and line (PyYAML's own messages span lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        problem = f"character {exc.character!r} at position {exc.position} is not allowed"
    else:
        problem = getattr(exc, "problem", None) or str(exc)
    problem = " ".join(str(problem).split())
    return InputError(f"{path}{where}: not valid YAML ({problem if len(problem) <= 120 else problem[:117] + '...'})")


def parse_dataset_card(path: str | Path, text: str) -> dict[str, Any]:
    """A validated dataset card from its file's text (``path`` names it in errors); a copy the caller may change."""
    return copy.deepcopy(_parse(str(path), text))


def load_dataset_card(name_or_path: str | Path) -> dict[str, Any]:
    """A validated dataset card by name (``aldolase``) or path; a copy the caller may change."""
    path = card_path(name_or_path).resolve()
    return parse_dataset_card(path, read_card_text(path))


def value(card: dict[str, Any], section: str, key: str) -> Any:
    """The value of one parameter of a card."""
    return card[section][key]["value"]


def optional_value(card: dict[str, Any], section: str, key: str, default: Any) -> Any:
    """The value of a parameter a card may leave out (generator 1's optional ones), else ``default``."""
    entry = card[section].get(key)
    return default if entry is None else entry["value"]


def assumptions(card: dict[str, Any]) -> list[str]:
    """The parameters of a card that are assumptions (``section.key``)."""
    return [f"{s}.{k}" for s in SCHEMA for k, entry in card[s].items() if entry["source"] == "assumption"]
