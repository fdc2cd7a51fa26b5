"""Did distillation work? One verdict, with its uncertainty, and what to try next.

A table of three accuracies prints a +0.3 point noise and a -9 point failure in the same tone. The verdict
turns "distilled minus alone" into a paired difference with an interval and one of three words:

- one run: a paired bootstrap over test samples. Both students are scored on the *same* resampled test set, so
  the noise shared by the two (hard and easy samples) cancels and the interval is much narrower than two
  separate intervals would suggest. For sequence labelling a resampled unit is a sentence, not a token, because
  tokens of one sentence are not independent.
- several seeds (`kdkit compare`): the per-seed paired differences, their mean and a t-interval, which also
  covers the run-to-run spread that one run's bootstrap cannot see.

Each family declares the metric its verdict compares (a :class:`Metric`: accuracy per test sample or sentence for
classification and tables; for a language model, exact match per test problem when the data has prompt/response
pairs, else token accuracy per test text, since tokens of one text are not independent).

An interval entirely above 0 is a "gain", entirely below a "loss", otherwise "no measurable difference".
Warnings (`Advice`) flag the setups in which a verdict is least trustworthy or distillation cannot pay, each
with the next thing to try and the page of the documentation that explains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from kdkit.labels import UNLABELLED
from kdkit.run.rundir import ROLES

GAIN, NONE, LOSS = "gain", "no measurable difference", "loss"
LEVEL = 0.95
RESAMPLES = 2000
SMALL_VAL = 500  # below this many validation samples, picking the best epoch mostly picks noise
NOT_FASTER = 1.1  # latency speed-ups under this are within timing noise: the student is not clearly faster
# pages of the documentation (docs/ of the repository, or the site built from it) that explain a warning
VERDICT_SECTION = "docs/results.md#reading-the-verdict"
WHY_SECTION = "docs/results.md#why-it-paid-or-not-the-diagnosis"  # kdkit.diagnosis's signals and rules

TRY_NEXT = ("tune T and alpha on the validation split (`kdkit tune CONFIG`, docs/tuning.md); "
            "give the teacher more inputs to label (a transfer set: `data.transfer_size`, or an `unlabelled/` folder "
            "of images, docs/guides/images.md); show teacher and student the same augmented views "
            "(`train.augment`, docs/recipes.md#consistent-augmentation-function-matching)")
# an image folder refuses data.transfer_size: its extra inputs are the images of its unlabelled/ folder
TRY_NEXT_IMAGES = ("tune T and alpha on the validation split (`kdkit tune CONFIG`, docs/tuning.md); give the "
                   "teacher more images to label: put unlabelled ones in an `unlabelled/` "
                   "folder beside `train/` (docs/guides/images.md); show teacher and student the same "
                   "augmented views (`data.augment`, `data.random_crop`, `train.augment`; `distill.cached_views` "
                   "stores the teacher's answers to them)")


LM_SECTION = "docs/guides/language-models.md"  # the page that explains a language-model run's warnings
LM_TRY_NEXT = ("give the teacher more prompts to answer (`data.n_transfer` with "
               "`distill.scheme.name: sequence_level`), try another divergence (`forward_kl`, `reverse_kl`, `jsd`, "
               "`tv` in `distill.losses`) or on-policy distillation (`distill.scheme.name: on_policy`)")


@dataclass(frozen=True)
class Metric:
    """What a verdict compares: the key of the rows' metric, its name in the verdict line, and the resampled unit."""

    key: str
    words: str
    unit: str


ACCURACY = Metric("accuracy", "accuracy", "test samples")
EXACT_MATCH = Metric("exact_match", "exact-match", "test problems")
TOKEN_ACCURACY = Metric("token_accuracy", "token-accuracy", "test texts")


class Finding(Protocol):
    """What a warning reads of the diagnosis's first finding (a kdkit.diagnosis.Finding): its rule, the verdict it
    predicts, why and what to do next. The diagnosis builds on the verdict's outcomes, not the other way round."""

    rule: str
    predicts: str
    message: str
    next_step: str


