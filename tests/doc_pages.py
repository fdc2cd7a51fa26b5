"""The documentation as data, for the tests that keep it true: the pages (README.md and every page under docs/),
their code blocks, the table of commands and their times (read by tests/docs/test_doc_commands.py, which runs every
command, and bench/readme_times.py, which times them), and the demos' figures the pages and the README state."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GETTING_STARTED = DOCS / "getting-started.md"
LM_GUIDE = DOCS / "guides" / "language-models.md"
RESULTS_PAGE = DOCS / "results.md"
HEADING = "### How long each command takes"  # in GETTING_STARTED
SLOW_SECONDS = 30  # rows stated above this run in the tests only with KDKIT_SLOW=1


def pages() -> list[Path]:
    """README.md and every Markdown page of the documentation site."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str  # "python", "yaml", "bash", "" (a plain block: output, a tree, a transcript)
    code: str

    @property
    def where(self) -> str:
        return f"{page_id(self.page)}:{self.line}"


FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, in order (`py` counts as `python`, `sh`/`shell` as `bash`)."""
    text = page.read_text(encoding="utf-8")
    aliases = {"py": "python", "sh": "bash", "shell": "bash", "console": "bash"}
    return [Block(page, text.count("\n", 0, m.start()) + 1, aliases.get(m.group(1), m.group(1)), m.group(2))
            for m in FENCE.finditer(text)]


def all_blocks(lang: str) -> list[Block]:
    return [block for page in pages() for block in code_blocks(page) if block.lang == lang]


# ------------------------------------------------------------------------- the table of commands and their times
@dataclass(frozen=True)
class Row:
    command: str   # as written on the page
    seconds: float  # the time the page states on 2 CPU cores

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)[1:]  # without the leading `kdkit`

    @property
    def slow(self) -> bool:
        return self.seconds > SLOW_SECONDS


def time_table_rows(page: Path = GETTING_STARTED) -> list[Row]:
    """Rows `| \\`kdkit ...\\` | N s | ... |` of the table under HEADING."""
    text = page.read_text(encoding="utf-8")
    start = text.index(HEADING)
    section = text[start:text.find("\n#", start + len(HEADING))]
    rows = [Row(m.group(1), float(m.group(2)))
            for m in re.finditer(r"^\| `(kdkit [^`]+)` \| (?:about |under )?([\d.]+) s \|", section, re.M)]
    if not rows:
        raise AssertionError(f"{page_id(page)}: no command rows under '{HEADING}'")
    return rows


def prepare_workdir(workdir: Path) -> None:
    """What the documented commands expect in the directory they run from: the shipped configs."""
    (workdir / "configs").symlink_to(ROOT / "configs", target_is_directory=True)


# ------------------------------------------------------------------------------------ the demos' quality figures
ROLES = ("teacher", "student alone", "distilled student")
QUALITY = ("accuracy", "macro F1", "NLL", "ECE", "agreement", "pred. KL",  # classification (kdkit.report.table)
           "exact match", "perplexity", "token acc.", "per-token KL")  # language models (kdkit.families.lm.rundir)


@dataclass(frozen=True)
class DemoFigures:
    command: str  # as the page gives it
    threads: int  # OMP_NUM_THREADS the page states the figures were measured with
    figures: dict[str, dict[str, str]]  # model -> column -> the page's text of the figure
    headline: str  # the column the README's table of measured results quotes

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


def demo_figures() -> list[DemoFigures]:
    """Every quality figure the pages give for a demo, with the command and thread count they state: the table
    under the demo in Getting started (`kdkit demo`), the text demo's accuracies there, and the language-model
    demo's table in its guide."""
    text = GETTING_STARTED.read_text(encoding="utf-8")
    signals = table_figures(_after(text, "## Install and run the demo"))
    prose = re.search(r"`kdkit demo --task text` does the same.*?measured with `OMP_NUM_THREADS=1`: teacher\s+"
                      r"([\d.]+), student alone ([\d.]+), distilled ([\d.]+)", text, re.S)
    if prose is None:
        raise AssertionError(f"{page_id(GETTING_STARTED)}: the text demo's figures are no longer where "
                             "demo_figures looks")
    text_demo = {role: {"accuracy": value} for role, value in zip(ROLES, prose.groups(), strict=True)}
    lm = table_figures(_after(LM_GUIDE.read_text(encoding="utf-8"), "`kdkit demo --task lm` trains a teacher"))
    return [DemoFigures("kdkit demo", 2, signals, "accuracy"), DemoFigures("kdkit demo --task text", 1, text_demo,
                                                                          "accuracy"),
            DemoFigures("kdkit demo --task lm", 1, lm, "exact match")]


def readme_headline(readme: Path = ROOT / "README.md") -> dict[str, dict[str, str]]:
    """The README's table of measured results: for each row that names a demo command, model -> figure."""
    text = readme.read_text(encoding="utf-8")
    rows: dict[str, dict[str, str]] = {}
    for line in _after(text, "## Measured"):
        cells = _cells(line)
        command = re.search(r"`(kdkit demo[^`]*)`", cells[0]) if cells else None
        if command and len(cells) >= 4:
            rows[command.group(1)] = dict(zip(ROLES, cells[1:4], strict=True))
    return rows


def verdict_example(page: Path = RESULTS_PAGE) -> list[str]:
    """The lines the page shows `kdkit demo --quick` printing after its table (verdict and warnings), each cut
    where the page shortens it with '...'."""
    text = page.read_text(encoding="utf-8")
    block = re.search(r"`kdkit demo --quick` \(2 epochs\) prints \(with `OMP_NUM_THREADS=1`\):\n\n```\n(.*?)```", text,
                      re.S)
    if block is None:
        raise AssertionError(f"{page_id(page)}: the verdict example of `kdkit demo --quick` is no longer there")
    return [line.split("...")[0].rstrip(" (") for line in block.group(1).splitlines() if line.strip()]
