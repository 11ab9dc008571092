"""One exception type for problems with the user's input: the CLI prints it as one line, never a traceback."""

from pathlib import Path


class ShiftlensError(Exception):
    """Bad input or an impossible request; the message names the input and what to do."""


def path_error(path: Path, what: str, fix: str, *, folder: bool = False) -> ShiftlensError:
    """The error for a path that is not the file (or, `folder`, the folder) it should be: a folder where a file is
    needed is called a folder, and a file where a folder is needed a file, not missing."""
    if folder:
        found = "is a file, and a folder is needed" if path.exists() else "does not exist"
    else:
        found = "is a folder, and a file is needed" if path.is_dir() else "does not exist"
    return ShiftlensError(f"{what} {path} {found}: {fix}")
