"""cryobench: the open benchmark and gymnasium suite for planning cryo-EM data collection.

Importing cryobench registers its environments with gymnasium:
``cryobench/Aldolase-v0``, ``cryobench/Apoferritin-v0``, ``cryobench/RNAPII-v0``,
``cryobench/AldolaseAu-v0`` (simulated twins of the cryoRL paper's datasets) and
``cryobench/CryoRL-v0`` (any folder of measured data in the CryoRL format).
"""

from importlib.metadata import PackageNotFoundError, version

from cryobench.registration import env_cards, register_envs

try:
    __version__ = version("cryobench")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.0.0+unknown"

register_envs()

__all__ = ["__version__", "env_cards", "register_envs"]
