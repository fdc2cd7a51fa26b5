"""Language-model runs end to end: `kdkit train` of an LM config (configs/lm_addition.yaml shrunk), the run
directory's contract, `kdkit report` and `kdkit compare` on it, the other LM schemes from a config, and the LM
verdict. Tiny models and a handful of problems: seconds per run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lm_configs import SHRUNK, WORDS, gpt2_folders, shrunk_config

from kdkit.errors import ConfigError, RunDirError

ROOT = Path(__file__).resolve().parents[2]


def _main(args: list[str]) -> None:
    from kdkit.cli import main

    try:
        main(args)
    except SystemExit as done:
        assert not done.code, f"kdkit {' '.join(args)} exited with {done.code}"


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("lm_runs")
    runs = []
    for seed in (0, 1):
        _main(["train", str(shrunk_config(tmp, seed))])
        runs.append(tmp / f"run{seed}")
    return runs


def test_the_shipped_config_is_the_demo() -> None:
    from kdkit.families.lm.config import load_lm_config
    from kdkit.families.lm.demo import lm_demo_config

    shipped = load_lm_config(ROOT / "configs" / "lm_addition.yaml")
    assert shipped is not None
    demo = lm_demo_config(seed=0, output_dir=shipped.output_dir)
    assert shipped.model_dump() == demo.model_dump()
    assert shipped.distill.scheme.name == "sequence_level" and shipped.settings("teacher").epochs == 40


def test_train_writes_an_lm_run_directory(two_seeds: list[Path]) -> None:
    from kdkit.families.lm.rundir import load_lm_run
    from kdkit.lm.metrics import summarize_units

    run = two_seeds[0]
    results = json.loads((run / "results.json").read_text())
    assert results["kind"] == "lm" and results["format"] == 1
    assert [r["role"] for r in results["rows"]] == ["teacher", "student_alone", "student_kd"]
    assert results["data"]["n_test"] == SHRUNK["n_test"] and results["data"]["n_transfer"] == SHRUNK["n_transfer"]
    assert results["verdict"]["metric"] == "exact-match"
    assert {"config.yaml", "metrics.jsonl", "predictions.npz", "table.md", "tokenizer.json"} <= \
        {p.name for p in run.iterdir()}
    assert {p.name for p in (run / "models").iterdir()} >= {"teacher.safetensors", "student_kd.safetensors"}
    # every quality number of results.json is the sum over the saved per-problem rows
    loaded = load_lm_run(run)
    for row in results["rows"]:
        again = summarize_units(loaded.units[row["role"]])
        for key in ("perplexity", "token_accuracy", "exact_match", "agreement", "per_token_kl"):
            assert (key in again) == (key in row)
            if key in row:
                assert again[key] == pytest.approx(row[key], rel=1e-9)
        assert 0 <= row["exact_match"] <= 1 and row["perplexity"] >= 1 and row["tokens_per_s"] > 0
    assert len(loaded.units["teacher"]["exact"]) == SHRUNK["n_test"]
    teacher, kd = (next(r for r in results["rows"] if r["role"] == k) for k in ("teacher", "student_kd"))
    assert teacher["params"] > 5 * kd["params"]


def test_report_of_an_lm_run(two_seeds: list[Path]) -> None:
    run = two_seeds[0]
    _main(["report", str(run)])
    md = (run / "report.md").read_text()
    results = json.loads((run / "results.json").read_text())
    assert "language model" in md
    for column in ("exact match", "perplexity", "token acc.", "agreement", "per-token KL", "gen. tokens/s"):
        assert column in md
    kd = next(r for r in results["rows"] if r["role"] == "student_kd")
    assert re.search(rf"\| distilled student \| [\d,]+ \| {kd['exact_match']:.3f} \| {kd['perplexity']:.3f} \|", md)
    assert results["verdict"]["headline"] in md and "exact-match points" in md
    for classification_only in ("Calibration", "reliability", "confusion", "Per class"):
        assert classification_only not in md
    assert (run / "report.html").is_file() and (run / "report_figures" / "training_curves.png").is_file()
    assert "disagrees" not in md  # results.json and predictions.npz tell the same numbers


def test_report_names_a_tampered_results_file(two_seeds: list[Path], tmp_path: Path) -> None:
    import shutil

    from kdkit.families.runs import write_report

    run = tmp_path / "copy"
    shutil.copytree(two_seeds[0], run)
    results = json.loads((run / "results.json").read_text())
    results["rows"][2]["perplexity"] += 1.0
    (run / "results.json").write_text(json.dumps(results))
    write_report(run)
    assert "distilled student perplexity: results.json" in (run / "report.md").read_text()
    (run / "predictions.npz").write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match="predictions.npz cannot be read"):
        write_report(run)


def test_compare_pools_seeds_of_lm_runs(two_seeds: list[Path], tmp_path: Path, capsys) -> None:
    _main(["compare", *map(str, two_seeds), "-o", str(tmp_path / "cmp")])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "language models" in md and "±" in md and "2 runs in 1 settings" in md
    rows = [{r["role"]: r for r in json.loads((run / "results.json").read_text())["rows"]} for run in two_seeds]
    diffs = [r["student_kd"]["exact_match"] - r["student_alone"]["exact_match"] for r in rows]
    assert f"0: {100 * diffs[0]:+.1f}, 1: {100 * diffs[1]:+.1f}" in md
    mean = np.mean([r["student_kd"]["perplexity"] for r in rows])
    std = np.std([r["student_kd"]["perplexity"] for r in rows], ddof=1)
    assert f"{mean:.3f} ± {std:.3f}" in md
    out = capsys.readouterr().out
    assert "verdict A" in out and "exact-match points" in out and "2 seeds" in out


def test_compare_refuses_to_mix_lm_and_classification_runs(two_seeds: list[Path], tmp_path: Path) -> None:
    from kdkit.families.runs import write_compare

    other = tmp_path / "cls"
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"format": 1, "rows": []}))
    with pytest.raises(RunDirError, match="not a language-model run"):
        write_compare([two_seeds[0], other], tmp_path / "cmp")


@pytest.mark.parametrize("scheme, losses, record", [
    ({"name": "on_policy", "lam": 1.0}, [{"name": "jsd", "beta": 0.5}, {"name": "ce", "weight": 0.5}],
     "on_policy_steps"),
    ({"name": "topk_cache", "k": 4}, [{"name": "forward_kl"}, {"name": "ce"}], "teacher_cache"),
    ({"name": "topk_cache", "k": 4, "tail": "bucket", "tail_samples": 0}, [{"name": "jsd"}], "teacher_cache"),
    ({"name": "offline"}, [{"name": "ce"}, {"name": "reverse_kl"}], None),
])
def test_other_lm_schemes_from_a_config(tmp_path: Path, scheme: dict, losses: list, record: str | None) -> None:
    from kdkit.families.lm.config import load_lm_config
    from kdkit.families.lm.run import run_lm

    raw = yaml.safe_load(shrunk_config(tmp_path, 0).read_text())
    raw["data"]["n_transfer"] = 0
    raw["distill"] = {"scheme": scheme, "losses": losses}
    raw["teacher"]["train"] = {"epochs": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_lm_config(tmp_path / "c.yaml")
    result = run_lm(cfg)
    training = json.loads((result.run_dir / "results.json").read_text())["training"]
    assert training["scheme"] == scheme["name"]
    if record == "on_policy_steps":  # lam 1: every step samples from the student
        assert training["on_policy_steps"] == training["steps"] > 0
    elif record == "teacher_cache":
        assert training["teacher_cache"]["k"] == 4 and training["teacher_cache"]["bytes"] > 0
        assert training["teacher_cache"]["tail_samples"] == scheme.get("tail_samples", 8)
        assert any((result.run_dir / "teacher_topk").glob("shard_*.safetensors"))
    assert set(result.rows) == {"teacher", "student_alone", "student_kd"}


def test_the_default_lm_scheme_is_offline(tmp_path: Path) -> None:
    """A config that names no scheme distils offline (on the labelled data), whatever its data source."""
    from kdkit.families.lm.config import load_lm_config

    raw = yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())
    raw["data"]["n_transfer"] = 0
    del raw["distill"]["scheme"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert load_lm_config(tmp_path / "c.yaml").distill.scheme.name == "offline"


def test_sequence_level_on_files_without_transfer_prompts_is_refused(tmp_path: Path) -> None:
    from kdkit.families.lm.config import load_lm_config

    (tmp_path / "a.txt").write_text("one two\n")
    raw = yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())
    raw["data"] = {"name": "lm_files", "train_file": str(tmp_path / "a.txt"), "test_file": str(tmp_path / "a.txt")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"at distill.scheme: scheme 'sequence_level' .* \(lm_files, n_transfer 0\)"):
        load_lm_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("change, message", [
    ({"data": {"name": "synthetic_addition", "seq_len": 8}}, r"at data: seq_len does not apply to data source"),
    ({"data": {"name": "synthetic_additon"}}, r"did you mean 'synthetic_addition'"),
    ({"distill": {"scheme": {"name": "offline"}}}, r"at data.n_transfer: transfer prompts"),
    ({"data": {"name": "synthetic_addition", "n_transfer": 0}},
     r"at distill.scheme: scheme 'sequence_level' has the teacher answer data.n_transfer extra prompts and this "
     r"config has none .*so it would be offline distillation"),
    ({"distill": {"scheme": {"name": "on_policy", "k": 3}}}, r"k does not apply to scheme 'on_policy'"),
    ({"data": {"name": "synthetic_addition"}, "distill": {"scheme": {"name": "topk_cache"},
                                                          "losses": [{"name": "jsd"}, {"name": "tv"}]}},
     r"takes one token divergence"),
    ({"data": {"name": "synthetic_addition"}, "distill": {"scheme": {"name": "topk_cache", "tail_samples": 0},
                                                          "losses": [{"name": "jsd"}]}},
     r"at distill.scheme.tail_samples: tail: sampled draws ids"),
    ({"data": {"name": "synthetic_addition"}, "distill": {"scheme": {"name": "topk_cache"},
                                                          "losses": [{"name": "forward_kl", "T": 2.0}]}},
     r"temperature 1"),
])
def test_lm_config_mistakes_are_one_line(tmp_path: Path, change: dict, message: str) -> None:
    from kdkit.families.classification.config import load_config
    from kdkit.families.lm.config import load_lm_config

    raw = yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())
    raw.update(change)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message) as err:
        load_lm_config(tmp_path / "bad.yaml") or load_config(tmp_path / "bad.yaml")  # as `kdkit train` does
    assert "\n" not in str(err.value)


def test_tune_routes_an_lm_config_to_the_lm_search(tmp_path: Path, capsys) -> None:
    """`kdkit tune` reads a language-model config with the LM schema: a space over a term the config lacks is one
    line, before any model trains (the classification schema would call it a language-model source)."""
    from kdkit.cli import main

    raw = yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["tune"] = {"space": {"distill.losses.jsd.beta": {"low": 0.1, "high": 0.9}}}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as done:
        main(["tune", str(tmp_path / "lm.yaml")])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "tune.space: 'distill.losses.jsd.beta' does not exist" in err, err
    assert not (tmp_path / "run").exists()


def test_lm_verdict_is_a_paired_bootstrap_on_exact_match() -> None:
    from kdkit.verdict import lm_run_verdict

    rng = np.random.default_rng(0)
    n = 400
    tokens = np.full(n, 4.0)

    def units(exact: np.ndarray) -> dict[str, np.ndarray]:
        return {"tokens": tokens, "nll": tokens * 0.1, "correct": tokens * exact, "exact": exact}

    alone = (rng.random(n) < 0.5).astype(float)
    better = np.maximum(alone, (rng.random(n) < 0.3).astype(float))  # same problems right, and some more
    rows = {"teacher": {"exact_match": 1.0}, "student_alone": {"exact_match": alone.mean()},
            "student_kd": {"exact_match": better.mean()}}
    gain = lm_run_verdict({"teacher": units(np.ones(n)), "student_alone": units(alone), "student_kd": units(better)},
                          rows)
    assert gain.kind == "gain" and gain.difference == pytest.approx(better.mean() - alone.mean())
    assert gain.low > 0 and "test problems" in gain.method and gain.metric == "exact-match"
    same = lm_run_verdict({"teacher": units(np.ones(n)), "student_alone": units(alone),
                           "student_kd": units(alone.copy())}, rows)
    assert same.kind == "no measurable difference" and same.difference == 0
    assert any(a.code == "no_difference" for a in same.advice)
    raw = {role: {k: v for k, v in u.items() if k != "exact"} for role, u in
           {"teacher": units(np.ones(n)), "student_alone": units(alone), "student_kd": units(better)}.items()}
    assert lm_run_verdict(raw, rows).metric == "token-accuracy"  # raw text: token accuracy per text


def test_lm_report_renders_in_a_browser(two_seeds: list[Path], tmp_path: Path) -> None:
    import html

    from kdkit.families.runs import write_report
    from kdkit.report.browser import dump_dom, find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    page = write_report(two_seeds[1]).html
    probe = """<script>window.addEventListener("load", () => {
      const t = document.querySelector("table"), pre = document.createElement("pre");
      pre.id = "probe";
      pre.textContent = JSON.stringify({
        broken: Array.from(document.images).filter((i) => !(i.complete && i.naturalWidth > 0)).length,
        images: document.images.length,
        head: Array.from(t.rows[0].cells).map((c) => c.textContent)});
      document.body.appendChild(pre);});</script>"""
    (tmp_path / "p.html").write_text(page.read_text().replace("</body>", probe + "</body>"))
    found = re.search(r'<pre id="probe">(.*?)</pre>', dump_dom(tmp_path / "p.html"), re.S)
    assert found, "the page did not finish loading in Chromium"
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["images"] == 1 and seen["broken"] == 0
    assert seen["head"][:3] == ["model", "params", "exact match"]


def test_the_guides_lm_yaml_is_the_shipped_config() -> None:
    from kdkit.families.lm.config import parse_lm_config

    guide = (ROOT / "docs" / "guides" / "language-models.md").read_text()
    block = re.search(r"```yaml\n(data: \{name: synthetic_addition.*?)```", guide, re.S)
    assert block, "the language-model guide should show its config"
    shown = parse_lm_config(yaml.safe_load(block.group(1))).model_dump()
    shipped = parse_lm_config(yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())).model_dump()
    for cfg in (shown, shipped):
        cfg.pop("output_dir")
        cfg["train"].pop("progress")
    assert shown == shipped


def test_lm_seeds_verdict_uses_the_per_seed_differences() -> None:
    from kdkit.verdict import EXACT_MATCH, lm_seeds_verdict

    rows = {"teacher": {"exact_match": 0.9}, "student_alone": {"exact_match": 0.5}, "student_kd": {"exact_match": 0.6}}
    steady = lm_seeds_verdict([0.10, 0.12, 0.11], rows, EXACT_MATCH, [0.4, 0.4, 0.41])
    assert steady.kind == "gain" and steady.difference == pytest.approx(0.11) and "3 seeds" in steady.method
    assert steady.per_seed == [0.10, 0.12, 0.11] and not steady.advice
    mixed = lm_seeds_verdict([0.10, -0.12, 0.01], rows, EXACT_MATCH, [0.4, 0.4, 0.41])
    assert mixed.kind == "no measurable difference" and mixed.low < 0 < mixed.high
    one = lm_seeds_verdict([0.3], rows, EXACT_MATCH, [0.4])
    assert one.kind == "no measurable difference" and "one seed" in one.method


@pytest.mark.parametrize("kind", ["pairs", "text"])
def test_lm_files_from_a_config_then_report(tmp_path: Path, kind: str) -> None:
    from kdkit.families.lm.config import load_lm_config
    from kdkit.families.lm.run import run_lm
    from kdkit.families.runs import write_report

    rng = np.random.default_rng(0)
    words = ["ab", "ba", "abc", "cab", "bca"]
    lines = []
    for _ in range(80):
        a, b = rng.choice(words, 2)
        lines.append(json.dumps({"prompt": f"{a}>", "response": b[::-1]}) if kind == "pairs" else f"{a} {b} {a}")
    suffix = ".jsonl" if kind == "pairs" else ".txt"
    (tmp_path / f"train{suffix}").write_text("\n".join(lines[:60]) + "\n")
    (tmp_path / f"test{suffix}").write_text("\n".join(lines[60:]) + "\n")
    raw = yaml.safe_load(shrunk_config(tmp_path, 0).read_text())
    raw["data"] = {"name": "lm_files", "train_file": str(tmp_path / f"train{suffix}"),
                   "test_file": str(tmp_path / f"test{suffix}"), "seq_len": 12, "mode": "padded"}
    raw["distill"] = {"scheme": {"name": "offline"}, "losses": [{"name": "ce"}, {"name": "tv"}]}
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(raw))
    result = run_lm(load_lm_config(tmp_path / "files.yaml"))
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["data"]["n_test"] == 20
    assert results["verdict"]["metric"] == ("exact-match" if kind == "pairs" else "token-accuracy")
    assert ("exact_match" in result.rows["student_kd"]) == (kind == "pairs")
    md = (write_report(result.run_dir).markdown).read_text()
    assert results["verdict"]["headline"] in md


def test_evaluate_an_lm_run_measures_the_saved_models_again(two_seeds: list[Path], capsys) -> None:
    """Rebuilt from config.yaml and models/, the three models give the training's numbers (generation speed
    aside); results.json is left as it was."""
    run = two_seeds[0]
    before = (run / "results.json").read_bytes()
    _main(["evaluate", str(run)])
    assert (run / "results.json").read_bytes() == before
    trained = {r["role"]: r for r in json.loads(before)["rows"]}
    again = {r["role"]: r for r in json.loads((run / "evaluation.json").read_text())["rows"]}
    for role, row in trained.items():
        for key in ("exact_match", "perplexity", "token_accuracy", "agreement", "per_token_kl", "params"):
            if row.get(key) is not None:
                assert again[role][key] == pytest.approx(row[key], rel=1e-6, abs=1e-9), (role, key)
    assert (run / "evaluation.md").is_file() and (run / "evaluation_predictions.npz").is_file()
    assert "re-evaluated" in capsys.readouterr().out


def test_an_lm_run_saves_per_token_signals_and_diagnose_reads_them(two_seeds: list[Path], capsys) -> None:
    """The diagnosis of an LM run is per labelled token: its validation numbers equal kdkit.lm.metrics' on the
    saved models; the evaluation recomputes the same; `kdkit diagnose` and the report show them."""
    from kdkit.families.lm.commands import load_lm_run_models
    from kdkit.lm.metrics import lm_report

    run = two_seeds[0]
    results = json.loads((run / "results.json").read_text())
    s = results["diagnosis"]["signals"]
    assert s["family"] == "lm" and s["unit"] == "tokens" and s["held_out"] == "validation split"
    assert s["n_train"] == SHRUNK["n_train"] and s["n_pool"] == SHRUNK["n_transfer"]  # sequence_level answers them
    _cfg, data, models = load_lm_run_models(run)
    alone = lm_report(models["student_alone"], data.val, models["teacher"])
    assert s["alone_accuracy_held_out"] == pytest.approx(alone["token_accuracy"], rel=1e-9)
    assert s["agreement_alone_held_out"] == pytest.approx(alone["agreement"], rel=1e-9)
    assert s["teacher_accuracy_held_out"] == pytest.approx(lm_report(models["teacher"], data.val)["token_accuracy"])
    assert s["n_held_out"] == int(data.val.y.ge(0).sum())
    assert 0 < s["teacher_confidence_train"] <= 1 and s["teacher_entropy_held_out"] >= 0
    _main(["diagnose", str(run)])
    out = capsys.readouterr().out
    assert "per labelled token" in out and f"predicted by the rules: {results['diagnosis']['predicted']}" in out
    _main(["report", str(run)])
    assert "## Diagnosis" in (run / "report.md").read_text()


def test_predict_continues_prompts_with_an_lm_run(two_seeds: list[Path], tmp_path: Path, capsys) -> None:
    from kdkit.families.lm.commands import load_lm_run_models, predict_lm

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("12+34=\n\n7+5=\n")
    capsys.readouterr()
    _main(["predict", str(two_seeds[0]), str(prompts), "--model", "teacher", "--max-new-tokens", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "prompt,completion" and [line.split(",")[0] for line in lines[1:]] == ["12+34=", "7+5="]
    assert all(len(line.split(",", 1)[1]) <= 3 for line in lines[1:])
    # the same greedy continuation as generating with the loaded teacher directly
    from kdkit.lm.generate import generate, pad_prompts

    _cfg, data, models = load_lm_run_models(two_seeds[0])
    ids, lengths = pad_prompts([data.tokenizer.encode("12+34=")], data.tokenizer.pad_token_id)
    out = generate(models["teacher"], ids, lengths, 3, eos_id=data.tokenizer.eos_token_id)
    assert lines[1] == "12+34=," + data.tokenizer.decode(out.new[0, : int(out.lengths[0])])
    with pytest.raises(ConfigError, match="holds no prompt"):
        empty = tmp_path / "empty.txt"
        empty.write_text("\n")
        predict_lm(two_seeds[0], empty)


def test_export_an_lm_run_to_onnx_with_dynamic_batch_and_length(two_seeds: list[Path], tmp_path: Path) -> None:
    """Token ids -> next-token logits: ONNX Runtime gives PyTorch's logits on rows and lengths other than the
    export's; the tokenizer is written beside the file."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from kdkit.families.lm.commands import export_lm, load_lm_run_models

    target = tmp_path / "kd.onnx"
    _main(["export", str(two_seeds[0]), "--output", str(target)])
    assert target.is_file() and (tmp_path / "kd_tokenizer" / "tokenizer.json").is_file()
    _cfg, data, models = load_lm_run_models(two_seeds[0])
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for rows, length in ((1, 3), (5, data.seq_len)):
        ids = data.test.x[:rows, :length]
        got = session.run(None, {"input_ids": ids.numpy()})[0]
        with torch.no_grad():
            expected = models["student_kd"](ids).numpy()
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
    with pytest.raises(ConfigError, match="unknown model"):
        export_lm(two_seeds[0], "nosuch")


