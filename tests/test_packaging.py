"""Cards and results load from a checkout and from an installed wheel; the console command works."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import gymnasium as gym
import pytest
from click.testing import CliRunner

import cryobench
from cryobench.cli import main
from cryobench.resources import CARD_KINDS, card_dir, card_source
from tests.discover import env_cards_on_disk

ROOT = Path(__file__).resolve().parents[1]


def test_cards_load_from_the_checkout():
    assert card_source() == "checkout"
    for kind in CARD_KINDS:
        assert card_dir(kind) == ROOT / kind
    # Every card of envs/ is registered, under its own id: a new environment needs no other step.
    on_disk = env_cards_on_disk()
    assert cryobench.env_cards() == on_disk
    assert {env_id: gym.spec(env_id).kwargs for env_id in on_disk} == {i: c["kwargs"] for i, c in on_disk.items()}


def test_installed_entry_points_are_those_of_pyproject():
    """Agents are found through the installed metadata, which pip writes from pyproject.toml: an
    entry point added there is not seen until cryobench is installed again."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["cryobench.agents"]
    installed = {ep.name: ep.value for ep in distribution("cryobench").entry_points if ep.group == "cryobench.agents"}
    assert installed == declared, (
        "the installed cryobench's agent entry points differ from pyproject.toml: run `pip install -e .` "
        f"(only in pyproject: {sorted(set(declared) - set(installed))}, "
        f"only installed: {sorted(set(installed) - set(declared))})"
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("cryobench-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_every_card(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in CARD_KINDS:
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / kind).rglob("*") if p.is_file()}
        for rel in shipped:
            assert f"cryobench/_cards/{rel}" in names, rel


@pytest.mark.slow
def test_cards_load_from_an_installed_wheel(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    script = (
        "import cryobench, gymnasium as gym\n"
        "from cryobench.resources import card_source, card_dir\n"
        "assert card_source() == 'wheel', card_source()\n"
        "assert 'site' in str(card_dir('datasets'))\n"
        "from cryobench.cards import list_dataset_cards\n"
        "assert 'aldolase' in list_dataset_cards()\n"
        "env = gym.make('cryobench/Aldolase-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(cryobench.__file__, env.action_space.n)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "site") in done.stdout


def test_console_command_help_and_version():
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip().endswith(cryobench.__version__)
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    # Every command is listed with a help line of its own.
    listed = result.output.split("Commands:")[1].splitlines()
    assert {line.split()[0] for line in listed if line.strip()} == set(main.commands)
    assert all(len(line.split()) > 1 for line in listed if line.strip())
    listing = runner.invoke(main, ["list", "envs"])
    rows = {tuple(line.split()[:2]) for line in listing.output.splitlines() if line.strip()}
    assert {(card["short_name"], env_id) for env_id, card in env_cards_on_disk().items()} <= rows
