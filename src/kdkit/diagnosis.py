"""Why did distillation pay, or not? Signals every run measures, and the rules that read them.

The verdict (kdkit.verdict) says *whether* the distilled student beat the same student trained alone. This module
says *why*, from numbers the run measures anyway, none of them on the test split the verdict is taken from:

- the teacher's mean top probability and entropy on the training inputs the student learns from, and on held-out
  inputs (near-certain soft labels say little more than the labels themselves);
- the student alone's accuracy on its training inputs and on held-out inputs (a student that fits neither is
  limited by its size or its training, not by its labels);
- agreement (top-1) between each student and the teacher, on the training inputs and on held-out inputs;
- the capacity ratio (teacher parameters / student parameters);
- the unlabelled pool the teacher labels for the distilled student, relative to the labelled set;
- the teacher's held-out accuracy against the student alone's (a teacher under 3 points ahead has too little to
  teach for a gain to show).

"Held-out" is the validation split for classification and language models; for tabular runs, whose held-out rows
give the verdict, it is the fitting rows' out-of-fold predictions (each row predicted by fold models that never saw
it), and the training side's teacher probabilities are the out-of-fold ones the student is taught. A language
model's signals are per labelled token (token accuracy, per-token probability and entropy).

The rules are a decision list: each is a small function of the signals alone, with the evidence behind it in its
docstring; every rule that applies gives its advice, and the first one that applies gives the predicted verdict.
They read only what is known before the distilled student is measured (the teacher, the student alone and the
data), so a prediction can be scored against the measured verdict: `diagnose(Signals.from_dict(row))` works on any
saved row of signals, a benchmark's included. The thresholds are named once, below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from kdkit.labels import UNLABELLED
from kdkit.verdict import GAIN, NONE

# --- thresholds (fractions of accuracy or of probability) ---------------------------------------------------
TEACHER_LEAD_MIN = 0.03  # a gain needs a teacher that beats the student alone on held-out data by 3 points or more
SIMILAR_SIZE = 2.0  # a teacher with under 2x the student's parameters has little the student cannot learn itself
UNDERFIT_GAP = 0.03  # the student alone is not overfitting when train minus held-out accuracy is under 3 points
CAPACITY_SHORTFALL = 0.03  # ... and it is capacity-bound when it fits its own training inputs 3+ points below the
#                            teacher's held-out accuracy
POOL_MIN = 1.0  # an unlabelled pool counts when it is at least as large as the labelled set
CERTAIN = 0.95  # a teacher whose mean top probability on the student's training inputs is this high is near-certain
CALIBRATION_GAP = 0.05  # a teacher whose held-out mean top probability is this far from its held-out accuracy is
#                         miscalibrated (trained teachers of the benchmarks: ECE 0.006 to 0.022; a 2-epoch one: 0.2)


@dataclass
class Signals:
    """What one run measured for the diagnosis; None where the run cannot measure it (e.g. no parameter count for
    tree ensembles, no training-input predictions for data-free schemes). Accuracies, probabilities and agreements
    are fractions, probabilities at temperature 1; entropies are in nats; for a language model all are per
    labelled token."""

    family: str  # classification, lm or tabular
    held_out: str  # what "held-out" is in this run, in words
    unit: str = "samples"  # what the numbers are averaged over: samples, tokens or rows
    teacher_accuracy_held_out: float | None = None
    alone_accuracy_train: float | None = None
    alone_accuracy_held_out: float | None = None
    teacher_confidence_train: float | None = None  # mean top probability on the inputs the student learns from
    teacher_confidence_held_out: float | None = None
    teacher_entropy_train: float | None = None
    teacher_entropy_held_out: float | None = None
    agreement_alone_train: float | None = None
    agreement_alone_held_out: float | None = None
    agreement_kd_train: float | None = None
    agreement_kd_held_out: float | None = None
    capacity_ratio: float | None = None  # teacher parameters / student parameters
    n_train: int | None = None  # labelled training inputs (texts for a language model, rows for tables)
    n_pool: int = 0  # unlabelled inputs the teacher labels for the distilled student
    n_held_out: int | None = None
    teacher_only_inputs: int = 0  # inputs (table columns) only the teacher sees
    notes: list[str] = field(default_factory=list)

    @property
    def teacher_lead(self) -> float | None:
        """Teacher minus student alone, held-out accuracy."""
        return _minus(self.teacher_accuracy_held_out, self.alone_accuracy_held_out)

    @property
    def alone_gap(self) -> float | None:
        """Student alone, training minus held-out accuracy: positive when it overfits."""
        return _minus(self.alone_accuracy_train, self.alone_accuracy_held_out)

    @property
    def pool_ratio(self) -> float:
        """Unlabelled inputs per labelled one (0 without a pool)."""
        return self.n_pool / self.n_train if self.n_pool and self.n_train else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "teacher_lead": self.teacher_lead, "alone_gap": self.alone_gap,
                "pool_ratio": self.pool_ratio}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signals:
        """The signals of a saved row (results.json's diagnosis, a benchmark's row); derived keys are ignored.
        ValueError when a number is not one (a hand-edited or damaged file)."""
        words = {"family", "held_out", "unit", "notes"}
        names = {f.name for f in fields(cls)}
        bad = [k for k, v in data.items() if k in names - words and v is not None
               and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        if bad:
            raise ValueError(f"signal {bad[0]} is not a number: {data[bad[0]]!r}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --- the rules ------------------------------------------------------------------------------------------------

@dataclass
class Finding:
    """A rule that applies: its name, the verdict it predicts, why, and what to do next."""

    rule: str
    predicts: str  # kdkit.verdict's GAIN, NONE or LOSS
    message: str
    next_step: str

    def text(self) -> str:
        return f"{self.message} Next: {self.next_step}."


NEXT: dict[str, dict[str, str]] = {
    "teacher": {
        "classification": "start the teacher from pretrained weights (`teacher.params.pretrained`, "
                          "`teacher.checkpoint`) or train it on more labels or for longer, and check its row before "
                          "distilling",
        "lm": "train the teacher longer or larger, or start from a pretrained one (`hf_lm:<folder>`), and check its "
              "row before distilling",
        "tabular": "give the teacher the columns that carry the signal (`--teacher-columns`) or a stronger model "
                   "(`--teacher`, `kdkit tabular tune`)",
    },
    "size": {
        "classification": "pick a smaller student (distillation pays for the speed it buys), or start it from the "
                          "teacher's weights (`distill.init_from_teacher`)",
        "lm": "pick a smaller student (fewer layers, less width)",
        "tabular": "pick a smaller student model",
    },
    "capacity": {
        "classification": "a larger student (more width or layers) or more epochs (`student.params`, "
                          "`train.epochs`); no distillation method closes a gap the student cannot fit",
        "lm": "a larger student (more layers or width) or more epochs; no divergence closes a gap the student "
              "cannot fit",
        "tabular": "a student with more capacity (deeper trees, more iterations: `--student-params`)",
    },
    "privileged": {
        "tabular": "mix the labels back in and tune alpha (`kdkit tabular tune`), and judge on the held-out rows; "
                   "or let the student see more of the columns that exist at prediction time",
    },
    "calibration": {
        "classification": "train the teacher to convergence (under-confident) or regularise it (over-confident), and "
                          "tune T on the validation split (`kdkit tune CONFIG`)",
        "lm": "train the teacher to convergence (under-confident) or regularise it (over-confident), and tune the "
              "divergence's temperature (`kdkit tune CONFIG`)",
        "tabular": "more iterations (under-confident) or more regularisation (over-confident) for the teacher "
                   "(`--teacher-params`, `kdkit tabular tune`)",
    },
    "pool": {
        "classification": "give the teacher more unlabelled inputs to label (`data.transfer_size`, an `unlabelled/` "
                          "folder of images, with `distill.use_transfer: true`) and tune T and alpha (`kdkit tune`)",
        "lm": "give the teacher more prompts to answer (`data.n_transfer` with `distill.scheme.name: "
              "sequence_level`) and tune the divergence (`kdkit tune`)",
        "tabular": "mix the labels in and tune alpha (`kdkit tabular tune`)",
    },
    "soft": {
        "classification": "tune T and alpha on the validation split (`kdkit tune CONFIG`); an unlabelled pool for "
                          "the teacher to label adds more (`data.transfer_size`, an `unlabelled/` folder)",
        "lm": "tune the divergence and its weight (`kdkit tune CONFIG`); prompts for the teacher to answer add more "
              "(`data.n_transfer`)",
        "tabular": "tune alpha (`kdkit tabular tune`)",
    },
}


def _next(kind: str, family: str) -> str:
    steps = NEXT[kind]
    return steps.get(family) or steps["classification"]


def _points(value: float) -> str:
    return f"{100 * value:.1f} points"


def teacher_not_better(s: Signals) -> Finding | None:
    """The teacher does not beat the student alone on held-out data by TEACHER_LEAD_MIN: there is too little to
    teach for a gain to show.

    Evidence: bench/RESULTS.md `image_folder (... unlabelled 0.5)`: a ResNet-18 trained from scratch on 718 digit
    images (0.952) against the tiny CNN alone (0.949) gave a distilled student of 0.939 (3 seeds); a new user's
    trial on 4,000 real digit images: ResNet-18 0.967 against the tiny CNN alone 0.961, distilled -1.4 points
    (a loss), and from scratch on 450 labels the ResNet-18 (0.87-0.89) was below the student alone (0.913).
    `kd_regimes` (the threshold chosen on its cells; their validation leads are in section diagnosis_score): of the 8
    cells whose teacher led the student alone by under 3 points on the validation split (1.8 to 2.8), one gained
    (+1.9, the 100k student with the same-labels teacher and the pool), five showed no difference and two lost
    (every label: -0.9 and -1.8). Against it:
    `lm_cache`, a teacher level with the student alone (token accuracy 0.204 vs 0.205) whose full distribution still
    lowered the student's perplexity by 5.5% (a regularising effect)."""
    lead = s.teacher_lead
    if lead is None or lead >= TEACHER_LEAD_MIN:
        return None
    return Finding("teacher_not_better", NONE,
                   f"The teacher ({s.teacher_accuracy_held_out:.3f}) does not beat the student alone "
                   f"({s.alone_accuracy_held_out:.3f}) on the {s.held_out} by {_points(TEACHER_LEAD_MIN)} or more: "
                   "it has too little to teach for a gain to show.", _next("teacher", s.family))


