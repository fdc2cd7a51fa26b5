"""Which device strings a config may name, checked before anything loads.

A typo (``gpu``) or a device this machine lacks (``cuda:3`` on a CPU-only host) would otherwise surface as a
torch traceback at the first ``.to(device)``, after the data has loaded. The form is checked by the schema,
without torch; whether the machine has the device is asked of torch (imported only when a config names an
accelerator) by the commands that train.
"""

from __future__ import annotations

import re
from typing import Any

from kdkit.errors import ConfigError

_FORM = re.compile(r"(cpu|cuda|mps|xpu)(:\d+)?")


def available_devices() -> list[str]:
    """'auto', 'cpu' and every accelerator torch can see here (cuda:0 ..., mps)."""
    import torch

    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found += ["xpu", *(f"xpu:{i}" for i in range(xpu.device_count()))]
    return found


def check_form(name: str) -> str:
    """`name` unchanged when it is a device string at all (no torch needed); ValueError listing the forms."""
    if name not in ("auto", "cpu") and not _FORM.fullmatch(name):
        raise ValueError(f"unknown device '{name}'; give auto, cpu, cuda, cuda:N, mps or xpu")
    return name


def missing_device(name: str) -> str | None:
    """Why `name` cannot be used on this machine (naming the available ones), or None when it can. Kept out of the
    schema: a run trained on a GPU must stay readable on a CPU-only machine (evaluate, report, predict)."""
    if name in ("auto", "cpu"):
        return None
    have = available_devices()
    return None if name in have else f"device '{name}' is not available on this machine; available: {', '.join(have)}"


def check_devices(cfg: Any) -> None:
    """The devices a config trains on (its train, teacher.train, student.train and distill.train) exist on this
    machine (checked for train/tune, not when a run is re-read)."""
    for where, given in (("train", cfg.train.model_dump()), ("teacher.train", cfg.teacher.train),
                         ("student.train", cfg.student.train), ("distill.train", cfg.distill.train)):
        why = missing_device(given["device"]) if "device" in given else None
        if why:
            raise ConfigError(f"config error at {where}.device: {why}")
