"""``cryobench play --replay``: a results file shown again, read-only, after checking every field it uses.

The trajectory is exposed again on the environment the file names, so what the page shows
(times, CTFs, counts) is recomputed, and a file that does not reproduce is refused. A file
with a missing or wrong-typed field is refused with one line naming the file and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cryobench import metrics
from cryobench.errors import InputError
from cryobench.play.session import PlaySession


def load_replay(path: str | Path) -> dict[str, Any]:
    """The results document in ``path`` for ``play --replay``; InputError (one line naming the file) when it
    cannot be read or is not a results document. :func:`replay_session` checks the fields it replays."""
    from cryobench.results import load_results

    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such results file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text, not a results file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply, not a results file") from None
    if isinstance(document, dict) and not isinstance(document.get("episodes", []), list):
        raise InputError(f"{path}: 'episodes' must be a list of episodes, got {document['episodes']!r:.60}")
    return load_results(path)  # its format tag and required fields


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_episode(result: dict[str, Any], episode: int, source: str) -> dict[str, Any]:
    """Episode ``episode`` of ``result``, with the fields the replay reads checked for type."""

    def refuse(message: str) -> InputError:
        return InputError(f"{source}: {message}")

    episodes = result.get("episodes")
    if not isinstance(episodes, list) or not episodes:
        raise refuse(f"'episodes' must be a non-empty list of episodes, got {episodes!r:.60}")
    if not 0 <= episode < len(episodes):
        raise InputError(f"option --episode: {source} has episodes 0..{len(episodes) - 1}, got {episode}")
    row = episodes[episode]
    if not isinstance(row, dict):
        raise refuse(f"episode {episode} must be an object, got {row!r:.60}")
    for key in ("seed", "exposures", "good_exposures"):
        if not _is_int(row.get(key)) or row[key] < 0:
            raise refuse(f"episode {episode}: {key!r} must be an integer >= 0, got {row.get(key)!r:.60}")
    if "start" in row and not _is_int(row["start"]):
        raise refuse(f"episode {episode}: 'start' must be a hole id, got {row['start']!r:.60}")
    trajectory = row.get("trajectory")
    if not isinstance(trajectory, list) or not all(_is_int(hole) for hole in trajectory):
        raise refuse(f"episode {episode}: 'trajectory' must be a list of integer hole ids, got {trajectory!r:.60}")
    return row


def _checked_human(result: dict[str, Any], source: str) -> tuple[list[bool], bool]:
    """The overlay flag per exposure and the finished-early flag of a person's session (none for agents)."""
    human = result.get("human")
    if human is None:
        return [], False
    if not isinstance(human, dict):
        raise InputError(f"{source}: 'human' must be an object, got {human!r:.60}")
    overlay = human.get("overlay_per_exposure", [])
    if not isinstance(overlay, list) or not all(isinstance(flag, bool) for flag in overlay):
        raise InputError(f"{source}: 'human.overlay_per_exposure' must be a list of true/false, got {overlay!r:.60}")
    finished_early = human.get("finished_early", False)
    if not isinstance(finished_early, bool):
        raise InputError(f"{source}: 'human.finished_early' must be true or false, got {finished_early!r:.60}")
    return overlay, finished_early


def replay_session(
    session_id: str, result: dict[str, Any], episode: int = 0, source: str = "results file"
) -> PlaySession:
    """A read-only session that replays episode ``episode`` of a results document, through the simulator.

    ``source`` names the document in errors (its file). (An agent's invalid actions, which cost
    minutes but are not in the trajectory, are not replayed.)
    """
    from cryobench.registration import make_env

    if not isinstance(result, dict):
        raise InputError(f"{source}: a results document must be a JSON object")
    env_info = result.get("env")
    if not isinstance(env_info, dict) or not isinstance(env_info.get("id"), str):
        raise InputError(f"{source}: 'env.id' must name an environment, got {env_info!r:.60}")
    kwargs = env_info.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InputError(f"{source}: 'env.kwargs' must be an object of gym.make arguments, got {kwargs!r:.60}")
    if "world_seed" in env_info and not _is_int(env_info["world_seed"]):
        raise InputError(f"{source}: 'env.world_seed' must be an integer, got {env_info['world_seed']!r:.60}")
    agent = result.get("agent")
    name = agent.get("name") if isinstance(agent, dict) else None
    if not isinstance(name, str) or not name:
        raise InputError(f"{source}: 'agent.name' must be a non-empty string, got {name!r:.60}")
    row = _checked_episode(result, episode, source)
    overlay, finished_early = _checked_human(result, source)
    try:
        gym_env = make_env(env_info["id"], kwargs)
    except (InputError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: 'env': {exc}") from None
    inner = gym_env.unwrapped
    if "world_seed" in env_info and inner.world_seed != env_info["world_seed"]:
        raise InputError(
            f"{source}: world seed {env_info['world_seed']} differs from the environment's {inner.world_seed}"
        )
    # The page shows the display name as text; the player name (also used in file names) is made safe.
    player = re.sub(r"[^A-Za-z0-9 _.\-]", "_", name.removeprefix("human:"))[:40].strip() or "player"
    if not player[0].isalnum():
        player = "p" + player[:39]
    session = PlaySession(session_id, player, inner, env_info, row["seed"], None, display_name=name[:200])
    if int(session.state.start) != row.get("start", session.state.start):
        raise InputError(f"{source}: episode {episode} starts at hole {row['start']}, the seed gives another")
    for step, hole in enumerate(row["trajectory"]):
        if session.is_over:
            raise InputError(f"{source}: the session ends before step {step + 1} of the trajectory")
        if not 0 <= hole < inner.world.n_holes or inner.state.visited[hole]:
            raise InputError(f"{source}: step {step + 1} exposes hole {hole}, which is not a valid hole")
        session._expose_checked([hole], overlay[step] if step < len(overlay) else False)
    replayed = metrics.episode_metrics(inner.world, inner.state)
    if replayed["good_exposures"] != row["good_exposures"] or replayed["exposures"] != row["exposures"]:
        raise InputError(
            f"{source}: the trajectory gives {replayed['good_exposures']} good of {replayed['exposures']} "
            f"exposures here, the file says {row['good_exposures']} of {row['exposures']} (another world?)"
        )
    session.finished_early = finished_early
    session.read_only = True
    return session
