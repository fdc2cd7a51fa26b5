"""Training speed side by side in one run: the same distillation with kdkit (live teacher, cached teacher, bf16)
and with torchdistill 1.1.5 (its KDLoss inside a DistillationBox), and the student trained alone.

    OMP_NUM_THREADS=1 python bench/speed.py --torchdistill /tmp/td/site [--repeats 9] [--samples 50000]

torchdistill is not a kdkit dependency: install it for this script only, e.g.
``pip install --no-deps --target /tmp/td/site torchdistill==1.1.5`` (its torch and torchvision are the ones kdkit's
dev extras already install), and pass that folder with --torchdistill. Without it the torchdistill row is left out.

Every row trains the same student from the same initial weights on the same MNIST-1D sequences (labelled, from the
mnist1d generator), in the same order, with the same batch size, AdamW settings (no schedule), and the same KD loss
(alpha * CE + (1 - alpha) * T^2 * KL(teacher || student), batchmean) against the same frozen teacher (the demo's
1-D CNN, untrained: the work per step does not depend on its weights). One epoch per measurement; each row first
runs one untimed epoch (warm-up; it also fills the cached row's per-sample cache), then the rows take turns for
`repeats` rounds, each round starting with a different row. Reported: samples per second, median and
interquartile range over the rounds, and ratios of medians (marked uncertain when the IQRs overlap).

One more row times the teacher's forward alone (under inference_mode, on batches sliced in advance). With the
student-alone row it gives a ceiling no live-teacher KD can pass, whichever framework runs it: per sample, one
training step of the student plus one forward of the teacher, and nothing else.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, RandomSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit  # noqa: E402
from kdkit.data import Indexed, make_loader  # noqa: E402
from kdkit.measure.spread import Spread  # noqa: E402
from kdkit.models import build_model  # noqa: E402

T, ALPHA = 2.0, 0.5
LR, WEIGHT_DECAY = 3e-3, 1e-4
TEACHER = {"name": "cnn1d", "params": {"width": 64, "depth": 3, "kernel": 5}}  # the demo's
STUDENT = {"name": "mlp", "params": {"hidden": [64]}}
TEACHER_ONLY = "teacher forward alone (no student, no loss)"


def labelled_mnist1d(n: int) -> TensorDataset:
    """`n` labelled MNIST-1D sequences from the mnist1d generator (a fixed seed), as float32 inputs and labels."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n, 1.0, 7
    data = make_dataset(args)
    return TensorDataset(torch.tensor(data["x"], dtype=torch.float32), torch.tensor(data["y"], dtype=torch.long))


def student() -> nn.Module:
    torch.manual_seed(1)  # every row starts from the same weights
    return build_model(STUDENT["name"], (40,), 10, **STUDENT["params"])


def kdkit_row(data: Dataset, teacher: nn.Module, batch: int, mode: str) -> Callable[[int], None]:
    """One epoch of kdkit's fit per call: 'alone' (CE), 'live' (teacher forward every step), 'cached' (teacher
    outputs cached per sample; the warm-up epoch fills the cache), 'bf16' (live, under bf16 autocast)."""
    model = student()
    extra = {"precision": "bf16"} if mode == "bf16" else {}
    if mode == "alone":
        scheme = Supervised(model)
    else:
        terms = build_terms([{"name": "kd", "T": T, "alpha": ALPHA}])
        scheme = OfflineDistillation(model, copy.deepcopy(teacher), terms,
                                     cache_size=len(data) if mode == "cached" else None)
    dataset = Indexed(data) if mode == "cached" else data

    def epoch(seed: int) -> None:
        settings = TrainSettings(epochs=1, batch_size=batch, lr=LR, weight_decay=WEIGHT_DECAY, optimizer="adamw",
                                 scheduler="none", progress=False, seed=seed, device="cpu", **extra)
        fit(scheme, make_loader(dataset, batch, shuffle=True, seed=seed), None, settings)

    return epoch


def torchdistill_row(data: Dataset, teacher: nn.Module, batch: int) -> Callable[[int], None]:
    """One epoch of torchdistill's DistillationBox per call, its KDLoss (the same T and alpha) as the only term,
    the loop as in torchdistill's image-classification example (without its metric logger)."""
    from torchdistill.core.distillation import DistillationBox

    config = {
        "num_epochs": 1,
        "train_data_loader": {"dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
                              "kwargs": {"batch_size": batch, "num_workers": 0}},
        "teacher": {"requires_grad": False, "forward_proc": "forward_batch_only"},  # model(x), as kdkit does
        "student": {"forward_proc": "forward_batch_only"},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": LR, "weight_decay": WEIGHT_DECAY}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {"criterion": {
            "key": "KDLoss", "kwargs": {"student_module_path": ".", "student_module_io": "output",
                                        "teacher_module_path": ".", "teacher_module_io": "output",
                                        "temperature": T, "alpha": ALPHA, "reduction": "batchmean"}},
            "weight": 1.0}}}},
    }
    box = DistillationBox(copy.deepcopy(teacher).eval(), student(), {"train": data}, config, torch.device("cpu"),
                          None, False, 1)

    def epoch(seed: int) -> None:
        torch.manual_seed(seed)  # the RandomSampler's order
        box.pre_epoch_process(epoch=seed)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)

    return epoch


def teacher_only_row(data: TensorDataset, teacher: nn.Module, batch: int) -> Callable[[int], None]:
    """The teacher's forward alone over one epoch of batches (already sliced: no loader), under inference_mode:
    with the student-alone row it bounds what any framework's live-teacher KD can reach."""
    model = copy.deepcopy(teacher).eval()
    inputs = data.tensors[0]
    batches = [inputs[i:i + batch] for i in range(0, len(inputs), batch)]

    def epoch(seed: int) -> None:
        with torch.inference_mode():
            for x in batches:
                model(x)

    return epoch


