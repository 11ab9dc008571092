"""One exception type for problems with the user's input: the CLI prints it as one line, never a traceback."""


class ShiftlensError(Exception):
    """Bad input or an impossible request; the message names the input and what to do."""
