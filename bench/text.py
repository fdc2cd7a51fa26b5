"""Distil a Transformer text classifier into small students on the generated reviews, over seeds.

    OMP_NUM_THREADS=1 python bench/text.py            # full run, writes the "text" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/text.py --quick    # smoke test: 1 seed, tiny data, 1 epoch, nothing written

Data: kdkit's built-in ``synthetic_reviews`` (4 classes; word order decides the label, e.g. "A but B"), 4,000
labelled training reviews (10% held out for validation), 2,000 test reviews, and an unlabelled transfer set of
generated reviews that only the distilled students see, labelled by the teacher. Rows: the teacher
(``text_transformer``), and for two students, a bag of words (``text_bow``, blind to order) and a 1-D CNN
(``text_cnn``, sees 3-word windows), the student trained alone on the labels, distilled (KD, T=4, alpha=0.1,
teacher outputs cached) on the labelled reviews only, and distilled on them plus the transfer set. Every row of a
student starts from the same weights.
Latency: median wall time of one forward pass at batch 64 on the CPU, the models timed in turns so that load
changes hit them alike.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import ConcatDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import Indexed, load_builtin, make_loader  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.measure import metrics  # noqa: E402
from kdkit.measure.cost import count_params  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

TEACHER = ("text_transformer", {"dim": 64, "heads": 4, "layers": 2}, 3e-3)
STUDENTS = {"bag of words": ("text_bow", {"dim": 32}, 1e-2), "1-D CNN": ("text_cnn", {"dim": 32, "width": 32}, 5e-3)}
KD = [{"name": "kd", "T": 4.0, "alpha": 0.1}]
FULL = {"n_train": 4000, "n_test": 2000, "transfer_size": 8000}
QUICK = {"n_train": 300, "n_test": 100, "transfer_size": 300}


def build(spec: tuple, data, init_seed: int) -> nn.Module:
    seed_everything(init_seed)
    return build_model(spec[0], data.input_shape, data.num_classes, **spec[1], **data.model_kwargs)


@torch.no_grad()
def latencies_ms(models: dict[str, nn.Module], batch: torch.Tensor, rounds: int, block: int = 5) -> dict[str, float]:
    """Median ms per forward pass of each model on `batch`. The models take turns in a new random order every
    round, `block` passes each (the first untimed: right after another model a pass runs slower), so load changes
    hit them all alike."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
    order, shuffler = list(models), random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)  # no model always runs right after the teacher
        for name in order:
            model, passes = models[name], []
            for _ in range(block):
                start = time.perf_counter()
                model(batch)
                passes.append(1000 * (time.perf_counter() - start))
            times[name].append(statistics.median(passes[1:]))
    return {name: statistics.median(t) for name, t in times.items()}


def run_seed(seed: int, epochs: int, quick: bool) -> dict[str, dict[str, float]]:
    data = load_builtin("synthetic_reviews", seed=seed, val_fraction=0.1, **(QUICK if quick else FULL))
    train, val = make_loader(data.train, 64, True, seed), make_loader(data.val, EVAL_BATCH_SIZE, False)
    test = make_loader(data.test, EVAL_BATCH_SIZE, False)
    # KD on the labelled reviews only, and on them plus the transfer set: separates the teacher's soft targets
    # from the extra (teacher-labelled) data
    distill_sets = {"KD, labelled data only": Indexed(data.train),
                    "KD + transfer set": Indexed(ConcatDataset([data.train, data.transfer]))}

    def settings(lr: float) -> TrainSettings:
        return TrainSettings(epochs=epochs, batch_size=64, lr=lr, progress=False, seed=seed)

    teacher = build(TEACHER, data, 1000 + seed)
    fit(Supervised(teacher), train, val, settings(TEACHER[2]))
    teacher_logits, labels = predict(teacher, test)
    models, logits = {"teacher": teacher}, {"teacher": teacher_logits}
    for label, spec in STUDENTS.items():
        for role in ("alone", *distill_sets):
            student = build(spec, data, seed + 1)  # every row of a student starts from the same weights
            if role == "alone":
                fit(Supervised(student), train, val, settings(spec[2]))
            else:
                distill_set = distill_sets[role]
                scheme = OfflineDistillation(student, teacher, build_terms(KD), cache_size=len(distill_set))
                fit(scheme, make_loader(distill_set, 64, True, seed), val, settings(spec[2]))
                scheme.close()
            name = f"{label}, {role}"
            models[name], logits[name] = student, predict(student, test)[0]
            print(f"seed {seed} | {name}: accuracy {metrics.accuracy(logits[name], labels):.4f}", flush=True)
    latency = latencies_ms(models, data.test.tensors[0][:64], rounds=3 if quick else 60)
    return {name: {
        "accuracy": metrics.accuracy(logits[name], labels), "macro_f1": metrics.macro_f1(logits[name], labels),
        "agreement": metrics.agreement(logits[name], teacher_logits), "latency_ms": latency[name],
        "speedup": latency["teacher"] / latency[name], "params": count_params(model),
    } for name, model in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny data, 1 epoch, nothing written")
    args = parser.parse_args()
    seeds, epochs = ([0], 1) if args.quick else (args.seeds, args.epochs)

    start = time.perf_counter()
    per_seed = [run_seed(seed, epochs, args.quick) for seed in seeds]
    lines = ["| model | parameters | test accuracy | macro F1 | agreement with the teacher | latency ms (batch 64) "
             "| speed-up vs teacher |", "|---|---|---|---|---|---|---|"]
    for name in per_seed[0]:
        cell = {key: mean_std([r[name][key] for r in per_seed]) for key in ("accuracy", "macro_f1", "agreement")}
        latency = mean_std([r[name]["latency_ms"] for r in per_seed], ".3f")
        speedup = mean_std([r[name]["speedup"] for r in per_seed], ".1f")
        agree = "-" if name == "teacher" else cell["agreement"]
        lines.append(f"| {name} | {per_seed[0][name]['params']:,} | {cell['accuracy']} | {cell['macro_f1']} | "
                     f"{agree} | {latency} | {speedup}x |")
    sizes = QUICK if args.quick else FULL
    n_val = round(0.1 * sizes["n_train"])
    body = "\n".join([
        f"Generated reviews (`synthetic_reviews`, 4 classes, word order decides), {sizes['n_train'] - n_val:,} "
        f"labelled training / {n_val:,} validation / {sizes['n_test']:,} test reviews; the transfer set is "
        f"{sizes['transfer_size']:,} more generated reviews, unlabelled, labelled by the teacher. KD: T=4, alpha=0.1. "
        f"{epochs} epochs for every model, AdamW with a cosine schedule, batch 64, "
        f"the model at its best validation macro F1. Seeds {', '.join(map(str, seeds))} (they draw the validation "
        "split, the initial weights and the batch order; the reviews are the same); mean ± sample std. Latency: "
        "median of one forward pass at batch 64 on one CPU thread, the models timed in turns, in a random order "
        "each round (the rows of one student share its architecture: their latencies differ by timing noise only). "
        "Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *lines,
    ])
    print(body)
    if not args.quick:
        write_section("text", body, command_line("text.py", parser, args))


if __name__ == "__main__":
    main()
