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


# ------------------------------------------------------------------------------------ the demos' quality figures
ROLES = ("teacher", "student alone", "distilled student")
QUALITY = ("accuracy", "macro F1", "NLL", "ECE", "agreement", "pred. KL",  # classification (kdkit.report.table)
           "exact match", "perplexity", "token acc.", "per-token KL")  # language models (kdkit.families.lm.rundir)


@dataclass(frozen=True)
class DemoFigures:
    command: str  # as the README gives it
    threads: int  # OMP_NUM_THREADS the README states the figures were measured with
    figures: dict[str, dict[str, str]]  # model -> column -> the README's text of the figure

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)[1:]


def _cells(line: str) -> list[str]:
    """The cells of a Markdown or rich table row (`| a | b |`, `│ a │ b │`, `┃ a ┃ b ┃`)."""
    return [cell.strip() for cell in re.split(r"[|│┃]", line.strip())[1:-1]]


def table_figures(lines: list[str]) -> dict[str, dict[str, str]]:
    """model -> {quality column: cell} of the first table in `lines` that has a row per demo model."""
    header: list[str] = []
    found: dict[str, dict[str, str]] = {}
    for line in lines:
        cells = _cells(line)
        if cells and cells[0] == "model":
            header, found = cells, {}
        elif header and cells and cells[0] in ROLES and len(cells) == len(header):
            found[cells[0]] = {col: cell for col, cell in zip(header, cells, strict=True) if col in QUALITY}
            if len(found) == len(ROLES):
                return found
    return found


def _after(text: str, anchor: str) -> list[str]:
    return text[text.index(anchor):].splitlines()


def readme_demo_figures(readme: Path = ROOT / "README.md") -> list[DemoFigures]:
    """Every quality figure the README gives for a demo, with the command and thread count it states: the quick
    start's table (`kdkit demo`), the text demo's accuracies and the language-model demo's table."""
    text = readme.read_text(encoding="utf-8")
    signals = table_figures(_after(text, "## Quick start"))
    prose = re.search(r"`kdkit demo --task text` does the same.*?measured with `OMP_NUM_THREADS=1`: teacher\s+"
                      r"([\d.]+), student alone ([\d.]+), distilled ([\d.]+)", text, re.S)
    if prose is None:
        raise AssertionError("README.md: the text demo's figures are no longer where readme_demo_figures looks")
    text_demo = {role: {"accuracy": value} for role, value in zip(ROLES, prose.groups(), strict=True)}
    lm = table_figures(_after(text, "`kdkit demo --task lm` trains a teacher"))
    return [DemoFigures("kdkit demo", 2, signals), DemoFigures("kdkit demo --task text", 1, text_demo),
            DemoFigures("kdkit demo --task lm", 1, lm)]


def readme_verdict_example(readme: Path = ROOT / "README.md") -> list[str]:
    """The lines the README shows `kdkit demo --quick` printing after its table (verdict and warnings), each cut
    where the README shortens it with '...'."""
    text = readme.read_text(encoding="utf-8")
    block = re.search(r"`kdkit demo --quick` \(2 epochs\) prints \(with `OMP_NUM_THREADS=1`\):\n\n```\n(.*?)```", text,
                      re.S)
    if block is None:
        raise AssertionError("README.md: the verdict example of `kdkit demo --quick` is no longer there")
    return [line.split("...")[0].rstrip(" (") for line in block.group(1).splitlines() if line.strip()]
