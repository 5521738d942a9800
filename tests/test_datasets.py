"""Datasets: the CryoRL importer, dataset cards, simulated twins and regressor models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cryobench.cards import SCHEMA, assumptions, list_dataset_cards, load_dataset_card
from cryobench.catalog import load_dataset
from cryobench.cli import main
from cryobench.cryorl_format import load_cryorl
from cryobench.errors import InputError
from cryobench.regressors import predict, regressor_quality
from cryobench.resources import card_dir
from cryobench.stats import grid_statistics
from cryobench.twin import generate_dataset
from tests.discover import dataset_cards, dataset_params, env_cards_on_disk


# ---- the measured data ------------------------------------------------------------------
def test_importer_reads_the_measured_aldolase_data(aldolase_data):
    dataset = load_cryorl(aldolase_data)
    grid = dataset.grid
    test, train = dataset.split == "test", dataset.split == "train"
    assert (test.sum(), train.sum()) == (2341, 1197)
    assert (len(np.unique(grid.tile[test])), len(np.unique(grid.square[test])), len(np.unique(grid.patch[test]))) == (
        10,
        16,
        112,
    )
    assert (len(np.unique(grid.tile[train])), len(np.unique(grid.square[train]))) == (6, 9)
    assert not set(grid.tile[test]) & set(grid.tile[train]), "the splits share a tile"
    assert int((grid.ctf[test] < 6).sum()) == 795 and int((grid.ctf[train] < 6).sum()) == 540
    assert grid.failed.sum() == 52 and np.all(grid.ctf[grid.failed] == 100000)
    # The prediction file is joined by name, not by row order.
    names = np.asarray(grid.hole_names)
    first_line = (aldolase_data / "Y1_2_regress_8bit_res50_val_by_hl.txt").read_text().split("\n")[0].split()
    assert dataset.measured_predictions[names == first_line[0]][0] == pytest.approx(float(first_line[1]))
    # Holes of one patch sit about one lattice pitch (2.5 µm) from their nearest neighbour.
    patch = np.flatnonzero(grid.patch == grid.patch[0])
    xy = np.column_stack([grid.x_um[patch], grid.y_um[patch]])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(patch)) * 1e9
    assert 2.0 < np.median(d.min(axis=1)) < 3.0


def test_measured_regressor_quality_is_the_papers(aldolase_data):
    dataset = load_cryorl(aldolase_data)
    grid, measured = dataset.select_split("test")
    quality = regressor_quality(measured, grid.ctf, grid.patch)
    assert quality["mae"] == pytest.approx(2.56, abs=0.01)
    assert quality["pearson"] == pytest.approx(0.63, abs=0.01)
    assert (quality["tp"], quality["fp"], quality["fn"], quality["tn"]) == (658, 112, 137, 1434)


def _copy(aldolase_data: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "cryorl"
    folder.mkdir()
    for name in ("target_CTF_Y1_train.csv", "target_CTF_Y1_val.csv"):
        shutil.copy(aldolase_data / name, folder / name)
    for name in ("Y1_2_regress_8bit_res50_train_by_hl.txt", "Y1_2_regress_8bit_res50_val_by_hl.txt"):
        shutil.copy(aldolase_data / name, folder / name)
    return folder


def _edit_line(path: Path, number: int, edit) -> str:
    lines = path.read_text().split("\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines))
    return lines[number - 1]


@pytest.mark.parametrize(
    "file, edit, message",
    [
        ("target_CTF_Y1_val.csv", lambda line: line + ",7", r"target_CTF_Y1_val.csv, line 5: expected 5 fields"),
        (
            "target_CTF_Y1_val.csv",
            lambda line: ",".join(line.split(",")[:3] + ["nan", "0.9"]),
            r"line 5: CTFMaxRes \(Å\) must be a decimal number, got 'nan'",
        ),
        (
            "target_CTF_Y1_val.csv",
            lambda line: ",".join(line.split(",")[:3] + ["-4.0", "0.9"]),
            r"line 5: CTFMaxRes \(Å\) must be a finite number at least 1, got -4.0",
        ),
        (
            "target_CTF_Y1_val.csv",
            lambda line: ",".join(line.split(",")[:3] + ["abc", "0.9"]),
            r"line 5: CTFMaxRes \(Å\) must be a decimal number, got 'abc'",
        ),
        (
            "target_CTF_Y1_val.csv",
            lambda line: "not_a_leginon_name" + line[line.index(",") :],
            "line 5: 'not_a_leginon_name' is not a Leginon",
        ),
        (
            "Y1_2_regress_8bit_res50_val_by_hl.txt",
            lambda line: "21mar02c_grid1c_00099gr_00001sq_v01_00001hl_v01_00001en-a 5.0",
            "line 5: prediction for .* matches no hole",
        ),
    ],
)
def test_bad_files_are_named_with_their_line(aldolase_data, tmp_path, file, edit, message):
    folder = _copy(aldolase_data, tmp_path)
    _edit_line(folder / file, 5, edit)
    with pytest.raises(InputError, match=message):
        load_cryorl(folder)


def test_duplicate_holes_and_predictions_are_refused(aldolase_data, tmp_path):
    folder = _copy(aldolase_data, tmp_path)
    holes = folder / "target_CTF_Y1_val.csv"
    first = holes.read_text().split("\n")[0]
    _edit_line(holes, 7, lambda _line: first)
    with pytest.raises(InputError, match=r"line 7: duplicate hole .* \(first on line 1\)"):
        load_cryorl(folder)
    (tmp_path / "second").mkdir()
    folder = _copy(aldolase_data, tmp_path / "second")
    predictions = folder / "Y1_2_regress_8bit_res50_val_by_hl.txt"
    first = predictions.read_text().split("\n")[0]
    _edit_line(predictions, 3, lambda _line: first)
    with pytest.raises(InputError, match=r"line 3: duplicate prediction"):
        load_cryorl(folder)


def test_a_folder_that_is_not_cryorl_is_refused(tmp_path):
    with pytest.raises(InputError, match="the folder is empty"):
        load_cryorl(tmp_path)
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(InputError, match="no training-split ground truth"):
        load_cryorl(tmp_path)
    with pytest.raises(InputError, match="argument 'data'.*not a folder"):
        load_dataset(data=tmp_path / "missing")


# ---- cards ------------------------------------------------------------------------------
def test_every_card_loads_and_every_parameter_says_where_it_comes_from():
    # Every dataset card in datasets/, read when the test runs: a new twin is covered without editing this file.
    assert list_dataset_cards() == sorted(dataset_cards())
    for name in list_dataset_cards():
        card = load_dataset_card(name)
        for section in SCHEMA:
            for key, entry in card[section].items():
                assert entry["source"] in ("paper", "measured", "assumption"), (name, section, key)
    # The paper is silent on most of Apoferritin and RNAPII: their cards must say so.
    for name in ("apoferritin", "rnapii", "aldolaseau"):
        assert len(assumptions(load_dataset_card(name))) >= 5, name
    aldolaseau = load_dataset_card("aldolaseau")
    assert aldolaseau["layout"]["holes"] == {"value": 5822, "source": "paper"}
    assert aldolaseau["layout"]["squares"] == {"value": 30, "source": "paper"}


def test_the_card_folders_hold_cards_only_and_every_twin_has_an_environment():
    """A file that is neither a card nor the folder's README would be silently ignored."""
    for kind in ("datasets", "envs"):
        stray = [
            p.name for p in card_dir(kind).iterdir() if p.is_file() and p.suffix != ".yaml" and p.name != "README.md"
        ]
        assert not stray, f"{kind}/: {stray} are not cards (cards are <name>.yaml)"
    for name, card in dataset_cards().items():
        assert card["name"] == name, f"datasets/{name}.yaml names itself {card['name']!r}"
    env_datasets = {card["kwargs"].get("dataset") for card in env_cards_on_disk().values()}
    twins = {name for name, card in dataset_cards().items() if card["kind"] == "simulated-twin"}
    assert not twins - env_datasets, f"twins without an environment card in envs/: {sorted(twins - env_datasets)}"