def similar_size(s: Signals) -> Finding | None:
    """The teacher has under SIMILAR_SIZE times the student's parameters: the student can learn from the labels
    what the teacher knows, and there is little speed to buy.

    Evidence (thin: two rows): bench/RESULTS.md `text_real`, a 2-layer transformer student of MiniLM (1.46x):
    layer-mapped KD 0.7872 vs 0.7882 alone; `schemes`, mutual learning with a teacher-size peer +0.20 ± 0.19."""
    if s.capacity_ratio is None or s.capacity_ratio >= SIMILAR_SIZE:
        return None
    return Finding("similar_size", NONE,
                   f"The teacher has only {s.capacity_ratio:.1f}x the student's parameters: the student can learn "
                   "from the labels most of what the teacher knows.", _next("size", s.family))


def student_underfits(s: Signals) -> Finding | None:
    """The student alone fits its training inputs hardly better than held-out ones (gap under UNDERFIT_GAP) and
    stays CAPACITY_SHORTFALL or more below the teacher even there: it is limited by its size or its training, and
    a distillation method does not change that.

    Evidence: bench/RESULTS.md `fashion_mnist`: a 3,157-parameter student agreed with the teacher on about 0.90 of
    the test images however it was trained; no method moved it beyond noise, twice the epochs helped it alone and
    distilled alike (+0.6 points). `text`: a bag-of-words student (0.571 alone, teacher 0.990) gained +0.1 points
    with KD, with or without 8,000 extra reviews. `tagging`: a 3-token window (cannot see a negator two tokens
    back) gained +0.02 points. Those benchmarks did not record training accuracy; the rule reads it. Its blind
    spot: with few labels a student too small for the task still fits them (`kd_regimes`: the 3k student, 0.93 on
    its 1,000 labelled images, 0.81 held out), so the rule cannot tell it from one that only lacks labels; that
    student gained nothing from any teacher or pool. The teacher/student parameter ratio does not tell it either:
    the real-images notes' tiny CNN gained +5.3 points from a ResNet-18 over 1,000 times its size."""
    gap, train, teacher = s.alone_gap, s.alone_accuracy_train, s.teacher_accuracy_held_out
    if gap is None or train is None or teacher is None:
        return None
    if gap >= UNDERFIT_GAP or teacher - train < CAPACITY_SHORTFALL:
        return None
    return Finding("student_underfits", NONE,
                   f"The student alone fits its training inputs ({train:.3f}) hardly better than the {s.held_out} "
                   f"({s.alone_accuracy_held_out:.3f}) and stays {_points(teacher - train)} below the teacher: it is "
                   "limited by its size or its training, not by its labels.", _next("capacity", s.family))


