"""The error types the command line tells apart, and the exit code of each (documented in the README).

- ``InputError``: bad input from a user; the message names the file, line or argument.
- ``Rejected``: a document examined and refused (``leaderboard verify``; ``check``).
- ``Interrupted``: a run stopped by Ctrl-C or SIGTERM after keeping what was finished.
- anything else escaping a command is a bug in cryobench: an internal error.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """The ``cryobench`` command's exit status; scripts and CI can branch on it.

    Like ``diff`` and ``grep``: 1 is a definite "no", 2 is trouble with what was asked (click's
    own usage errors exit 2 as well, so every kind of bad input shares one code), and like
    pytest's an internal error is 3. 130 is the shell's convention for a SIGINT (128 + 2).
    """

    OK = 0
    REJECTED = 1  # a submission that does not verify, a check that fails, tables out of date
    BAD_INPUT = 2  # a bad option, argument, file or folder; a file that cannot be read or written
    INTERNAL_ERROR = 3  # a bug in cryobench: please report it with the traceback
    INTERRUPTED = 130  # stopped by Ctrl-C (or SIGTERM); finished work is kept


class InputError(ValueError):
    """Bad input from a user: a file, a card, a command-line or ``gym.make`` argument.

    The message names where the problem is (file and line, card field, or argument)
    and what was expected, so the CLI can print it without a traceback.
    """


class UnknownArgumentError(InputError, TypeError):
    """An unknown keyword argument to an environment or agent: bad input, and a TypeError too.

    Libraries probe constructors with keywords and expect Python's TypeError for one that is not
    accepted (TorchRL's ``GymEnv``); the CLI still shows it as one line of bad input.
    """


class Rejected(Exception):
    """A well-formed document that was examined and refused (it does not verify, a check failed)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; the message says what was kept and how to resume.

    A KeyboardInterrupt, so code that does not know it treats it as the Ctrl-C it is.
    """