def try_next(data: str | None = None) -> str:
    """What to try after a loss or no difference, for the run's data source (`data.name`)."""
    return TRY_NEXT_IMAGES if data == "image_folder" else TRY_NEXT


@dataclass
class Advice:
    """A warning about the run, the next thing to try, and the page of the documentation that explains it."""

    code: str  # stable key for tests and tools: loss, no_difference, teacher_not_better, not_faster, small_val
    message: str
    next_step: str
    section: str  # the page of the documentation and its heading, as VERDICT_SECTION

    def text(self) -> str:
        return f"{self.message} Next: {self.next_step}. See {self.section}."


@dataclass
class Verdict:
    """distilled minus alone, as accuracy fractions, with the interval and the method that produced it."""

    kind: str
    difference: float
    low: float
    high: float
    method: str
    n: int  # test samples (one run) or seeds (several runs)
    per_seed: list[float] = field(default_factory=list)
    advice: list[Advice] = field(default_factory=list)
    metric: str = "accuracy"  # what the difference is of (a language-model run: exact match or token accuracy)

    @property
    def headline(self) -> str:
        points = f"{100 * self.difference:+.1f} {self.metric} points"
        interval = (f"{LEVEL:.0%} interval {100 * self.low:+.1f} to {100 * self.high:+.1f}"
                    if np.isfinite(self.low) and np.isfinite(self.high) else "no interval")
        word = {GAIN: "Gain", NONE: "No measurable difference", LOSS: "Loss"}[self.kind]
        return f"{word}: distilled minus alone = {points} ({interval}; {self.method})."

    def lines(self) -> list[str]:
        """The verdict as plain lines for the terminal: headline, then one line per warning."""
        return [f"verdict: {self.headline}"] + [f"warning: {a.text()}" for a in self.advice]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        keys = ("kind", "difference", "low", "high", "method", "n", "per_seed", "metric")
        return cls(**{k: data[k] for k in keys if k in data},
                   advice=[Advice(**a) for a in data.get("advice", [])])


def kind_of(low: float, high: float) -> str:
    """gain when the whole interval is above 0, loss when it is below, else no measurable difference."""
    return GAIN if low > 0 else LOSS if high < 0 else NONE


