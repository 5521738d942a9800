"""The ``cryobench`` command line (click): a thin shell over the package's functions."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import traceback
import warnings
from pathlib import Path

import click

import cryobench
from cryobench.errors import ExitCode, InputError, Rejected
from cryobench.plots import PLOT_DESCRIPTIONS


class _Failure(click.ClickException):
    """A one-line message and the exit code that says what kind of failure it was."""

    def __init__(self, message: str, exit_code: ExitCode, prefix: str = "Error: ") -> None:
        super().__init__(message)
        self.exit_code = int(exit_code)
        self.prefix = prefix

    def show(self, file=None) -> None:
        click.echo(f"{self.prefix}{self.format_message()}", file=file, err=True)


@contextlib.contextmanager
def _exit_codes():
    """Each kind of failure as a message and its exit code (cryobench.errors.ExitCode), not a traceback.

    Only a bug (an error no validation names) shows its traceback, for the report.
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Rejected as exc:
        raise _Failure(str(exc), ExitCode.REJECTED) from None
    except InputError as exc:
        raise _Failure(str(exc), ExitCode.BAD_INPUT) from None
    except OSError as exc:  # a file or folder that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        raise _Failure(f"{where}{exc.strerror or exc}", ExitCode.BAD_INPUT) from None
    except KeyboardInterrupt as exc:
        raise _Failure(str(exc) or "interrupted", ExitCode.INTERRUPTED, prefix="") from None
    except Exception as exc:
        traceback.print_exc()
        message = f"internal error (a bug in cryobench; please report it with the traceback above): {exc!r}"
        raise _Failure(message, ExitCode.INTERNAL_ERROR) from None


def _friendly_errors(func):
    """Show bad input as a one-line error naming what was wrong, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with _exit_codes():
            return func(*args, **kwargs)

    return wrapper


class _Commands(click.Group):
    """The top-level group: every command's failures get their exit code, decorated or not."""

    def invoke(self, ctx: click.Context):
        with _exit_codes():
            return super().invoke(ctx)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cryobench.__version__, prog_name="cryobench")
def main() -> None:
    """cryobench: benchmark environments and agents for planning cryo-EM data collection."""


# ---- shell completion -------------------------------------------------------------------
def _complete_agents(ctx, param, incomplete: str) -> list:
    """Agent names for shell completion (entry point names: no agent module is imported)."""
    from cryobench.agents.registry import agent_names

    return [name for name in agent_names() if name.startswith(incomplete)]


def _complete_envs(ctx, param, incomplete: str) -> list:
    """Environment short names and ids for shell completion."""
    from cryobench.registration import env_cards

    names = [card["short_name"] for card in env_cards().values()] + list(env_cards())
    return [name for name in names if name.startswith(incomplete)]


def _complete_listed(names_of):
    """Completion of a comma-separated list (``--agents a,b``): the last name is completed."""

    def complete(ctx, param, incomplete: str) -> list:
        done, _, last = incomplete.rpartition(",")
        prefix = f"{done}," if done else ""
        return [prefix + name for name in names_of(ctx, param, last)]

    return complete


# ---- list ---------------------------------------------------------------------------
@main.group("list")
def list_group() -> None:
    """List the environments and the agents."""


@list_group.command("envs")
@click.option("--json", "as_json", is_flag=True, help="Print the environments as JSON.")
def list_envs(as_json: bool) -> None:
    """The registered environments and their short names."""
    from cryobench.registration import env_card_errors, env_cards

    for message in env_card_errors():  # on stderr, so --json output stays a document
        click.echo(f"not loaded: {message}", err=True)
    if as_json:
        rows = [
            {"id": env_id, "short_name": card["short_name"], "title": card["title"], "kwargs": card["kwargs"]}
            for env_id, card in env_cards().items()
        ]
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'short name':<12} {'environment id':<26} {'arguments':<24} title")
    for env_id, card in env_cards().items():
        args = ", ".join(f"{k}={v!r}" for k, v in card["kwargs"].items()) or "data=PATH"
        click.echo(f"{card['short_name']:<12} {env_id:<26} {args:<24} {card['title']}")


@list_group.command("agents")
@click.option("--json", "as_json", is_flag=True, help="Print the agents as JSON.")
@click.option("--check", is_flag=True, help="Import every agent (slower) and report those that fail to load.")
def list_agents_cmd(as_json: bool, check: bool) -> None:
    """The agents that load by name (built-in and plugins), upper bounds apart."""
    from cryobench.agents.registry import list_agents

    rows = list_agents(load=check)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for title, bound in (("agents", False), ("upper bounds (see the ground truth; not real agents)", True)):
        click.echo(f"{title}:")
        for row in rows:
            if row["error"] is None and row["upper_bound"] == bound:
                tags = " [needs feedback]" if row["needs_feedback"] else ""
                tags += " [plays staged]" if row["plays_staged"] else ""
                click.echo(f"  {row['name']:<22} {row['doc']}{tags}")
    click.echo(
        "[needs feedback]: learns from revealed CTFs, refuses feedback 'none'. [plays staged]: also plays staged "
        "sessions (-e acquisition=staged: squares imaged on demand); the others refuse them."
    )
    broken = [row for row in rows if row["error"] is not None]
    if broken:
        click.echo("failed to load:")
        for row in broken:
            click.echo(f"  {row['name']:<22} {row['source']}: {row['error']}")


def _parse_assignments(values: tuple[str, ...], option: str) -> dict:
    """KEY=VALUE pairs; values parsed as YAML scalars (1.5 -> float, true -> bool, test -> str)."""
    import yaml

    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"option {option}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


