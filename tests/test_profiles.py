"""Instrument profiles: every number sourced, the modern beam-image-shift profile, and fit-profile."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cryobench.cli import main
from cryobench.errors import InputError
from cryobench.profiles import (
    BIS_EXPOSURES_PER_HOLE,
    BIS_MOVE_MINUTES,
    BIS_SECONDS_PER_MOVIE,
    PROFILES,
    SOURCE_KINDS,
    fit_profile,
    get_profile,
    profile_mapping,
)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_number_of_a_profile_has_a_source(name):
    profile = PROFILES[name]
    sources = dict(profile.sources)
    stated = {"minutes" if key.startswith("minutes") else key for key in sources}
    given = {"minutes", "beta"} | {
        key for key in ("square_minutes", "grid_exchange_minutes") if getattr(profile, key) is not None
    }
    if profile.exposures_per_hole != 1:
        given.add("exposures_per_hole")
    assert given <= stated
    assert all(text.split(":")[0] in SOURCE_KINDS for text in sources.values())


def test_the_paper_profile_is_unchanged_and_gains_square_minutes():
    paper = PROFILES["paper"]
    assert paper.minutes == (1.0, 2.0, 6.0, 8.0) and paper.beta == 0.1
    assert paper.square_minutes == 4.3
    assert paper.source_of("square_minutes").startswith("measured:")


def test_the_modern_profile_folds_its_movies_into_every_level():
    bis = PROFILES["bis-modern"]
    movies = BIS_EXPOSURES_PER_HOLE * BIS_SECONDS_PER_MOVIE / 60.0
    np.testing.assert_allclose(bis.minutes, np.add(BIS_MOVE_MINUTES, movies))
    assert bis.exposures_per_hole == 4 and bis.minutes[0] < 1.0  # seconds of image shift, not a stage move
    assert bis.grid_exchange_minutes == 15.0


def test_a_profile_round_trips_through_its_mapping():
    bis = PROFILES["bis-modern"]
    again = get_profile(yaml.safe_load(yaml.safe_dump(profile_mapping(bis))))
    assert again == bis and dict(again.sources) == dict(bis.sources)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"minutes": [1, 2, 3, 4], "square_minutes": -1}, "square_minutes must be a positive"),
        ({"minutes": [1, 2, 3, 4], "exposures_per_hole": 0}, "exposures_per_hole must be a positive integer"),
        ({"minutes": [1, 2, 3, 4], "exposures_per_hole": 2.5}, "exposures_per_hole must be a positive integer"),
        ({"minutes": [1, 2, 3, 4], "sources": {"minutes": "guess: 1"}}, "must start with one of paper"),
        ({"minutes": [1, 2, 3, 4], "sources": {"speed": "paper: x"}}, "sources name 'speed'"),
        ({"minutes": [1, 2, 3, 4], "colour": 1}, "got keys"),
    ],
)
def test_bad_profiles_are_refused_in_one_line(mapping, message):
    with pytest.raises(InputError, match=message) as error:
        get_profile(mapping)
    assert "\n" not in str(error.value)


def test_a_missing_number_names_what_needs_it():
    with pytest.raises(InputError, match="staged acquisition needs the profile's 'square_minutes'.*paper"):
        PROFILES["arxiv"].require("square_minutes", "staged acquisition")
    with pytest.raises(InputError, match="a cassette needs the profile's 'grid_exchange_minutes'"):
        PROFILES["arxiv"].require("grid_exchange_minutes", "a cassette")


def test_fit_profile_gives_the_measured_minutes(aldolase_data):
    fit = fit_profile(aldolase_data)
    assert fit.profile.minutes == (1.52, 3.08, 3.09, 3.22)  # facts: 1.52 / 3.1 / 3.1 / 3.2
    assert fit.gaps_per_level == (3817, 169, 6, 20)
    assert fit.profile.square_minutes == 4.33 and fit.square_images == 34
    assert fit.session == "21mar02c_grid1c"


def test_fit_profile_cli_writes_a_profile_environments_read(aldolase_data, tmp_path):
    out = tmp_path / "scope.yaml"
    result = CliRunner().invoke(main, ["datasets", "fit-profile", str(aldolase_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "other patch       3.08 min   (169 gaps)" in result.output
    import gymnasium as gym

    env = gym.make("cryobench/Aldolase-v0", profile=str(out))
    assert env.unwrapped.world.profile.minutes == (1.52, 3.08, 3.09, 3.22)
    assert env.unwrapped.world.profile.square_minutes == 4.33


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,2021-03-02 11:51:50,3\n", "line 1: expected 'name,date time'"),
        ("a,yesterday\n", "line 1: 'yesterday' is not a date and time"),
        ("s_00010gr,2021-03-02 11:51:50\n", "no hole exposures"),
        (
            "s_01gr_01sq_01hl_01en,2021-03-02 11:00:00\ns_01gr_01sq_01hl_02en,2021-03-02 11:01:00\n",
            "no move at level\\(s\\) square, tile, grid",
        ),
    ],
)
def test_fit_profile_refuses_bad_timestamps(tmp_path, content, message):
    path = tmp_path / "timestamps.csv"
    path.write_text(content)
    result = CliRunner().invoke(main, ["datasets", "fit-profile", str(tmp_path)])
    assert result.exit_code != 0 and result.output.count("\n") == 1
    with pytest.raises(InputError, match=message):
        fit_profile(path)


def test_a_missing_profile_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="profile file .*nope.yaml' not found"):
        get_profile(str(tmp_path / "nope.yaml"))


def test_a_hole_of_the_modern_profile_gives_its_movies_all_of_the_hole_quality():
    import gymnasium as gym

    from cryobench.agents.registry import load_agent
    from cryobench.evaluate import play_episode

    env = gym.make("cryobench/Aldolase-v0", profile="bis-modern", duration=60.0)
    row = play_episode(env, load_agent("greedy")[0], seed=0)
    assert row["movies"] == 4 * row["exposures"] and row["good_movies"] == 4 * row["good_exposures"]
    # one function of the rules: a level's minutes are the move and the hole's four 12 s movies
    assert row["moves"]["patch"] * 0.9 + row["moves"]["square"] * 1.8 <= row["minutes"] + 1e-9
