"""SIGKILL at random moments (seeded: 3 by default, 10 with KDKIT_FUZZ_LONG=1, the longer run in CI), each
followed by a resume: the resumed fit ends bit for bit where an uninterrupted one ends (student, EMA teacher, logged
history), and no kill leaves a torn checkpoint.

The fits run in processes forked from a server that has imported torch and kdkit once, so a kill costs no start-up;
`kdkit train` itself is killed and resumed in tests/run/test_run_dir.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# the first kill moments of one seeded sequence; the longer run goes on along the same sequence
KILLS = 10 if os.environ.get("KDKIT_FUZZ_LONG") == "1" else 3


@pytest.fixture(scope="module")
def context():
    ctx = multiprocessing.get_context("forkserver")  # fork from a clean server: no threads of this process copied
    ctx.set_forkserver_preload(["killable_fit"])  # torch and kdkit imported once, in the server
    # the server finds killable_fit through PYTHONPATH: Python 3.11's forkserver ignores this process's sys.path
    # when it preloads (and a module that fails to preload is skipped in silence, leaving every fork to import it)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), saved]))
    try:
        ctx.Process(target=time.sleep, args=(0,)).start()  # starts the server now, with that path
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    return ctx


def _run(ctx, run_dir: Path, resume: bool = False, kill_after: float | None = None) -> tuple[bool, float]:
    """Run killable_fit.train in a forked process; (killed mid-run, seconds it ran)."""
    from killable_fit import train

    proc = ctx.Process(target=train, args=(str(run_dir), resume))
    start = time.monotonic()
    proc.start()
    if kill_after is not None:
        proc.join(kill_after)
        if proc.is_alive():
            proc.kill()  # SIGKILL: no cleanup, no atexit, possibly mid-write
    proc.join(120)
    assert proc.exitcode is not None, "the fit hung"
    assert proc.exitcode in (0, -signal.SIGKILL), f"the fit failed with exit code {proc.exitcode}"
    return proc.exitcode == -signal.SIGKILL, time.monotonic() - start


def _final(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final.safetensors"))


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.fuzz_long
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(context, tmp_path):
    whole = tmp_path / "whole"
    killed, seconds = _run(context, whole)
    assert not killed
    expected, history = _final(whole), _history(whole)
    rng = random.Random(13)
    mid_run = 0
    for attempt in range(KILLS):
        cut = tmp_path / f"cut{attempt}"
        delay = rng.uniform(0.05, 0.9) * seconds
        killed, _ = _run(context, cut, kill_after=delay)
        mid_run += killed
        for path in (cut / "checkpoints").glob("*.safetensors"):  # a kill mid-write leaves only a temp file
            load_file(str(path))
        _run(context, cut, resume=True)
        got = _final(cut)
        assert got.keys() == expected.keys(), f"kill {attempt} after {delay:.2f} s"
        assert all(torch.equal(got[k], expected[k]) for k in expected), f"kill {attempt} after {delay:.2f} s"
        assert _history(cut) == history, f"kill {attempt} after {delay:.2f} s"  # each epoch logged once
    assert mid_run >= KILLS // 2, f"only {mid_run} of {KILLS} kills hit a fit in progress"