def _write_card(tmp_path: Path, edit) -> Path:
    text = (Path(__file__).resolve().parents[1] / "datasets" / "aldolase.yaml").read_text()
    path = tmp_path / "card.yaml"
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("world_seed: 0\n", ""), r"card.yaml: missing field 'world_seed'"),
        (
            lambda t: t.replace("world_seed: 0", "world_seed: zero"),
            r"card.yaml, line \d+: field 'world_seed' must be a int",
        ),
        (
            lambda t: t.replace("squares: {value: 25, source: paper}", "squares: {value: many, source: paper}"),
            r"line \d+: layout.squares: value must be a int",
        ),
        (
            lambda t: t.replace("squares: {value: 25, source: paper}", "squares: {value: 25, source: guess}"),
            r"layout.squares: source must be one of",
        ),
        (
            lambda t: t.replace("  holes: {value: 3538, source: paper}\n", ""),
            r"layout.holes must be a mapping with 'value' and 'source'",
        ),
        (lambda t: t.replace("kind: simulated-twin", "kind: [oops"), r"card.yaml, line \d+: not valid YAML"),
        (lambda t: t + "colour: blue\n", r"unknown field\(s\) \['colour'\]"),
    ],
)
def test_bad_cards_name_the_file_and_field(tmp_path, edit, message):
    path = _write_card(tmp_path, edit)
    with pytest.raises(InputError, match=message):
        load_dataset_card(path)


