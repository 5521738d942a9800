"""Where the user-facing cards live: a checkout's top-level folders or the installed wheel.

The top-level folders ``envs/``, ``agents/``, ``datasets/`` and ``leaderboards/`` hold
YAML cards and results, not code. A wheel carries copies of them inside the package
under ``cryobench/_cards/`` (see ``pyproject.toml``); a checkout or an editable
install reads them from the repository root.
"""

from __future__ import annotations

from pathlib import Path

CARD_KINDS = ("envs", "agents", "datasets", "leaderboards")

_PACKAGE_DIR = Path(__file__).resolve().parent


def card_dir(kind: str) -> Path:
    """The folder holding the cards of one kind (``"datasets"``, ``"agents"``, ...)."""
    if kind not in CARD_KINDS:
        raise ValueError(f"unknown card kind {kind!r}; expected one of {', '.join(CARD_KINDS)}")
    bundled = _PACKAGE_DIR / "_cards" / kind
    if bundled.is_dir():
        return bundled
    checkout = _PACKAGE_DIR.parent / kind
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"cryobench cannot find its {kind!r} cards: looked in {bundled} (installed wheel) "
        f"and {checkout} (checkout). Reinstall cryobench."
    )


def card_source() -> str:
    """``"wheel"`` when cards come from the installed package, else ``"checkout"``."""
    return "wheel" if (_PACKAGE_DIR / "_cards").is_dir() else "checkout"
