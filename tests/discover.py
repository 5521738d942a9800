"""What the generic tests iterate: every agent, dataset card and environment card there is.

Found the way a user adds them (DEVELOPERS.md, "Recipes"): agents through the ``cryobench.agents``
entry points, datasets and environments as the YAML files of the card folders. Nothing here
lists a name by hand, so a new agent or twin is covered by the generic tests the moment it exists.
The lists are read independently of cryobench's own discovery code (``registry.list_agents``,
``cards.list_dataset_cards``, ``registration.env_cards``), which the tests compare against them.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import yaml

from cryobench.resources import card_dir

AGENT_GROUP = "cryobench.agents"
# Grids above this many holes make the generic per-dataset tests slow (seconds per world).
LARGE_GRID_HOLES = 20_000


def agent_names() -> list[str]:
    """Every agent declared in the ``cryobench.agents`` entry-point group (built-in and third-party)."""
    return sorted({ep.name for ep in entry_points(group=AGENT_GROUP)})


def _cards(kind: str) -> dict[str, dict]:
    """File stem -> parsed card, for every ``*.yaml`` of a card folder."""
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted(card_dir(kind).glob("*.yaml"))}


def dataset_cards() -> dict[str, dict]:
    """Dataset name -> its card, from ``datasets/*.yaml``."""
    return _cards("datasets")


def env_cards_on_disk() -> dict[str, dict]:
    """Environment id -> its card, from ``envs/*.yaml``."""
    return {card["id"]: card for card in _cards("envs").values()}


def dataset_params(kind: str | None = None) -> list:
    """``pytest.param`` per dataset card (optionally of one ``kind``); large grids marked slow."""
    params = []
    for name, card in dataset_cards().items():
        if kind is not None and card.get("kind") != kind:
            continue
        holes = card["layout"]["holes"]["value"]
        marks = [pytest.mark.slow] if holes > LARGE_GRID_HOLES else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params