def test_a_card_path_makes_an_environment(tmp_path):
    import gymnasium as gym

    path = _write_card(tmp_path, lambda t: t.replace("holes: {value: 3538", "holes: {value: 1000"))
    env = gym.make("cryobench/Aldolase-v0", dataset=str(path), split="all")
    assert env.action_space.n == 1000


# ---- twins ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", dataset_params())
def test_twins_are_deterministic_with_fixed_layout_and_disjoint_splits(name):
    card = load_dataset_card(name)
    a, b, c = generate_dataset(card, 0), generate_dataset(card, 0), generate_dataset(card, 1)
    np.testing.assert_array_equal(a.grid.ctf, b.grid.ctf)
    assert not np.array_equal(a.grid.ctf, c.grid.ctf), "another world seed must give another world"
    np.testing.assert_array_equal(a.grid.patch, c.grid.patch)  # same layout, new quality
    np.testing.assert_array_equal(a.split, c.split)
    assert a.grid.n_holes == card["layout"]["holes"]["value"]
    assert a.grid.n_squares == card["layout"]["squares"]["value"]
    test_tiles = set(a.grid.tile[a.split == "test"])
    train_tiles = set(a.grid.tile[a.split == "train"])
    assert test_tiles and train_tiles and not test_tiles & train_tiles
    sizes = np.bincount(a.grid.patch)
    limits = card["layout"]["holes_per_patch"]["value"]
    assert limits["min"] <= sizes.min() and sizes.max() <= limits["max"]


def test_aldolaseau_twin_has_the_papers_good_fraction():
    grid = generate_dataset(load_dataset_card("aldolaseau"), 0).grid
    assert (grid.ctf < 6).mean() == pytest.approx(0.12, abs=0.01)


# Tolerances for the twin against the measured data (facts §5), absolute. Sizes, the good
# fraction and the CTF bins hold in every world; the spatial statistics vary from world to world
# (16 tiles are few), so their mean over worlds 0-4 is compared.
TWIN_TOLERANCES = {
    "good_fraction": 0.01,
    "ctf_bin_fractions": 0.01,
    "good_variance_shares": 0.07,
    "log_ctf_correlation": 0.07,
    "rich_patches_fraction": 0.05,
}


def test_aldolase_twin_reproduces_the_measured_statistics(aldolase_data):
    measured = grid_statistics(load_cryorl(aldolase_data).grid)
    worlds = [grid_statistics(generate_dataset(load_dataset_card("aldolase"), seed).grid) for seed in range(5)]
    for twin in worlds:
        assert (twin["holes"], twin["squares"], twin["tiles"]) == (3538, 25, 16)
        assert twin["good_fraction"] == pytest.approx(measured["good_fraction"], abs=TWIN_TOLERANCES["good_fraction"])
        for key, fraction in measured["ctf_bin_fractions"].items():
            assert twin["ctf_bin_fractions"][key] == pytest.approx(fraction, abs=TWIN_TOLERANCES["ctf_bin_fractions"])
        assert twin["failed_fits"] == pytest.approx(measured["failed_fits"], abs=3)

    def mean(path: tuple[str, ...]) -> float:
        values = []
        for twin in worlds:
            for key in path:
                twin = twin[key]
            values.append(twin)
        return float(np.mean(values))

    for level in ("tile", "square", "patch", "within_patch"):
        expected = measured["good_variance_shares"][level]
        got = mean(("good_variance_shares", level))
        assert got == pytest.approx(expected, abs=TWIN_TOLERANCES["good_variance_shares"]), level
    for distance in ("one_pitch", "four_or_more_pitches", "across_squares"):
        expected = measured["log_ctf_correlation"][distance]
        got = mean(("log_ctf_correlation", distance))
        assert got == pytest.approx(expected, abs=TWIN_TOLERANCES["log_ctf_correlation"]), distance
    rich = np.mean([twin["rich_patches"] / twin["patches"] for twin in worlds])
    expected = measured["rich_patches"] / measured["patches"]
    assert rich == pytest.approx(expected, abs=TWIN_TOLERANCES["rich_patches_fraction"])