def correct_per_unit(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct, labelled) counts per resampling unit: a sample, or a sentence when labels are per token (N, L)
    with -1 at padding. Unlabelled rows count 0 of 0."""
    labels = np.asarray(labels)
    labelled = labels != UNLABELLED
    hit = (np.asarray(logits).argmax(-1) == labels) & labelled
    if labels.ndim == 1:
        return hit.astype(float), labelled.astype(float)
    return hit.reshape(len(labels), -1).sum(1).astype(float), labelled.reshape(len(labels), -1).sum(1)\
        .astype(float)


def paired_bootstrap(
    correct_a: np.ndarray, correct_b: np.ndarray, totals: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """accuracy(a) - accuracy(b) and its percentile interval, resampling units with replacement and scoring both
    models on the same resample each time (seeded: the same inputs give the same interval)."""
    diff_units = np.asarray(correct_a, float) - np.asarray(correct_b, float)
    totals = np.asarray(totals, float)
    n = len(totals)
    if n == 0 or totals.sum() == 0:
        raise ValueError("no labelled test samples to compare")
    point = float(diff_units.sum() / totals.sum())
    rng = np.random.default_rng(seed)
    draws = []
    chunk = max(1, 4_000_000 // n)  # bounded memory for large test sets
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        # a resample without labelled units (tiny tagging sets only) scores no difference rather than 0 / 0
        draws.append(diff_units[idx].sum(1) / np.maximum(totals[idx].sum(1), 1))
    values = np.concatenate(draws)
    tail = (1 - level) / 2
    return point, float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def seeds_interval(differences: Sequence[float], level: float = LEVEL) -> tuple[float, float, float, float | None]:
    """Mean, t-interval and standard error of per-seed paired differences; one seed gives no interval (its ends
    are then -inf and +inf, which reads as no measurable difference)."""
    from scipy import stats

    values = np.asarray(differences, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("-inf"), float("inf"), None
    sem = float(values.std(ddof=1) / np.sqrt(len(values)))
    half = float(stats.t.ppf(1 - (1 - level) / 2, len(values) - 1)) * sem
    return mean, mean - half, mean + half, sem


def not_paid(kind: str, why: Finding | None = None, try_next: str = TRY_NEXT,
             section: str = VERDICT_SECTION) -> list[Advice]:
    """The warning of a loss or of no measurable difference: with the diagnosis's first finding (`why`), its reason
    and next step; without one, the general next step `try_next`."""
    if kind not in (LOSS, NONE):
        return []
    code, message = (("loss", "The distilled student is worse than the same student trained alone.") if kind == LOSS
                     else ("no_difference", "Distillation made no measurable difference."))
    if why is None:
        return [Advice(code, message, try_next, section)]
    said = "The diagnosis expected a gain:" if why.predicts == GAIN else "Diagnosis:"
    return [Advice(code, f"{message} {said} {why.message}", why.next_step, WHY_SECTION)]


def teacher_not_better(teacher: float, alone: float, low: float | None, high: float | None,
                       label: str = "") -> str | None:
    """The words for a teacher that has little to teach, or None when it is measurably better than the student
    alone. `low`, `high`: the interval of teacher minus alone (None: no interval, the two scores are compared as
    they are). A teacher measurably worse is said to be worse, by how many points; `label` names the metric."""
    if low is None:
        if teacher > alone:
            return None
        worse = teacher < alone
    else:
        if low > 0:
            return None
        worse = high is not None and high < 0
    scores = f"the student alone ({alone:.4f})"
    if worse:
        return (f"The teacher ({label}{teacher:.4f}) is {100 * (alone - teacher):.1f} points worse than {scores}, "
                "so it has nothing to teach.")
    return f"The teacher ({label}{teacher:.4f}) is not measurably better than {scores}, so it has little to teach."


def advise(
    kind: str, rows: Mapping[str, Mapping[str, Any]], teacher_low: float | None = None, n_val: int | None = None,
    keep: str | None = None, teacher_high: float | None = None, data: str | None = None, why: Finding | None = None,
) -> list[Advice]:
    """The warnings that apply: distillation did not pay (with the diagnosis's first finding `why`, when there is
    one; else the next step for the data source `data`), the teacher is not better than the student alone (so it
    has little to teach; `teacher_low`, `teacher_high`: the interval of teacher minus alone, when there is one),
    the student is not faster than the teacher (so there is nothing to buy), or the validation split is too small
    for `keep: best` to pick a good epoch."""
    out = not_paid(kind, why, try_next(data))
    teacher, alone = rows.get("teacher", {}), rows.get("student_alone", {})
    words = teacher_not_better(teacher.get("accuracy", 1.0), alone.get("accuracy", 0.0), teacher_low, teacher_high)
    if words and (why is None or why.rule != "teacher_not_better"):  # else the diagnosis said it already
        out.append(Advice(
            "teacher_not_better", words,
            "train the teacher longer or pick a larger one (or load a pretrained one with `teacher.checkpoint`), "
            "and check its row before distilling", VERDICT_SECTION))
    speedup = rows.get("student_kd", {}).get("speedup")
    if speedup is not None and speedup < NOT_FASTER:
        out.append(Advice(
            "not_faster", f"The student is not faster than the teacher at batch 1 ({speedup:.2f}x).",
            "pick a smaller student (fewer layers or channels) or a teacher that is really larger; on a GPU time "
            "larger batches", VERDICT_SECTION))
    elif speedup is not None and rows["student_kd"].get("speedup_certain") is False:
        out.append(Advice(  # faster on the medians, but the latency spreads overlap: the timing was too noisy
            "not_faster", f"The student is not measurably faster than the teacher at batch 1 (~{speedup:.1f}x on "
            "the medians, but the two latency spreads overlap).",
            "re-measure on an idle machine with `kdkit evaluate RUN_DIR --cost-only`; if it stays uncertain, pick a "
            "smaller student", VERDICT_SECTION))
    if n_val is not None and n_val < SMALL_VAL and keep == "best":
        out.append(Advice(
            "small_val", f"The validation split has {n_val} samples: too few for `keep: best` to pick the best epoch "
            "(it mostly picks noise, often an early, undertrained epoch).",
            "set `train.keep: last`, or give more validation data (`data.val_fraction`, a `val/` folder)",
            "docs/getting-started.md#your-own-models-from-python"))
    return out


def run_verdict(
    test_logits: Mapping[str, np.ndarray], labels: np.ndarray, rows: Sequence[Mapping[str, Any]],
    n_val: int | None = None, keep: str | None = None, resamples: int = RESAMPLES, seed: int = 0,
    data: str | None = None, why: Finding | None = None,
) -> Verdict:
    """The verdict of one run from its test logits by role (teacher, student_alone, student_kd) and labels; `data`
    (the data source's name) picks the next steps, `why` (the diagnosis's first finding) words the warning when
    distillation did not pay."""
    scores = {role: correct_per_unit(test_logits[role], labels) for role in ROLES}
    unit = "sentences" if np.asarray(labels).ndim == 2 else ACCURACY.unit
    paired = paired_roles(scores, unit, resamples, seed)
    by_role = {str(r["role"]): r for r in rows}
    return Verdict(paired.kind, paired.difference, paired.low, paired.high, paired.method, paired.n,
                   advice=advise(paired.kind, by_role, paired.teacher_low, n_val, keep, paired.teacher_high, data,
                                 why))


@dataclass
class Paired:
    """One run's paired comparisons: distilled minus alone (its kind, difference and interval), teacher minus alone
    (its interval), over n units."""

    kind: str
    difference: float
    low: float
    high: float
    teacher_low: float
    teacher_high: float
    method: str
    n: int


def paired_roles(scores: Mapping[str, tuple[np.ndarray, np.ndarray]], unit: str, resamples: int = RESAMPLES,
                 seed: int = 0) -> Paired:
    """The paired bootstraps of one run from (score, total) per unit by role (the same units for every role)."""
    kd, total = scores["student_kd"]
    diff, low, high = paired_bootstrap(kd, scores["student_alone"][0], total, resamples, seed)
    _, teacher_low, teacher_high = paired_bootstrap(scores["teacher"][0], scores["student_alone"][0], total,
                                                    resamples, seed)
    method = f"paired bootstrap over {len(total):,} {unit}, {resamples:,} resamples, seed {seed}"
    return Paired(kind_of(low, high), diff, low, high, teacher_low, teacher_high, method, len(total))


def seeds_method(n: int, sem: float | None) -> str:
    return (f"mean over {n} seeds ± standard error {100 * sem:.1f}, t-interval" if sem is not None
            else "one seed: no interval; run more seeds")


def seeds_verdict(differences: Sequence[float], rows: Mapping[str, Mapping[str, Any]] | None = None,
                  teacher_minus_alone: Sequence[float] | None = None) -> Verdict:
    """The verdict over seeds from per-seed paired differences (distilled minus alone, same seed)."""
    mean, low, high, sem = seeds_interval(differences)
    kind = kind_of(low, high)
    _, teacher_low, teacher_high, _ = seeds_interval(teacher_minus_alone) if teacher_minus_alone else (0, None, None, 0)
    return Verdict(kind, mean, low, high, seeds_method(len(differences), sem), len(differences),
                   per_seed=[float(d) for d in differences],
                   advice=advise(kind, rows or {}, teacher_low, teacher_high=teacher_high))


def verdict_metric(units: Mapping[str, Mapping[str, np.ndarray]]) -> Metric:
    """The metric a language-model run's verdict compares: exact match when every model has per-problem hits."""
    return EXACT_MATCH if all("exact" in u for u in units.values()) else TOKEN_ACCURACY


