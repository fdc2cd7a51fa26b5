"""Token-level distillation: a Transformer tagger taught to small 1-D CNN taggers on generated sentences, over seeds.

    OMP_NUM_THREADS=1 python bench/tagging.py            # full run, writes the "tagging" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/tagging.py --quick    # smoke test: 1 seed, tiny data, 1 epoch, nothing written

Data: kdkit's built-in ``synthetic_tagging`` at its default sizes (4,000 labelled training sentences, 10% held out
for validation, 1,000 test sentences, at most 32 tokens), one tag per token: "other", or for an adjective the
sentiment it carries in its clause, flipped by a negator up to two tokens before it ("not very good" is negative).
Rows: the teacher (``text_transformer``, ``pooling: none``: it reads the whole sentence), and for two students,
``text_cnn`` with ``pooling: none`` and a centred window of 3 tokens (one token either side: it cannot see the
negator of "not very good") or of 5 tokens (it can), each trained alone on the labels (CE) and distilled with
``token_kd`` (T=2, alpha=0.5, untuned; teacher outputs cached). Both rows of a student start from the same weights.
Metrics over the labelled (non-padding) tokens: token accuracy, macro F1 over the 3 tags, accuracy on the polar
(positive / negative) tokens only, on the polar tokens whose negator sits two tokens back (outside the 3-token
window), and top-1 agreement with the teacher.
Latency: median wall time of one forward pass at batch 64 on the CPU, the models timed in turns so that load
changes hit them alike (the same timing as bench/text.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402
from text import latencies_ms  # noqa: E402

from kdkit.data import Indexed, load_builtin, make_loader  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.data.reviews import _NEGATORS  # noqa: E402
from kdkit.measure import metrics  # noqa: E402
from kdkit.measure.cost import count_params  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

TEACHER = ("text_transformer", {"dim": 64, "heads": 4, "layers": 2, "pooling": "none"}, 3e-3)
STUDENTS = {
    "CNN, window 3": ("text_cnn", {"dim": 32, "width": 32, "kernels": [3], "pooling": "none"}, 5e-3),
    "CNN, window 5": ("text_cnn", {"dim": 32, "width": 32, "kernels": [5], "pooling": "none"}, 5e-3),
}
TOKEN_KD = [{"name": "token_kd", "T": 2.0, "alpha": 0.5}]
ROLES = ("alone", "token KD")
QUICK = {"n_train": 300, "n_test": 100}
METRICS = ("accuracy", "macro_f1", "polar", "far_negated", "agreement")
DIFFS = {"accuracy": "token accuracy", "macro_f1": "macro F1", "polar": "polar-token accuracy",
         "far_negated": "accuracy on polar tokens negated two back", "agreement": "agreement with the teacher"}


def build(spec: tuple, data, init_seed: int) -> nn.Module:
    seed_everything(init_seed)
    return build_model(spec[0], data.input_shape, data.num_classes, **spec[1], **data.model_kwargs)


def far_negated(x: torch.Tensor, labels: np.ndarray, vocab) -> np.ndarray:
    """Boolean (N, L): polar tokens with a negator two tokens before them ("not very good"), the ones a centred
    3-token window cannot tag."""
    negator_ids = torch.tensor([vocab.index[w] for w in _NEGATORS if w in vocab.index])
    two_back = torch.zeros(x.shape, dtype=torch.bool)
    two_back[:, 2:] = torch.isin(x[:, :-2], negator_ids)
    return two_back.numpy() & (labels > 0)


def scores(logits: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray, hard: np.ndarray) -> dict:
    report = metrics.classification_report(logits, labels, teacher_logits)  # over the labelled tokens
    correct = logits.argmax(-1) == labels
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "agreement": report["agreement"],
            "polar": float(correct[labels > 0].mean()), "far_negated": float(correct[hard].mean())}


def run_seed(seed: int, epochs: int, quick: bool) -> dict[str, dict[str, float]]:
    data = load_builtin("synthetic_tagging", seed=seed, **(QUICK if quick else {}))
    train, val = make_loader(data.train, 64, True, seed), make_loader(data.val, EVAL_BATCH_SIZE, False)
    test = make_loader(data.test, EVAL_BATCH_SIZE, False)

    def settings(lr: float) -> TrainSettings:
        return TrainSettings(epochs=epochs, batch_size=64, lr=lr, progress=False, seed=seed)

    teacher = build(TEACHER, data, 1000 + seed)
    fit(Supervised(teacher), train, val, settings(TEACHER[2]))
    teacher_logits, labels = predict(teacher, test)
    hard = far_negated(data.test.tensors[0], labels, data.vocab)
    models, logits = {"teacher": teacher}, {"teacher": teacher_logits}
    for label, spec in STUDENTS.items():
        for role in ROLES:
            student = build(spec, data, seed + 1)  # both rows of a student start from the same weights
            if role == "alone":
                fit(Supervised(student), train, val, settings(spec[2]))
            else:
                scheme = OfflineDistillation(student, teacher, build_terms(TOKEN_KD), cache_size=len(data.train))
                fit(scheme, make_loader(Indexed(data.train), 64, True, seed), val, settings(spec[2]))
                scheme.close()
            name = f"{label}, {role}"
            models[name], logits[name] = student, predict(student, test)[0]
            s = scores(logits[name], labels, teacher_logits, hard)
            print(f"seed {seed} | {name}: token accuracy {s['accuracy']:.4f}, polar {s['polar']:.4f}, "
                  f"negated two back {s['far_negated']:.4f}", flush=True)
    latency = latencies_ms(models, data.test.tensors[0][:64], rounds=3 if quick else 60)
    out = {}
    for name, model in models.items():
        out[name] = scores(logits[name], labels, teacher_logits, hard)
        out[name].update(latency_ms=latency[name], speedup=latency["teacher"] / latency[name],
                         params=count_params(model))
    out["_counts"] = {"tokens": int((labels != -1).sum()), "polar": int((labels > 0).sum()),
                      "far_negated": int(hard.sum()), "other": float((labels == 0).sum() / (labels != -1).sum())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny data, 1 epoch, nothing written")
    args = parser.parse_args()
    seeds, epochs = ([0], 1) if args.quick else (args.seeds, args.epochs)

    start = time.perf_counter()
    per_seed = [run_seed(seed, epochs, args.quick) for seed in seeds]
    names = [n for n in per_seed[0] if not n.startswith("_")]
    lines = ["| model | parameters | token accuracy | macro F1 | polar-token accuracy | polar, negator two back "
             "| agreement with the teacher | latency ms (batch 64) | speed-up vs teacher |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        cell = {key: mean_std([r[name][key] for r in per_seed]) for key in METRICS}
        latency = mean_std([r[name]["latency_ms"] for r in per_seed], ".3f")
        speedup = mean_std([r[name]["speedup"] for r in per_seed], ".1f")
        agree = "-" if name == "teacher" else cell["agreement"]
        lines.append(f"| {name} | {per_seed[0][name]['params']:,} | {cell['accuracy']} | {cell['macro_f1']} | "
                     f"{cell['polar']} | {cell['far_negated']} | {agree} | {latency} | {speedup}x |")
    seed_cols = " | ".join(f"seed {s}" for s in seeds)
    diff_lines = [f"| student | metric | {seed_cols} | mean ± std |", "|---|---|" + "---|" * len(seeds) + "---|"]
    for label in STUDENTS:
        for key, what in DIFFS.items():
            diffs = [100 * (r[f"{label}, token KD"][key] - r[f"{label}, alone"][key]) for r in per_seed]
            sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            diff_lines.append(f"| {label} | {what} | " + " | ".join(f"{d:+.2f}" for d in diffs)
                              + f" | {statistics.mean(diffs):+.2f} ± {sd:.2f} |")
    counts = per_seed[0]["_counts"]
    n_train = QUICK["n_train"] if args.quick else 4000
    n_val = round(0.1 * n_train)
    minutes = (time.perf_counter() - start) / 60
    body = "\n".join([
        f"Generated tagged sentences (`synthetic_tagging`, 3 tags: other / positive / negative, a negator up to two "
        f"tokens before an adjective flips it), {n_train - n_val:,} training / {n_val:,} validation sentences, "
        f"{(QUICK['n_test'] if args.quick else 1000):,} test sentences with {counts['tokens']:,} labelled tokens, "
        f"{counts['other']:.1%} of them \"other\" (the majority baseline), {counts['polar']:,} polar, "
        f"{counts['far_negated']:,} of those with their negator two tokens back (\"not very good\"): a 3-token "
        "window cannot tell those from un-negated \"very good\"; reading every such adjective as un-negated (the "
        "more frequent reading: the generator negates 40% of clauses) and all else right would give "
        f"{1 - counts['far_negated'] / counts['polar']:.4f} polar-token and "
        f"{1 - counts['far_negated'] / counts['tokens']:.4f} token accuracy (from the counts, not measured). "
        f"Teacher `text_transformer` {TEACHER[1]}; students `text_cnn` (dim 32, width 32, pooling none) with a "
        "centred window of 3 tokens (cannot see a negator two back) or 5 tokens (can). Token KD: `token_kd` T=2, "
        "alpha=0.5, untuned, teacher outputs cached, labelled training sentences only (the data set has no "
        f"transfer set). {epochs} epochs for every model, AdamW with a cosine schedule, batch 64, the model at its "
        "best validation macro F1 (over tokens). Every metric counts the labelled tokens of the test sentences. "
        f"Seeds {', '.join(map(str, seeds))} (they draw the validation split, the initial weights and the batch "
        "order; the sentences are the same); mean ± sample std. Latency: median of one forward pass at batch 64 on "
        "one CPU thread, the models timed in turns, in a random order each round (the two rows of one student share "
        f"its architecture: their latencies differ by timing noise only). Total wall time: {minutes:.1f} min.",
        "",
        *lines,
        "",
        "Distilled - alone, per seed, in points (100 x the difference of the fractions):",
        "",
        *diff_lines,
    ])
    print(body)
    if not args.quick:
        write_section("tagging", body, command_line("tagging.py", parser, args))


if __name__ == "__main__":
    main()
