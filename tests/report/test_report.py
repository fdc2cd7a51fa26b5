"""`kdkit report` / `kdkit compare`: numbers agree with kdkit.measure.metrics, every picture is embedded and not empty,
and incomplete or old run directories get a one-line message naming what is missing."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from rich.console import Console

from kdkit.cli import main
from kdkit.errors import RunDirError
from kdkit.measure import metrics
from kdkit.report import numbers
from kdkit.report.build import write_report
from kdkit.report.compare import _short_id, flatten, stats, write_compare
from kdkit.report.rundir import load_run

FIGURES = {"kl_histogram", "confusion", "reliability", "per_class", "training_curves", "tradeoff"}


@pytest.fixture(scope="module")
def quick_run(demo_quick_copy) -> Path:
    return demo_quick_copy("report")  # `kdkit demo --quick`, seed 0


@pytest.fixture()
def run_copy(quick_run, tmp_path) -> Path:
    """A private copy to damage or change; the shared quick run stays intact."""
    dst = tmp_path / "copy"
    shutil.copytree(quick_run, dst, ignore=shutil.ignore_patterns("checkpoints", "models", "report*"))
    return dst


def preds(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def md_table(md: str, first_header: str, after: str = "") -> dict[str, dict[str, str]]:
    """The first Markdown table (after the text `after`) whose first header is `first_header`, as
    first cell -> header -> cell."""
    lines = md[md.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [c.strip() for c in lines[start].strip("|").split("|")]
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(headers, cells, strict=True))
    return table


def test_report_numbers_match_metrics(quick_run):
    files = write_report(quick_run)
    p, md = preds(quick_run), files.markdown.read_text()
    y, teacher = p["test_labels"], p["test_teacher"]
    main_rows = md_table(md, "model")
    saved = {r["role"]: r for r in json.loads((quick_run / "results.json").read_text())["rows"]}
    labels = {"teacher": "teacher", "student_alone": "student alone", "student_kd": "distilled student"}
    for role, label in labels.items():
        row, logits = main_rows[label], p[f"test_{role}"]
        assert row["accuracy"] == f"{metrics.accuracy(logits, y):.4f}" == f"{saved[role]['accuracy']:.4f}"
        assert row["macro F1"] == f"{metrics.macro_f1(logits, y):.4f}"
        assert row["NLL"] == f"{metrics.nll(logits, y):.4f}"
        assert row["ECE"] == f"{metrics.ece(logits, y):.4f}"
        assert row["params"] == f"{saved[role]['params']:,}"
        if role != "teacher":
            assert row["agreement"] == f"{metrics.agreement(logits, teacher):.4f}"
            assert row["pred. KL"] == f"{metrics.predictive_kl(teacher, logits):.4f}"
    fidelity = md_table(md, "model", after="## Fidelity")
    kd_train, kd_test = p["train_student_kd"], p["test_student_kd"]
    kd = fidelity["distilled student"]
    assert kd["agreement: distillation data"] == f"{metrics.agreement(kd_train, p['train_teacher']):.4f}"
    assert kd["pred. KL: test data"] == f"{metrics.predictive_kl(teacher, kd_test):.4f}"
    labelled = p["train_labels"] >= 0
    assert (~labelled).any()  # the demo's transfer rows: accuracy must skip them, fidelity must not
    train_accuracy = metrics.accuracy(kd_train[labelled], p["train_labels"][labelled])
    assert kd["accuracy: distillation data"] == f"{train_accuracy:.4f}"


def test_figure_data_agree_with_metrics(quick_run):
    data = load_run(quick_run)
    y, kd, teacher = data.test.labels, data.test.logits["student_kd"], data.test.logits["teacher"]
    bins = numbers.reliability(kd, y)
    filled = bins["count"] > 0
    gap = (bins["count"][filled] * np.abs(bins["accuracy"][filled] - bins["confidence"][filled])).sum() / len(y)
    assert gap == pytest.approx(metrics.ece(kd, y))
    cm = numbers.confusion(teacher, kd)
    assert cm.sum() == len(y) and np.trace(cm) / len(y) == pytest.approx(metrics.agreement(kd, teacher))
    pc = numbers.per_class(data.test)
    counts = np.bincount(y, minlength=data.num_classes)
    assert (pc["accuracy"]["student_kd"] * counts).sum() / counts.sum() == pytest.approx(metrics.accuracy(kd, y))
    assert (pc["agreement"]["student_kd"] * counts).sum() / counts.sum() == pytest.approx(
        metrics.agreement(kd, teacher))
    curves = numbers.curves(data.history)
    assert "train_kd" in numbers.loss_terms(curves["student_kd"]) and "val_agreement" in curves["student_kd"]


def test_every_image_is_embedded_and_not_empty(quick_run):
    files = write_report(quick_run)
    page = files.html.read_text()
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(FIGURES) == page.count("<img")
    for uri in uris:
        img = Image.open(io.BytesIO(base64.b64decode(uri))).convert("L")
        assert img.width > 200 and img.height > 200
        low, high = img.getextrema()
        assert high - low > 100  # drawn, not a blank canvas
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "<link" not in page
    assert {p.stem for p in files.figures} == FIGURES
    for stem in FIGURES:
        assert f"](report_figures/{stem}.png)" in files.markdown.read_text()
        assert (quick_run / "report_figures" / f"{stem}.png").stat().st_size > 1000


def test_older_run_without_train_predictions_reports_test_fidelity(run_copy):
    p = {k: v for k, v in preds(run_copy).items() if not k.startswith("train_")}
    np.savez_compressed(run_copy / "predictions.npz", **p)
    (run_copy / "metrics.jsonl").unlink()
    md = write_report(run_copy).markdown.read_text()
    assert "no distillation-data (train_*) predictions" in md and "metrics.jsonl is missing" in md
    row = md_table(md, "model", after="## Fidelity")["distilled student"]
    assert set(row) == {"model", "agreement: test data", "pred. KL: test data", "accuracy: test data"}
    assert row["agreement: test data"] == f"{metrics.agreement(p['test_student_kd'], p['test_teacher']):.4f}"
    assert "No training curves" in md


def test_results_json_disagreeing_with_predictions_is_noted(run_copy):
    results = json.loads((run_copy / "results.json").read_text())
    results["rows"][2]["accuracy"] += 0.25
    (run_copy / "results.json").write_text(json.dumps(results))
    md = write_report(run_copy).markdown.read_text()
    assert "results.json disagrees with predictions.npz" in md and "distilled student accuracy" in md


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: (d / "predictions.npz").unlink(), "missing predictions.npz"),
        (lambda d: (d / "results.json").write_text(json.dumps({"rows": []})), "older kdkit"),
        (lambda d: (d / "results.json").write_text(json.dumps({"format": 99, "rows": []})), "upgrade kdkit"),
        (lambda d: (d / "results.json").write_text("{not json"), "not valid JSON"),
        (lambda d: np.savez(d / "predictions.npz", test_labels=np.zeros(3)), "lacks test_teacher"),
        (lambda d: (d / "predictions.npz").write_bytes(b"garbage"), "cannot be read"),
    ],
)
def test_incomplete_run_dir_names_what_is_missing(run_copy, capsys, damage, expected):
    damage(run_copy)
    with pytest.raises(RunDirError, match=expected):
        load_run(run_copy)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run_copy)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err


def test_a_directory_that_is_no_run(tmp_path):
    with pytest.raises(RunDirError, match="not a kdkit run directory"):
        load_run(tmp_path)
    with pytest.raises(RunDirError, match="not found"):
        load_run(tmp_path / "nope")


def _as_seed(src: Path, dst: Path, seed: int, flip: int) -> Path:
    """A copy of a run that differs by seed, with the distilled student's first `flip` test predictions changed."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "models", "report*"))
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    cfg.update(seed=seed, output_dir=str(dst))
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    p = preds(dst)
    p["test_student_kd"][:flip] = np.roll(p["test_student_kd"][:flip], 1, axis=1)
    np.savez_compressed(dst / "predictions.npz", **p)
    return dst