def privileged_columns(s: Signals) -> Finding | None:
    """The teacher sees inputs the student never will (privileged columns): its lead comes partly from them, and a
    student cannot imitate what it cannot see.

    Evidence: bench/RESULTS.md `tabular`: on breast cancer and digits with privileged columns, the distilled student
    (alpha 0) was 0.8 to 2.4 accuracy points below the student alone on held-out halves for both libraries, and
    alpha 0.5 within noise of it; the credit-scoring table of the held-out-verdict notes: +0.0 ± 0.2 points over 5
    held-out splits."""
    if not s.teacher_only_inputs:
        return None
    return Finding("privileged_columns", NONE,
                   f"The teacher sees {s.teacher_only_inputs} column(s) the student never does: its lead comes partly "
                   "from them, and a student cannot imitate what it cannot see.", _next("privileged", s.family))


def pool_with_room(s: Signals) -> Finding | None:
    """The teacher labels at least POOL_MIN times as many unlabelled inputs as there are labels, and nothing above
    stands in the way: this is where the teacher's knowledge shows.

    Evidence: bench/RESULTS.md `demo_quality`: 56,000 teacher-labelled inputs (15.6x the labels), +19.9 ± 2.8 points
    over 3 seeds, and `demo_recipes`: 28,000 -> 56,000 of them +14.2 -> +18.6; `text`: the 1-D CNN +5.8 points with
    8,000 reviews (2.2x), +0.5 without; `text_real`: a 2x transfer set, BiLSTM +6.35 and CNN +4.7; the real-images
    notes: 500 labels + 3,500 unlabelled digits with a knowing teacher, +5.3 points."""
    if s.pool_ratio < POOL_MIN:
        return None
    return Finding("pool_with_room", GAIN,
                   f"The teacher labels {s.pool_ratio:.1f}x as many unlabelled inputs as there are labels "
                   f"({s.n_pool:,} / {s.n_train:,}): there its knowledge shows beyond the labels.",
                   _next("pool", s.family))


