"""Int8 students by quantization-aware training (QAT), alone and distilled from a float teacher, on MNIST-1D.

    OMP_NUM_THREADS=1 python bench/quantization.py            # full run, writes the "quantization" section
    OMP_NUM_THREADS=1 python bench/quantization.py --quick    # smoke test: 1 seed, 2 epochs, nothing written

Per seed: a float teacher, then four students from the same initial weights, data order and epochs: float alone
(CE), float distilled (Hinton KD), QAT alone (CE through fake quantization) and QAT distilled (KD from the float
teacher), the QAT ones converted to int8 after training. Reported on the test split: accuracy, agreement with the
teacher, the size of the serialized state dict, and CPU latency at batch 64 of every model, timed in turns in
one run so that other load falls on all alike; ratios are int8 over the float student of the same seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import load_builtin, make_loader  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.measure.cost import count_params  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.models.quantization import convert_quantized, prepare_qat, state_dict_bytes  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

TEACHER = ("cnn1d", {"width": 64, "depth": 3, "kernel": 5})
STUDENT = ("cnn1d", {"width": 32, "depth": 3, "kernel": 3})
KD = {"name": "kd", "T": 4.0, "alpha": 0.1}
ROWS = {  # row -> (quantization-aware, distilled)
    "float student alone": (False, False),
    "float student distilled": (False, True),
    "int8 QAT student alone": (True, False),
    "int8 QAT student distilled": (True, True),
}
BATCH = 64
CPU = torch.device("cpu")


def build(spec: tuple[str, dict], shape: tuple[int, ...], classes: int, init_seed: int) -> nn.Module:
    seed_everything(init_seed)
    return build_model(spec[0], shape, classes, **spec[1])


@torch.no_grad()
def interleaved_latency_ms(models: dict[str, nn.Module], example: torch.Tensor, rounds: int, repeats: int
                           ) -> dict[str, float]:
    """Median over rounds of each model's median forward time; models take turns within every round.
    (kdkit.measure.cost.latency_ms needs parameters to find the device, and an int8 model has none.)"""
    for model in models.values():
        model.eval()
        for _ in range(3):  # warm-up: first calls allocate and, for int8, pick kernels
            model(example)
    rounds_ms: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(example)
                times.append(time.perf_counter() - start)
            rounds_ms[name].append(1000 * statistics.median(times))
    return {name: statistics.median(values) for name, values in rounds_ms.items()}


def run_seed(seed: int, epochs: int, backend: str, quick: bool) -> dict[str, dict[str, float]]:
    """Per row: accuracy, agreement with the teacher, state-dict bytes, latency (ms), and for int8 rows the
    agreement of the int8 model with the QAT model it came from."""
    data = load_builtin("mnist1d", seed=seed, val_fraction=0.1)
    shape, classes = data.input_shape, data.num_classes
    settings = TrainSettings(epochs=epochs, batch_size=128, lr=3e-3, progress=False, seed=seed, device="cpu")
    train, val, test = (make_loader(data.train, 128, True, seed), make_loader(data.val, EVAL_BATCH_SIZE, False),
                        make_loader(data.test, EVAL_BATCH_SIZE, False))
    teacher = build(TEACHER, shape, classes, 1000 * seed)
    fit(Supervised(teacher), train, val, settings)
    teacher_logits, labels = predict(teacher, test, CPU)
    teacher_pred = teacher_logits.argmax(1)
    out = {"teacher": {"accuracy": float((teacher_pred == labels).mean()), "bytes": state_dict_bytes(teacher)}}
    deployed: dict[str, nn.Module] = {"teacher": teacher.eval()}
    example = next(iter(train))[0]
    for row, (quantized, distilled) in ROWS.items():
        student = build(STUDENT, shape, classes, seed + 1)  # every student starts from the same weights
        if quantized:
            student = prepare_qat(student, example, backend)
        scheme = OfflineDistillation(student, teacher, build_terms([KD])) if distilled else Supervised(student)
        fit(scheme, train, val, settings)
        model = convert_quantized(student) if quantized else student.eval()
        predicted = predict(model, test, CPU)[0].argmax(1)
        out[row] = {"accuracy": float((predicted == labels).mean()),
                    "agreement": float((predicted == teacher_pred).mean()), "bytes": state_dict_bytes(model)}
        if quantized:
            out[row]["int8_vs_qat"] = float((predicted == predict(student, test, CPU)[0].argmax(1)).mean())
        deployed[row] = model
        print(f"seed {seed} | {row}: accuracy {out[row]['accuracy']:.4f}", flush=True)
    example_batch = data.test.tensors[0][:BATCH]
    latency = interleaved_latency_ms(deployed, example_batch, rounds=2 if quick else 7, repeats=5 if quick else 30)
    for row, ms in latency.items():
        out[row]["latency_ms"] = ms
    return out


def ratio_cell(per_seed: list[dict], row: str, key: str) -> str:
    """Mean ± std over seeds of row/float-student-alone for `key`."""
    values = [r[row][key] / r["float student alone"][key] for r in per_seed]
    return mean_std(values, ".2f")


def table(per_seed: list[dict], n_params: dict[str, int]) -> list[str]:
    lines = ["| model | params | test accuracy | agreement with the teacher | int8 vs its QAT model (agreement) | "
             f"state dict (bytes) | size / float student | latency b={BATCH} (ms) | latency / float student |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in ["teacher", *ROWS]:
        cells = [f"{n_params['teacher' if row == 'teacher' else 'student']:,}",
                 mean_std([r[row]["accuracy"] for r in per_seed])]
        for key in ("agreement", "int8_vs_qat"):
            cells.append(mean_std([r[row][key] for r in per_seed]) if key in per_seed[0][row] else "-")
        cells.append(mean_std([r[row]["bytes"] for r in per_seed], ",.0f"))
        cells.append(ratio_cell(per_seed, row, "bytes"))
        cells.append(mean_std([r[row]["latency_ms"] for r in per_seed], ".3f"))
        cells.append(ratio_cell(per_seed, row, "latency_ms"))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--backend", choices=["x86", "fbgemm", "qnnpack"], default="x86")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, nothing written")
    args = parser.parse_args()
    seeds, epochs = ([0], 2) if args.quick else (args.seeds, args.epochs)

    start = time.perf_counter()
    per_seed = [run_seed(seed, epochs, args.backend, args.quick) for seed in seeds]
    n_params = {role: count_params(build(spec, (40,), 10, 0)) for role, spec in
                (("teacher", TEACHER), ("student", STUDENT))}
    gains = {kind: [r[f"{kind} student distilled"]["accuracy"] - r[f"{kind} student alone"]["accuracy"]
                    for r in per_seed] for kind in ("float", "int8 QAT")}
    body = "\n".join([
        f"MNIST-1D (kdkit's built-in split), teacher `cnn1d` width 64 (float), students `cnn1d` width 32 kernel 3; "
        f"{epochs} epochs each, AdamW lr 3e-3, batch 128, the model at its best validation epoch; KD T=4, "
        f"alpha=0.1. QAT: `kdkit.models.quantization.prepare_qat` (FX graph mode, backend `{args.backend}`, "
        "conv-bn-relu fused, trained from the same initial weights as the float students), then `convert_quantized` "
        "to int8. "
        "State dict: bytes of `torch.save(model.state_dict())`. Latency: CPU, 1 thread, batch 64, median of "
        f"interleaved rounds after training. Seeds {', '.join(map(str, seeds))}; mean ± sample std. Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *table(per_seed, n_params),
        "",
        "- distilled - alone, test accuracy in points per seed: float "
        + " ".join(f"{100 * g:+.1f}" for g in gains["float"]) + "; int8 QAT "
        + " ".join(f"{100 * g:+.1f}" for g in gains["int8 QAT"]),
    ])
    print(body)
    if not args.quick:
        write_section("quantization", body, command_line("quantization.py", parser, args))


if __name__ == "__main__":
    main()