# ---- regressors -------------------------------------------------------------------------
def test_resnet50_model_on_the_aldolase_twin_matches_the_measured_regressor():
    """Facts §5: precision 0.855, recall 0.828 at 6 Å, Pearson 0.63 (measured, test split)."""
    card = load_dataset_card("aldolase")
    scores = []
    for seed in range(3):
        dataset = generate_dataset(card, seed)
        grid, _ = dataset.select_split("test")
        predicted = predict(grid, dataset.card["default_regressor"], 1.0, seed)
        scores.append(regressor_quality(predicted, grid.ctf, grid.patch))
    for key, target in (("precision", 0.855), ("recall", 0.828), ("pearson", 0.63)):
        assert np.mean([s[key] for s in scores]) == pytest.approx(target, abs=0.06), key


def test_noise_knob_orders_regressor_quality():
    dataset = generate_dataset(load_dataset_card("aldolase"), 0)
    grid = dataset.grid
    spec = dataset.card["default_regressor"]
    maes = [regressor_quality(predict(grid, spec, n, 0), grid.ctf)["mae"] for n in (0, 0.5, 1, 2)]
    assert maes[0] == 0.0 and maes[0] < maes[1] < maes[2] < maes[3]
    again = predict(grid, dataset.card["default_regressor"], 1.0, 0)
    np.testing.assert_array_equal(again, predict(grid, dataset.card["default_regressor"], 1.0, 0))
    blind = regressor_quality(predict(grid, {"model": "uninformative"}, 1.0, 0), grid.ctf)
    assert abs(blind["pearson"]) < 0.1
    shared = predict(grid, {"model": "gaussian", "sigma": 2.0, "patch_share": 1.0}, 1.0, 0) - grid.ctf_capped()
    inner = shared[(grid.ctf < 15) & (grid.patch == grid.patch[0])]
    assert np.ptp(inner) < 1e-9 or len(inner) < 2  # all error shared within the patch


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"model": "psychic"}, "unknown model 'psychic'"),
        ({"model": "gaussian", "sigma": -1}, "'sigma' must be a number in"),
        ({"model": "perfect", "sigma": 1}, "takes no parameters"),
    ],
)
def test_bad_regressor_specs(spec, message):
    grid = generate_dataset(load_dataset_card("aldolase"), 0).grid
    with pytest.raises(InputError, match=message):
        predict(grid, spec)


# ---- command line -----------------------------------------------------------------------
def test_datasets_commands():
    runner = CliRunner()
    listing = runner.invoke(main, ["datasets", "list"])
    assert listing.exit_code == 0
    assert {line.split()[0] for line in listing.output.splitlines() if line.strip()} >= set(dataset_cards())
    shown = runner.invoke(main, ["datasets", "show", "aldolaseau", "--json"])
    assert shown.exit_code == 0, shown.output
    import json

    summary = json.loads(shown.output)
    assert summary["statistics"]["holes"] == 5822 and "precision" in summary["regressor"]["quality"]
    unknown = runner.invoke(main, ["datasets", "show", "nosuch"])
    assert unknown.exit_code != 0 and "unknown dataset 'nosuch'" in unknown.output


def test_import_cryorl_command(aldolase_data):
    result = CliRunner().invoke(main, ["datasets", "import-cryorl", str(aldolase_data)])
    assert result.exit_code == 0, result.output
    assert "failed fits" in result.output and "2341" in result.output