def teacher_certain_without_pool(s: Signals) -> Finding | None:
    """The teacher is near-certain (mean top probability CERTAIN or more) on the training inputs the student learns
    from, and there is no pool of POOL_MIN: its soft labels there are nearly the hard labels.

    Evidence: bench/RESULTS.md `text`: the 1-D CNN gained +0.5 points from KD on the 3,600 labelled reviews (teacher
    0.990) and +5.8 with 8,000 teacher-labelled ones; `methods` and `schemes` (MNIST-1D and digits, no pool, 12
    paired seeds): no method or scheme gained beyond 2 standard errors except DKD on digits (+0.67 ± 0.30), several
    lost. Those benchmarks did not record the teacher's confidence; the rule reads it."""
    conf = s.teacher_confidence_train
    if conf is None or conf < CERTAIN or s.pool_ratio >= POOL_MIN:
        return None
    held = "" if s.teacher_confidence_held_out is None else f"; {s.teacher_confidence_held_out:.3f} on the {s.held_out}"
    return Finding("teacher_certain_without_pool", NONE,
                   f"The teacher is near-certain on the training inputs the student learns from (mean top probability "
                   f"{conf:.3f}{held}) and labels no pool of other inputs: its soft labels there say little beyond "
                   "the labels.", _next("pool", s.family))


