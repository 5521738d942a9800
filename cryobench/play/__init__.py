"""``cryobench play``: play a data-collection session yourself in a web page, scored like an agent."""

from cryobench.play.replay import replay_session
from cryobench.play.server import PlayConfig, create_app, make_play_server, serve
from cryobench.play.session import PlaySession, hole_looks

__all__ = ["PlayConfig", "PlaySession", "create_app", "hole_looks", "make_play_server", "replay_session", "serve"]
