"""The README's table of commands and their times, read by tests/test_readme_commands.py (every command runs) and
bench/readme_times.py (every command is timed against the time the README states)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = "### How long each command takes"
SLOW_SECONDS = 30  # rows stated above this run in the tests only with KDKIT_SLOW=1


@dataclass(frozen=True)
class Row:
    command: str   # as written in the README
    seconds: float  # the time the README states on 2 CPU cores

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)[1:]  # without the leading `kdkit`

    @property
    def slow(self) -> bool:
        return self.seconds > SLOW_SECONDS


def readme_rows(readme: Path = ROOT / "README.md") -> list[Row]:
    """Rows `| \\`kdkit ...\\` | N s | ... |` of the table under HEADING."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(HEADING)
    section = text[start:text.find("\n#", start + len(HEADING))]
    rows = [Row(m.group(1), float(m.group(2)))
            for m in re.finditer(r"^\| `(kdkit [^`]+)` \| (?:about |under )?([\d.]+) s \|", section, re.M)]
    if not rows:
        raise AssertionError(f"README.md: no command rows under '{HEADING}'")
    return rows


def prepare_workdir(workdir: Path) -> None:
    """What the README's commands expect in the directory they run from: the shipped configs."""
    (workdir / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
