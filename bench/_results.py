"""Write one benchmark's section of bench/RESULTS.md, leaving the other sections untouched."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is written by the script it names; rerun the command to reproduce it.\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, Python {sys.version.split()[0]}, torch {torch.__version__}"


def mean_std(values: list[float], fmt: str = ".4f", scale: float = 1.0) -> str:
    """'mean ± sample std' of `values` times `scale`; the std is 0 for a single value."""
    scaled = [scale * v for v in values]
    sd = statistics.stdev(scaled) if len(scaled) > 1 else 0.0
    return f"{format(statistics.mean(scaled), fmt)} ± {format(sd, fmt)}"


def write_section(name: str, body: str, command: str) -> None:
    """Replace (or append) the section delimited by markers for `name` in bench/RESULTS.md."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    section = (
        f"{begin}\n## {name}\n\n- command: `{command}`\n- machine: {machine()}\n- date: {date.today()}\n"
        f"- load average (1 min) when written: {os.getloadavg()[0]:.1f} "
        "(timings are noisy when it exceeds the cores)\n\n"
        f"{body.strip()}\n{end}"
    )
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)


def command_line(script: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command that reproduces this run: the script with every option that differs from its default."""
    parts = [f"OMP_NUM_THREADS=1 python bench/{script}"]
    for key, value in vars(args).items():
        if value == parser.get_default(key) or key == "quick":
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        else:
            parts.append(f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}")
    return " ".join(parts)