def unit_scores(units: Mapping[str, np.ndarray], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, total) per unit of a language-model run: exact hits out of 1, or correct tokens out of labelled
    tokens."""
    if key == EXACT_MATCH.key:
        return np.asarray(units["exact"], float), np.ones(len(units["exact"]))
    return np.asarray(units["correct"], float), np.asarray(units["tokens"], float)


def lm_advice(kind: str, rows: Mapping[str, Mapping[str, Any]], key: str, teacher_low: float | None,
              teacher_high: float | None = None, why: Finding | None = None) -> list[Advice]:
    """The warnings that apply to a language-model run: no gain (with the diagnosis's first finding `why`, when
    there is one), a teacher no better than the student alone (`teacher_low`, `teacher_high`: the interval of
    teacher minus alone), a student that does not generate faster than the teacher."""
    out = not_paid(kind, why, LM_TRY_NEXT, LM_SECTION)
    teacher, alone = rows.get("teacher", {}), rows.get("student_alone", {})
    words = None if teacher_low is None else teacher_not_better(
        teacher.get(key, float("nan")), alone.get(key, float("nan")), teacher_low, teacher_high, f"{key} ")
    if words and (why is None or why.rule != "teacher_not_better"):  # else the diagnosis said it already
        out.append(Advice(
            "teacher_not_better", words,
            "train the teacher longer (`teacher.train.epochs`) or make it larger, and check its row before distilling",
            LM_SECTION))
    fast_t, fast_s = teacher.get("tokens_per_s"), rows.get("student_kd", {}).get("tokens_per_s")
    if fast_t and fast_s and fast_s / fast_t < NOT_FASTER:
        out.append(Advice(
            "not_faster", f"The student does not generate faster than the teacher ({fast_s / fast_t:.2f}x tokens/s).",
            "pick a smaller student (fewer layers, less width) or a larger teacher", LM_SECTION))
    return out


def lm_run_verdict(units: Mapping[str, Mapping[str, np.ndarray]], rows: Mapping[str, Mapping[str, Any]],
                   resamples: int = RESAMPLES, seed: int = 0, why: Finding | None = None) -> Verdict:
    """One language-model run's verdict from its per-unit sums by role (lm_units, plus `exact` hits when there are
    prompts); `why` (the diagnosis's first finding) words the warning when distillation did not pay."""
    metric = verdict_metric(units)
    paired = paired_roles({role: unit_scores(u, metric.key) for role, u in units.items()}, metric.unit, resamples,
                          seed)
    return Verdict(paired.kind, paired.difference, paired.low, paired.high, paired.method, paired.n,
                   advice=lm_advice(paired.kind, rows, metric.key, paired.teacher_low, paired.teacher_high, why),
                   metric=metric.words)


def lm_seeds_verdict(differences: Sequence[float], rows: Mapping[str, Mapping[str, Any]], metric: Metric,
                     teacher_minus_alone: Sequence[float]) -> Verdict:
    """The verdict over seeds from per-seed paired differences of `metric` (distilled minus alone, same seed)."""
    mean, low, high, sem = seeds_interval(differences)
    kind = kind_of(low, high)
    _, teacher_low, teacher_high, _ = (seeds_interval(teacher_minus_alone) if len(teacher_minus_alone) > 1
                                       else (0, None, None, 0))
    return Verdict(kind, mean, low, high, seeds_method(len(differences), sem), len(differences),
                   per_seed=[float(d) for d in differences],
                   advice=lm_advice(kind, rows, metric.key, teacher_low, teacher_high), metric=metric.words)