# ---- run / compare / plot --------------------------------------------------------------
def _policy_option(what: str):
    return click.option(
        "--policy",
        "policy",
        default=None,
        metavar="MODULE:ATTR",
        help=f"Instead of --agent: {what} code that is not a package: module:attr or path/to/file.py:attr "
        "naming an agent (class or object), a Stable-Baselines3 model or a function (obs, info) -> action.",
    )


def _agent_or_policy(agent_name: str | None, policy: str | None) -> str:
    """The one agent asked for: a registered name or a policy spec (``module:attr``)."""
    if (agent_name is None) == (policy is None):
        raise InputError("give exactly one of --agent NAME (cryobench list agents) and --policy MODULE:ATTR")
    if policy is not None and ":" not in policy:
        raise InputError(f"option --policy: expected MODULE:ATTR or path/to/file.py:ATTR, got {policy!r}")
    if agent_name is not None and ":" in agent_name:
        raise InputError(f"option --agent: {agent_name!r} is not an agent name; a module:attr goes to --policy")
    return agent_name if policy is None else policy


@main.command("run")
@click.option(
    "--agent",
    "agent_name",
    default=None,
    shell_complete=_complete_agents,
    help="Agent name (cryobench list agents).",
)
@_policy_option("run")
@click.option(
    "--env",
    "env_name",
    required=True,
    shell_complete=_complete_envs,
    help="An environment's short name (e.g. aldolaseau) or id; cryobench list envs shows them.",
)
@click.option("--episodes", type=click.IntRange(min=1), default=50, show_default=True, help="Seeded episodes to run.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Episode i uses seed + i.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Results file (JSON). Default: cryobench-results/AGENT_ENV[_ARGUMENTS]_seedSEED.json, never overwritten.",
)
@click.option("-e", "env_args", multiple=True, metavar="KEY=VALUE", help="gym.make argument, e.g. -e noise=1.5.")
@click.option("-H", "hyper_args", multiple=True, metavar="KEY=VALUE", help="Agent hyperparameter override.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def run_cmd(agent_name, policy, env_name, episodes, seed, out, env_args, hyper_args, quiet) -> None:
    """Run an agent (or a policy) for seeded episodes; print a table and write a results file."""
    from cryobench.evaluate import evaluate
    from cryobench.results import save_results

    agent_name = _agent_or_policy(agent_name, policy)
    env_kwargs = _parse_assignments(env_args, "-e")
    hyper = _parse_assignments(hyper_args, "-H")
    result = evaluate(agent_name, env_name, env_kwargs, episodes, seed, hyper, progress=not quiet)
    note = ""
    if out is None:
        wanted = default_results_path(agent_name.rpartition(":")[2], env_name, env_kwargs, hyper, seed)
        out = _unused_path(wanted)
        if out != wanted:
            note = f" ({wanted} exists and is kept; pass --out to choose the name)"
    elif Path(out).exists():
        note = " (replaced the file that was there)"
    path = save_results(result, out)
    _print_summary(result)
    click.echo(f"results: {path}{note}")


def default_results_path(agent: str, env: str, env_kwargs: dict, hyperparameters: dict, seed: int) -> Path:
    """``cryobench-results/AGENT_ENV[_KEY-VALUE...][_H-KEY-VALUE...]_seedSEED.json``: runs that differ
    in their -e arguments or hyperparameters get different names (a data folder by its name)."""

    def words(prefix: str, mapping: dict) -> list[str]:
        shown = {k: Path(str(v)).name if k in ("data", "checkpoint") else v for k, v in sorted(mapping.items())}
        return [f"{prefix}{k}-{json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in shown.items()]

    stem = "_".join([agent, env, *words("", env_kwargs), *words("H-", hyperparameters), f"seed{seed}"])
    safe = "".join(c if c.isalnum() or c in "-_.=" else "-" for c in stem)
    return Path("cryobench-results") / f"{safe}.json"


def _unused_path(path: Path) -> Path:
    """``path``, or ``path`` with -2, -3, ... before the suffix when it exists already."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def _print_summary(result: dict) -> None:
    from cryobench.plots import env_argument

    agent = result["agent"]
    kind = " (UPPER BOUND: sees the ground truth)" if agent["upper_bound"] else ""
    click.echo(f"{agent['name']}{kind} on {result['env']['id']} {result['env']['kwargs'] or ''}")
    drawn = [episode["drawn_world"] for episode in result["episodes"] if "drawn_world" in episode]
    if drawn:  # a new world each episode (e.g. training worlds): no split, sizes vary
        low, high = min(world["n_holes"] for world in drawn), max(world["n_holes"] for world in drawn)
        holes = f"{low} holes" if low == high else f"{low}-{high} holes"
        click.echo(f"{len(drawn)} episodes, a new world each ({holes}; each one's seeds and conditions in the results)")
    else:
        split = env_argument(result, "split")
        click.echo(f"{len(result['episodes'])} episodes on the {split} split: {result['env']['n_holes']} holes")
    click.echo(f"{'metric':<22}{'mean':>9}{'sd':>8}{'IQM':>9}   95% CI of IQM")
    for name, s in result["summary"].items():
        ci = f"[{s['iqm_ci_low']:.2f}, {s['iqm_ci_high']:.2f}]"
        click.echo(f"{name:<22}{s['mean']:>9.2f}{s['sd']:>8.2f}{s['iqm']:>9.2f}   {ci}")
    click.echo(f"seconds per episode: {result['timing']['seconds_per_episode']:.3f}")


@main.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--good-only", is_flag=True, help="Jaccard over good exposures only.")
@click.option("--json", "as_json", is_flag=True, help="Print the table and the Jaccard matrix as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV (without the Jaccard matrix).")
@_friendly_errors
def compare_cmd(results, good_only, as_json, as_csv) -> None:
    """Side-by-side table of RESULTS files with CIs, and the Jaccard matrix.

    RESULTS are results files or sweep folders; a folder's files of one agent (with the same
    hyperparameters) and one environment (with the same arguments) are merged into one row.
    """
    import numpy as np
    import pandas as pd

    from cryobench.compare import comparison_table, jaccard_between
    from cryobench.result_sets import load_many

    if as_json and as_csv:
        raise InputError("options --json and --csv: choose one")
    docs = load_many(results)
    table = comparison_table(docs)
    jaccard = jaccard_between(docs, good_only=good_only)
    if as_csv:
        click.echo(table.to_csv(index=False), nl=False)
        return
    if as_json:
        # NaN (no normalised score; environments that do not compare) becomes null.
        rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        matrix = [[None if np.isnan(v) else float(v) for v in row] for row in jaccard.to_numpy()]
        document = {
            "table": rows,
            "jaccard": {"good_only": good_only, "labels": list(jaccard.index), "matrix": matrix},
        }
        click.echo(json.dumps(document, indent=1, default=_jsonable))
        return
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.2f}".format):
        click.echo(table.to_string(index=False))
        click.echo("\nJaccard similarity of exposure sets" + (" (good only)" if good_only else ""))
        click.echo("(off-diagonal: same seeds, two agents; diagonal: one agent across seeds)")
        click.echo(jaccard.to_string())


_PLOT_HELP = (
    "Write figures from RESULTS files or sweep folders (a folder's files of one agent and "
    "environment are merged), one file per kind.\n\n\b\nKinds (and the figure of the cryoRL paper each follows):\n"
    + "\n".join(f"  {kind:<10} {text}" for kind, text in PLOT_DESCRIPTIONS.items())
)


@main.command("plot", help=_PLOT_HELP, short_help="Figures from results files: the cryoRL paper's kinds.")
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option(
    "--kind",
    type=click.Choice([*PLOT_DESCRIPTIONS, "all"]),
    default="all",
    show_default=True,
    help="Which figure; all draws every kind.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="cryobench-plots",
    show_default=True,
    help="Folder for the figures (one file per kind, named after it).",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["png", "svg", "pdf"]),
    default="png",
    show_default=True,
    help="File format: png (raster) or svg/pdf (vector, text kept as text).",
)
@click.option(
    "--dpi",
    type=click.IntRange(10, 2400),
    default=150,
    show_default=True,
    help="Dots per inch of a PNG (and of the images inside SVG/PDF).",
)
@_friendly_errors
def plot_cmd(results, kind, out_dir, form, dpi) -> None:
    from cryobench.plots import PLOT_KINDS, make_plot
    from cryobench.result_sets import load_many

    docs = load_many(results)
    for k in PLOT_KINDS if kind == "all" else (kind,):
        click.echo(make_plot(k, docs, Path(out_dir) / f"{k}.{form}", dpi=dpi))


# ---- sweeps, submissions, leaderboards ------------------------------------------------------
@main.command("sweep")
@click.option(
    "--agents", required=True, shell_complete=_complete_listed(_complete_agents), help="Comma-separated agent names."
)
@click.option(
    "--envs",
    required=True,
    shell_complete=_complete_listed(_complete_envs),
    help="Comma-separated environment short names.",
)
@click.option("--noise", "noises", default="", help="Comma-separated noise levels (default: each env's own).")
@click.option("--seeds", default="0-49", show_default=True, help="A range FIRST-LAST.")
@click.option(
    "--seeds-per-task",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Seeds in one task (one results file; the unit of resuming).",
)
@click.option("-e", "env_args", multiple=True, metavar="KEY=VALUE", help="gym.make argument for every task.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder of task results.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Tasks run at once (local).")
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: worker processes here; ray: a Ray cluster.",
)
@click.option("--address", default=None, help="Ray cluster address (backend ray).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def sweep_cmd(agents, envs, noises, seeds, seeds_per_task, env_args, out_dir, workers, backend, address, quiet) -> None:
    """Run agents x environments x noise levels x seeds in parallel; resumable (re-run the same command)."""
    from cryobench.sweep import grid_tasks, run_sweep

    seed_range = _parse_seed_range(seeds, "--seeds")
    try:
        noise_levels = [float(x) for x in noises.split(",") if x.strip()] or [None]
    except ValueError:
        raise InputError(f"option --noise: expected comma-separated numbers, got {noises!r}") from None
    tasks = grid_tasks(
        [a.strip() for a in agents.split(",") if a.strip()],
        [e.strip() for e in envs.split(",") if e.strip()],
        noise_levels,
        tuple(seed_range),
        _parse_assignments(env_args, "-e"),
        seeds_per_task,
    )
    if not tasks:
        raise InputError("options --agents and --envs: name at least one agent and one environment")
    paths = run_sweep(tasks, out_dir, workers=workers, backend=backend, address=address, progress=not quiet)
    click.echo(f"{len(paths)} task results in {out_dir}; see them: cryobench compare {out_dir}")


@main.command("submit")
@click.option(
    "--agent",
    "agent_name",
    default=None,
    shell_complete=_complete_agents,
    help="Agent name (cryobench list agents; plugins too).",
)
@_policy_option("submit (protocol 2, sealed)")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Submission file (JSON).")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Measured Aldolase folder (optional).")
@click.option("--work", type=click.Path(file_okay=False), default=None, help="Folder for resumable task results.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Tasks run at once (local).")
@click.option("--seeds", default=None, help="A subset FIRST-LAST of the protocol's seeds (a reduced run).")
@click.option("--entries", default=None, help="Comma-separated subset of the protocol's entries (a reduced run).")
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: worker processes here; ray: a Ray cluster.",
)
@click.option("--address", default=None, help="Ray cluster address (backend ray).")
@click.option(
    "--protocol",
    "version",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="Protocol version: 2 (held-out test worlds, sealed runs) or 1 (fixed worlds, frozen).",
)
@click.option(
    "--tier",
    type=click.Choice(["full", "quick", "validation"]),
    default="full",
    show_default=True,
    help="Protocol 2: full (the leaderboard), quick (a documented subset for CI) or validation (every task on "
    "training worlds, the measured train split: for choosing designs and checkpoints); only full is an entry.",
)
@click.option(
    "--training-seed",
    type=click.IntRange(min=0),
    default=None,
    help="Protocol 2, learned agents: which trained version runs (the card's training_seeds); one submission each.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def submit_cmd(
    agent_name, policy, out, data, work, workers, seeds, entries, backend, address, version, tier, training_seed, quiet
) -> None:
    """Run an agent under the leaderboard protocol and write a submission file with provenance.

    Protocol 2 (the default) plays held-out test worlds under families of conditions, the agent
    sealed in a worker process that never receives the ground truth. Resumable: run the same
    command again after an interruption and only missing tasks run.
    """
    agent_name = _agent_or_policy(agent_name, policy)
    if policy is not None and version != 2:
        raise InputError("option --policy: protocol 1 is frozen to registered agents; use --protocol 2")
    if version == 2:
        if seeds is not None or entries is not None:
            raise InputError("options --seeds and --entries belong to protocol 1; protocol 2 has --tier quick")
        _submit_heldout(agent_name, out, data, work, workers, tier, backend, address, quiet, training_seed)
        return
    if training_seed is not None:
        raise InputError("option --training-seed belongs to protocol 2")
    if tier != "full":
        raise InputError("option --tier belongs to protocol 2; protocol 1 has --seeds and --entries")
    from cryobench.leaderboard.submission import save_submission, submit

    work = work or f"cryobench-sweeps/{agent_name}-v1"
    doc = submit(
        agent_name,
        work,
        data=data,
        workers=workers,
        progress=not quiet,
        seeds=None if seeds is None else tuple(_parse_seed_range(seeds, "--seeds")),
        entries=None if entries is None else tuple(e.strip() for e in entries.split(",") if e.strip()),
        backend=backend,
        address=address,
    )
    path = save_submission(doc, out or f"{agent_name}-v1.json")
    kind = "complete" if doc["protocol"]["complete"] else "reduced (not a leaderboard entry)"
    click.echo(f"submission: {path} ({len(doc['entries'])} entries, {kind})")
    for name, reason in {**doc["not_applicable"], **doc["skipped"]}.items():
        click.echo(f"  {name}: not run: {reason}")


def _submit_heldout(agent_name, out, data, work, workers, tier, backend, address, quiet, training_seed=None) -> None:
    from cryobench.leaderboard.heldout_runs import save_submission, submit_heldout, training_seeds

    suffix = "v2" if tier == "full" else f"v2-{tier}"
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in agent_name.rpartition(":")[2])
    if training_seed is None and tier == "full" and training_seeds(agent_name):
        raise InputError(
            f"agent {agent_name!r} is learned: its protocol v2 entry is one submission per training seed; pass "
            f"--training-seed (one of {', '.join(map(str, sorted(training_seeds(agent_name))))})"
        )
    if training_seed is not None:
        suffix = f"seed{training_seed}-{suffix}"
    doc = submit_heldout(
        agent_name,
        work or f"cryobench-sweeps/{stem}-{suffix}",
        data=data,
        workers=workers,
        tier=tier,
        progress=not quiet,
        backend=backend,
        address=address,
        training_seed=training_seed,
    )
    path = save_submission(doc, out or f"{stem}-{suffix}.json")
    kind = "complete" if doc["protocol"]["complete"] else f"{tier} tier (not a leaderboard entry)"
    runs = sum(len(block["runs"]) for block in doc["tasks"].values())
    click.echo(f"submission: {path} ({len(doc['tasks'])} tasks, {runs} runs, sealed, {kind})")
    for name, reason in {**doc["not_applicable"], **doc["skipped"]}.items():
        click.echo(f"  {name}: not run: {reason}")


@main.command("check")
@click.option(
    "--agent", "agent_name", default=None, shell_complete=_complete_agents, help="Agent name (cryobench list agents)."
)
@_policy_option("check")
@click.option(
    "--against",
    "baseline",
    required=True,
    type=click.Path(dir_okay=False),
    help="Baseline: a protocol 2 submission (cryobench submit --tier quick) or an earlier check's report.",
)
@click.option(
    "--tier",
    type=click.Choice(["full", "quick", "validation"]),
    default=None,
    help="Protocol 2 tier (default: the baseline's; it must match).",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0.0, 0.5, max_open=True),
    default=0.0,
    show_default=True,
    help="Fail only when P(candidate > baseline)'s CI lies wholly below 0.5 - TOLERANCE.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Report file (JSON; usable as the next --against). Default: cryobench-check-NAME.json.",
)
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Measured Aldolase folder (full tier).")
@click.option(
    "--work",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the task results here (resumable). Default: a temporary folder, so every check plays afresh.",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Tasks run at once.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def check_cmd(agent_name, policy, baseline, tier, tolerance, out, data, work, workers, quiet) -> None:
    """Fail (exit 1) when an agent is worse than a baseline by a statistically supported margin.

    For CI: plays the agent sealed on protocol 2's tasks and test worlds (the baseline's tier) and
    compares per-world scores with protocol 2's statistics (probability of improvement and its
    bootstrap CI). Writes a report; exit 0 when not worse, 1 when worse, 2 on bad input.
    """
    import tempfile

    from cryobench.check import load_baseline, report_lines, run_check, save_report

    agent = _agent_or_policy(agent_name, policy)
    load_baseline(baseline)  # a wrong baseline is one line now, before any run
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in agent.rpartition(":")[2])
    with tempfile.TemporaryDirectory(prefix="cryobench-check-") as temporary:
        report = run_check(
            agent,
            baseline,
            work or temporary,
            tier=tier,
            tolerance=tolerance,
            data=data,
            workers=workers,
            progress=not quiet,
        )
    path = save_report(report, out or f"cryobench-check-{stem}.json")
    for line in report_lines(report)[1:]:
        click.echo(line)
    click.echo(f"report: {path}")
    if report["verdict"] == "worse":
        raise Rejected(report["reason"])
    click.echo(report["reason"])


def _parse_seed_range(text: str, option: str) -> range:
    first, _, last = text.partition("-")
    try:
        seeds = range(int(first), int(last or first) + 1)
    except ValueError:
        raise InputError(f"option {option}: expected FIRST-LAST, e.g. 0-49, got {text!r}") from None
    if not seeds:
        raise InputError(f"option {option}: FIRST must not exceed LAST, got {text!r}")
    return seeds


@main.command("export")
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format",
    "form",
    type=click.Choice(["npz", "minari"]),
    default="npz",
    show_default=True,
    help="npz: compact (actions, rewards, revealed CTFs, starts; observations rebuilt by replaying); "
    "minari: a Minari dataset with the observations (pip install 'cryobench[minari]').",
)
@click.option(
    "--out", type=click.Path(), default=None, help="npz: the file (default trajectories.npz); minari: a folder."
)
@click.option(
    "--dataset-id",
    default="cryobench/trajectories-v0",
    show_default=True,
    help="minari: the dataset's id (namespace/name-vN).",
)
@_friendly_errors
def export_cmd(results, form, out, dataset_id) -> None:
    """Trajectories out: the episodes of results files (runs, sweeps, play sessions) for offline RL.

    Every episode is replayed in the environment its file names, so rewards and observations are
    exact; a file whose world cannot be rebuilt is refused in one line.
    """
    from cryobench.export import export_minari, export_npz

    if form == "npz":
        if out is not None and Path(out).is_dir():
            raise InputError(f"option --out: {out} is a folder; --format npz writes a file (e.g. trajectories.npz)")
        metadata = export_npz(results, out or "trajectories.npz")
        humans = sum(source["human"] for source in metadata["sources"])
        click.echo(
            f"{metadata['episodes']} episodes, {metadata['steps']} steps from {len(metadata['sources'])} "
            f"results file(s) ({humans} played by people): {out or 'trajectories.npz'}"
        )
    else:
        folder = export_minari(results, dataset_id, out)
        click.echo(f"Minari dataset {dataset_id}: {folder}  (minari.load_dataset({dataset_id!r}))")


@main.group("leaderboard")
def leaderboard_group() -> None:
    """Build the leaderboard tables; verify submissions."""


@leaderboard_group.command("build")
@click.option("--check", is_flag=True, help="Only check that the committed tables are up to date.")
@_friendly_errors
def leaderboard_build(check) -> None:
    """Regenerate every table in leaderboards/ from leaderboards/results/ (v2: also figures and site/index.html)."""
    from cryobench.leaderboard import heldout_site
    from cryobench.leaderboard.tables import build_tables

    changed = build_tables(check=check)
    changed += heldout_site.build(check=check)
    if check and changed:
        raise Rejected("tables out of date: " + ", ".join(changed) + " (run cryobench leaderboard build)")
    click.echo("\n".join(f"wrote {rel}" for rel in changed) if changed else "tables up to date")


def _submission_format(path: str) -> str | None:
    """The ``format`` field of a submission file. A file that cannot be read as JSON is bad input (exit 2);
    a readable one that is no well-formed submission is for verify to reject, with its reasons."""
    from cryobench.files import read_json

    doc = read_json(path, "submission file")
    return doc.get("format") if isinstance(doc, dict) else None


@leaderboard_group.command("summarize")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the tables.")
@_friendly_errors
def leaderboard_summarize(files, out) -> None:
    """The v2 tables (ranks, headroom, per task) of any submissions of one tier, e.g. validation runs.

    For choosing designs on training worlds: `cryobench submit --tier validation` each candidate,
    then summarize them with predict-rank, greedy and oracle-informed for the headroom table.
    Never the leaderboard (that is `build`, from leaderboards/results/v2).
    """
    from cryobench.leaderboard.heldout_tables import summarize

    for path in summarize(list(files), out):
        click.echo(f"wrote {path}")


@leaderboard_group.command("references")
@click.option("--version", type=click.IntRange(2, 2), default=2, show_default=True, help="Protocol version.")
@_friendly_errors
def leaderboard_references(version) -> None:
    """Write protocol v2's reference points (random and the best upper bound per task) from the results."""
    from cryobench.leaderboard.heldout_tables import write_references

    references = write_references()
    click.echo(f"wrote reference points of {len(references)} tasks into leaderboards/protocol-v{version}.yaml")


