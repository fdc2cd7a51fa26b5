"""Disk full at every phase of a tiny `kdkit train` (and of `kdkit report`): each is one line and exit 2, no file
already written is torn (every safetensors, JSON, YAML and npz file still loads, no temp file is left), and the
rerun with --resume (for the report: the same command again) completes.

The fault is injected where every kdkit write goes through, kdkit.io.checkpoint._atomic: the chosen write puts half
its bytes into its temp file and then fails with ENOSPC, as a full disk does part-way through a file."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file
from test_run_dir import _cli, _write, tiny_config

import kdkit.io.checkpoint

pytestmark = pytest.mark.usefixtures("quick_timing")  # these tests check writes, not the timing of the models


def _in_checkpoints(stage: str) -> Callable[[Path], bool]:
    return lambda path: path.parent.name == "checkpoints" and path.name.startswith(f"{stage}.")


PHASES: dict[str, tuple[Callable[[Path], bool], int]] = {  # which write fails: (that path, its n-th write)
    "config": (lambda p: p.name == "config.yaml", 1),
    "teacher checkpoint": (_in_checkpoints("teacher"), 3),  # after a first complete checkpoint
    "student_alone checkpoint": (_in_checkpoints("student_alone"), 3),
    "distill checkpoint": (_in_checkpoints("student_kd"), 3),
    "models/ weights": (lambda p: p.parent.name == "models" and p.suffix == ".safetensors", 2),
    "models/meta.json": (lambda p: p.parent.name == "models" and p.name == "meta.json", 1),
    "predictions.npz": (lambda p: p.name == "predictions.npz", 1),
    "table.md": (lambda p: p.name == "table.md", 1),
    "results.json": (lambda p: p.name == "results.json", 1),
}


def _fill_disk_at(monkeypatch, matches: Callable[[Path], bool], nth: int) -> dict[str, int]:
    real, seen = kdkit.io.checkpoint._atomic, {"n": 0, "failed": 0}

    def atomic(path, write):
        if matches(Path(path)):
            seen["n"] += 1
            if seen["n"] == nth:
                seen["failed"] += 1

                def half_then_full(tmp: str) -> None:
                    Path(tmp).write_bytes(b"the first half of the file")
                    raise OSError(errno.ENOSPC, "No space left on device")

                return real(path, half_then_full)
        return real(path, write)

    monkeypatch.setattr(kdkit.io.checkpoint, "_atomic", atomic)
    return seen


def _assert_nothing_torn(run_dir: Path) -> None:
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    for path in run_dir.rglob("*"):
        if path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict)
        elif path.suffix == ".npz":
            with np.load(path) as data:
                assert data.files


def _assert_one_line(code: int, err: str, written: str) -> None:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and written in err, err


@pytest.mark.parametrize("phase", list(PHASES))
def test_disk_full_at_each_phase_is_one_line_and_resume_completes(phase, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    config = _write(tmp_path, tiny_config(out, epochs=2))
    real = kdkit.io.checkpoint._atomic
    seen = _fill_disk_at(monkeypatch, *PHASES[phase])
    code, _, err = _cli(["train", str(config)], capsys)
    assert seen["failed"] == 1, f"no write of phase {phase} happened"
    _assert_one_line(code, err, str(out))
    assert "--resume" in err
    assert not (out / "results.json").exists()  # no finished-looking run after a failure
    _assert_nothing_torn(out)
    monkeypatch.setattr(kdkit.io.checkpoint, "_atomic", real)  # the disk has room again
    code, _, err = _cli(["train", str(config), "--resume"], capsys)
    assert code == 0, err
    assert (out / "results.json").is_file() and len(list((out / "models").glob("*.safetensors"))) == 3
    _assert_nothing_torn(out)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, quick_timing) -> Path:
    """A tiny finished run, trained once; each report test fills the disk while reporting on a copy of its own."""
    from kdkit.cli import main

    tmp = tmp_path_factory.mktemp("finished")
    try:
        main(["train", str(_write(tmp, tiny_config(tmp / "run", epochs=1)))])
    except SystemExit as exit_info:
        assert not exit_info.code, f"kdkit train exited with {exit_info.code}"
    return tmp / "run"


@pytest.mark.parametrize("written", ["figure", "report.html", "report.md"])
def test_disk_full_while_writing_the_report_is_one_line(written, finished_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    results, real = (out / "results.json").read_text(), kdkit.io.checkpoint._atomic
    matches = (lambda p: p.suffix == ".png") if written == "figure" else (lambda p: p.name == written)
    seen = _fill_disk_at(monkeypatch, matches, 1)
    code, _, err = _cli(["report", str(out)], capsys)
    assert seen["failed"] == 1
    _assert_one_line(code, err, str(out))
    _assert_nothing_torn(out)
    assert (out / "results.json").read_text() == results  # the training's files are untouched
    monkeypatch.setattr(kdkit.io.checkpoint, "_atomic", real)
    code, _, err = _cli(["report", str(out)], capsys)
    assert code == 0, err
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
