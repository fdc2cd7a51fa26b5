"""Resume under torchrun (2 CPU processes, gloo): a `kdkit train` killed whole (SIGKILL of the process group) or
losing one rank (SIGKILL of its pid) ends at once, keeps its last complete checkpoint, and `--resume` ends with the
weights of an uninterrupted 2-process run, bit for bit; `torchrun --max-restarts 1 ... --resume` is an elastic job
that finishes by itself. `kdkit tune` refuses torchrun with one line."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from test_run_dir import tiny_config

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
KDKIT = shutil.which("kdkit") or str(Path(sys.executable).parent / "kdkit")
pytestmark = pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed")
LIMIT = 240  # seconds any one torchrun job may take here before the test fails instead of hanging


def _config(tmp: Path, name: str) -> Path:
    """tiny_config with 4 epochs per stage, so a kill lands mid-training with room to spare, and MixUp, whose
    random stream is each process's own (seeded by rank): a resume that gave rank 1 rank 0's stream would differ."""
    cfg = tiny_config(tmp / name, epochs=4, augment=[{"name": "mixup", "alpha": 0.4}])
    cfg["distill"]["cache_teacher"] = False  # cached teacher outputs and per-epoch augmentation exclude each other
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(config: Path, *flags: str, restarts: int = 0) -> subprocess.Popen:
    """torchrun with 2 processes in a session of its own, so the whole job can be killed as a group; the cost is
    timed with the quick plan (these tests compare weights, not timings)."""
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", f"--max-restarts={restarts}", KDKIT, "train",
           str(config), "--quick-timing", *flags]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = LIMIT) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [*_workers(proc.pid, check=False).values(), proc.pid]:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun still running after {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def _epochs_logged(run_dir: Path) -> int:
    try:
        return len((run_dir / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def _wait_for_epochs(run_dir: Path, proc: subprocess.Popen, count: int) -> None:
    """Until `count` epochs are logged (4 per stage), i.e. mid-training with checkpoints on disk."""
    deadline = time.monotonic() + LIMIT
    while _epochs_logged(run_dir) < count:
        assert proc.poll() is None, f"the job ended before epoch {count}: {proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "training did not get going"
        time.sleep(0.02)


def _workers(agent: int, check: bool = True) -> dict[int, int]:
    """{rank: pid} of the torchrun agent's workers (its children, by the RANK in their environment); torchrun starts
    them in sessions of their own, so killing the agent's process group would not reach them."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(v.split(b"=", 1) for v in (entry / "environ").read_bytes().split(b"\0") if b"=" in v)
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent and b"RANK" in env:
            found[int(env[b"RANK"])] = int(entry.name)
    assert not check or sorted(found) == [0, 1], f"workers of torchrun pid {agent}: {found}"
    return found


