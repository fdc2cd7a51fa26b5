"""Multi-process training through torchrun (gloo, CPU): DDP keeps every process's student and adapters identical,
and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from kdkit.families.classification.demo import demo_config

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
pytestmark = pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed")

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import TensorDataset

    import kdkit
    import kdkit.distributed
    from kdkit.data import make_loader

    out = Path(sys.argv[1])
    torch.manual_seed(0)
    x = torch.randn(96, 6)
    y = (x[:, 0] > 0).long()
    data = TensorDataset(x, y)
    settings = kdkit.TrainSettings(epochs=2, batch_size=16, lr=1e-2, progress=False)
    train = make_loader(data, 16, shuffle=True, seed=0)
    val = make_loader(data, 32, shuffle=False)
    rank = dist.get_rank()

    torch.manual_seed(1)  # the same start on both ranks is not required: DDP broadcasts rank 0's weights
    teacher = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
    torch.save({k: v.clone() for k, v in teacher.state_dict().items()}, out / f"teacher_init{rank}.pt")
    kdkit.fit(kdkit.Supervised(teacher), train, val, settings, out / "run", "teacher")
    torch.save(teacher.state_dict(), out / f"teacher{rank}.pt")

    torch.manual_seed(2)
    student = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    terms = kdkit.build_terms([{"name": "kd", "T": 4.0, "alpha": 0.5},
                               {"name": "fitnet", "student": "0", "teacher": "0"}])
    scheme = kdkit.OfflineDistillation(student, teacher, terms, example=x[:2])
    assert len(list(scheme.extras.parameters())) > 0, "fitnet should have an adapter"
    kdkit.fit(scheme, train, val, settings, out / "run", "student_kd")
    torch.save(student.state_dict(), out / f"student{rank}.pt")
    torch.save(scheme.extras.state_dict(), out / f"extras{rank}.pt")

    # online schemes: the peer (an extra) and the EMA teacher (no grad, outside DDP) stay identical on every rank
    torch.manual_seed(3 + rank)  # different starts on purpose: DDP must broadcast the student and its peer
    mutual = kdkit.MutualLearning(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)),
                                  [nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))])
    kdkit.fit(mutual, train, val, settings)
    torch.save(mutual.extras.state_dict(), out / f"peers{rank}.pt")
    torch.manual_seed(5 + rank)  # the EMA teacher must start from the broadcast student, not each rank's own
    ema = kdkit.SelfDistillation(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)), decay=0.9)
    kdkit.fit(ema, train, val, settings)
    torch.save(ema.teacher.state_dict(), out / f"ema{rank}.pt")
    assert dist.get_world_size() == 2 and type(train.sampler).__name__ == "DistributedSampler"
    kdkit.distributed.shutdown()  # all ranks meet, then leave: without it gloo can abort at exit
''')


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_fit_under_ddp_keeps_ranks_identical_and_rank0_writes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = _torchrun([str(script), str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    for model in ("teacher", "student", "extras", "peers", "ema"):
        _assert_same(_load(tmp_path / f"{model}0.pt"), _load(tmp_path / f"{model}1.pt"))
    init, trained = _load(tmp_path / "teacher_init0.pt"), _load(tmp_path / "teacher0.pt")
    assert any(not torch.equal(init[k], trained[k]) for k in init)
    assert any("adapter" in k for k in _load(tmp_path / "extras0.pt"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["model"], r["epoch"]) for r in lines] == [("teacher", 1), ("teacher", 2), ("student_kd", 1),
                                                         ("student_kd", 2)]
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == sorted(["teacher.best.safetensors", "teacher.last.safetensors",
                                  "student_kd.best.safetensors", "student_kd.last.safetensors",
                                  "student_kd.extras.safetensors", "teacher.resume.safetensors",
                                  "student_kd.resume.safetensors"])  # rank 0's resumable state


def test_kdkit_train_under_torchrun_writes_one_run_dir(tmp_path):
    cfg = demo_config(quick=True).model_dump(mode="json")
    cfg["output_dir"] = str(tmp_path / "runs" / "ddp")
    cfg["data"]["transfer_size"] = 200
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # --quick-timing: this test checks what the processes write, not how precisely the cost is timed
    done = _torchrun([shutil.which("kdkit") or str(Path(sys.executable).parent / "kdkit"), "train", str(config),
                      "--quick-timing"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]
    run_dir = tmp_path / "runs" / "ddp"
    for name in ("config.yaml", "metrics.jsonl", "predictions.npz", "results.json", "table.md"):
        assert (run_dir / name).is_file(), name
    for role in ("teacher", "student_alone", "student_kd"):
        assert (run_dir / "models" / f"{role}.safetensors").is_file()
    epochs = [json.loads(line)["model"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == ["teacher"] * 2 + ["student_alone"] * 2 + ["student_kd"] * 2
    assert done.stdout.count("│ distilled student │") == 1  # one table, printed by rank 0
    assert done.stdout.count("timing latency and throughput") == 1 and done.stdout.count("verdict: ") == 1
    training = json.loads((run_dir / "results.json").read_text())["training"]
    assert training["processes"] == 2 and training["effective_batch_size"]["distill"] == 2 * cfg["distill"]["train"][
        "batch_size"]
    assert f"2 processes, effective batch 2 x {cfg['distill']['train']['batch_size']}" in done.stdout