@pytest.mark.parametrize(("args", "message"), [
    (["export", "--model", "nosuch"], "unknown model 'nosuch'"),
    (["evaluate", "--cost-only"], "run `kdkit evaluate RUN_DIR` without --cost-only"),
    (["predict", "PROMPTS", "--model", "nosuch"], "unknown model 'nosuch'"),
])
def test_commands_that_do_not_apply_to_lm_runs_say_so_in_one_line(two_seeds, tmp_path, capsys, args, message):
    from kdkit.cli import main

    (tmp_path / "p.txt").write_text("1+1=\n")
    command = [args[0], str(two_seeds[0]), *[str(tmp_path / "p.txt") if a == "PROMPTS" else a for a in args[1:]]]
    with pytest.raises(SystemExit) as done:
        main(command)
    err = capsys.readouterr().err
    assert done.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_local_hf_causal_lms_from_a_config_train_evaluate_and_predict(tmp_path: Path, capsys) -> None:
    """The README's own-model path through YAML: hf_lm: teacher and student folders (written by save_pretrained,
    one tokenizer), JSONL prompt/response files, `kdkit train`, then `evaluate` and `predict` on the run."""
    gpt2_folders(tmp_path)
    config = {
        "seed": 0, "output_dir": str(tmp_path / "run"),
        "data": {"name": "lm_files", "train_file": str(tmp_path / "train.jsonl"),
                 "test_file": str(tmp_path / "train.jsonl"), "seq_len": 8, "mode": "padded"},
        "teacher": {"name": f"hf_lm:{tmp_path / 'teacher'}", "train": {"epochs": 2}},
        "student": {"name": f"hf_lm:{tmp_path / 'student'}"},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "progress": False},
        "distill": {"scheme": {"name": "offline"}, "losses": [{"name": "ce"}, {"name": "forward_kl"}]},
    }
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(config))
    _main(["train", str(tmp_path / "lm.yaml")])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows_by_role = {r["role"]: r for r in results["rows"]}
    assert results["kind"] == "lm" and rows_by_role["teacher"]["params"] > rows_by_role["student_kd"]["params"]
    _main(["evaluate", str(tmp_path / "run")])
    again = {r["role"]: r for r in json.loads((tmp_path / "run" / "evaluation.json").read_text())["rows"]}
    assert again["student_kd"]["perplexity"] == pytest.approx(rows_by_role["student_kd"]["perplexity"], rel=1e-6)
    (tmp_path / "prompts.txt").write_text("one two\n")
    capsys.readouterr()
    _main(["predict", str(tmp_path / "run"), str(tmp_path / "prompts.txt"), "--max-new-tokens", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "prompt,completion" and out[1].startswith("one two,")
    assert set(out[1].split(",", 1)[1].split()) <= set(WORDS[3:])


@pytest.mark.parametrize("scheme", ["sequence_level", "on_policy"])
def test_a_killed_lm_run_resumes_to_the_uninterrupted_weights(tmp_path: Path, scheme: str) -> None:
    """SIGKILL while the distilled student trains (on-policy: with its coin flips and samples under way), then
    `kdkit train --resume`: every saved model equals, bit for bit, an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    kdkit = [sys.executable, "-c", "from kdkit.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    distill = {"scheme": {"name": scheme}, "train": {"epochs": 4, "checkpoint_every_steps": 1}}
    if scheme == "on_policy":
        distill["losses"] = [{"name": "jsd", "beta": 0.5}, {"name": "ce", "weight": 0.5}]
    runs = {}
    for name in ("whole", "cut"):
        folder = tmp_path / name
        folder.mkdir()
        config = shrunk_config(folder, 0, **distill)
        if scheme == "on_policy":  # transfer prompts only go with a scheme whose teacher answers them
            raw = yaml.safe_load(config.read_text())
            raw["data"]["n_transfer"] = 0
            config.write_text(yaml.safe_dump(raw))
        runs[name] = (config, folder / "run0")
    _main(["train", str(runs["whole"][0])])  # in this process: only the killed run pays a start-up
    config, out = runs["cut"]
    proc = subprocess.Popen([*kdkit, "train", str(config)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log, deadline = out / "metrics.jsonl", time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:  # kill once the distilled student has an epoch
        if log.exists() and '"student_kd"' in log.read_text():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()  # the kill hit a run in progress
    _main(["train", str(config), "--resume"])
    for role in ("teacher", "student_alone", "student_kd"):
        a = load_file(runs["whole"][1] / "models" / f"{role}.safetensors")
        b = load_file(out / "models" / f"{role}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), role
    kd_epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()
                 if json.loads(line).get("model") == "student_kd"]
    assert kd_epochs == [1, 2, 3, 4]  # each epoch logged once, the interrupted one included


def test_tune_an_lm_config_then_train_its_best_config(tmp_path: Path, capsys) -> None:
    """kdkit tune on a language-model config: the teacher trained once, trials scored by validation NLL, trials.csv
    and best.yaml, which `kdkit train` runs with the search's teacher (not trained again)."""
    pytest.importorskip("optuna")
    config = shrunk_config(tmp_path, 0)
    _main(["tune", str(config), "--trials", "2"])
    out = tmp_path / "run0" / "tune"
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,nll") and "distill.losses.forward_kl.weight" in rows[0] and len(rows) == 3
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["teacher"]["checkpoint"] == str(out / "teacher.safetensors") and "tune" not in best
    weight = best["distill"]["losses"][1]["weight"]
    assert 0.1 <= weight <= 10 and any(f"{weight}" in row for row in rows[1:])
    assert "best config:" in capsys.readouterr().out
    best["output_dir"] = str(tmp_path / "best_run")
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(best))
    _main(["train", str(tmp_path / "best.yaml")])
    log = (tmp_path / "best_run" / "metrics.jsonl").read_text()
    assert '"teacher"' not in log  # the search's teacher was loaded, not trained again
    with pytest.raises(ConfigError, match="tune.space: 'distill.losses.kl.weight' does not exist"):
        from kdkit.families.lm.config import parse_lm_config
        from kdkit.families.lm.tune import tune_lm

        raw = yaml.safe_load(config.read_text())
        raw["tune"] = {"space": {"distill.losses.kl.weight": {"low": 0.1, "high": 1.0}}}
        tune_lm(parse_lm_config(raw), trials=1)
