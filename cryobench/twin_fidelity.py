"""How faithful a twin is to the measured Aldolase grid (issue 12): the statistics of
:func:`cryobench.stats.twin_statistics` on the measured data, their bootstrap intervals over the
measured grid's patches (the tolerances) and a twin's mean over worlds 0-7.

``python -m cryobench.twin_fidelity [DATA]`` prints the table of datasets/README.md ("Twin
fidelity"): with the measured folder (default ``../shared/datasets/cryorl-aldolase``) it
recomputes the measured column and the intervals; without it, it prints the committed ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cryobench.cards import load_dataset_card
from cryobench.regressors import predict
from cryobench.stats import bootstrap_intervals, twin_statistics
from cryobench.twin import generate_dataset

#: Worlds a twin's statistics are averaged over (16 tiles are few: one world varies a lot).
WORLDS = tuple(range(8))
#: Bootstrap draws and seed behind :data:`INTERVALS` (``bootstrap_intervals(grid, predictions)``).
RESAMPLES, BOOTSTRAP_SEED = 500, 0

#: The measured Aldolase grid (both splits, 3538 holes; good = CTFMaxRes < 6 Å; the regressor is
#: the paper's ResNet-50, its prediction files). Recomputed by tests/test_twins.py from the data.
MEASURED: dict[str, float] = {
    "log_ctf_r_one_pitch": 0.482,
    "log_ctf_r_four_pitches": 0.228,
    "log_ctf_r_other_square_same_tile": 0.008,
    "good_r_one_pitch": 0.523,
    "good_share_tile": 0.197,
    "good_share_square": 0.057,
    "good_share_patch": 0.165,
    "good_share_within_patch": 0.581,
    "holes_per_square_min": 29.0,
    "holes_per_square_median": 145.0,
    "holes_per_square_max": 260.0,
    "patches_per_square_min": 2.0,
    "patches_per_square_max": 13.0,
    "error_patch_share": 0.145,
}

#: 95% percentile-bootstrap intervals of :data:`MEASURED` over the measured grid's patches
#: (500 draws, seed 0): a twin's mean over :data:`WORLDS` must lie inside.
INTERVALS: dict[str, tuple[float, float]] = {
    "log_ctf_r_one_pitch": (0.435, 0.521),
    "log_ctf_r_four_pitches": (0.153, 0.299),
    "log_ctf_r_other_square_same_tile": (-0.067, 0.078),
    "good_r_one_pitch": (0.480, 0.564),
    "good_share_tile": (0.159, 0.265),
    "good_share_square": (0.034, 0.092),
    "good_share_patch": (0.098, 0.187),
    "good_share_within_patch": (0.538, 0.631),
    "holes_per_square_min": (5.0, 57.0),
    "holes_per_square_median": (113.0, 154.0),
    "holes_per_square_max": (247.0, 425.675),
    "patches_per_square_min": (1.0, 3.0),
    "patches_per_square_max": (12.0, 20.0),
    "error_patch_share": (0.106, 0.185),
}

LABELS = {
    "log_ctf_r_one_pitch": "log-CTF r, same patch, 1 pitch",
    "log_ctf_r_four_pitches": "log-CTF r, same patch, >= 4 pitches",
    "log_ctf_r_other_square_same_tile": "log-CTF r, other square of the same tile",
    "good_r_one_pitch": "good-indicator r, same patch, 1 pitch",
    "good_share_tile": "good variance share, tile",
    "good_share_square": "good variance share, square",
    "good_share_patch": "good variance share, patch",
    "good_share_within_patch": "good variance share, within patch",
    "holes_per_square_min": "holes per square, min",
    "holes_per_square_median": "holes per square, median",
    "holes_per_square_max": "holes per square, max",
    "patches_per_square_min": "patches per square, min",
    "patches_per_square_max": "patches per square, max",
    "error_patch_share": "regressor log-error share within a patch",
}


def measured_statistics(folder: str | Path) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The measured grid's statistics and their bootstrap intervals, from a CryoRL folder."""
    from cryobench.cryorl_format import load_cryorl

    dataset = load_cryorl(folder)
    stats = twin_statistics(dataset.grid, dataset.measured_predictions)
    intervals = bootstrap_intervals(dataset.grid, dataset.measured_predictions, RESAMPLES, seed=BOOTSTRAP_SEED)
    return stats, intervals


def twin_mean_statistics(card_name: str, worlds: tuple[int, ...] = WORLDS) -> dict[str, float]:
    """A twin's statistics averaged over ``worlds`` (each with its default regressor at noise 1)."""
    card = load_dataset_card(card_name)
    rows = []
    for world in worlds:
        dataset = generate_dataset(card, world)
        predicted = predict(dataset.grid, dataset.card["default_regressor"], 1.0, world)
        rows.append(twin_statistics(dataset.grid, predicted))
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def outside(stats: dict[str, float], intervals: dict[str, tuple[float, float]] = INTERVALS) -> list[str]:
    """The statistics that fall outside their intervals."""
    return [key for key, (low, high) in intervals.items() if not low <= stats[key] <= high]


def table(measured: dict[str, float], intervals: dict[str, tuple[float, float]], twins: dict[str, dict]) -> str:
    """The markdown table: one row per statistic, one column per twin (an asterisk: outside)."""
    head = "| statistic | measured | " + " | ".join(twins) + " | 95% interval |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, label in LABELS.items():
        low, high = intervals[key]
        cells = []
        for stats in twins.values():
            mark = "" if low <= stats[key] <= high else " ✗"
            cells.append(f"{stats[key]:.3g}{mark}")
        lines.append(f"| {label} | {measured[key]:.3g} | " + " | ".join(cells) + f" | {low:.3g} to {high:.3g} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m cryobench.twin_fidelity [DATA]``: print the table; bad input is one line, exit 2."""
    import argparse

    from cryobench.errors import ExitCode, InputError

    parser = argparse.ArgumentParser(prog="python -m cryobench.twin_fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data",
        nargs="?",
        default="../shared/datasets/cryorl-aldolase",
        help="the measured Aldolase folder (CryoRL format); absent: the committed measured values and intervals",
    )
    folder = Path(parser.parse_args(argv).data)
    try:
        if folder.exists():
            measured, intervals = measured_statistics(folder)
        else:
            print(f"({folder} not found: the committed measured values and intervals)")
            measured, intervals = MEASURED, INTERVALS
    except InputError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    twins = {"twin v0": twin_mean_statistics("aldolase"), "twin v1": twin_mean_statistics("aldolase-v1")}
    print(table(measured, intervals, twins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
