"""The report opens in a real headless browser (Chromium): its tables and every image render, and a screenshot
of it is not blank. CI installs Chromium (`apt-get install -y chromium`); without it these tests skip."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageStat

from kdkit.cli import main
from kdkit.report.browser import dump_dom, find_chromium
from kdkit.report.build import write_report

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="Chromium is not installed (Debian: apt-get install -y chromium)")

# test-only: after load, write what the browser rendered into the DOM, where --dump-dom can read it
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const tables = Array.from(document.querySelectorAll("table"));
  const out = {
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)).map((i) => i.alt),
    shown: images.filter((i) => i.getBoundingClientRect().width > 100).length,
    tables: tables.length,
    firstTable: Array.from(tables[0].rows).map((r) => Array.from(r.cells).map((c) => c.textContent)),
  };
  const pre = document.createElement("pre");
  pre.id = "kdkit-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def report(demo_quick_copy) -> Path:
    return write_report(demo_quick_copy("browser")).html  # `kdkit demo --quick`, seed 0


def test_tables_and_every_image_render(report, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    found = re.search(r'<pre id="kdkit-probe">(.*?)</pre>', dump_dom(probe), re.S)
    assert found, "the page did not finish loading in Chromium"
    result = json.loads(html.unescape(found.group(1)))
    assert result["images"] == report.read_text().count("<img") == 6
    assert result["broken"] == []
    assert result["shown"] == 6
    assert result["tables"] == 4  # models, diagnosis signals, fidelity, per class
    rows = result["firstTable"]
    assert [r[0] for r in rows[2:]] == ["teacher", "student alone", "distilled student"]
    results = json.loads((report.parent / "results.json").read_text())["rows"]
    assert [r[1] for r in rows[2:]] == [f"{row['accuracy']:.4f}" for row in results]


def test_screenshot_of_the_report_is_not_blank(report, tmp_path):
    png = tmp_path / "shot.png"
    with pytest.raises(SystemExit) as done:  # the CLI exits 0 on success
        main(["report", str(report.parent), "--screenshot", str(png)])
    assert done.value.code == 0
    img = Image.open(png).convert("RGB")
    assert img.size == (1280, 1600)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100  # text, table borders and plots, not one flat colour
    not_white = sum(n for n, c in colours if min(c) < 200) / (img.width * img.height)
    assert not_white > 0.02
    assert ImageStat.Stat(img.convert("L")).stddev[0] > 20


# test-only: where the verdict section landed and how it looks once the browser has laid the page out
VERDICT_PROBE = """<script>
window.addEventListener("load", () => {
  const sections = Array.from(document.querySelectorAll("section"));
  const index = sections.findIndex((s) => s.querySelector("h2").textContent.startsWith("Verdict"));
  const section = sections[index];
  const paragraphs = Array.from(section.querySelectorAll("p"));
  const out = {
    index: index,
    title: section.querySelector("h2").textContent,
    paragraphs: paragraphs.map((p) => ({
      text: p.textContent, note: p.classList.contains("note"),
      background: getComputedStyle(p).backgroundColor,
      width: p.getBoundingClientRect().width, height: p.getBoundingClientRect().height,
    })),
  };
  const pre = document.createElement("pre");
  pre.id = "kdkit-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def test_verdict_section_renders(report, tmp_path):
    probe = tmp_path / "verdict.html"
    probe.write_text(report.read_text().replace("</body>", VERDICT_PROBE + "</body>"))
    found = re.search(r'<pre id="kdkit-probe">(.*?)</pre>', dump_dom(probe), re.S)
    assert found, "the page did not finish loading in Chromium"
    result = json.loads(html.unescape(found.group(1)))
    assert result["index"] == 1 and result["title"] == "Verdict: did distillation work?"  # right after the table
    verdict = json.loads((report.parent / "results.json").read_text())["verdict"]
    headline, *rest = result["paragraphs"]
    assert headline["text"] == verdict["headline"] and not headline["note"]
    assert headline["width"] > 300 and headline["height"] > 10  # laid out and visible
    notes = [p for p in rest if p["note"]]
    assert [n["text"] for n in notes] == [
        f"{a['message']} Next: {a['next_step']}. See {a['section']}." for a in verdict["advice"]]
    assert notes and all(n["background"] == "rgb(255, 246, 219)" and n["height"] > 10 for n in notes)


@pytest.fixture(scope="module")
def tabular_report(tmp_path_factory) -> Path:
    """A tiny `kdkit tabular fit` run (CatBoost teacher, LightGBM student) and its report."""
    from typer.testing import CliRunner

    from kdkit.families.tabular.cli import app as tabular_app

    root = tmp_path_factory.mktemp("browser_tabular")
    rng = np.random.default_rng(0)
    privileged = rng.normal(size=(150, 3))
    labels = (privileged.sum(1) + rng.normal(scale=0.5, size=150) > 0).astype(int)
    table = {f"seen{j}": privileged[:, j] + rng.normal(scale=0.8, size=150) for j in range(3)}
    table |= {f"lab{j}": privileged[:, j] for j in range(3)}
    pd.DataFrame({**table, "y": labels}).to_csv(root / "train.csv", index=False)
    result = CliRunner().invoke(tabular_app, [
        "fit", "--train", str(root / "train.csv"), "--target", "y", "--student-columns", "seen0,seen1,seen2",
        "--n-splits", "3", "--teacher-params", '{"iterations": 30}', "--student-params", '{"n_estimators": 30}',
        "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    return write_report(root / "run").html


def test_a_tabular_report_notes_no_torch_timing_conditions(tabular_report):
    """Its cost is timed per call (results.json's cost.plan); the interleaved-rounds sentence and the re-timing
    command belong to torch runs only."""
    text = tabular_report.with_name("report.md").read_text()
    assert "interleaved rounds" not in text and "--cost-only" not in text and "? torch thread" not in text


def test_tabular_run_renders_like_a_torch_run(tabular_report, tmp_path):
    """Same tables and figures as a torch run, minus the training curves (boosted trees log no epochs)."""
    probe = tmp_path / "probe.html"
    probe.write_text(tabular_report.read_text().replace("</body>", PROBE + "</body>"))
    found = re.search(r'<pre id="kdkit-probe">(.*?)</pre>', dump_dom(probe), re.S)
    assert found, "the page did not finish loading in Chromium"
    result = json.loads(html.unescape(found.group(1)))
    assert result["images"] == tabular_report.read_text().count("<img") == 5
    assert result["broken"] == [] and result["shown"] == 5
    assert result["tables"] == 6  # models, diagnosis signals, held-out and out-of-fold scores, fidelity, per class
    rows = result["firstTable"]
    assert [r[0] for r in rows[2:]] == ["teacher", "student alone", "distilled student"]
    results = json.loads((tabular_report.parent / "results.json").read_text())["rows"]
    assert [r[1] for r in rows[2:]] == [f"{row['accuracy']:.4f}" for row in results]
