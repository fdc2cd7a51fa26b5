"""Read a run directory back for reporting, and say precisely what is missing when it is incomplete.

A report is rebuilt from files alone (no retraining, no models): predictions.npz gives every quality and
fidelity number, results.json the cost numbers (latency cannot be recomputed from predictions), and
metrics.jsonl the training curves.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdkit.errors import RunDirError
from kdkit.labels import UNLABELLED
from kdkit.run.rundir import CONFIG, LABELS, METRICS, PREDICTIONS, RESULTS, RESULTS_FORMAT, ROLES, RunDir

REBUILD = "rebuild it with `kdkit evaluate {run_dir}` (re-measures the saved models and rewrites both files)"


@dataclass
class Split:
    """Logits of the three models on one split, and its labels (-1 marks an unlabelled transfer row)."""

    labels: np.ndarray
    logits: dict[str, np.ndarray]

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


@dataclass
class RunData:
    path: Path
    results: dict[str, Any]
    test: Split
    train: Split | None  # None for runs written before the distillation-data predictions were saved
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what is missing but not fatal, shown in the report

    @property
    def num_classes(self) -> int:
        return int(self.test.logits["teacher"].shape[1])

    @property
    def class_names(self) -> list[str]:
        names = self.results.get("data", {}).get("class_names")
        return list(names) if names and len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        """results.json rows by role."""
        return {row["role"]: row for row in self.results["rows"]}

    def label(self, role: str) -> str:
        """The row's name as the run wrote it (e.g. "distilled student (int8)"), else the role's usual name."""
        return str(self.rows.get(role, {}).get("model") or LABELS[role])

    @property
    def labels(self) -> dict[str, str]:
        return {role: self.label(role) for role in ROLES}


def _results(run_dir: Path) -> dict[str, Any]:
    try:
        results = json.loads(RunDir(run_dir).results.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(
            f"{RunDir(run_dir).results} is not valid JSON ({getattr(err, 'msg', 'not UTF-8')}); "
            f"{REBUILD.format(run_dir=run_dir)}"
        ) from None
    version = results.get("format") if isinstance(results, dict) else None
    if version is None or (isinstance(version, int) and version < RESULTS_FORMAT):
        raise RunDirError(
            f"{RunDir(run_dir).results} is from an older kdkit (format {version}, this kdkit reads format "
            f"{RESULTS_FORMAT}); "
            + REBUILD.format(run_dir=run_dir)
        )
    if version != RESULTS_FORMAT:
        raise RunDirError(f"{RunDir(run_dir).results} has format {version!r}, newer than this kdkit reads "
                          f"({RESULTS_FORMAT}); upgrade kdkit to report on it")
    if not isinstance(results.get("rows"), list) or not all(isinstance(r, dict) for r in results["rows"]):
        raise RunDirError(f"{RunDir(run_dir).results} has no list of rows; " + REBUILD.format(run_dir=run_dir))
    roles = [row.get("role") for row in results["rows"]]
    missing = [r for r in ROLES if r not in roles]
    if missing:
        raise RunDirError(f"{RunDir(run_dir).results} has no row for {', '.join(missing)}; "
                          + REBUILD.format(run_dir=run_dir))
    return results


def _predictions(run_dir: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(RunDir(run_dir).predictions, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise RunDirError(
            f"{RunDir(run_dir).predictions} cannot be read ({err}); {REBUILD.format(run_dir=run_dir)}"
        ) from None


def _split(preds: dict[str, np.ndarray], prefix: str, run_dir: Path) -> Split:
    labels = preds[f"{prefix}_labels"]
    logits = {role: preds[f"{prefix}_{role}"] for role in ROLES}
    if labels.ndim == 2 and all(a.shape[:2] == labels.shape and a.ndim == 3 for a in logits.values()):
        # sequence labelling: every labelled token is one prediction (padding, labelled -1, is left out)
        keep = labels.reshape(-1) != UNLABELLED
        labels = labels.reshape(-1)[keep]
        logits = {role: a.reshape(-1, a.shape[-1])[keep] for role, a in logits.items()}
    shapes = {role: a.shape for role, a in logits.items()}
    if any(len(s) != 2 or s[0] != len(labels) or s != shapes["teacher"] for s in shapes.values()):
        raise RunDirError(f"{RunDir(run_dir).predictions}: {prefix} logits {shapes} do not match {len(labels)} labels "
                          f"with one row per sample; {REBUILD.format(run_dir=run_dir)}")
    numeric = [labels.dtype.kind in "iu", *(a.dtype.kind in "iuf" for a in logits.values())]
    if not all(numeric) or not all(np.isfinite(a).all() for a in logits.values()):
        raise RunDirError(f"{RunDir(run_dir).predictions}: {prefix} labels or logits are damaged (not numbers, or "
                          f"NaN / infinite logits); {REBUILD.format(run_dir=run_dir)}")
    return Split(labels.astype(int), {role: a.astype(np.float64) for role, a in logits.items()})


def _history(path: Path) -> list[dict[str, Any]]:
    from kdkit.io.textfile import read_text

    records = []
    for number, line in enumerate(read_text(path, RunDirError).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise RunDirError(f"{path} line {number} is not valid JSON; fix or delete that line") from None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(record, dict) or not (epoch is None or (type(epoch) is int and epoch >= 0)):
            raise RunDirError(f"{path} line {number} is not one epoch's metrics (a JSON object with a whole epoch "
                              "number); fix or delete that line")
        records.append(record)
    return records


def _scheme(run_dir: Path) -> str:
    """distill.scheme.name of the run's config.yaml ('offline' when absent or unreadable)."""
    import yaml

    try:
        raw = yaml.safe_load(RunDir(run_dir).config.read_text())
        return str(raw["distill"]["scheme"]["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return "offline"


def _trains_on_data(scheme: str) -> bool:
    """Whether the scheme's student learns from the data's inputs (a scheme kdkit no longer knows: assume so)."""
    from kdkit.schemes.registry import schemes  # the scheme files, with torch: only for a run without train_*

    options = schemes().get(scheme)
    return options is None or options.trains_on_data


def load_run(run_dir: str | Path) -> RunData:
    """Everything a report needs from `run_dir`; RunDirError naming the missing pieces when it is incomplete."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir} (give a directory written by `kdkit demo`/`train`)")
    missing = [name for name in (RESULTS, PREDICTIONS) if not (run_dir / name).is_file()]
    if len(missing) == 2 and not RunDir(run_dir).config.is_file():
        raise RunDirError(f"{run_dir} is not a kdkit run directory (no {CONFIG}, {RESULTS} or "
                          f"{PREDICTIONS}); give a directory written by `kdkit demo` or `kdkit train`")
    if missing:
        raise RunDirError(f"{run_dir} is not a complete kdkit run: missing {' and '.join(missing)}; "
                          + REBUILD.format(run_dir=run_dir))
    results = _results(run_dir)
    preds = _predictions(run_dir)
    needed = ["test_labels", *(f"test_{r}" for r in ROLES)]
    absent = [key for key in needed if key not in preds]
    if absent:
        raise RunDirError(f"{RunDir(run_dir).predictions} lacks {', '.join(absent)}; {REBUILD.format(run_dir=run_dir)}")
    data = RunData(run_dir, results, _split(preds, "test", run_dir), None)
    # what the run itself says a reader must know (a tabular run: its "test data" is out-of-fold on training rows)
    data.notes += [note for note in results.get("notes") or [] if isinstance(note, str)]
    if all(f"train_{k}" in preds for k in ("labels", *ROLES)):
        data.train = _split(preds, "train", run_dir)
        if data.train.logits["teacher"].shape[1] != data.num_classes:
            raise RunDirError(f"{RunDir(run_dir).predictions}: train and test logits have different numbers of "
                              "classes; " + REBUILD.format(run_dir=run_dir))
    elif not _trains_on_data(_scheme(run_dir)):
        data.notes.append(f"scheme '{_scheme(run_dir)}' distils on synthetic inputs only, so fidelity is shown on "
                          "test data")
    else:
        data.notes.append(f"{PREDICTIONS} has no distillation-data (train_*) predictions, so fidelity is shown "
                          f"on test data only; {REBUILD.format(run_dir=run_dir)} to add them")
    data.history, data.config = history_and_config(run_dir, data.notes)
    return data


def history_and_config(run_dir: Path, notes: list[str]) -> tuple[list[dict[str, Any]], dict | None]:
    """metrics.jsonl's epoch records and config.yaml's settings, for any run kind; a missing or damaged file costs
    the report its curves or settings, nothing more, and adds a line to `notes` saying so."""
    history: list[dict[str, Any]] = []
    if RunDir(run_dir).metrics.is_file():
        history = _history(RunDir(run_dir).metrics)
    else:
        notes.append(f"{METRICS} is missing, so there are no training curves")
    config = None
    if RunDir(run_dir).config.is_file():
        import yaml

        try:
            config = yaml.safe_load(RunDir(run_dir).config.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            config = None
        if not isinstance(config, dict):
            config = None
            notes.append(f"{CONFIG} is damaged (not a YAML mapping), so the run's settings are not shown")
    return history, config
