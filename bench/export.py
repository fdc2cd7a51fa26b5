"""ONNX Runtime against PyTorch on the CPU, for the teacher and the student of each built-in demo: the exported
file's size and the latency ratio at batch 1 and 64, measured side by side in one run (untrained weights: speed
does not depend on them).

    OMP_NUM_THREADS=1 python bench/export.py            # writes the "export" section of bench/RESULTS.md
    OMP_NUM_THREADS=1 python bench/export.py --quick    # fewer repetitions, nothing written
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, write_section  # noqa: E402

from kdkit.adapters import example_inputs  # noqa: E402
from kdkit.data import build_data  # noqa: E402
from kdkit.deploy.export import export_onnx, median_ms  # noqa: E402
from kdkit.families.classification.demo import DEMOS, demo_config  # noqa: E402
from kdkit.models import build_from_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    repeats = 10 if args.quick else args.repeats
    torch.set_num_threads(1)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # the same single thread as PyTorch
    lines = ["| demo | model | parameters | ONNX file (KB) | exporter | latency b=1: ORT / PyTorch | "
             "latency b=64: ORT / PyTorch | max abs diff |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for task in DEMOS:
            cfg = demo_config(task=task, quick=True)
            bundle = build_data(cfg.data, cfg.seed)
            for role, spec in (("teacher", cfg.teacher), ("student", cfg.student)):
                model = build_from_config(spec, bundle).eval()
                inputs = example_inputs(bundle.test, size=64)
                report = export_onnx(model, inputs, Path(tmp) / f"{task}_{role}.onnx")
                session = onnxruntime.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
                name = session.get_inputs()[0].name
                ratios = []
                for batch in (inputs[:1], inputs):
                    with torch.no_grad():
                        torch_ms = median_ms(lambda b=batch, m=model: m(b), repeats)
                    feed = {name: batch.numpy()}
                    ort_ms = median_ms(lambda f=feed, sess=session: sess.run(None, f), repeats)
                    ratios.append(f"{ort_ms / torch_ms:.2f} ({ort_ms:.3f} / {torch_ms:.3f} ms)")
                params = sum(p.numel() for p in model.parameters())
                lines.append(f"| {task} | {role} `{spec.name}` | {params:,} | {report.size_bytes / 1024:.1f} | "
                             f"{report.exporter} | {ratios[0]} | {ratios[1]} | {report.max_abs_diff:.1e} |")
                print(lines[-1], flush=True)
    body = "\n".join([
        f"Each demo's teacher and student (`kdkit demo --task ...`, untrained weights), exported with "
        f"`kdkit.deploy.export.export_onnx` and timed in one run: median of {repeats} forward passes, PyTorch and ONNX "
        "Runtime each on one CPU thread. A ratio below 1 means ONNX Runtime is faster.",
        "",
        *lines,
    ])
    print(body)
    if not args.quick:
        write_section("export", body, command_line("export.py", parser, args))


if __name__ == "__main__":
    main()
