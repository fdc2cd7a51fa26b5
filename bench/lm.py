"""Language-model distillation on generated multi-digit addition, over seeds: which divergence, on- or off-policy,
and a top-k teacher cache against the full distribution.

    OMP_NUM_THREADS=1 python bench/lm.py            # full run, writes the "lm" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/lm.py --quick    # smoke test: 1 seed, tiny data, 1 epoch, nothing written

Data: kdkit's ``synthetic_addition`` ("123+456=" -> the sum, least significant digit first by default, then
<eos>; 15 tokens), ``--n-train`` labelled problems, ``--n-transfer`` more prompts without answers, 500 validation
and 1,000 test problems, all distinct. Teacher: ``lm_transformer`` 2 layers, width 64 (~100k parameters); student:
1 layer, width 32, 4 heads (~14k), every student row starting from the same weights, trained with the same settings and
batch order (AdamW, cosine schedule, the last epoch kept).

Rows:
- student alone: cross-entropy on the labelled problems only.
- sequence-level KD (Kim & Rush 2016): CE on the labelled problems plus the transfer prompts answered by the teacher
  (greedy).
- forward KL / reverse KL / JSD(0.5) / TV: the same data, CE + the token-level divergence to the teacher on every
  response token (teacher outputs cached in memory).
- on-policy (GKD, Agarwal et al. 2024): JSD(0.5), lambda = 0.5: half the batches the student samples its own
  answers to the prompts (temperature 1) and the teacher scores them; CE on the off-policy batches.
- top-k cache: forward KL read from a top-k cache on disk (safetensors shards), with ``--k`` buckets plus the tail,
  against the same cache with k = V (the full distribution; equal to the forward-KL row up to float16 rounding of
  the cached log-probabilities). Reports the cache's size and build time.

Metrics on the 1,000 test problems: exact match of the greedy answer, perplexity and token accuracy over the answer
tokens (eos included), next-token agreement and per-token KL(teacher || student). Gains are paired differences
against the student alone, mean ± sample std over seeds.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import Indexed, make_loader  # noqa: E402
from kdkit.data.lm import LMDataset, encode_pairs, synthetic_addition  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.lm import TopKCache, build_topk_cache, lm_row  # noqa: E402
from kdkit.models.lm import LMTransformer  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.schemes.on_policy import OnPolicyDistillation  # noqa: E402
from kdkit.schemes.sequence_level import teacher_outputs  # noqa: E402
from kdkit.schemes.topk_cache import TopKCacheDistillation  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

TEACHER = {"layers": 2, "width": 64, "heads": 4}
STUDENT = {"layers": 1, "width": 32, "heads": 4}
DIVERGENCES = {"forward KL": {"name": "forward_kl"}, "reverse KL": {"name": "reverse_kl"},
               "JSD(0.5)": {"name": "jsd", "beta": 0.5}, "TV": {"name": "tv"}}
METRICS = (("exact_match", "exact match", ".3f"), ("perplexity", "perplexity", ".4f"),
           ("token_accuracy", "token acc.", ".4f"), ("agreement", "agreement", ".4f"),
           ("per_token_kl", "per-token KL", ".4f"))


def concat(a: LMDataset, b: LMDataset) -> LMDataset:
    return LMDataset(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.prompt_len, b.prompt_len]),
                     (a.prompts or []) + (b.prompts or []), (a.responses or []) + (b.responses or []))


def run_seed(seed: int, args: argparse.Namespace, workdir: Path) -> tuple[dict[str, dict[str, float]], dict]:
    data = synthetic_addition(args.n_train + args.n_transfer, args.n_val, args.n_test, args.digits, seed,
                              reverse=not args.msb_first)
    eos, pad = data.tokenizer.eos_token_id, data.tokenizer.pad_token_id
    labelled = data.train.subset(range(args.n_train))
    prompts = data.train.subset(range(args.n_train, args.n_train + args.n_transfer))
    val = make_loader(data.val, EVAL_BATCH_SIZE, shuffle=False)

    def settings(epochs: int) -> TrainSettings:
        return TrainSettings(epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, monitor="nll",
                             keep="last", progress=False)

    def loader(dataset, indexed: bool = False):
        return make_loader(Indexed(dataset) if indexed else dataset, args.batch_size, shuffle=True, seed=seed)

    seed_everything(seed)
    teacher = LMTransformer(data.vocab_size, data.seq_len, **TEACHER)
    init = LMTransformer(data.vocab_size, data.seq_len, **STUDENT)
    fit(Supervised(teacher), loader(labelled), val, settings(args.teacher_epochs))
    written = teacher_outputs(teacher, prompts, eos, pad, seed=seed)
    distill = concat(labelled, encode_pairs(written.prompts or [], written.responses or [], data.seq_len, eos, pad))
    rows: dict[str, dict[str, float]] = {"teacher": lm_row(teacher, data.test, eos)}
    extra: dict = {}

    def score(name: str, model: torch.nn.Module, started: float) -> None:
        rows[name] = lm_row(model, data.test, eos, teacher)
        rows[name]["train_s"] = time.perf_counter() - started
        print(f"seed {seed} {name}: EM {rows[name]['exact_match']:.3f} ppl {rows[name]['perplexity']:.4f}",
              flush=True)

    started = time.perf_counter()
    alone = copy.deepcopy(init)
    fit(Supervised(alone), loader(labelled), val, settings(args.epochs))
    score("student alone", alone, started)
    started = time.perf_counter()
    seq = copy.deepcopy(init)
    fit(Supervised(seq), loader(distill), val, settings(args.epochs))
    score("sequence-level KD", seq, started)
    for name, spec in DIVERGENCES.items():
        started = time.perf_counter()
        model = copy.deepcopy(init)
        scheme = OfflineDistillation(model, teacher, build_terms([{"name": "ce"}, spec]), cache_size=len(distill))
        fit(scheme, loader(distill, indexed=True), val, settings(args.epochs))
        scheme.close()
        score(name, model, started)
    started = time.perf_counter()
    model = copy.deepcopy(init)
    fit(OnPolicyDistillation(model, teacher, "jsd", lam=args.lam, eos_id=eos, pad_id=pad, ce_weight=1.0, seed=seed,
                             beta=0.5), loader(distill), val, settings(args.epochs))
    score(f"on-policy JSD(0.5), lambda {args.lam}", model, started)
    for k in (args.k, data.vocab_size):
        cache_dir = workdir / f"cache_seed{seed}_k{k}"
        info = build_topk_cache(teacher, distill, cache_dir, k=k, batch_size=256)
        started = time.perf_counter()
        model = copy.deepcopy(init)
        fit(TopKCacheDistillation(model, TopKCache(cache_dir), "forward_kl", ce_weight=1.0),
            loader(distill, indexed=True), val, settings(args.epochs))
        label = f"forward KL, top-{k} cache" if k < data.vocab_size else f"forward KL, full cache (k=V={k})"
        score(label, model, started)
        extra[label] = {"bytes": info.bytes, "build_s": info.seconds,
                        "full_float32_bytes": len(distill) * data.seq_len * data.vocab_size * 4}
    return rows, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument("--msb-first", action="store_true", help="write sums most significant digit first")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-transfer", type=int, default=16000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lam", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=4, help="top-k of the cache row (the vocabulary has 15 tokens)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_train, args.n_transfer, args.n_val, args.n_test = [0], 200, 200, 50, 100
        args.teacher_epochs = args.epochs = 1
    start = time.perf_counter()
    results, extras = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows, extra = run_seed(seed, args, Path(tmp))
            results.append(rows)
            extras.append(extra)
    names = list(results[0])
    lines = ["| model | " + " | ".join(label for _, label, _ in METRICS) + " | student train s |",
             "|---" * (len(METRICS) + 2) + "|"]
    for name in names:
        cells = [mean_std([r[name][key] for r in results if key in r[name]], fmt) if key in results[0][name] else "-"
                 for key, _, fmt in METRICS]
        train_s = f"{statistics.mean(r[name]['train_s'] for r in results):.0f}" if "train_s" in results[0][name] \
            else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {train_s} |")
    gains = ["", "Paired gains over the student alone (mean ± std over seeds; positive = better):", "",
             "| model | exact match | perplexity (alone - model) | > 3 std on both |", "|---|---|---|---|"]
    for name in names[2:]:
        em = [r[name]["exact_match"] - r["student alone"]["exact_match"] for r in results]
        ppl = [r["student alone"]["perplexity"] - r[name]["perplexity"] for r in results]
        clear = len(results) > 1 and all(statistics.mean(v) > 3 * statistics.stdev(v) for v in (em, ppl))
        gains.append(f"| {name} | {mean_std(em, '+.3f')} | {mean_std(ppl, '+.4f')} | {'yes' if clear else 'no'} |")
    cache_lines = ["", "Teacher caches (distillation set, all seeds alike):", "",
                   "| cache | size on disk | full logits as float32 | ratio | build s |", "|---|---|---|---|---|"]
    for label, info in extras[0].items():
        built = statistics.mean(e[label]["build_s"] for e in extras)
        cache_lines.append(f"| {label} | {info['bytes'] / 1e6:.2f} MB | {info['full_float32_bytes'] / 1e6:.2f} MB | "
                           f"{info['bytes'] / info['full_float32_bytes']:.3f} | {built:.1f} |")
    body = "\n".join(lines + gains + cache_lines) + f"\n\nTotal wall time: {time.perf_counter() - start:.0f} s.\n"
    print(body)
    if not args.quick:
        write_section("lm", body, command_line("lm.py", parser, args))


if __name__ == "__main__":
    main()
