"""A small fit that a test can SIGKILL at any moment: run in a process of its own (see tests/run/test_sigkill.py), it
trains with every random stream that resume must restore (dropout, MixUp, the loader's shuffle, an EMA teacher) and
checkpoints often, then saves its final weights beside its checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
import torch._dynamo  # noqa: F401 - the optimizer's first use imports it (seconds): forks start ready to train
from torch import nn
from toy import toy_data

from kdkit import TrainSettings, fit
from kdkit.data import make_loader
from kdkit.io.checkpoint import save_state
from kdkit.schemes.self_distill import SelfDistillation

SETTINGS = TrainSettings(epochs=3, lr=0.05, progress=False, checkpoint_every_steps=2,
                         augment=[{"name": "mixup", "alpha": 0.4}])


def train(run_dir: str, resume: bool = False) -> None:
    """The same fit every time; `resume` continues it from the checkpoints in `run_dir`."""
    torch.set_num_threads(1)  # the same arithmetic in every process, whatever the machine
    torch.manual_seed(3)
    student = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Dropout(0.3), nn.ReLU(), nn.Linear(32, 3))
    scheme = SelfDistillation(student, decay=0.9)
    fit(scheme, make_loader(toy_data(96), 16, True, seed=5), make_loader(toy_data(64, seed=1), 64, False),
        SETTINGS, run_dir, "m", resume=resume)
    save_state({**{f"student.{k}": v for k, v in student.state_dict().items()},
                **{f"ema.{k}": v for k, v in scheme.teacher.state_dict().items()}}, Path(run_dir) / "final.safetensors")
