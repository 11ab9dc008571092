"""The shell commands of the documentation: every line of a ```bash block in README.md and docs/*.md, as argv lists.

    python tools/doc_commands.py            # list them, one per line, with file and line number

`tests/test_doc_commands.py` runs or dry-runs each one, so a documented flag, preset or file that does not exist
fails the suite. Lines joined by a trailing backslash are one command; `&&` separates commands; a `# comment` ends
one; `> FILE` redirects its output.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class DocCommand:
    """One documented command: where it is written, and its words as the shell splits them."""

    path: Path
    line: int
    argv: list[str]
    stdout: str | None = None
    """The file a `> FILE` at its end writes to."""

    def __str__(self) -> str:
        where = f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"
        redirect = f" > {self.stdout}" if self.stdout else ""
        return f"{where}: {shlex.join(self.argv)}{redirect}"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, the line with its backslash continuations joined) of each ```bash block line."""
    out: list[tuple[int, str]] = []
    in_bash, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_bash = not in_bash and stripped[3:].strip() in ("bash", "sh", "shell", "console")
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append((start, pending + stripped))
        pending = ""
    return out


def commands(path: Path) -> list[DocCommand]:
    """The commands of one markdown file, in the order they are written."""
    found: list[DocCommand] = []
    for number, line in _logical_lines(path.read_text()):
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in words + ["&&"]:
            if word == "&&":
                if current:
                    stdout = None
                    if ">" in current:
                        i = current.index(">")
                        stdout, current = current[i + 1], current[:i]
                    found.append(DocCommand(path, number, current, stdout))
                current = []
            else:
                current.append(word)
    return found


def documented_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main() -> None:
    for path in documented_files():
        for command in commands(path):
            print(command)


if __name__ == "__main__":
    sys.exit(main())
