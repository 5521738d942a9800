"""The gymnasium environment: one cryo-EM data-collection session on one grid."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cryobench import simulator
from cryobench.candidates import N_CANDIDATES, candidate_holes
from cryobench.catalog import build_world, load_dataset
from cryobench.errors import InputError, UnknownArgumentError
from cryobench.features import FEATURE_NAMES, N_FEATURES, hole_features, session_features
from cryobench.grid import CTF_CAP
from cryobench.profiles import MOVE_LEVELS
from cryobench.rules import PAPER_SESSION_MINUTES, PAPER_THRESHOLD_ANGSTROM, hole_index
from cryobench.seeding import SEED_BOUND, draw_training_seed, draw_training_seeds

#: ``observation=``: every hole's features, or a fixed-size choice among a few candidate holes.
OBSERVATIONS = ("full", "compact")
#: ``mask_dtype=``: int8 (the default, as MultiBinary) or bool (TorchRL's masked modules, sb3-contrib).
MASK_DTYPES = {"int8": np.int8, "bool": np.bool_}


def mask_space(n: int, mask_dtype: str) -> spaces.Space:
    """The space of an action mask of ``n`` actions in ``mask_dtype``."""
    if mask_dtype == "bool":
        return spaces.Box(0, 1, shape=(n,), dtype=np.bool_)
    return spaces.MultiBinary(n)


def compact_space(n_holes: int, duration: float, mask_dtype: str) -> spaces.Dict:
    """The compact observation's space (the class docstring, "Observation Space")."""
    return spaces.Dict(
        {
            "candidate_features": spaces.Box(0.0, 1.0, shape=(N_CANDIDATES, N_FEATURES), dtype=np.float32),
            "candidate_holes": spaces.Box(-1, n_holes - 1, shape=(N_CANDIDATES,), dtype=np.int64),
            "time_left": spaces.Box(0.0, duration, shape=(1,), dtype=np.float32),
            "current_hole": spaces.Discrete(n_holes),
            "action_mask": mask_space(N_CANDIDATES, mask_dtype),
        }
    )


_TILE = simulator.HIERARCHY_LEVELS.index("tile")  # the fewest groups: the cheapest table to sum


def _read_only_view(array: np.ndarray) -> np.ndarray:
    """A view an agent can read but not write: the world's arrays are the simulator's rules."""
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class PublicLayout:
    """What an agent may know: the hierarchy, positions and predictions.

    Views of the world's arrays for reading; agents derive their own tables from it
    (``agents.common.Hierarchy``).

    The ground truth is not here; upper-bound agents ask :meth:`CryoEMSessionEnv.ground_truth_ctf`.

    Staged acquisition (``acquisition == "staged"``): a snapshot of what is known so far. The
    holes of squares not imaged yet have ``tile``, ``square``, ``patch`` -1 and ``x_um``,
    ``y_um``, ``predicted_ctf`` NaN; the atlas fields describe every square. Each time a
    square is imaged the environment publishes a *new* layout (``env.unwrapped.layout`` and the
    step's ``info["layout"]``); a layout never changes once handed out.
    """

    tile: np.ndarray
    square: np.ndarray
    patch: np.ndarray
    x_um: np.ndarray
    y_um: np.ndarray
    square_xy_um: np.ndarray
    predicted_ctf: np.ndarray
    minutes: tuple[float, float, float, float]
    threshold: float
    duration: float
    feedback: simulator.Feedback
    acquisition: str = "paper"
    #: staged: per square, its tile, the atlas's noisy size class and good fraction, whether imaged
    square_tile: np.ndarray | None = None
    atlas_size_class: np.ndarray | None = None
    atlas_good_fraction: np.ndarray | None = None
    imaged: np.ndarray | None = None
    #: staged: minutes of imaging one square (``InstrumentProfile.square_minutes``)
    square_minutes: float | None = None
    #: cassettes: every hole's grid (-1 while hidden), every square's grid, the exchange's minutes
    grid: np.ndarray | None = None
    square_grid: np.ndarray | None = None
    grid_exchange_minutes: float | None = None

    @property
    def staged(self) -> bool:
        return self.acquisition == "staged"


def _microscope(card: Mapping) -> str:
    """The microscope a dataset card's title names (after its last comma), e.g. ``Glacios``."""
    title = str(card.get("title", "")).replace("(simulated twin)", "")
    return title.rsplit(",", 1)[-1].strip() if "," in title else "unknown"


