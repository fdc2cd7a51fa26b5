"""Long runs that survive: a `kdkit train` killed (SIGKILL) at a random moment and resumed with --resume ends
with the weights of an uninterrupted run, bit for bit; the run directory is locked, guarded against mixing two
runs, and a disk error is one line."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from kdkit.cli import main

KDKIT = [sys.executable, "-c", "from kdkit.cli import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# these tests check the run directory, not the timing of the models: the quick timing plan, in-process by the fixture
# and in the `kdkit train` processes by --quick-timing
pytestmark = pytest.mark.usefixtures("quick_timing")


def tiny_config(out: Path, **train) -> dict:
    """digits, two small MLPs, three stages of 3 epochs, step checkpoints: a few seconds on one CPU core."""
    return {
        "seed": 0, "output_dir": str(out),
        "data": {"name": "digits"},
        "train": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "progress": False, "device": "cpu",
                  "checkpoint_every_steps": 7, **train},
        "teacher": {"name": "mlp", "params": {"hidden": [32]}},
        "student": {"name": "mlp", "params": {"hidden": [8]}},
        "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}], "cache_teacher": True},
    }


def _write(tmp: Path, cfg: dict, name: str = "run.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exit_info:
        code = exit_info.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _weights(run_dir: Path) -> dict:
    return {p.name: load_file(str(p)) for p in sorted((run_dir / "models").glob("*.safetensors"))}


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and len(wa) >= 3 and all(
        wa[f].keys() == wb[f].keys() and all((wa[f][k] == wb[f][k]).all() for k in wa[f]) for f in wa)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A run never interrupted, and how long its training and evaluation took (from config.yaml to results)."""
    tmp = tmp_path_factory.mktemp("whole")
    done = subprocess.run([*KDKIT, "train", str(_write(tmp, tiny_config(tmp / "run"))), "--quick-timing"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run = tmp / "run"
    return run, (run / "results.json").stat().st_mtime - (run / "config.yaml").stat().st_mtime


def _started(out: Path, proc: subprocess.Popen) -> None:
    """Wait until the run has claimed its directory (config written), i.e. training begins."""
    deadline = time.monotonic() + 120
    while not (out / "config.yaml").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(uninterrupted, tmp_path, capsys):
    whole, seconds = uninterrupted
    rng = random.Random()
    killed_mid_run = 0
    kills = int(os.environ.get("KDKIT_FAULT_KILLS", "2"))  # 10 kills: tests/run/test_sigkill.py
    # up to 3 more kills while none has hit a run in progress: under a changing machine load a random delay can
    # outlast every run (each kill is still checked the same way)
    attempt = 0
    while attempt < kills or (killed_mid_run == 0 and attempt < kills + 3):
        attempt += 1
        out = tmp_path / f"cut{attempt}"
        config = _write(tmp_path, tiny_config(out), f"cut{attempt}.yaml")
        delay = rng.uniform(0.0, 0.95) * seconds
        proc = subprocess.Popen([*KDKIT, "train", str(config), "--quick-timing"], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _started(out, proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_mid_run += proc.returncode == -signal.SIGKILL and not (out / "results.json").exists()
        code, _, err = _cli(["train", str(config), "--resume"], capsys)  # in this process: no second start-up
        assert code == 0, f"killed after {delay:.2f} s: {err}"
        assert _same_weights(whole, out), f"killed after {delay:.2f} s"
        assert not list(out.rglob("*.tmp")) and not (out / ".kdkit.lock").exists()
        epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2, 3] * 3, f"killed after {delay:.2f} s"  # each epoch of each stage logged once
    assert killed_mid_run >= 1  # at least one kill hit a run in progress, not one already done


def test_finished_run_is_refused_unless_overwrite_and_evaluate_keeps_results(uninterrupted, tmp_path, capsys):
    whole, _ = uninterrupted
    code, _, err = _cli(["train", str(_write(tmp_path, tiny_config(whole)))], capsys)
    assert code == 2 and "holds a finished run; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    results = (whole / "results.json").read_text()
    code, _, err = _cli(["evaluate", str(whole)], capsys)
    assert code == 0, err
    assert (whole / "results.json").read_text() == results  # training's numbers untouched
    evaluation = json.loads((whole / "evaluation.json").read_text())
    assert [r["accuracy"] for r in evaluation["rows"]] == [r["accuracy"] for r in json.loads(results)["rows"]]


def test_unfinished_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    config = _write(tmp_path, tiny_config(out, epochs=1))
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\n")
    (out / "notes.txt").write_text("mine")
    code, _, err = _cli(["train", str(config)], capsys)
    assert code == 2 and "unfinished run" in err and "--resume" in err
    code, _, err = _cli(["train", str(config), "--resume"], capsys)
    assert code == 2 and "config differs" in err
    code, _, err = _cli(["train", str(config), "--overwrite"], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.json").is_file()


def test_locked_directory_is_refused_and_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    config = _write(tmp_path, tiny_config(out, epochs=1))
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (out / ".kdkit.lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        code, _, err = _cli(["train", str(config)], capsys)
        assert code == 2 and f"in use by another kdkit run (pid {sleeper.pid})" in err
    finally:
        sleeper.kill()
        sleeper.wait()
    (out / ".stale.tmp").write_text("torn")  # a killed write's leftover
    code, _, err = _cli(["train", str(config)], capsys)  # the lock's pid is dead now: stale, taken over
    assert code == 0, err
    assert not (out / ".kdkit.lock").exists() and not (out / ".stale.tmp").exists()


def test_disk_full_at_a_checkpoint_is_one_line_and_keeps_what_was_saved(tmp_path, capsys, monkeypatch):
    import kdkit.io.checkpoint

    out = tmp_path / "run"
    config = _write(tmp_path, tiny_config(out))
    real, calls = kdkit.io.checkpoint.save_file, {"n": 0}

    def full(tensors, path, metadata=None):
        if "teacher.resume" in str(path):
            calls["n"] += 1
            if calls["n"] == 4:  # the disk fills up during the 4th resumable checkpoint of the teacher
                Path(path).write_bytes(b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(kdkit.io.checkpoint, "save_file", full)
    code, _, err = _cli(["train", str(config)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and "--resume" in err and "teacher.resume.safetensors" in err
    assert load_file(str(out / "checkpoints" / "teacher.resume.safetensors"))  # the previous checkpoint is intact
    assert not list(out.rglob("*.tmp"))  # the torn write is gone
    monkeypatch.setattr(kdkit.io.checkpoint, "save_file", real)
    code, _, err = _cli(["train", str(config), "--resume"], capsys)
    assert code == 0, err


def test_output_dir_under_a_file_fails_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = _cli(["train", str(_write(tmp_path, tiny_config(tmp_path / "file" / "run")))], capsys)
    assert code == 2 and "cannot write" in err and str(tmp_path / "file") in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["{not yaml: [", "", "- a\n- b\n"])
def test_damaged_config_in_run_dir_is_one_line(uninterrupted, tmp_path, capsys, text):
    import shutil

    whole, _ = uninterrupted
    copy = tmp_path / "copy"
    shutil.copytree(whole, copy)
    (copy / "config.yaml").write_text(text)
    code, _, err = _cli(["evaluate", str(copy)], capsys)
    assert code == 2 and "config.yaml is damaged" in err and len(err.strip().splitlines()) == 1


class Killed(Exception):
    """Stands in for a kill right after a checkpoint was written."""


SCHEME_SPECS = {  # schemes with state beyond the student: chains of stages, peers, an EMA teacher, ensembles
    "assistants": {"name": "assistants", "assistants": [{"name": "mlp", "params": {"hidden": [16]}}]},
    "mutual": {"name": "mutual", "T": 2.0},
    "self_distill": {"name": "self_distill", "decay": 0.9},
    "multi_teacher": {"name": "multi_teacher", "teachers": [{"name": "mlp", "params": {"hidden": [16]}}]},
}


@pytest.mark.parametrize("scheme", sorted(SCHEME_SPECS))
def test_scheme_run_interrupted_after_a_checkpoint_resumes_exactly(scheme, tmp_path, monkeypatch):
    from rich.console import Console

    import kdkit.trainer.resume
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.pipeline import run

    def cfg(out):
        raw = tiny_config(out, epochs=2, checkpoint_every_steps=None)
        raw["distill"].update(scheme=SCHEME_SPECS[scheme], cache_teacher=scheme == "multi_teacher")
        return parse_config(raw)

    quiet = Console(quiet=True)
    whole = run(cfg(tmp_path / "whole"), console=quiet, quick_cost=True)
    real, calls = kdkit.trainer.resume.save, {"n": 0}

    def save_then_die(path, tensors, info):
        real(path, tensors, info)
        calls["n"] += 1
        if calls["n"] == 7:  # after the first distillation epoch: teacher and student alone wrote 3 each
            raise Killed

    monkeypatch.setattr(kdkit.trainer.resume, "save", save_then_die)
    with pytest.raises(Killed):
        run(cfg(tmp_path / "cut"), console=quiet, quick_cost=True)
    monkeypatch.setattr(kdkit.trainer.resume, "save", real)
    resumed = run(cfg(tmp_path / "cut"), console=quiet, quick_cost=True, resume=True)
    assert _same_weights(tmp_path / "whole", tmp_path / "cut")
    extra = sorted(p.name for p in (tmp_path / "whole" / "models").glob("*.safetensors"))
    for name in extra:  # the scheme's other models too (assistant, peer, EMA teacher, second teacher)
        a, b = (load_file(str(tmp_path / d / "models" / name)) for d in ("whole", "cut"))
        assert all((a[k] == b[k]).all() for k in a), name
    assert [r["accuracy"] for r in resumed.rows] == [r["accuracy"] for r in whole.rows]