def _calibration_gap(s: Signals) -> float | None:
    """Teacher's held-out mean top probability minus its held-out accuracy (negative: under-confident)."""
    return _minus(s.teacher_confidence_held_out, s.teacher_accuracy_held_out)


def teacher_miscalibrated(s: Signals) -> Finding | None:
    """The teacher's held-out confidence is CALIBRATION_GAP or more away from its held-out accuracy: its
    probabilities are not what it knows (under-confident: undertrained; over-confident: overfitted), so its soft
    labels mislead as much as they inform.

    Evidence: `kdkit demo --quick` (2 epochs: teacher 0.785 accuracy at mean top probability 0.58 on validation),
    no measurable difference; the teachers of the benchmarks whose soft labels helped were calibrated
    (bench/RESULTS.md `demo_quality` ECE 0.011, `text_real` 0.010)."""
    gap = _calibration_gap(s)
    if gap is None or abs(gap) < CALIBRATION_GAP:
        return None
    how = "under-confident: undertrained?" if gap < 0 else "over-confident: overfitted?"
    return Finding("teacher_miscalibrated", NONE,
                   f"The teacher's mean top probability on the {s.held_out} ({s.teacher_confidence_held_out:.3f}) is "
                   f"far from its accuracy there ({s.teacher_accuracy_held_out:.3f}; {how}): its soft labels do not "
                   "say what it knows.", _next("calibration", s.family))


def soft_labels_informative(s: Signals) -> Finding | None:
    """The teacher leads, is calibrated (held-out confidence within CALIBRATION_GAP of its accuracy) and is unsure on
    part of the training inputs (mean top probability under CERTAIN): its soft labels carry what the hard labels do
    not, even without a pool.

    Evidence (thin: one benchmark): bench/RESULTS.md `text_real`: MiniLM fine-tuned for 2 epochs (0.837 test
    accuracy, ECE 0.010) taught a BiLSTM +3.4 points without any extra input (+2.95 to +3.75 over 3 seeds), a CNN
    +1.1."""
    conf, gap = s.teacher_confidence_train, _calibration_gap(s)
    if conf is None or conf >= CERTAIN or gap is None or abs(gap) >= CALIBRATION_GAP:
        return None
    return Finding("soft_labels_informative", GAIN,
                   f"The teacher is unsure on part of the training inputs (mean top probability {conf:.3f}): its "
                   "soft labels carry what the hard labels do not.", _next("soft", s.family))


def no_known_cause(s: Signals) -> Finding | None:
    """No rule above could read this run's signals (some are missing): nothing points to a cause.

    Evidence: most rows of bench/RESULTS.md (`methods`, `schemes`, `fashion_mnist`) show no measurable difference."""
    return Finding("no_known_cause", NONE, "The signals point to no particular cause.", _next("soft", s.family))


RULES: tuple[Callable[[Signals], Finding | None], ...] = (
    teacher_not_better, similar_size, student_underfits, privileged_columns, pool_with_room,
    teacher_certain_without_pool, teacher_miscalibrated, soft_labels_informative,
)