def _compact(value) -> str:
    """A config value as compare names a setting: JSON with sorted keys and no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def test_compare_pools_seeds_and_separates_settings(quick_run, tmp_path):
    a = _as_seed(quick_run, tmp_path / "a", 0, 0)
    b = _as_seed(quick_run, tmp_path / "b", 1, 200)
    other = _as_seed(quick_run, tmp_path / "other", 2, 0)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["distill"]["losses"][0]["alpha"] = 0.5
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as done:  # the CLI exits 0 on success
        main(["compare", str(a), str(b), str(other), str(a), "-o", str(tmp_path / "cmp")])
    assert done.value.code == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    accs = [metrics.accuracy(preds(d)["test_student_kd"], preds(d)["test_labels"]) for d in (a, b)]
    mean, std = np.mean(accs), np.std(accs, ddof=1)
    assert std > 0
    table = md_table(md, "id")
    assert "A" in table and "B" in table  # only the last row per id is kept by md_table: the distilled student
    assert table["A"]["runs"] == "2" and table["B"]["runs"] == "1"  # `a` given twice counts once
    assert table["A"]["accuracy"] == f"{mean:.4f} ± {std:.4f}"
    settings = md_table(md, "id", after="| id | setting")
    losses = yaml.safe_load((a / "config.yaml").read_text())["distill"]["losses"]  # the quick demo's terms
    assert settings["A"]["setting"] == f"distill.losses={_compact(losses)}"  # seeds differ, pooled
    assert settings["B"]["setting"] == f"distill.losses={_compact([{**losses[0], 'alpha': 0.5}])}"
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 1
    assert (tmp_path / "cmp" / "compare_figures" / "tradeoff.png").stat().st_size > 1000


def test_compare_helpers():
    assert flatten({"seed": 3, "output_dir": "x", "data": {"name": "d", "root": None}, "l": [1, {"a": 2}]}) == {
        "data.name": '"d"', "l": '[1,{"a":2}]'}
    assert stats([0.5]) == (0.5, None)
    assert stats([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2.0)))
    assert [_short_id(i) for i in (0, 25, 26, 27)] == ["A", "Z", "AA", "AB"]
    with pytest.raises(RunDirError, match="no run directories"):
        write_compare([], "unused")


def test_minimal_run_with_many_classes(tmp_path):
    """Only results.json and predictions.npz (no log, no config, no train split), 60 classes, one class absent
    from the test labels: the report is still written; per-class numbers go to the figure only."""
    rng = np.random.default_rng(0)
    k, n = 60, 300
    labels = rng.integers(1, k, n)  # class 0 never occurs
    logits = {r: rng.normal(size=(n, k)) for r in ("teacher", "student_alone", "student_kd")}
    np.savez(tmp_path / "predictions.npz", test_labels=labels, **{f"test_{r}": v for r, v in logits.items()})
    rows = [{"model": r, "role": r, "params": 10, "latency_ms": 1.0 + i, "accuracy": metrics.accuracy(v, labels)}
            for i, (r, v) in enumerate(logits.items())]
    (tmp_path / "results.json").write_text(json.dumps({"format": 1, "rows": rows}))
    files = write_report(tmp_path)
    md = files.markdown.read_text()
    assert "| class |" not in md  # a 60-row table would bury the report
    assert np.isnan(numbers.per_class(load_run(tmp_path).test)["accuracy"]["teacher"][0])
    assert "No training curves" in md and {p.stem for p in files.figures} == FIGURES - {"training_curves"}
    for path in files.figures:
        assert Image.open(path).width <= 2400


def test_the_results_table_never_wraps_in_a_log_file():
    """Without a terminal (a log file, a pipe) each model is one line with its figures whole; on a narrow terminal
    the table still fits the screen."""
    from kdkit.report.table import print_table

    spread = {"latency_ms": 6.8, "latency_ms_q1": 6.638, "latency_ms_q3": 7.012, "throughput": 3_755_813,
              "throughput_q1": 3_785_741, "throughput_q3": 4_221_162}
    rows = [{"model": name, "params": 48_074, "size_bytes": 195_000, **spread, "speedup": 1.0, "accuracy": 0.979,
             "macro_f1": 0.97, "nll": 0.06, "ece": 0.01, "agreement": 0.713, "predictive_kl": 0.71}
            for name in ("teacher", "distilled student")]
    log = io.StringIO()
    print_table(rows, title="kdkit: demo", console=Console(file=log, width=80), caption="cost: median (q1-q3)")
    lines = log.getvalue().splitlines()
    for name in ("teacher", "distilled student"):
        row = [line for line in lines if f" {name} " in line]
        assert len(row) == 1 and "6.800 (6.638-7.012)" in row[0] and "3,755,813 (3,785,741-4,221,162)" in row[0]
    screen = io.StringIO()
    print_table(rows, console=Console(file=screen, width=80, force_terminal=True, color_system=None))
    assert max(len(line) for line in screen.getvalue().splitlines()) <= 80
