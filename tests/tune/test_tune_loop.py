"""The one tune loop (kdkit.tune.loop) runs any family's Search: prepare before anything is written, the shared
teacher once, a trial per draw scored by the family, a failed trial kept with its one-line error, best.yaml with
the best values; the families' searches are Searches of that loop, and no family runs an Optuna study itself."""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from rich.console import Console

import kdkit.tune.loop
from kdkit.tune.config import SearchRange
from kdkit.tune.loop import run_search

SRC = Path(kdkit.tune.loop.__file__).parents[1]


class Quadratic:
    """A family's search in miniature: the score peaks at x = 0.3; draws above 0.8 fail like a diverged trial."""

    def __init__(self, out: Path) -> None:
        self.cfg = SimpleNamespace(tune=SimpleNamespace(metric="accuracy", trials=12), seed=0, output_dir=str(out))
        self.calls: list[str] = []

    def prepare(self, console: Console) -> None:
        assert not (Path(self.cfg.output_dir) / "tune").exists()  # nothing written before the checks
        self.calls.append("prepare")
        self.space = {"x": SearchRange(low=0.0, high=1.0)}
        self.raw = {"x": 0.5, "tune": {"trials": 12}}

    def train_teacher(self, out: Path, console: Console) -> None:
        self.calls.append("teacher")

    def score(self, trial: Any, values: dict[str, Any]) -> float:
        self.calls.append("trial")
        if values["x"] > 0.8:
            raise ValueError("loss became nan\nsecond line")
        return 1.0 - (values["x"] - 0.3) ** 2

    def alone(self, optuna: Any, out: Path, storage: str | None, total: int, console: Console) -> None:
        return None


def test_the_loop_runs_a_search_in_order_and_keeps_failed_trials_with_their_first_line(tmp_path: Path) -> None:
    search = Quadratic(tmp_path / "run")
    best = run_search(search, console=Console(file=io.StringIO()))
    assert search.calls[:2] == ["prepare", "teacher"] and search.calls.count("trial") == 12
    assert abs(best["x"] - 0.3) < 0.25
    out = tmp_path / "run" / "tune"
    written = yaml.safe_load((out / "best.yaml").read_text())
    assert written == {"x": best["x"]}  # the best value at its path, the tune section dropped
    rows = list(csv.DictReader((out / "trials.csv").open()))
    failed = [r for r in rows if r["state"] == "fail"]
    assert len(rows) == 12 and all(float(r["x"]) > 0.8 and r["error"] == "loss became nan" for r in failed)
    assert all(float(r["x"]) <= 0.8 for r in rows if r["state"] == "complete")


def test_the_family_searches_are_searches_of_the_one_loop() -> None:
    for family in ("classification", "lm", "tabular"):
        # the family's modules: its Search lives in tune.py, what starts it may live beside it (the tabular run.py)
        trees = [ast.parse(p.read_text(encoding="utf-8")) for p in (SRC / "families" / family).glob("*.py")]
        calls = {getattr(n.func, "id", getattr(n.func, "attr", "")) for tree in trees for n in ast.walk(tree)
                 if isinstance(n, ast.Call)}
        # the distilled trials run in kdkit.tune.loop, the student alone's (classification) in its run_trials too
        assert "run_search" in calls and "optimize" not in calls, family