@leaderboard_group.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Measured Aldolase folder.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Tasks run at once.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
def leaderboard_verify(files, data, workers, quiet) -> None:
    """Re-run submission FILES; accept each only if it reproduces exactly under its protocol version.

    Protocol 2 submissions are re-run sealed; fields that cannot be re-derived (wall-clock
    times, provenance, the declared training budget) are listed as unverifiable.
    """
    from cryobench.leaderboard.heldout_runs import verify_heldout
    from cryobench.leaderboard.verify import verify

    rejected = 0
    formats = [_submission_format(file) for file in files]  # every file readable before anything re-runs
    for number, (file, format_) in enumerate(zip(files, formats, strict=True), start=1):
        if not quiet:
            click.echo(f"verifying {number} of {len(files)}: {file} (re-running every task)", err=True)
        check = verify_heldout if format_ == "cryobench-submission/2" else verify
        report = check(file, data=data, workers=workers, progress=not quiet)
        if report["accepted"]:
            reduced = " (reduced protocol: a subset of seeds or entries, not a leaderboard entry)"
            note = reduced if report["reduced"] else ""
            click.echo(f"accepted: {file}{note}")
            if report.get("unverifiable"):
                click.echo(f"  not verifiable by re-running: {', '.join(report['unverifiable'])}")
        else:
            rejected += 1
            click.echo(f"rejected: {file}", err=True)
            for reason in report["reasons"]:
                click.echo(f"  - {reason}", err=True)
    if rejected:
        raise Rejected(f"{rejected} of {len(files)} submission(s) rejected")


