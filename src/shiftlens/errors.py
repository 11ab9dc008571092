"""One exception type for problems with the user's input: the CLI prints it as one line, never a traceback."""

from pathlib import Path


class ShiftlensError(Exception):
    """Bad input or an impossible request; the message names the input and what to do."""


def not_a_file(path: Path, what: str, fix: str) -> ShiftlensError:
    """The error for a path that should be a file and is not: a folder is called a folder, not missing."""
    found = "is a folder, and a file is needed" if path.is_dir() else "does not exist"
    return ShiftlensError(f"{what} {path} {found}: {fix}")
