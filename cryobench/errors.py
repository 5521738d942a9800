"""The one error type for bad user input: its message names the file, line or argument."""


class InputError(ValueError):
    """Bad input from a user: a file, a card, a command-line or ``gym.make`` argument.

    The message names where the problem is (file and line, card field, or argument)
    and what was expected, so the CLI can print it without a traceback.
    """
