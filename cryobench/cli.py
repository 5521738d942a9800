"""The ``cryobench`` command line (click): a thin shell over the package's functions."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

import cryobench
from cryobench.errors import InputError


def _friendly_errors(func):
    """Show bad input as a one-line error naming what was wrong, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cryobench.__version__, prog_name="cryobench")
def main() -> None:
    """cryobench: benchmark environments and agents for planning cryo-EM data collection."""


# ---- list ---------------------------------------------------------------------------
@main.group("list")
def list_group() -> None:
    """List environments (and, later, agents)."""


@list_group.command("envs")
def list_envs() -> None:
    """The registered environments and their short names."""
    from cryobench.registration import ENV_IDS, SHORT_NAMES

    short = {v: k for k, v in SHORT_NAMES.items()}
    click.echo(f"{'short name':<12} {'environment id':<26} arguments")
    for env_id, kwargs in ENV_IDS.items():
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "data=PATH (a CryoRL-format folder)"
        click.echo(f"{short[env_id]:<12} {env_id:<26} {args}")


# ---- datasets -----------------------------------------------------------------------
@main.group("datasets")
def datasets_group() -> None:
    """Dataset cards (simulated twins) and measured CryoRL-format folders."""


@datasets_group.command("list")
@_friendly_errors
def datasets_list() -> None:
    """The dataset cards shipped with cryobench."""
    from cryobench.cards import list_dataset_cards, load_dataset_card

    click.echo(f"{'name':<16} {'kind':<16} title")
    for name in list_dataset_cards():
        card = load_dataset_card(name)
        click.echo(f"{name:<16} {card['kind']:<16} {card['title']}")
    click.echo("\nMeasured data: cryobench datasets import-cryorl PATH  (a folder in the CryoRL format)")


@datasets_group.command("show")
@click.argument("name")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="all", show_default=True)
@click.option("--noise", type=float, default=1.0, show_default=True, help="Regressor noise (0 perfect, 1 default).")
@click.option("--seed", type=int, default=None, help="World seed (default: the card's).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
def datasets_show(name: str, split: str, noise: float, seed: int | None, as_json: bool) -> None:
    """Summary of a dataset card NAME (or a CryoRL folder path): counts, CTF bins, regressor quality."""
    from cryobench.catalog import load_dataset

    path = Path(name)
    dataset = load_dataset(data=name) if path.is_dir() else load_dataset(dataset=name, seed=seed)
    _show_dataset(dataset, split, noise, seed, as_json)


@datasets_group.command("import-cryorl")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--noise", type=float, default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
def datasets_import(path: str, noise: float, as_json: bool) -> None:
    """Import a CryoRL-format folder PATH and summarise it (use it with --env cryorl -e data=PATH)."""
    from cryobench.catalog import load_dataset
    from cryobench.cryorl_format import summarize_import

    dataset = load_dataset(data=path)
    if not as_json:
        click.echo(json.dumps(summarize_import(dataset), indent=2, default=str))
    _show_dataset(dataset, "all", noise, None, as_json)
    if not as_json:
        click.echo(f"\nUse it: gym.make('cryobench/CryoRL-v0', data={path!r}, split='test')")


def _show_dataset(dataset, split: str, noise: float, seed: int | None, as_json: bool) -> None:
    from cryobench.catalog import check_noise, regressor_spec
    from cryobench.regressors import predict, regressor_quality
    from cryobench.stats import grid_statistics

    check_noise(noise)
    spec = regressor_spec(dataset, None)
    grid, measured = dataset.select_split(split) if split != "all" else (dataset.grid, dataset.measured_predictions)
    stats = grid_statistics(grid)
    predicted = predict(
        grid, spec, noise=noise, seed=int(grid.meta.get("seed", 0) if seed is None else seed), measured=measured
    )
    quality = regressor_quality(predicted, grid.ctf, patch=grid.patch)
    summary = {
        "dataset": dataset.name,
        "kind": dataset.card.get("kind", "measured"),
        "split": split,
        "statistics": stats,
        "regressor": {"spec": spec, "noise": noise, "quality": quality},
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=_jsonable))
        return
    click.echo(f"{dataset.name} ({summary['kind']}), split {split}")
    click.echo(json.dumps(stats, indent=2, default=_jsonable))
    click.echo(f"regressor {spec} at noise {noise}:")
    click.echo(json.dumps(quality, indent=2, default=_jsonable))


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