def _kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL to the agent and every worker at once, as when the machine is preempted."""
    for pid in [*_workers(proc.pid).values(), proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.communicate()


def _weights(run_dir: Path) -> dict:
    return {p.name: load_file(str(p)) for p in sorted((run_dir / "models").glob("*.safetensors"))}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and len(wa) == 3
    for name in wa:
        assert wa[name].keys() == wb[name].keys()
        assert all((wa[name][k] == wb[name][k]).all() for k in wa[name]), name


def _assert_nothing_torn(run_dir: Path) -> None:
    """Every safetensors file of the killed run loads (a kill mid-write leaves at most a temp file)."""
    files = list((run_dir / "checkpoints").glob("*.safetensors"))
    assert any(f.name.endswith(".resume.safetensors") for f in files)
    for path in files:
        load_file(str(path))


def _assert_logged_once(run_dir: Path) -> None:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["model"], r["epoch"]) for r in records] == [
        (m, e) for m in ("teacher", "student_alone", "student_kd") for e in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp_whole")
    code, out = _finish(_launch(_config(tmp, "run")))
    assert code == 0, out[-3000:]
    return tmp / "run"


def test_killed_rank_ends_the_job_within_60_s_and_killed_job_resumes_exactly(uninterrupted, tmp_path):
    config = _config(tmp_path, "run")
    run_dir = tmp_path / "run"
    proc = _launch(config)
    _wait_for_epochs(run_dir, proc, 3)  # the teacher is training
    os.kill(_workers(proc.pid)[1], signal.SIGKILL)
    killed = time.monotonic()
    code, out = _finish(proc, timeout=60)  # fails the test if rank 0 hangs in a collective
    assert code != 0 and time.monotonic() - killed < 60
    assert not (run_dir / "results.json").exists()
    _assert_nothing_torn(run_dir)

    proc = _launch(config, "--resume")
    _wait_for_epochs(run_dir, proc, random.Random(13).randint(5, 9))  # seeded: somewhere in the later stages
    _kill_job(proc)
    assert not (run_dir / "results.json").exists()
    _assert_nothing_torn(run_dir)

    code, out = _finish(_launch(config, "--resume"))
    assert code == 0, out[-3000:]
    _assert_same_weights(uninterrupted, run_dir)
    _assert_logged_once(run_dir)
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / ".kdkit.lock").exists()


def test_elastic_job_restarts_and_resumes_by_itself(uninterrupted, tmp_path):
    config = _config(tmp_path, "run")
    run_dir = tmp_path / "run"
    proc = _launch(config, "--resume", restarts=1)  # on a fresh directory --resume starts a new run
    _wait_for_epochs(run_dir, proc, 6)
    os.kill(_workers(proc.pid)[1], signal.SIGKILL)  # torchrun restarts both workers, which resume
    code, out = _finish(proc)
    assert code == 0, out[-3000:]
    assert out.count("│ distilled student │") == 1  # the table once, from the restarted rank 0
    _assert_same_weights(uninterrupted, run_dir)
    _assert_logged_once(run_dir)


def test_restart_without_resume_is_refused_with_one_line(tmp_path, monkeypatch):
    from kdkit.errors import RunDirError
    from kdkit.run import guard as run_guard

    (tmp_path / "config.yaml").write_text("seed: 0\n")  # what the first attempt left
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    with pytest.raises(RunDirError, match="torchrun restarted this job.*with --resume"):
        run_guard.claim(tmp_path)
    run_guard.claim(tmp_path, resume=True).release()  # with --resume the restart continues


def test_tune_under_torchrun_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    from kdkit.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(tmp_path / "missing.yaml")])  # refused before the config is even read
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "does not run under torchrun" in err and "--storage" in err


def test_each_rank_resumes_from_its_own_part_of_the_checkpoint(tmp_path, monkeypatch):
    """Rank 0 writes shared tensors once and each process's own (random streams, running sums) as rank<r>.*; a
    process takes its own part, and a different number of processes is refused with one line."""
    import torch

    from kdkit import distributed
    from kdkit.errors import RunDirError
    from kdkit.trainer import resume

    shared = {"student.w": torch.ones(2)}
    own = {r: {"rng.torch": torch.full((3,), r, dtype=torch.uint8), "running.loss": torch.tensor(float(r))}
           for r in (0, 1)}
    tensors = {**shared, **{f"rank{r}.{k}": v for r in own for k, v in own[r].items()}}
    info = {"epoch": 2, "ranks": [{"python": r} for r in (0, 1)]}
    resume.save(tmp_path / "m.resume.safetensors", tensors, info)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        mine, mine_info = resume.for_rank(tmp_path, *resume.load(tmp_path / "m.resume.safetensors"))
        assert mine.keys() == {"student.w", "rng.torch", "running.loss"}
        assert torch.equal(mine["rng.torch"], own[r]["rng.torch"]) and mine_info["rng"] == {"python": r}
        assert mine_info["epoch"] == 2 and "ranks" not in mine_info
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    with pytest.raises(RunDirError, match="written by 2 process"):
        resume.for_rank(tmp_path, tensors, info)
