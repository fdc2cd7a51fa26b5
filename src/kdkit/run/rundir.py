"""The run directory every family writes, and the name of every file and folder in it: no other module spells them.

    config.yaml                 the resolved config, written first (a resumed run must have the same one)
    metrics.jsonl               one JSON record per epoch of every stage (the training curves)
    boundary.json               the boundary samples' statistics (distill.boundary)
    checkpoints/                <stage>.best / .last / .resume / .extras .safetensors: the resumable training state
    models/                     <role>.safetensors for teacher, student_alone and student_kd, meta.json (what using
                                a model needs besides its weights), vocab.json (a text run's vocabulary); a tabular
                                run's saved models per role
    tokenizer.json              a language-model run's tokenizer
    teacher_topk/               a language-model run's cache of the teacher's top-k log-probabilities
    predictions.npz             every model's predictions (the report recomputes quality numbers from them)
    table.md                    the comparison table
    results.json                written last: the run is finished when it exists
    evaluation.json / .md, evaluation_predictions.npz    `kdkit evaluate` of a tabular run
    cost.json / cost.md         `kdkit evaluate --cost-only`
    holdout.csv                 a tabular run's held-out rows (when the command line named none)
    predictions.csv             `kdkit tabular fit`'s predictions on a test file
    report.html, report.md, report_figures/                  `kdkit report`
    tune/                       `kdkit tune`: study.db, trials.csv, alone_trials.csv, best.yaml, teacher.safetensors,
                                trials/ (a language-model search's trial runs, removed once scored)
    .kdkit.lock                 held while a run writes (kdkit.run.guard)

Every role's printed label (ROLES, LABELS) and the results format are defined here too, once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

ROLES = ("teacher", "student_alone", "student_kd")
STUDENTS = ("student_alone", "student_kd")
LABELS = {"teacher": "teacher", "student_alone": "student alone", "student_kd": "distilled student"}
RESULTS_FORMAT = 1  # the results.json format the families write and the readers understand

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
BOUNDARY = "boundary.json"
CHECKPOINTS = "checkpoints"
MODELS = "models"
META = f"{MODELS}/meta.json"
VOCAB = f"{MODELS}/vocab.json"
TOKENIZER = "tokenizer.json"
TEACHER_TOPK = "teacher_topk"
PREDICTIONS = "predictions.npz"
TABLE = "table.md"
RESULTS = "results.json"
EVALUATION = "evaluation.json"
EVALUATION_TABLE = "evaluation.md"
EVALUATION_PREDICTIONS = "evaluation_predictions.npz"
COST = "cost.json"
COST_TABLE = "cost.md"
HOLDOUT = "holdout.csv"
TEST_PREDICTIONS = "predictions.csv"
INPUT_PREDICTIONS = "predictions-{input}.csv"  # `kdkit tabular predict`'s default: a new input file's predictions
REPORT_HTML = "report.html"
REPORT_MARKDOWN = "report.md"
REPORT_FIGURES = "report_figures"
LOCK = ".kdkit.lock"
TUNE = "tune"
STUDY = "study.db"
TRIALS = "trials.csv"
ALONE_TRIALS = "alone_trials.csv"
BEST = "best.yaml"
TUNE_TEACHER = "teacher.safetensors"
TUNE_HELD_OUT = "held_out.yaml"  # a tabular search: the rows it holds out (from its start), its best scored on them
TRIAL_RUNS = "trials"  # a language-model search keeps each trial's run (its top-k cache, checkpoints) here

# what each command writes at its end, by part (the report's and the guard's view of them)
TRAINING_OUTPUTS = {"predictions": PREDICTIONS, "results": RESULTS, "table": TABLE}
EVALUATION_OUTPUTS = {"predictions": EVALUATION_PREDICTIONS, "results": EVALUATION, "table": EVALUATION_TABLE}
COST_OUTPUTS = {"results": COST, "table": COST_TABLE}  # `kdkit evaluate --cost-only`
# everything a run of any family writes into its directory (kdkit train, demo and tabular fit, and what evaluate and
# report add); --overwrite removes these and nothing else, so a run never finds another family's files beside its
# own. Not a user's own files, and not tune/: `kdkit tune`'s study, whose best.yaml trains into this same directory.
RUN_FILES = (CONFIG, METRICS, BOUNDARY, TOKENIZER, PREDICTIONS, RESULTS, TABLE, EVALUATION, EVALUATION_TABLE,
             EVALUATION_PREDICTIONS, REPORT_HTML, REPORT_MARKDOWN, COST, COST_TABLE, HOLDOUT, TEST_PREDICTIONS)
RUN_FOLDERS = (CHECKPOINTS, MODELS, TEACHER_TOPK, REPORT_FIGURES)
# ... and files named after a pattern: predictions of a run's models written beside it, stale once they are replaced
RUN_PATTERNS = (INPUT_PREDICTIONS.format(input="*"),)
FINAL_FILES = (RESULTS, TABLE, PREDICTIONS)  # written at the end, results.json last


class RunDir(os.PathLike):
    """A run directory: its path, and the path of each file and folder in it by what it holds.

    It is path-like (``Path(run)``, ``os.fspath(run)``), so it can be handed to code that takes a path."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    config = property(lambda self: self.path / CONFIG)
    metrics = property(lambda self: self.path / METRICS)
    boundary = property(lambda self: self.path / BOUNDARY)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    models = property(lambda self: self.path / MODELS)
    meta = property(lambda self: self.path / META)
    vocab = property(lambda self: self.path / VOCAB)
    tokenizer = property(lambda self: self.path / TOKENIZER)
    teacher_topk = property(lambda self: self.path / TEACHER_TOPK)
    predictions = property(lambda self: self.path / PREDICTIONS)
    table = property(lambda self: self.path / TABLE)
    results = property(lambda self: self.path / RESULTS)
    holdout = property(lambda self: self.path / HOLDOUT)
    test_predictions = property(lambda self: self.path / TEST_PREDICTIONS)
    report_html = property(lambda self: self.path / REPORT_HTML)
    report_markdown = property(lambda self: self.path / REPORT_MARKDOWN)
    report_figures = property(lambda self: self.path / REPORT_FIGURES)
    lock = property(lambda self: self.path / LOCK)
    tune = property(lambda self: self.path / TUNE)

    def weights(self, role: str) -> Path:
        """models/<role>.safetensors: the weights of `role` kept in the run."""
        return self.models / f"{role}.safetensors"

    def onnx(self, role: str) -> Path:
        """models/<role>.onnx: where `kdkit export` writes a role's ONNX file by default."""
        return self.models / f"{role}.onnx"

    def checkpoint(self, stage: str, which: str) -> Path:
        """checkpoints/<stage>.<which>.safetensors, `which` one of best, last, resume, extras."""
        return self.checkpoints / f"{stage}.{which}.safetensors"

    def kind(self) -> str:
        """Which family wrote the run: see :func:`run_kind`."""
        return run_kind(self.path)


def run_kind(run_dir: str | os.PathLike) -> str:
    """'lm', 'tabular' or 'classification', from the run's results.json or config.yaml (classification when neither
    says otherwise, so the classification reader gives its own error for a damaged directory)."""
    run_dir = Path(run_dir)
    for name, read in ((RESULTS, json.loads), (CONFIG, yaml.safe_load)):
        try:
            kind = read((run_dir / name).read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            continue
        if kind in ("lm", "tabular"):
            return kind
    return "classification"