@dataclass
class Diagnosis:
    """The signals, every rule that applies (in the order of RULES) and the verdict the first one predicts."""

    signals: Signals
    findings: list[Finding]

    @property
    def predicted(self) -> str:
        return self.findings[0].predicts

    def as_dict(self) -> dict[str, Any]:
        return {"signals": self.signals.as_dict(), "predicted": self.predicted,
                "advice": [asdict(f) for f in self.findings]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        """Re-read a saved diagnosis: the rules are applied again to its signals."""
        return diagnose(Signals.from_dict(data["signals"]))

    def lines(self) -> list[str]:
        """The diagnosis for the terminal: the signals in one line, then one line per finding."""
        head = f"diagnosis: {signals_sentence(self.signals)}"
        return [head] + [f"diagnosis [{f.rule}, predicts {f.predicts}]: {f.text()}" for f in self.findings]


def diagnose(signals: Signals) -> Diagnosis:
    """Every rule that applies to `signals`, in order; the catch-all when none does. Pure: signals in, advice out."""
    found = [f for rule in RULES if (f := rule(signals)) is not None]
    return Diagnosis(signals, found or [no_known_cause(signals)])


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pair(a: float | None, b: float | None, fmt: str = "{:.3f}") -> str:
    return f"{_num(a, fmt)} / {_num(b, fmt)}"


def signals_sentence(s: Signals) -> str:
    """The signals in one sentence (the terminal line, the report's summary)."""
    per = {"lm": ", per token", "tabular": ", per row"}.get(s.family, "")
    parts = [f"(training inputs / {s.held_out}{per})",
             f"student alone accuracy {_pair(s.alone_accuracy_train, s.alone_accuracy_held_out)}; teacher accuracy "
             f"{_num(s.teacher_accuracy_held_out)} on the {s.held_out};",
             f"teacher top probability {_pair(s.teacher_confidence_train, s.teacher_confidence_held_out)}, entropy "
             f"{_pair(s.teacher_entropy_train, s.teacher_entropy_held_out, '{:.2f}')} nats;",
             f"agreement with the teacher: alone {_pair(s.agreement_alone_train, s.agreement_alone_held_out)}, "
             f"distilled {_pair(s.agreement_kd_train, s.agreement_kd_held_out)};"]
    ratio = "-" if s.capacity_ratio is None else f"{s.capacity_ratio:.1f}x"
    pool = f"{s.pool_ratio:.1f}x the labelled set ({s.n_pool:,})" if s.n_pool else "none"
    only = f"; {s.teacher_only_inputs} column(s) only the teacher sees" if s.teacher_only_inputs else ""
    parts.append(f"teacher/student parameters {ratio}; unlabelled pool {pool}{only}")
    return " ".join(parts) + "."


# --- signals from predictions (classification and tables) -------------------------------------------------------

def _probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(shifted)
    return p / p.sum(axis=-1, keepdims=True)


def confidence(logits: np.ndarray) -> tuple[float, float]:
    """Mean top probability and mean entropy (nats) of softmax(logits) over the rows."""
    p = _probabilities(np.asarray(logits, dtype=np.float64))
    entropy = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=-1)
    return float(p.max(axis=-1).mean()), float(entropy.mean())


def flat_labelled(logits: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, C) logits and their labels; per-token logits (N, L, C) become their labelled tokens."""
    logits = np.asarray(logits)
    if logits.ndim == 2:
        return logits, None if labels is None else np.asarray(labels)
    keep = np.asarray(labels).reshape(-1) != UNLABELLED
    return logits.reshape(-1, logits.shape[-1])[keep], np.asarray(labels).reshape(-1)[keep]


@dataclass
class Split:
    """Logits of the three models by role on one set of inputs, with its labels (UNLABELLED: none)."""

    logits: Mapping[str, np.ndarray]
    labels: np.ndarray


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    labelled = labels != UNLABELLED
    return float((logits[labelled].argmax(-1) == labels[labelled]).mean()) if labelled.any() else None


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def split_signals(split: Split, where: str) -> dict[str, float | None]:
    """The per-split signals (`where`: train or held_out) from the three models' logits on one split."""
    flat = {role: flat_labelled(logits, split.labels) for role, logits in split.logits.items()}
    labels = flat["teacher"][1]
    logits = {role: pair[0] for role, pair in flat.items()}
    conf, ent = confidence(logits["teacher"])
    out: dict[str, float | None] = {
        f"alone_accuracy_{where}": _accuracy(logits["student_alone"], labels),
        f"teacher_confidence_{where}": conf, f"teacher_entropy_{where}": ent,
        f"agreement_alone_{where}": _agreement(logits["student_alone"], logits["teacher"]),
        f"agreement_kd_{where}": _agreement(logits["student_kd"], logits["teacher"]),
    }
    if where == "held_out":
        out["teacher_accuracy_held_out"] = _accuracy(logits["teacher"], labels)
    return out


