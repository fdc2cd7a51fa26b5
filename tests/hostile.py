"""Helpers of the hostile-input tests: run the real CLI in-process, judge its answer, fingerprint directories.

A refusal is judged the way a user meets it: exit code 2, exactly one line on stderr that starts with
"error:", no traceback anywhere, and (where given) a directory whose files are byte-for-byte as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import traceback
from dataclasses import dataclass
from pathlib import Path

import yaml

from kdkit.cli import main

# a configuration that trains in a few seconds: 8x8 digits, two small MLPs, one epoch
TINY = {
    "seed": 0,
    "data": {"name": "digits"},
    "train": {"epochs": 1, "batch_size": 64, "progress": False},
    "teacher": {"name": "mlp", "params": {"hidden": [16]}},
    "student": {"name": "mlp", "params": {"hidden": [8]}},
    "distill": {"losses": [{"name": "kd", "T": 2.0, "alpha": 0.5}]},
}


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    crash: str = ""  # the traceback of an exception that escaped main(), if any

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def verdict(self) -> str:
        """'refused' (what every hostile input must give), 'traceback', 'accepted' or 'unclear'."""
        if self.crash or "Traceback" in self.out + self.err:
            return "traceback"
        if self.code == 0:
            return "accepted"
        lines = self.err_lines
        if self.code == 2 and len(lines) == 1 and lines[0].startswith("error:"):
            return "refused"
        return "unclear"


def cli(argv: list[str]) -> Outcome:
    """`kdkit ARGV` in this process, with stdout and stderr captured and any escaping exception recorded."""
    out, err = io.StringIO(), io.StringIO()
    code, crash = 0, ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        except BaseException:  # noqa: BLE001 - a crash is what these tests look for
            code, crash = 1, traceback.format_exc()
    return Outcome(code, out.getvalue(), err.getvalue(), crash)


def assert_refused(outcome: Outcome, *needles: str) -> str:
    """The one-line refusal; each needle (a key, file, row or column) must appear in it. Returns the line."""
    assert outcome.verdict() == "refused", (
        f"expected one 'error:' line and exit 2, got {outcome.verdict()} (code {outcome.code})\n"
        f"stderr: {outcome.err[-2000:]}\nstdout: {outcome.out[-1000:]}\n{outcome.crash[-3000:]}"
    )
    line = outcome.err_lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not named in: {line}"
    return line


def fingerprint(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `folder` (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    if folder.is_file():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_config(path: Path, overrides: dict | None = None, text: str | None = None) -> Path:
    """TINY with `overrides` merged one level deep (a None value removes the key), or raw `text`."""
    path = Path(path)
    if text is not None:
        path.write_text(text)
        return path
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    cfg["output_dir"] = str(path.parent / "run")
    for key, value in (overrides or {}).items():
        if value is None:
            cfg.pop(key, None)
        elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def fuzz_settings(examples: int, long_examples: int = 2000):
    """Hypothesis settings: `examples` reproducible examples by default (derandomized: the same inputs on every
    run, so CI is deterministic); with KDKIT_FUZZ_LONG=1, `long_examples` fresh random ones (a longer hunt; the
    environment variable KDKIT_FUZZ_EXAMPLES overrides the count, as .ci/run does to bound its time)."""
    import os

    from hypothesis import HealthCheck, settings

    hunt = os.environ.get("KDKIT_FUZZ_LONG") == "1"
    long_examples = int(os.environ.get("KDKIT_FUZZ_EXAMPLES", long_examples))
    return settings(max_examples=long_examples if hunt else examples, deadline=None, derandomize=not hunt,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    database=None)