def interleaved(rows: dict[str, Callable[[int], None]], n: int, repeats: int) -> dict[str, list[float]]:
    """Samples/s of one epoch per row and round, after one untimed epoch per row; round r starts with row r."""
    names = list(rows)
    for name in names:
        rows[name](0)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            rows[name](r + 1)
            rates[name].append(n / (time.perf_counter() - start))
            print(f"round {r + 1}/{repeats} {name}: {rates[name][-1]:,.0f} samples/s", flush=True)
    return rates


def ratio_text(top: Spread, bottom: Spread) -> str:
    """Ratio of medians, with the range the quartiles allow; '(uncertain: spreads overlap)' when they do."""
    text = f"{top.median / bottom.median:.2f} (range {top.q1 / bottom.q3:.2f} to {top.q3 / bottom.q1:.2f})"
    return text + (" (uncertain: spreads overlap)" if top.overlaps(bottom) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (one epoch per row each)")
    parser.add_argument("--samples", type=int, default=50_000, help="training sequences per epoch")
    parser.add_argument("--batch-size", type=int, default=256, help="the demo's distillation batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, fixed for the whole run")
    parser.add_argument("--torchdistill", type=Path, default=None,
                        help="folder holding torchdistill 1.1.5 (pip install --no-deps --target FOLDER ...)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.torchdistill is not None:
        sys.path.insert(0, str(args.torchdistill))
    load_before = os.getloadavg()
    data = labelled_mnist1d(args.samples)
    torch.manual_seed(0)
    teacher = build_model(TEACHER["name"], (40,), 10, **TEACHER["params"]).eval()
    rows: dict[str, Callable[[int], None]] = {
        "student alone (kdkit, CE)": kdkit_row(data, teacher, args.batch_size, "alone"),
        "kdkit KD, live teacher": kdkit_row(data, teacher, args.batch_size, "live"),
        "kdkit KD, cached teacher": kdkit_row(data, teacher, args.batch_size, "cached"),
    }
    rows[TEACHER_ONLY] = teacher_only_row(data, teacher, args.batch_size)
    notes = []
    if "precision" in TrainSettings.model_fields:
        rows["kdkit KD, live teacher, bf16"] = kdkit_row(data, teacher, args.batch_size, "bf16")
    else:
        notes.append("TODO: no bf16 row: this kdkit has no train.precision yet.")
    try:
        import torchdistill

        rows[f"torchdistill {torchdistill.__version__} KD (DistillationBox + KDLoss)"] = torchdistill_row(
            data, teacher, args.batch_size)
    except ImportError:
        notes.append("No torchdistill row: torchdistill is not importable (pass --torchdistill FOLDER).")
    started = time.perf_counter()
    rates = interleaved(rows, args.samples, args.repeats)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    spreads = {name: Spread.of(values) for name, values in rates.items()}
    lines = [
        f"One epoch over {args.samples:,} labelled MNIST-1D sequences, batch {args.batch_size}, AdamW lr {LR} (no "
        f"schedule), KD at T={T}, alpha={ALPHA}; teacher: the demo's 1-D CNN (48k parameters, untrained), student: "
        f"the demo's MLP (3.3k). One warm-up epoch per row, then {args.repeats} interleaved rounds. "
        f"{args.threads} torch thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), CPU only: "
        f"no GPU run was made. Load average (1/5/15 min) {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f} before, {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after; "
        f"{seconds:.0f} s in all.",
        "",
        "| row | samples/s, median | IQR |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s.median:,.0f} | {s.q1:,.0f} - {s.q3:,.0f} |" for name, s in spreads.items()]
    names = list(spreads)
    alone, live, cached = (spreads[n] for n in names[:3])
    lines += ["", f"- kdkit live teacher / student alone: {ratio_text(live, alone)}",
              f"- kdkit cached teacher / student alone: {ratio_text(cached, alone)} (target >= 0.9)"]
    bf16 = [n for n in names if "bf16" in n]
    if bf16:
        lines.append(f"- kdkit bf16 live / kdkit fp32 live: {ratio_text(spreads[bf16[0]], live)}")
    td = [n for n in names if n.startswith("torchdistill")]
    if td:
        lines.append(f"- kdkit live teacher / torchdistill: {ratio_text(live, spreads[td[0]])} (target >= 1.2)")
    # per sample, live KD costs at least a training step of the student plus a forward of the teacher
    ceiling = 1.0 / (1.0 / alone.median + 1.0 / spreads[TEACHER_ONLY].median)
    shares = [f"kdkit live {live.median / ceiling:.2f}"]
    shares += [f"torchdistill {spreads[n].median / ceiling:.2f}" for n in td]
    lines.append(f"- ceiling for any live-teacher KD (student-alone step + teacher forward, nothing else): "
                 f"{ceiling:,.0f} samples/s; share of it reached: {', '.join(shares)}")
    lines += [""] + [f"{note}" for note in notes]
    body = "\n".join(lines).rstrip()
    print(body)
    if not args.no_record:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        shared = load_before[0] > 0.5 or load_after[0] > 0.5
        body += ("\n\nThe machine was shared with other jobs while this ran (`uptime` at the end: "
                 f"`{uptime}`), so absolute figures are low and noisy; the ratios come from interleaved rounds of "
                 "the same run." if shared else f"\n\n`uptime` at the end: `{uptime}`.")
        command = (f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python bench/speed.py --torchdistill "
                   f"/tmp/td/site --repeats {args.repeats} --samples {args.samples} --threads {args.threads}")
        write_section("speed", body, command)


if __name__ == "__main__":
    main()
