"""The documentation cannot drift: every command of the time table (Getting started) runs as written and succeeds,
every `error:` example a page shows is the line kdkit prints for that mistake, every quality figure of a demo's table
(and the verdict the quick demo prints) is what that demo prints today, run with the thread count the page states,
and the README's table of measured results quotes those same figures. (The stated times are checked by
bench/readme_times.py, a benchmark, not here; timings are not compared.)"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from doc_pages import (
    ROOT,
    code_blocks,
    demo_figures,
    pages,
    prepare_workdir,
    readme_headline,
    table_figures,
    time_table_rows,
    verdict_example,
)

from kdkit.cli import main

ROWS = time_table_rows()
RUN_SLOW = os.environ.get("KDKIT_SLOW") == "1"


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs")
    prepare_workdir(path)
    return path


def test_the_table_lists_the_quick_demo_first_within_its_promise() -> None:
    assert ROWS[0].command.startswith("kdkit demo --quick") and ROWS[0].seconds <= 30


# in order: later rows read the run directory the quick demo wrote
@pytest.mark.parametrize("row", ROWS, ids=[r.command for r in ROWS])
def test_each_timed_command_runs_as_written(row, workdir, capsys, monkeypatch) -> None:
    if row.slow and not RUN_SLOW:
        pytest.skip(f"stated {row.seconds:.0f} s on 2 cores; KDKIT_SLOW=1 runs it")
    monkeypatch.chdir(workdir)
    code, err = _cli(row.argv, capsys)
    assert code == 0, f"`{row.command}` exited {code}: {err}"


def _error_lines() -> list[str]:
    """Every `error: ...` line shown in a plain code block of any page."""
    return [line for page in pages() for block in code_blocks(page) if block.lang == ""
            for line in block.code.splitlines() if line.startswith("error:")]


def _bad_key(tmp_path: Path, capsys, monkeypatch) -> str:
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["train"]["epochz"] = cfg["train"].pop("epochs")  # a misspelt key
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    return _cli(["train", "bad.yaml"], capsys)[1]


def _disk_full(tmp_path: Path, capsys, monkeypatch) -> str:
    import kdkit.io.checkpoint

    real = kdkit.io.checkpoint.save_file

    def full(tensors, path, metadata=None):
        if "teacher.resume" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(kdkit.io.checkpoint, "save_file", full)
    monkeypatch.chdir(tmp_path)
    return _cli(["demo", "--quick"], capsys)[1]  # writes runs/demo, as in the page's line


# an error line of a page (a distinctive part) -> how to make kdkit print it
REPRODUCTIONS = {"train.epochz": _bad_key, "No space left on device": _disk_full}


def test_the_pages_show_error_examples() -> None:
    assert len(_error_lines()) >= len(REPRODUCTIONS)


@pytest.mark.parametrize("line", _error_lines())
def test_each_error_example_is_what_kdkit_prints(line, tmp_path, capsys, monkeypatch) -> None:
    make = next((fn for key, fn in REPRODUCTIONS.items() if key in line), None)
    assert make is not None, f"a page shows an error with no reproduction in this test: {line}"
    printed = [row for row in make(tmp_path, capsys, monkeypatch).splitlines() if row.strip()]
    assert printed == [line]


def _printed(argv: list[str], threads: int, workdir: Path) -> str:
    """What `kdkit ARGV` prints, run as a user runs it (its own process, OMP_NUM_THREADS as the page states)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "kdkit.cli", *argv], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


DEMOS = demo_figures()


def test_the_pages_give_every_figure_of_each_demo_table():
    for demo in DEMOS:
        assert set(demo.figures) == {"teacher", "student alone", "distilled student"}, demo.command
    assert len(DEMOS[0].figures["distilled student"]) == 6 and len(DEMOS[2].figures["teacher"]) == 5


@pytest.mark.parametrize("demo", DEMOS, ids=[d.command for d in DEMOS])
def test_each_demo_prints_the_figures_the_pages_give(demo, tmp_path):
    if not RUN_SLOW:
        pytest.skip(f"`{demo.command}` takes a minute or more on 2 cores; KDKIT_SLOW=1 runs it")
    printed = table_figures(_printed(demo.argv, demo.threads, tmp_path).splitlines())
    for model, figures in demo.figures.items():
        for column, value in figures.items():
            assert printed[model][column] == value, f"`{demo.command}`, {model}, {column}: page {value}, " \
                                                    f"printed {printed[model][column]}"


def test_the_quick_demo_prints_the_verdict_the_page_shows(tmp_path):
    lines = _printed(["demo", "--quick"], 1, tmp_path).splitlines()
    for expected in verdict_example():
        assert any(line.startswith(expected) for line in lines), f"page: {expected}\nprinted: {lines[-6:]}"


def test_the_readme_quotes_the_demo_figures_of_the_pages():
    """The README's table of measured results gives, for each demo, the figures of the page that the slow test above
    checks against what the demo prints."""
    headline = readme_headline()
    assert set(headline) == {demo.command for demo in DEMOS}
    for demo in DEMOS:
        assert headline[demo.command] == {model: demo.figures[model][demo.headline] for model in demo.figures}, \
            demo.command