def prediction_signals(family: str, held_out: str, train: Split | None, held: Split, **sizes: Any) -> Signals:
    """Signals from the three models' logits on the student's labelled training inputs (None when the scheme never
    shows it the data) and on held-out inputs; `sizes` are Signals' other fields (n_train, n_pool, capacity_ratio,
    teacher_only_inputs, unit, notes)."""
    values = split_signals(held, "held_out")
    if train is not None:
        values.update(split_signals(train, "train"))
    n_held = len(flat_labelled(held.logits["teacher"], held.labels)[0])
    return Signals(family=family, held_out=held_out, n_held_out=n_held, **values, **sizes)


def capacity_ratio(rows: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Teacher parameters over the distilled student's, from results rows by role (None when either is unknown)."""
    teacher, student = rows.get("teacher", {}).get("params"), rows.get("student_kd", {}).get("params")
    return float(teacher) / float(student) if teacher and student else None


# --- reading a run directory; the signals as rows of text ------------------------------------------------------

# (label, signal on the training inputs, signal held out, number format, what it tells)
SIGNAL_ROWS = (
    ("student alone: accuracy", "alone_accuracy_train", "alone_accuracy_held_out", "{:.4f}",
     "about equal and far below the teacher: the student is limited by its size or training; a gap: it overfits, "
     "and more (teacher-labelled) inputs help"),
    ("teacher: accuracy", None, "teacher_accuracy_held_out", "{:.4f}",
     f"under {_points(TEACHER_LEAD_MIN)} above the student alone: too little to teach for a gain to show"),
    ("teacher: mean top probability", "teacher_confidence_train", "teacher_confidence_held_out", "{:.4f}",
     "near 1 where the student learns: its soft labels there are nearly the labels; far from its accuracy: "
     "miscalibrated"),
    ("teacher: mean entropy (nats)", "teacher_entropy_train", "teacher_entropy_held_out", "{:.3f}",
     "how much the soft labels say beyond the top class"),
    ("agreement with the teacher: student alone", "agreement_alone_train", "agreement_alone_held_out", "{:.4f}",
     "how far the labels alone bring the student towards the teacher"),
    ("agreement with the teacher: distilled student", "agreement_kd_train", "agreement_kd_held_out", "{:.4f}",
     "high where it was shown the teacher, low held out: it imitates the teacher only there"),
)


def signal_rows(s: Signals) -> tuple[list[str], list[list[str]], str]:
    """(headers, rows, caption) of the signals: per split, then the sizes; for the report and `kdkit diagnose`."""
    rows = [[label, _num(getattr(s, train) if train else None, fmt), _num(getattr(s, held), fmt), why]
            for label, train, held, fmt, why in SIGNAL_ROWS]
    pool = f"{s.n_pool:,} ({s.pool_ratio:.1f}x the labelled set)" if s.n_pool else "none"
    rows += [["teacher / student parameters", _num(s.capacity_ratio, "{:.1f}x"), "", "under 2x: little to buy"],
             ["unlabelled inputs the teacher labels", pool, "",
              "where the teacher's knowledge shows beyond the labels"]]
    if s.teacher_only_inputs:
        rows.append(["columns only the teacher sees", str(s.teacher_only_inputs), "",
                     "what the student cannot imitate"])
    per = {"tokens": ", per labelled token", "rows": ", per row"}.get(s.unit, "")
    sizes = f"{s.n_train:,} labelled training inputs, " if s.n_train else ""
    caption = f"{sizes}{s.n_held_out or 0:,} held-out {s.unit} ({s.held_out}){per}"
    return ["signal", "training inputs", s.held_out, "what it tells"], rows, caption


__all__ = ["CALIBRATION_GAP", "CAPACITY_SHORTFALL", "CERTAIN", "Diagnosis", "Finding", "POOL_MIN",
           "RULES", "SIMILAR_SIZE", "Signals", "Split", "TEACHER_LEAD_MIN", "UNDERFIT_GAP", "capacity_ratio",
           "confidence", "diagnose", "prediction_signals",
           "signal_rows", "signals_sentence"]
