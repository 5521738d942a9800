"""``cryobench play``: play a data-collection session yourself in a web page, scored like an agent."""

from cryobench.play.server import PlayConfig, create_app, serve
from cryobench.play.session import PlaySession, hole_looks, replay_session

__all__ = ["PlayConfig", "PlaySession", "create_app", "hole_looks", "replay_session", "serve"]