# ---- datasets -----------------------------------------------------------------------
@main.group("datasets")
def datasets_group() -> None:
    """Dataset cards (simulated twins), measured CryoRL-format folders and facility tables."""


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
    click.echo(
        "Facility data: cryobench datasets import-table TABLE --name NAME  (datasets/README.md, 'Facility data')"
    )


@datasets_group.command("show")
@click.argument("name")
@click.option(
    "--split", type=click.Choice(["train", "test", "all"]), default="all", show_default=True, help="Which holes."
)
@click.option("--noise", type=float, default=1.0, show_default=True, help="Regressor noise (0 perfect, 1 default).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="World seed (default: the card's).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
def datasets_show(name: str, split: str, noise: float, seed: int | None, as_json: bool) -> None:
    """Summary of a dataset card NAME (or measured data: a CryoRL folder, a facility table, an imported
    folder or its name): counts, CTF bins, regressor quality."""
    from cryobench.catalog import load_dataset
    from cryobench.facility_table import imported_datasets, is_table_file

    path = imported_datasets().get(name, Path(name))  # a dataset imported by name, or a path
    measured = path.is_dir() or is_table_file(path)
    dataset = load_dataset(data=path) if measured else load_dataset(dataset=name, seed=seed)
    _show_dataset(dataset, split, noise, seed, as_json)


@datasets_group.command("import-cryorl")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--noise", type=float, default=1.0, show_default=True, help="Regressor noise for the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
def datasets_import(path: str, noise: float, as_json: bool) -> None:
    """Check a CryoRL-format folder PATH and summarise it; nothing is copied or registered.

    The folder stays where it is and is read each time it is used: --env cryorl -e data=PATH.
    """
    from cryobench.catalog import load_dataset
    from cryobench.cryorl_format import summarize_import

    dataset = load_dataset(data=path)
    if not as_json:
        click.echo(json.dumps(summarize_import(dataset), indent=2, default=str))
    _show_dataset(dataset, "all", noise, None, as_json)
    if not as_json:
        click.echo(
            f"\n{path}: a valid CryoRL folder. Nothing was copied or registered; use it by its path:\n"
            f"  cryobench run --agent predict-rank --env cryorl -e data={path}\n"
            f"  gym.make('cryobench/CryoRL-v0', data={path!r}, split='test')"
        )


@datasets_group.command("convert")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The table to write (.csv).")
@_friendly_errors
def datasets_convert(path: str, out: str) -> None:
    """Convert a CryoRL-format folder PATH into a facility table (datasets/README.md: 'Facility data').

    The folder is checked by the CryoRL importer first; its timestamps.csv, if there, fills the
    timestamp column.
    """
    from cryobench.facility_table import convert_cryorl

    written, dataset = convert_cryorl(path, out)
    click.echo(f"wrote {written}: {dataset.grid.n_holes} holes; import it with: cryobench datasets import-table {out}")


@datasets_group.command("import-table")
@click.argument("table", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None, help="The folder to write (new or empty).")
@click.option("--name", default=None, help="Import into the data folder under NAME: then --env NAME works.")
@_friendly_errors
def datasets_import_table(table: str, out: str | None, name: str | None) -> None:
    """Check a facility TABLE (.csv, or .parquet with the parquet extra) and write an imported folder.

    The folder (holes.csv, import.json) is written whole or not at all. With --name it goes into
    the data folder ($CRYOBENCH_DATA_DIR, default ~/.local/share/cryobench/datasets) and is an
    environment by that name; with --out, use it by its path (-e data=FOLDER).
    """
    from cryobench.facility_table import check_name, data_home, env_id_of, import_table, imported_datasets
    from cryobench.registration import short_names

    if (out is None) == (name is None):
        raise InputError("options --out and --name: give one (a folder, or a name in the data folder)")
    if name is not None:
        check_name(name)
        if name in imported_datasets():
            raise InputError(
                f"option --name: {name!r} is imported already ({imported_datasets()[name]}); "
                "choose another name, or delete that folder first"
            )
        if name in short_names():
            raise InputError(f"option --name: {name!r} is already an environment ({short_names()[name]})")
        out = str(data_home() / name)
    folder, dataset = import_table(table, out)
    counts = {s: int((dataset.split == s).sum()) for s in ("train", "test")}
    predictions = "with predictions" if dataset.measured_predictions is not None else "no predictions"
    click.echo(f"imported {dataset.grid.n_holes} holes ({counts['train']} train, {counts['test']} test; {predictions})")
    click.echo(f"into {folder}")
    if name is not None:
        click.echo(f"  cryobench run --agent predict-rank --env {name}\n  gym.make({env_id_of(name)!r})")
    else:
        click.echo(f"  cryobench run --agent predict-rank --env cryorl -e data={folder}")
        click.echo(f"  gym.make('cryobench/CryoRL-v0', data={str(folder)!r})")


@datasets_group.command("validate")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
def datasets_validate(path: str, as_json: bool) -> None:
    """Check measured data at PATH: a CryoRL folder, a facility table or an imported folder.

    Exit 0 and a summary when it loads; 2 and one line naming the file, line and column when not.
    """
    from cryobench.catalog import load_dataset
    from cryobench.cryorl_format import summarize_import

    dataset = load_dataset(data=path)
    summary = summarize_import(dataset)
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
        return
    click.echo(json.dumps(summary, indent=2, default=str))
    click.echo(f"{path}: valid ({dataset.grid.n_holes} holes)")


@datasets_group.command("fit-profile")
@click.argument("path", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the profile here (YAML).")
@click.option("--name", default=None, help="The profile's name (default: fitted-<session>).")
@click.option("--beta", type=float, default=0.1, show_default=True, help="The reward's decay per minute.")
@_friendly_errors
def datasets_fit_profile(path: str, out: str | None, name: str | None, beta: float) -> None:
    """Fit an instrument profile's minutes from PATH's timestamps (a CryoRL folder or its timestamps.csv).

    Use the written file with -e profile=FILE.yaml (cryobench run, play, sweep).
    """
    import yaml

    from cryobench.files import write_atomic
    from cryobench.profiles import fit_profile, profile_mapping

    fit = fit_profile(path, beta=beta, name=name)
    profile = fit.profile
    click.echo(f"session {fit.session}: minutes per move level (median gap between exposures)")
    moves = ("same patch", "other patch", "other square", "other tile")
    for move, minutes, gaps in zip(moves, profile.minutes, fit.gaps_per_level, strict=True):
        click.echo(f"  {move:<15} {minutes:6.2f} min   ({gaps} gaps)")
    if profile.square_minutes is not None:
        click.echo(f"  {'square imaging':<15} {profile.square_minutes:6.2f} min   ({fit.square_images} squares)")
    text = yaml.safe_dump(profile_mapping(profile), sort_keys=False, width=100)
    if out:
        write_atomic(Path(out), text.encode())
        click.echo(f"wrote {out}; use it with -e profile={out}")
    else:
        click.echo(text, nl=False)


def _show_dataset(dataset, split: str, noise: float, seed: int | None, as_json: bool) -> None:
    from cryobench.catalog import check_noise, regressor_spec
    from cryobench.regressors import predict, regressor_quality
    from cryobench.stats import grid_statistics

    check_noise(noise)
    # A folder without prediction files has no default regressor: summarise it with perfect predictions, saying so.
    spec = regressor_spec(dataset, None if dataset.card.get("default_regressor") else "perfect")
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
    click.echo(_dataset_text(dataset, split, stats, spec, noise, quality))


def _dataset_text(dataset, split: str, stats: dict, spec: dict, noise: float, quality: dict) -> str:
    """The human-readable summary of ``cryobench datasets show``."""
    from cryobench.cards import assumptions

    def sizes(key: str) -> str:
        s = stats[key]
        return f"{s['min']} / {s['median']:g} / {s['max']}"

    kind = dataset.card.get("kind", "measured")
    bins = stats["ctf_bins"]
    shares = stats["good_variance_shares"]
    corr = stats["log_ctf_correlation"]
    lines = [
        f"{dataset.name} ({kind}{', SIMULATED' if kind != 'measured' else ''}), split {split}",
        "",
        f"{'holes':>8} {'patches':>8} {'squares':>8} {'tiles':>6}",
        f"{stats['holes']:>8} {stats['patches']:>8} {stats['squares']:>8} {stats['tiles']:>6}",
        f"holes per patch (min / median / max):    {sizes('holes_per_patch')}",
        f"patches per square (min / median / max): {sizes('patches_per_square')}",
        f"holes per square (min / median / max):   {sizes('holes_per_square')}",
        "",
        "CTFMaxRes   " + "".join(f"{label:>8}" for label in bins) + f"{'failed':>8}",
        "holes       " + "".join(f"{count:>8}" for count in bins.values()) + f"{stats['failed_fits']:>8}",
        "share       " + "".join(f"{count / stats['holes']:>8.1%}" for count in bins.values()),
        f"good (< 6 Å): {stats['good']} ({stats['good_fraction']:.1%}); failed fits count as bad",
        "variance of 'good' by level: "
        + ", ".join(f"{level.replace('_', ' ')} {share:.0%}" for level, share in shares.items()),
        f"log-CTF correlation: one pitch {corr['one_pitch']:.2f}, >= 4 pitches {corr['four_or_more_pitches']:.2f}, "
        f"across squares {corr['across_squares']:.2f}",
        f"rich patches (> 50% good): {stats['rich_patches']} of {stats['patches']}, "
        f"holding {stats['good_in_rich_patches']} of {stats['good']} good holes",
        "",
        f"regressor {spec} at noise {noise:g}:",
        f"  MAE {quality['mae']:.2f} Å, RMSE {quality['rmse']:.2f} Å, Pearson {quality['pearson']:.2f}, "
        f"Spearman {quality['spearman']:.2f}",
        f"  at 6 Å: precision {quality['precision']:.3f}, recall {quality['recall']:.3f} "
        f"(TP {quality['tp']}, FP {quality['fp']}, FN {quality['fn']}, TN {quality['tn']}); "
        f"patch good-fraction r {quality.get('patch_good_fraction_r', float('nan')):.2f}",
    ]
    if kind != "measured":
        assumed = assumptions(dataset.card) if "layout" in dataset.card else []
        lines += ["", "assumed parameters (not from the paper or measured data): " + (", ".join(assumed) or "none")]
    return "\n".join(lines)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---- play ---------------------------------------------------------------------------
@main.command("play")
@click.option(
    "--env",
    "env_name",
    default="aldolaseau",
    show_default=True,
    shell_complete=_complete_envs,
    help="Environment short name or id.",
)
@click.option("--feedback", default="inspection", show_default=True, help="inspection, queue:K or none.")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Episode seed: sets the starting hole."
)
@click.option("-e", "env_args", multiple=True, metavar="KEY=VALUE", help="gym.make argument (default split=all).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (local only by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default="cryobench-results",
    show_default=True,
    help="Folder for the results files of finished sessions.",
)
@click.option("--replay", "replay_file", type=click.Path(dir_okay=False), default=None, help="Show a results file.")
@click.option("--episode", type=click.IntRange(min=0), default=0, show_default=True, help="Episode to replay.")
@click.option(
    "--idle-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="An unfinished session untouched this long leaves memory; its journal stays, so it can be resumed.",
)
@_friendly_errors
def play_cmd(env_name, feedback, seed, env_args, host, port, out_dir, replay_file, episode, idle_minutes) -> None:
    """Play a session yourself in a web page; the results file scores you like an agent."""
    from cryobench.play.replay import load_replay
    from cryobench.play.server import PlayConfig, serve
    from cryobench.simulator import Feedback

    if replay_file is not None:
        replay = load_replay(replay_file)
        config = PlayConfig(env_name, seed=seed, replay=replay, replay_episode=episode, replay_source=replay_file)
    else:
        env_kwargs = {"split": "all", **_parse_assignments(env_args, "-e")}
        # The paper's human study used the whole AldolaseAu grid; feedback only recorded when not the default.
        if str(Feedback.parse(feedback)) != "inspection":
            env_kwargs["feedback"] = str(Feedback.parse(feedback))
        config = PlayConfig(env_name, env_kwargs, seed=seed, results_dir=Path(out_dir), idle_minutes=idle_minutes)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can play and read sessions "
            f"(requests must address it as {host} or a loopback name; others are refused)",
            err=True,
        )

    def announce(url: str) -> None:
        what = f"replay of {replay_file}" if replay_file else f"{env_name}, feedback {feedback}, seed {seed}"
        click.echo(f"cryobench play ({what}): open {url}  (Ctrl-C stops)")
        if not replay_file:
            click.echo(f"results files go to {Path(out_dir).resolve()}")

    serve(config, host=host, port=port, ready=announce)


# ---- train ----------------------------------------------------------------------------
def _trainer(agent_name: str, agent):
    """The training function an agent names in its ``trainer`` attribute ("module:function")."""
    import importlib

    spec = getattr(agent, "trainer", "")
    if not spec:
        raise InputError(f"agent {agent_name!r} has nothing to train (it names no trainer)")
    module, _, function = str(spec).partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputError(f"agent {agent_name!r}: its trainer {spec!r} cannot be loaded ({exc})") from None


@main.command("train")
@click.option("--agent", "agent_name", required=True, help="A trainable agent (dqn).")
@click.option("--env", "env_name", required=True, help="Training environment: a short name or an id.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Environment steps (default: the card's).")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds every random choice of training."
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Checkpoint file to write.")
@click.option(
    "--log-dir", type=click.Path(file_okay=False), default=None, help="Folder for the CSV (and TensorBoard) log."
)
@click.option("-e", "env_args", multiple=True, metavar="KEY=VALUE", help="gym.make argument, e.g. -e split=train.")
@click.option("-H", "hyper_args", multiple=True, metavar="KEY=VALUE", help="Hyperparameter override.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def train_cmd(agent_name, env_name, steps, seed, out, log_dir, env_args, hyper_args, quiet) -> None:
    """Train an agent's network on an environment and write a checkpoint and a training log."""
    from cryobench.agents.registry import load_agent

    hyper = _parse_assignments(hyper_args, "-H")
    if steps is not None:
        hyper["total_steps"] = steps
    agent, _card = load_agent(agent_name, hyper)
    train = _trainer(agent_name, agent)
    env_kwargs = _parse_assignments(env_args, "-e")
    if out is None:
        out = f"cryobench-checkpoints/{agent_name}_{env_name.replace('/', '-')}_seed{seed}.pt"
    command = "cryobench " + " ".join(sys.argv[1:])
    with warnings.catch_warnings():
        # The trainer's warnings (e.g. too few steps to learn) as one line each, before training starts.
        warnings.showwarning = lambda message, *_args, **_kwargs: click.echo(f"warning: {message}", err=True)
        summary = train(
            agent.config, env_name, env_kwargs, seed=seed, out=out, log_dir=log_dir, progress=not quiet, command=command
        )
    best = summary["best"]
    click.echo(
        f"trained {summary['env_steps']} environment steps, {summary['gradient_steps']} gradient steps "
        f"in {summary['seconds']:.0f} s; replay {summary['replay_bytes'] / 1e6:.1f} MB"
    )
    # The same figure, under the same name, as the log's validation_good column and the progress bar.
    figure = summary.get("best_figure", f"{best['validation_good']:.2f}")
    unit = summary.get("validation_unit", "mean good exposures")
    click.echo(f"best validation_good {figure} ({unit}) at step {best['env_steps']}")
    click.echo(f"checkpoint: {summary['checkpoint']}\nlog: {summary['log']}")
    click.echo(f"use it: cryobench run --agent {agent_name} --env ENV -H checkpoint={summary['checkpoint']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
