"""Turn a dataset name (a twin's card) or a CryoRL-format folder into a Dataset and a World.

This is the one place that resolves what ``gym.make`` arguments, the CLI and the
agents mean by "dataset", "split", "noise" and "regressor", so they all agree.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cryobench.errors import InputError
from cryobench.grid import Dataset
from cryobench.profiles import InstrumentProfile, get_profile
from cryobench.simulator import Feedback, World

if TYPE_CHECKING:
    from cryobench.cryorl_format import CryoRLFiles
    from cryobench.facility_table import TableFile

MAX_NOISE = 5.0


def dataset_names() -> list[str]:
    """Names of the dataset cards shipped with cryobench (simulated twins)."""
    from cryobench.cards import list_dataset_cards

    return list_dataset_cards()


# Caches keyed by content (a hash of the files' bytes), so a dataset edited on disk is read again.
@functools.lru_cache(maxsize=16)
def _parse_measured(files: CryoRLFiles) -> Dataset:
    from cryobench.cryorl_format import parse_cryorl

    return parse_cryorl(files)


@functools.lru_cache(maxsize=16)
def _parse_table(table: TableFile) -> Dataset:
    from cryobench.facility_table import parse_table

    return parse_table(table)


@functools.lru_cache(maxsize=64)
def _twin(card_path: str, card_text: str, seed: int, layout_seed: int | None) -> Dataset:
    from cryobench.cards import parse_dataset_card
    from cryobench.twin import generate_dataset

    return generate_dataset(parse_dataset_card(card_path, card_text), seed, layout_seed)


def load_dataset(
    dataset: str | None = None,
    data: str | Path | None = None,
    seed: int | None = None,
    layout_seed: int | None = None,
) -> Dataset:
    """A dataset: a twin generated from its card (``dataset=NAME`` or a card's path), ``seed``
    (default: the card's ``world_seed``) and ``layout_seed`` (default: the card's), or measured
    data (``data=PATH``): a CryoRL folder, a facility table (``.csv``/``.parquet``, see
    :mod:`cryobench.facility_table`) or a folder imported from one.

    Datasets are cached by the content of their files, so the same files give the same
    (read-only) arrays and an edited file gives a new dataset.
    """
    if data is not None:
        from cryobench.cryorl_format import is_folder, read_folder
        from cryobench.facility_table import is_table_file, is_table_folder, read_table_file

        if not isinstance(data, str | os.PathLike):
            raise InputError(f"argument 'data': expected the path of a CryoRL-format folder, got {type(data).__name__}")
        path = Path(data).expanduser()
        if is_table_file(path) or (is_folder(path) and is_table_folder(path)):
            return _parse_table(
                read_table_file(path.absolute())
            )  # not resolve(): a looping link is read_table_file's to name
        if not is_folder(path):
            shown = repr(str(data)) if len(str(data)) <= 200 else repr(str(data)[:200]) + "..."
            raise InputError(f"argument 'data': {shown} is not a folder (expected a CryoRL-format data folder)")
        return _parse_measured(read_folder(path.resolve()))
    if not isinstance(dataset, str) or not dataset:
        raise InputError(f"argument 'dataset': expected a dataset name or card path, got {dataset!r}")
    from cryobench.cards import card_path, parse_dataset_card, read_card_text

    path = card_path(dataset).resolve()
    text = read_card_text(path)
    world_seed = int(parse_dataset_card(path, text)["world_seed"]) if seed is None else int(seed)
    return _twin(str(path), text, world_seed, None if layout_seed is None else int(layout_seed))


def check_noise(noise: Any) -> float:
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not np.isfinite(noise):
        raise InputError(f"argument 'noise': expected a number between 0 and {MAX_NOISE}, got {noise!r}")
    if not 0.0 <= float(noise) <= MAX_NOISE:
        raise InputError(
            f"argument 'noise': {noise} is out of range; expected 0 (perfect predictions) to {MAX_NOISE} "
            "(1 = the dataset's default regressor)"
        )
    return float(noise)


def regressor_spec(dataset: Dataset, regressor: str | Mapping | None) -> dict:
    """The regressor spec to use: the given one (a model name or a mapping) or the dataset's default."""
    if regressor is None:
        if dataset.measured_predictions is not None:
            return {"model": "measured"}
        if not dataset.card.get("default_regressor"):
            from cryobench.regressors import MODELS

            where = dataset.grid.meta.get("source", dataset.name)
            models = ", ".join(m for m in MODELS if m != "measured")
            raise InputError(
                f"argument 'regressor': {where} has no prediction files (*_train_by_hl.txt, *_val_by_hl.txt), "
                "so there is no regressor to default to; add them or choose a model: regressor=NAME "
                f"(on the command line -e regressor=NAME), NAME one of {models}"
            )
        return dict(dataset.card["default_regressor"])
    if isinstance(regressor, str):
        return {"model": regressor}
    if isinstance(regressor, Mapping):
        return dict(regressor)
    raise InputError(f"argument 'regressor': expected a model name or a mapping, got {type(regressor).__name__}")


def build_world(
    dataset: Dataset,
    split: str = "test",
    noise: float = 1.0,
    regressor: str | Mapping | None = None,
    threshold: float = 6.0,
    duration: float = 480.0,
    profile: str | Mapping | InstrumentProfile = "paper",
    feedback: str | Feedback = "inspection",
    partial_reward: bool = False,
    prediction_seed: int = 0,
) -> World:
    """The session world for one split of a dataset with the given regressor, noise and rules."""
    from cryobench.regressors import predict

    if split not in ("train", "test", "all"):
        raise InputError(f"argument 'split': expected 'train', 'test' or 'all', got {split!r}")
    if not isinstance(partial_reward, bool):
        raise InputError(f"argument 'partial_reward': expected True or False, got {partial_reward!r}")
    for name, value in (("threshold", threshold), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
            raise InputError(f"argument '{name}': expected a positive number, got {value!r}")
    grid, measured = dataset.select_split(split)
    spec = regressor_spec(dataset, regressor)
    predicted = predict(grid, spec, noise=check_noise(noise), seed=prediction_seed, measured=measured)
    return World(
        grid=grid,
        predicted_ctf=predicted,
        profile=get_profile(profile),
        threshold=float(threshold),
        duration=float(duration),
        partial_reward=partial_reward,
        feedback=Feedback.parse(feedback),
    )