def _hidden(values: np.ndarray, shown: np.ndarray, fill: float) -> np.ndarray:
    """A read-only copy of ``values`` with ``fill`` (-1 for ids, NaN for numbers) where the hole is not shown."""
    out = np.where(shown, values, fill)
    out.flags.writeable = False
    return out


class CryoEMSessionEnv(gym.Env):
    """
    ## Description

    A cryo-EM data-collection session, as in the cryoRL paper (Li et al.). The grid's holes
    are organised as atlas tile > square > patch > hole. A regressor has predicted every
    hole's CTFMaxRes (Å, lower is better) from low-magnification images. Each step the agent
    picks the next hole to expose; the stage move costs microscope minutes that depend on the
    hierarchy level crossed (same patch, other patch, other square, other tile). The goal is
    as many good exposures (CTFMaxRes below the threshold, 6 Å by default) as the session's
    duration allows. The rules are those of ``cryobench.simulator`` (module docstring).

    ## Action Space

    ``Discrete(N)``: the index of the hole to expose, N the holes of the split. Visited
    holes are masked in ``action_mask``; choosing one anyway costs the in-patch minutes,
    earns nothing, leaves the stage in place and sets ``info["invalid_action"]``.

    With ``acquisition="staged"``: ``Discrete(N + S)``, actions ``N .. N+S-1`` image square
    ``action - N`` (the profile's ``square_minutes``; the stage then sits at that square). Holes
    of squares not imaged yet and squares already imaged are masked; choosing one anyway is
    the same costed no-op.

    ## Observation Space

    A ``Dict``:

    - ``features``: ``Box(0, 1, (N, F), float32)``, per-hole features, cryoRL's 32 first
      (see ``cryobench.features``; names in ``FEATURE_NAMES``).
    - ``revealed``: ``MultiBinary(N)`` int8, holes whose true CTFMaxRes has been shown.
    - ``revealed_ctf``: ``Box(0, 20, (N,), float32)``, their CTFMaxRes (capped at 20 Å), 0 elsewhere.
    - ``time_left``: ``Box(0, duration, (1,), float32)``, minutes left.
    - ``current_hole``: ``Discrete(N)``, where the stage is.
    - ``action_mask``: ``MultiBinary(N)`` int8, 1 for holes that can still be exposed.

    Staged, also ``imaged``: ``MultiBinary(S)`` int8, the squares imaged so far, and
    ``stage_square``: ``Discrete(S + 1)``, 0 when the stage is at ``current_hole``, ``s + 1``
    when it sits at square ``s`` after imaging it; ``action_mask`` is ``MultiBinary(N + S)``.
    The feature rows of holes in squares not imaged yet are all zero.

    With ``observation="compact"``: a fixed-size ``Dict`` (about 5.7 kB at any N) over
    ``K = 32`` candidate holes, and the action ``Discrete(K)`` chooses a candidate; the
    environment exposes that slot's hole. A candidate stands for a patch: its unvisited hole
    with the lowest predicted CTFMaxRes (within a patch every move costs the same and every
    feature but the hole's own is shared). The slots hold the current patch, then up to 8
    other patches of the current square, 8 of the current tile and 15 of other tiles, each
    level's best predicted first (``cryobench.candidates``); the grid's best-predicted hole is
    always among them.

    - ``candidate_features``: ``Box(0, 1, (K, F), float32)``, each candidate's row of the full
      ``features`` (bit for bit), zero rows for empty slots.
    - ``candidate_holes``: ``Box(-1, N - 1, (K,), int64)``, each slot's hole, -1 when empty.
    - ``time_left``, ``current_hole``: as above.
    - ``action_mask``: ``MultiBinary(K)`` int8, 1 for the filled slots. Choosing an empty slot
      is the costed no-op of a visited hole; ``info["hole"]`` is the hole a step exposed.

    Which to use: ``compact`` for RL libraries whose networks, replay buffers or datasets take
    the observation as a flat vector (SB3's MultiInputPolicy, Tianshou, TorchRL, Minari: the
    full observation is 0.6-1 MB at 3,500-5,800 holes), and for the batched environment's
    speed (``gym.make_vec``, ``cryobench.vector_env``). ``full`` for agents that score every
    hole themselves (cryoRL's DQN, the built-in agents, a network shared across holes): every
    hole stays choosable. Compact needs ``acquisition="paper"`` on one grid.

    ``mask_dtype="bool"`` gives ``action_mask`` (observation and ``info``) as bool in a
    ``Box(0, 1, (n,), bool)``, for libraries that expect a bool mask (TorchRL's masked
    modules); the default ``int8`` is ``MultiBinary``.

    The hierarchy, positions and predictions are also available before acting, without the
    ground truth, as ``env.unwrapped.layout`` (a :class:`PublicLayout`). Staged, it shows the
    atlas and only the imaged squares' holes, and is replaced by a new snapshot (also given as
    ``info["layout"]``) at every step that images a square.

    Every observation's arrays are new: the environment never changes an array after handing
    it out, so agents may keep past observations (e.g. a history of features) without copying.

    ## Info

    ``action_mask``, ``elapsed_minutes``, ``exposures``, ``level`` (the move just made) and
    ``invalid_action`` at every step. ``good_exposures``: at the end of the episode the true
    count (with ``exposures`` and ``minutes``: the headline metrics results files score); during
    it only what the feedback has shown, the good holes among those revealed so far, and absent
    with ``feedback="none"``: info never tells an agent more than the observation does. Cassettes
    add ``grid``, ``grid_minutes`` and ``grid_good_exposures`` (per grid, by the same rule).

    ## Rewards

    ``exp(-beta (t - t0))`` for a good hole, ``t`` the move's minutes and ``t0`` the cheapest
    move (the paper: 1.0, 0.90, 0.61, 0.50 for 1/2/6/8 minutes); 0 for a bad one; with
    ``partial_reward=True`` a hole just above the threshold earns part of it.

    ## Starting State

    The stage starts at a hole drawn uniformly from the environment's ``np_random``: visited,
    free, not an exposure. With ``new_world_each_reset=True`` (twins only) every reset also
    draws a new twin world (same layout, new quality and predictions). Staged, the start
    hole's square is imaged for free (the square the operator set the session up in).

    ## Episode End

    Terminated when the elapsed minutes exceed ``duration`` (the move that crosses it counts)
    or when every hole has been visited. There is no truncation: the time left is observed.

    ## Arguments

    - ``dataset``: a twin's card name (``aldolase``, ``apoferritin``, ``rnapii``, ``aldolaseau``)
      or the path of a dataset card (YAML).
    - ``data``: a folder of measured data in the CryoRL format (``cryobench/CryoRL-v0``).
    - ``split``: ``"test"`` (default) or ``"train"``: disjoint tiles of the dataset; ``"all"``: every hole
      (as the paper's AldolaseAu human study, which used the whole grid).
    - ``noise``: 0 (perfect predictions) .. 5; 1 (default) is the dataset's own regressor quality.
    - ``regressor``: a regressor model name or spec mapping (default: the dataset's; ``measured``
      where real predictions exist).
    - ``threshold``: good means CTFMaxRes below this (Å, default 6).
    - ``duration``: session minutes (default 480).
    - ``profile``: instrument profile: ``paper`` (1/2/6/8 min), ``arxiv`` (2/5/10/20),
      ``measured-aldolase`` (1.52/3.1/3.1/3.2), ``bis-modern`` (beam-image shift, 4 movies per hole),
      a mapping with ``minutes`` and ``beta``, or a profile file (``cryobench datasets fit-profile``).
    - ``acquisition``: ``"paper"`` (default: every prediction known at minute 0) or ``"staged"``
      (the atlas first, squares imaged on demand; ``cryobench.simulator`` rules 7-10).
    - ``grids``: a cassette (``cryobench.simulator`` rules 11-12): an integer G >= 2, G grids of
      ``dataset`` (the card's world, then worlds and layouts drawn from ``world_seed``), or a list of
      twin names; moves between grids cost the profile's ``grid_exchange_minutes``. Pair it with a
      ``duration`` of the facility's choosing (the cassette environments: 1440 min). Grids
      collected on different microscopes (their cards' titles name them) are refused.
    - ``atlas_noise``: staged: the atlas regressor's error, 0 (exact) .. 5; 1 (default): 0.8 on the
      logit of a square's good fraction and 0.25 on the log of its size (assumptions).
    - ``feedback``: ``inspection`` (default), ``queue:K`` or ``none``.
    - ``partial_reward``: the paper's partial reward above the threshold (default False).
    - ``world_seed``: the twin world's quality and predictions (default: the card's fixed world, like
      the paper's fixed dataset).
    - ``layout_seed``: the twin world's layout (tiles, squares, patches, positions; default: the card's).
      Every layout of a twin has the card's numbers of tiles, squares and holes. Seeds from 2**30
      on are protocol v2's test worlds: never train or tune on them (``cryobench.seeding``).
    - ``new_world_each_reset``: draw a new training world (same layout, new quality and predictions) at
      every reset, for training agents that generalise; the draws come only from the training seeds
      (below 2**30).
    - ``new_layout_each_reset``: with ``new_world_each_reset``, draw a new training layout too; needs
      ``split="all"`` (a split's hole count differs between layouts, the whole grid's does not).
    - ``observation``: ``"full"`` (default) or ``"compact"`` (see "Observation Space").
    - ``mask_dtype``: ``"int8"`` (default) or ``"bool"``: the dtype of ``action_mask``.
    - ``render_mode``: ``None`` or ``"rgb_array"`` (the grid map with the path so far).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    #: False only in a sealed worker's mirror for an agent that never reads the feature matrix
    #: (``Agent.reads_features``): the matrix is most of an observation's cost.
    _observe_features = True

    def __init__(
        self,
        dataset: str | None = None,
        data: str | None = None,
        split: str = "test",
        noise: float = 1.0,
        regressor: str | Mapping | None = None,
        threshold: float = PAPER_THRESHOLD_ANGSTROM,
        duration: float = PAPER_SESSION_MINUTES,
        profile: str | Mapping = "paper",
        feedback: str | simulator.Feedback = "inspection",
        partial_reward: bool = False,
        world_seed: int | None = None,
        layout_seed: int | None = None,
        new_world_each_reset: bool = False,
        new_layout_each_reset: bool = False,
        acquisition: str = "paper",
        atlas_noise: float = 1.0,
        grids: int | list[str] | None = None,
        observation: str = "full",
        mask_dtype: str = "int8",
        render_mode: str | None = None,
        **unknown: Any,
    ) -> None:
        # Caught here, not left to Python's TypeError, so the message lists what is accepted; the
        # error is both an InputError (one line in the CLI) and a TypeError (libraries probe for it).
        if unknown:
            # Python's own wording: TorchRL's GymEnv drops the keywords it probes with (frameskip)
            # only when the TypeError says "unexpected keyword argument 'frameskip'".
            names = ", ".join(map(repr, sorted(unknown)))
            raise UnknownArgumentError(
                f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {names}; "
                f"expected some of {', '.join(ENV_ARGUMENTS)} (see the class docstring)"
            )
        if dataset is None and data is None:
            raise InputError(
                "argument 'data': no data given; pass data=PATH, a folder in the CryoRL format "
                "(on the command line: -e data=PATH), or dataset=NAME for a simulated twin"
            )
        if dataset is not None and data is not None:
            raise InputError("give exactly one of the arguments 'dataset' (a twin's name) and 'data' (a CryoRL folder)")
        if data is not None and not isinstance(data, str | os.PathLike):
            raise InputError(f"argument 'data': expected the path of a CryoRL-format folder, got {data!r}")
        for name, value in (("world_seed", world_seed), ("layout_seed", layout_seed)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < SEED_BOUND
            ):
                raise InputError(
                    f"argument {name!r}: expected an integer from 0 to {SEED_BOUND - 1} or None, got {value!r}"
                )
        if layout_seed is not None and data is not None:
            raise InputError("argument 'layout_seed': measured data has one fixed layout; use a twin")
        if not isinstance(new_world_each_reset, bool):
            raise InputError(f"argument 'new_world_each_reset': expected True or False, got {new_world_each_reset!r}")
        if not isinstance(new_layout_each_reset, bool):
            raise InputError(f"argument 'new_layout_each_reset': expected True or False, got {new_layout_each_reset!r}")
        if new_layout_each_reset and not (new_world_each_reset and split == "all"):
            raise InputError(
                "argument 'new_layout_each_reset': needs new_world_each_reset=True and split='all' "
                "(the hole count of a split differs between layouts)"
            )
        if new_world_each_reset and data is not None:
            raise InputError("argument 'new_world_each_reset': measured data is one fixed world; use a twin")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InputError(f"argument 'render_mode': expected None or 'rgb_array', got {render_mode!r}")
        if acquisition not in simulator.ACQUISITIONS:
            raise InputError(f"argument 'acquisition': expected 'paper' or 'staged', got {acquisition!r}")
        self.acquisition, self.atlas_noise = acquisition, atlas_noise
        self.render_mode = render_mode
        self._set_observation(observation, mask_dtype, cassette=grids is not None)
        feedback = simulator.Feedback.parse(feedback)  # parsed once; the World, layout and agents share it
        self._world_args = dict(
            split=split,
            noise=noise,
            regressor=regressor,
            threshold=threshold,
            duration=duration,
            profile=profile,
            feedback=feedback,
            partial_reward=partial_reward,
        )
        self._dataset_name, self._data = dataset, data
        self._new_world_each_reset = new_world_each_reset
        self._new_layout_each_reset = new_layout_each_reset
        base = load_dataset(dataset=dataset, data=data, seed=world_seed, layout_seed=layout_seed)
        self.world_seed = int(base.grid.meta.get("seed", 0)) if world_seed is None else int(world_seed)
        self.layout_seed = base.grid.meta.get("layout_seed")
        world = build_world(base, prediction_seed=self.world_seed, **self._world_args)
        self.grids = None
        if grids is not None:
            if data is not None or new_world_each_reset:
                raise InputError(
                    "argument 'grids': a cassette is built from twins' worlds, once (no data=, no new_world_each_reset)"
                )
            world = self._cassette(world, grids)
        self._init_spaces(self._staged(world))

    def _set_observation(self, observation: str, mask_dtype: str, cassette: bool) -> None:
        if observation not in OBSERVATIONS:
            raise InputError(f"argument 'observation': expected 'full' or 'compact', got {observation!r}")
        if mask_dtype not in MASK_DTYPES:
            raise InputError(f"argument 'mask_dtype': expected 'int8' or 'bool', got {mask_dtype!r}")
        if observation == "compact" and (self.acquisition != "paper" or cassette):
            raise InputError(
                "argument 'observation': 'compact' needs acquisition='paper' on one grid (no 'grids'); "
                "use observation='full' for staged sessions and cassettes"
            )
        self.observation_mode, self.mask_dtype = observation, mask_dtype
        self._mask_type = MASK_DTYPES[mask_dtype]

    def _cassette(self, first: simulator.World, grids: Any) -> simulator.World:
        """The cassette's world: ``first`` and the other grids (``grids``: a count or twin names)."""
        from cryobench.cards import load_dataset_card

        if isinstance(grids, bool) or not isinstance(grids, int | list | tuple):
            raise InputError(
                f"argument 'grids': expected a number of grids (2 or more) or a list of twins, got {grids!r}"
            )
        if isinstance(grids, int):
            if grids < 2:
                raise InputError(f"argument 'grids': a cassette holds 2 grids or more, got {grids}")
            rng = np.random.default_rng([self.world_seed, 0xCA55E77E])
            seeds = [(int(a), int(b)) for a, b in draw_training_seeds(rng, 2 * (grids - 1)).reshape(-1, 2)]
            specs = [(self._dataset_name, world_seed, layout_seed) for world_seed, layout_seed in seeds]
        else:
            if len(grids) < 2 or not all(isinstance(name, str) for name in grids):
                raise InputError(f"argument 'grids': expected a list of 2 or more twin names, got {grids!r}")
            if grids[0] != self._dataset_name:
                raise InputError(
                    f"argument 'grids': the first grid is the environment's dataset {self._dataset_name!r}, "
                    f"got {grids[0]!r} first"
                )
            specs = [(name, None, None) for name in grids[1:]]
        scopes = {self._dataset_name: _microscope(load_dataset_card(self._dataset_name))}
        worlds = [first]
        for name, world_seed, layout_seed in specs:
            scopes.setdefault(name, _microscope(load_dataset_card(name)))
            base = load_dataset(dataset=name, seed=world_seed, layout_seed=layout_seed)
            seed = int(base.grid.meta.get("seed", 0))
            worlds.append(build_world(base, prediction_seed=seed, **self._world_args))
        if len(set(scopes.values())) > 1:
            found = ", ".join(f"{name} ({scope})" for name, scope in scopes.items())
            raise InputError(f"argument 'grids': a cassette's grids go into one microscope; these were not: {found}")
        self.grids = [dict(dataset=name, world_seed=w, layout_seed=lay) for name, w, lay in specs]
        return simulator.cassette_world(worlds)

    def _staged(self, world: simulator.World) -> simulator.World:
        """The world with this environment's acquisition (and, staged, its atlas)."""
        if self.acquisition == "paper":
            self.atlas = None
            return world
        world = replace(world, acquisition=self.acquisition)
        self.atlas = simulator.make_atlas(world, self.atlas_noise, self.world_seed)
        return world

    @classmethod
    def from_world(
        cls,
        world: simulator.World,
        render_mode: str | None = None,
        atlas_noise: float = 1.0,
        observation: str = "full",
        mask_dtype: str = "int8",
    ) -> CryoEMSessionEnv:
        """An environment on a World built by hand (custom grids, tests); one fixed world."""
        env = cls.__new__(cls)
        env.acquisition, env.atlas_noise = world.acquisition, atlas_noise
        env.render_mode = render_mode
        env._set_observation(observation, mask_dtype, cassette=world.cassette is not None)
        env._world_args, env._dataset_name, env._data = {}, world.grid.name, None
        env._new_world_each_reset = env._new_layout_each_reset = False
        env.world_seed = int(world.grid.meta.get("seed", 0))
        env.layout_seed = world.grid.meta.get("layout_seed")
        env.atlas = simulator.make_atlas(world, atlas_noise, env.world_seed) if world.staged else None
        env._init_spaces(world)
        return env

    def _init_spaces(self, world: simulator.World) -> None:
        self._set_world(world)
        n = self.world.n_holes
        duration_f = float(self.world.duration)
        self.state: simulator.SessionState | None = None
        if self.observation_mode == "compact":
            self.action_space = spaces.Discrete(N_CANDIDATES)
            self.observation_space = compact_space(n, duration_f, self.mask_dtype)
            return
        self.action_space = spaces.Discrete(self.world.n_actions)
        observations = {
            "features": spaces.Box(0.0, 1.0, shape=(n, N_FEATURES), dtype=np.float32),
            "revealed": spaces.MultiBinary(n),
            "revealed_ctf": spaces.Box(0.0, CTF_CAP, shape=(n,), dtype=np.float32),
            "time_left": spaces.Box(0.0, duration_f, shape=(1,), dtype=np.float32),
            "current_hole": spaces.Discrete(n),
            "action_mask": mask_space(self.world.n_actions, self.mask_dtype),
        }
        if self.world.staged:
            observations["imaged"] = spaces.MultiBinary(self.world.n_squares)
            observations["stage_square"] = spaces.Discrete(self.world.n_squares + 1)
        self.observation_space = spaces.Dict(observations)

    # ---- world and views ------------------------------------------------------------
    def _set_world(self, world: simulator.World) -> None:
        self.world = world
        grid = world.grid
        self.layout = PublicLayout(
            tile=_read_only_view(grid.tile),
            square=_read_only_view(grid.square),
            patch=_read_only_view(grid.patch),
            x_um=_read_only_view(grid.x_um),
            y_um=_read_only_view(grid.y_um),
            square_xy_um=_read_only_view(grid.square_xy_um),
            predicted_ctf=_read_only_view(world.predicted_ctf),
            minutes=world.profile.minutes,
            threshold=world.threshold,
            duration=world.duration,
            feedback=world.feedback,
        )
        if world.cassette is not None:
            self.layout = replace(
                self.layout,
                grid=_read_only_view(world.cassette),
                square_grid=_read_only_view(world.square_grid),
                grid_exchange_minutes=world.exchange_minutes,
            )
        if world.staged:
            self.layout = self._staged_layout(np.zeros(grid.n_holes, dtype=bool), np.zeros(world.n_squares, dtype=bool))

    def _staged_layout(self, shown: np.ndarray, imaged: np.ndarray) -> PublicLayout:
        """A snapshot of what a staged session has shown: the atlas, and the holes of the imaged squares."""
        world, grid, atlas = self.world, self.world.grid, self.atlas
        imaged = imaged.copy()
        imaged.flags.writeable = False
        return PublicLayout(
            tile=_hidden(grid.tile, shown, -1),
            square=_hidden(grid.square, shown, -1),
            patch=_hidden(grid.patch, shown, -1),
            x_um=_hidden(grid.x_um, shown, np.nan),
            y_um=_hidden(grid.y_um, shown, np.nan),
            square_xy_um=_read_only_view(grid.square_xy_um),
            predicted_ctf=_hidden(world.predicted_ctf, shown, np.nan),
            minutes=world.profile.minutes,
            threshold=world.threshold,
            duration=world.duration,
            feedback=world.feedback,
            acquisition=world.acquisition,
            square_tile=atlas.square_tile,
            atlas_size_class=atlas.size_class,
            atlas_good_fraction=atlas.good_fraction,
            imaged=imaged,
            square_minutes=world.square_minutes,
            grid=None if world.cassette is None else _hidden(world.cassette, shown, -1),
            square_grid=None if world.cassette is None else _read_only_view(world.square_grid),
            grid_exchange_minutes=world.exchange_minutes,
        )

    def _training_world(self, world_seed: int, layout_seed: int | None) -> simulator.World:
        """The world of ``new_world_each_reset``: the same conditions on a new training world."""
        base = load_dataset(dataset=self._dataset_name, seed=world_seed, layout_seed=layout_seed)
        return build_world(base, prediction_seed=world_seed, **self._world_args)

    def ground_truth_ctf(self) -> np.ndarray:
        """The true CTFMaxRes of every hole. For upper-bound (``oracle-*``) agents and metrics only."""
        return self.world.grid.ctf.copy()

    def informed_good_probability(self, calibration: str = "logistic") -> np.ndarray:
        """P(good) of every hole knowing its patch's quality and the regressor's calibration, not
        the hole's own noise (:mod:`cryobench.informed`): on a twin, its generator's latent patch
        quality; elsewhere, the patch's other holes. ``calibration``: how the prediction enters
        (``informed.CALIBRATIONS``). For the informed upper bound only."""
        from cryobench import informed, twin

        world, meta = self.world, self.world.grid.meta
        # A twin made by the environment itself (not a hand-made world, a cassette or measured data).
        if meta.get("simulated") and world.cassette is None and "split" in self._world_args:
            base = load_dataset(dataset=self._dataset_name, seed=meta["seed"], layout_seed=meta["layout_seed"])
            card = {**base.card, "layout_seed": meta["layout_seed"]}
            quality, latent = twin.patch_latent_quality(card, twin.layout_for(card), meta["seed"])
            holes = base.split_mask(self._world_args["split"])
            known = twin.latent_good_probability(quality[holes], latent[holes], world.true_good)
        else:
            known = informed.leave_one_out_patch_share(world.grid.patch, world.grid.square, world.true_good)
        return informed.with_predictions(known, np.asarray(world.predicted_ctf), world.true_good, calibration)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    # ---- gymnasium API --------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._new_world_each_reset:
            world_seed = draw_training_seed(self.np_random)
            layout_seed = draw_training_seed(self.np_random) if self._new_layout_each_reset else self.layout_seed
            self.world_seed, self.layout_seed = world_seed, layout_seed  # (the atlas is drawn from the world seed)
            world = self._staged(self._training_world(world_seed, layout_seed))
            if world.n_holes != self.world.n_holes:
                raise RuntimeError("a new twin world changed the number of holes; the card's layout must be fixed")
            self._set_world(world)
        start = int(self.np_random.integers(self.world.n_holes))
        if options and "start_hole" in options:
            start = int(options["start_hole"])
        self.state = simulator.start_session(self.world, start)
        self._last_level = "start"
        if self.world.staged:
            self.layout = self._staged_layout(self.state.shown, self.state.imaged)
        return self._observation(), self._info(invalid=False)

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if simulator.is_over(self.world, self.state):
            raise RuntimeError("the session is over: call reset() to start a new one")
        hole = hole_index(action)
        if hole is None:
            raise InputError(
                "action: expected a hole index (a Python int, a numpy integer or a 0-d integer array), "
                f"got {action!r:.60} ({type(action).__name__})"
            )
        if self.observation_mode == "compact":
            return self._compact_step(hole)
        if not self.world.staged and self.world.cassette is None:
            result = simulator.expose(self.world, self.state, hole)
            self._last_level = "invalid" if result.invalid else MOVE_LEVELS[result.level]
            terminated = simulator.is_over(self.world, self.state)
            return self._observation(), result.reward, terminated, False, self._info(invalid=result.invalid)
        result = simulator.step(self.world, self.state, hole)
        info_extra = {}
        if result.level == simulator.GRID_EXCHANGE_LEVEL:
            self._last_level = "grid_exchange"
        elif result.level == simulator.IMAGE_SQUARE_LEVEL:
            self._last_level = "image_square"
            self.layout = self._staged_layout(self.state.shown, self.state.imaged)
            info_extra["layout"] = self.layout
        else:
            self._last_level = "invalid" if result.invalid else MOVE_LEVELS[result.level]
        terminated = simulator.is_over(self.world, self.state)
        obs, info = self._observation(), self._info(invalid=result.invalid)
        info.update(info_extra)
        return obs, result.reward, terminated, False, info

    def _compact_step(self, slot: int):
        """A compact observation's action: the candidate in ``slot`` (an empty slot: the costed
        no-op of the visited current hole)."""
        if not 0 <= slot < N_CANDIDATES:
            raise InputError(
                f"action {slot} out of range: the compact observation's candidate slots are 0..{N_CANDIDATES - 1}"
            )
        hole = int(self._candidates[slot])
        result = simulator.expose(self.world, self.state, hole if hole >= 0 else self.state.current)
        self._last_level = "invalid" if result.invalid else MOVE_LEVELS[result.level]
        terminated = simulator.is_over(self.world, self.state)
        obs, info = self._observation(), self._info(invalid=result.invalid)
        info["hole"] = hole
        return obs, result.reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """Actions allowed now (bool, for sb3-contrib's MaskablePPO): unvisited holes; staged, of
        imaged squares, then the squares not imaged yet; compact, the filled candidate slots."""
        if self.observation_mode == "compact":
            return self._candidates >= 0
        if self.world.staged:
            return self._staged_mask().astype(bool)
        return ~self.state.visited

    def _staged_mask(self) -> np.ndarray:
        state, n = self.state, self.world.n_holes
        mask = np.empty(self.world.n_actions, dtype=np.int8)
        np.greater(state.shown, state.visited, out=mask[:n])  # shown and not visited
        np.logical_not(state.imaged, out=mask[n:])
        return mask

    def _observation(self) -> dict[str, np.ndarray]:
        if self.observation_mode == "compact":
            return self._compact_observation()
        obs = self._full_observation()
        if self._mask_type is not np.int8:
            obs["action_mask"] = obs["action_mask"].astype(self._mask_type)
        return obs

    def _compact_observation(self) -> dict[str, np.ndarray]:
        world, state = self.world, self.state
        current = np.array([state.current])
        holes = candidate_holes(world, state.visited[None], current)
        filled = holes >= 0
        features = session_features(
            world,
            tuple(table[None] for table in state.tables),
            current,
            np.array([state.elapsed]),
            state.visited[None],
            state.revealed[None],
            state.revealed_ctf[None],
            holes=np.where(filled, holes, 0),
        )
        features[~filled] = 0.0
        self._candidates = holes[0]
        return {
            "candidate_features": features[0],
            "candidate_holes": holes[0].copy(),
            "time_left": np.array([simulator.time_left(world, state)], dtype=np.float32),
            "current_hole": np.int64(state.current),
            "action_mask": filled[0].astype(self._mask_type),
        }

    def _full_observation(self) -> dict[str, np.ndarray]:
        state = self.state
        obs = {"features": hole_features(self.world, state)} if self._observe_features else {}
        obs |= {
            "revealed": state.revealed.astype(np.int8),
            "revealed_ctf": np.minimum(state.revealed_ctf, CTF_CAP).astype(np.float32),
            "time_left": np.array([simulator.time_left(self.world, state)], dtype=np.float32),
            "current_hole": np.int64(state.current),
        }
        if not self.world.staged:
            obs["action_mask"] = (~state.visited).astype(np.int8)
            return obs
        self._mask = self._staged_mask()
        obs["action_mask"] = self._mask
        obs["imaged"] = state.imaged.astype(np.int8)
        obs["stage_square"] = np.int64(state.stage_square + 1)
        return obs

    def _info(self, invalid: bool) -> dict[str, Any]:
        state = self.state
        if self.observation_mode == "compact":
            mask = (self._candidates >= 0).astype(self._mask_type)
        elif self.world.staged:
            mask = self._mask.astype(self._mask_type)
        else:
            mask = (~state.visited).astype(self._mask_type)
        info = {
            "action_mask": mask,
            "elapsed_minutes": state.elapsed,
            "exposures": state.n_exposures,
            "level": self._last_level,
            "invalid_action": invalid,
        }
        over = simulator.is_over(self.world, self.state)
        if over:
            # The headline metrics, true, once nothing more can be chosen: what results files score.
            info["good_exposures"] = int(np.count_nonzero(self.world.true_good[state.exposures]))
            info["minutes"] = float(state.elapsed)
        elif self.world.feedback.reveals:
            # During the session only what the feedback has shown: good exposures among the revealed
            # holes (all of them with inspection; queue:K lags). Feedback "none" shows no count.
            info["good_exposures"] = int(state.tables[_TILE][:, simulator.COL_REVEALED_GOOD].sum())
        if state.grid_minutes is not None:  # cassettes: per grid, minutes spent and good exposures so far
            world = self.world
            info["grid"] = simulator.stage_grid(world, state)
            info["grid_minutes"] = state.grid_minutes.copy()
            if over or world.feedback.reveals:  # as good_exposures: during the session only the revealed
                exposed = np.asarray(state.exposures, dtype=np.int64)
                good = world.true_good[exposed] if over else world.true_good[exposed] & state.revealed[exposed]
                counts = np.bincount(world.cassette[exposed], weights=good, minlength=world.n_grids)
                info["grid_good_exposures"] = counts.astype(np.int64)
        return info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from cryobench.render import draw_session

        return draw_session(self.world, self.state, atlas=self.atlas)


#: The arguments ``gym.make`` accepts for every cryobench environment.
ENV_ARGUMENTS: tuple[str, ...] = tuple(
    name
    for name, parameter in inspect.signature(CryoEMSessionEnv.__init__).parameters.items()
    if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
)
