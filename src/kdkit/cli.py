"""Command line: `kdkit demo`, `kdkit train CONFIG.yaml`, `kdkit evaluate RUN_DIR`, and sub-apps.

Errors the user can fix (KdkitError) print one line and exit with code 2; no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from kdkit.errors import KdkitError, plain_warnings


def _guide(page: str) -> str:
    """The last line of a command's --help: the page of the documentation that explains it."""
    return f"Guide: {page} (in the repository; `make docs` builds the site)"


app = typer.Typer(
    name="kdkit", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Knowledge distillation: teacher -> small student, measured (accuracy, fidelity, cost).",
    epilog=_guide("docs/index.md"),
)
console = Console()
SET = typer.Option([], "--set", metavar="PATH=VALUE", help="change a config value without editing the file, e.g. "
                   "--set train.epochs=30 --set distill.losses.0.T=2 (the value is read as YAML; repeat for more); "
                   "checked like the file")

QUICK_TIMING_HELP = ("time latency and throughput with the quick plan: 3 short rounds instead of 7 of at least 50 ms "
                     "(seconds less per run; the cost numbers are noisier); the run records the plan and its "
                     "table says so (a language-model run times generation once, with exact match: no change)")


@app.command(epilog=_guide("docs/getting-started.md"))
def demo(
    quick: bool = typer.Option(False, "--quick", help="a few epochs on less data (for tests, ~20 s)"),
    seed: int = typer.Option(0, help="random seed: the same seed gives the same numbers"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="where the run is written "
                                           "(default: runs/demo, or runs/demo_<task>)"),
    task: str = typer.Option("signals", help="signals (MNIST-1D), text (generated reviews), tagging (per token) or lm "
                                                "(language model, generated addition)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in the output directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in the output directory"),
    overrides: list[str] = SET,
) -> None:
    """Distil a teacher into a small student on data generated offline and print the comparison."""
    from kdkit.families.base import Options, family_of_demo

    family = family_of_demo(task)
    default_dir = Path("runs/demo") if task == "signals" else Path(f"runs/demo_{task}")
    family.demo(task, output_dir or default_dir, console, Options(resume=resume, overwrite=overwrite, quick=quick),
                seed, overrides)


@app.command(epilog=_guide("docs/getting-started.md#configs-and-the-command-line"))
def train(
    config: Path = typer.Argument(..., help="YAML config (see configs/ for examples)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its last checkpoint "
                                "(finished stages are loaded, not redone; the result equals an uninterrupted run)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in output_dir"),
    copy_teacher: bool = typer.Option(False, "--copy-teacher", help="copy a teacher used as given (teacher.checkpoint, "
                                      "or a language-model run's hf_lm: folder) into the run's models/ (default: the "
                                      "run refers to it by path and SHA-256, and refuses to load it once it has "
                                      "changed)"),
    overrides: list[str] = SET,
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="where the run is written (replaces "
                                           "the config's output_dir)"),
    quick_timing: bool = typer.Option(False, "--quick-timing", help=QUICK_TIMING_HELP),
) -> None:
    """Run the teacher / student alone / distilled student pipeline from a YAML config."""
    from kdkit.families.base import Options, family_of_config

    family = family_of_config(config)  # a language-model config (data.name: synthetic_addition, lm_files), or not
    cfg = family.load_config(config, overrides, output_dir)  # before the training stack is imported: mistakes at once
    family.train(cfg, console, Options(resume=resume, overwrite=overwrite, copy_teacher=copy_teacher,
                                       quick=quick_timing, config=config))


@app.command(epilog=_guide("docs/tuning.md"))
def tune(
    config: Path = typer.Argument(..., help="YAML config; its tune: section holds the search space"),
    trials: int | None = typer.Option(None, min=1, help="number of trials (default: tune.trials of the config)"),
    storage: str | None = typer.Option(None, "--storage", help="database URL shared by several workers, e.g. "
                                       "postgresql+psycopg://user@host/db (default: SQLite in OUTPUT_DIR/tune)"),
    overrides: list[str] = SET,
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="replaces the config's output_dir (the "
                                           "search writes OUTPUT_DIR/tune/)"),
) -> None:
    """Search distillation hyperparameters (Optuna) on the validation split; writes best.yaml for `kdkit train`."""
    from kdkit.errors import ConfigError

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # see docs/scaling-out.md#sharing-a-study-between-workers
        raise ConfigError("kdkit tune does not run under torchrun: start one `kdkit tune CONFIG --storage URL` "
                          "worker per GPU or machine instead, all sharing the one study")
    from kdkit.families.base import family_of_config

    family = family_of_config(config)
    cfg = family.load_config(config, overrides, output_dir)  # before Optuna and the training stack are imported
    family.tune(cfg, trials, console, storage)


@app.command(epilog=_guide("docs/results.md"))
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    quick: bool = typer.Option(False, "--quick", "--quick-timing", help=QUICK_TIMING_HELP),
    cost_only: bool = typer.Option(False, "--cost-only", help="only re-time latency and throughput (no accuracy); "
                                   "writes cost.json and cost.md"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads while timing (default: as "
                                       "OMP_NUM_THREADS sets; recorded with the numbers)"),
) -> None:
    """Re-evaluate the saved models of a run directory and print the table again; writes evaluation.json,
    evaluation.md and evaluation_predictions.npz beside the training's results, which stay as they are."""
    from kdkit.families.base import Options, family_of_run

    family_of_run(run_dir).evaluate(run_dir, console, Options(quick=quick, cost_only=cost_only, threads=threads))


@app.command(epilog=_guide("docs/deploying.md#deploying-the-student-onnx"))
def export(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    model: str = typer.Option("student_kd", help="teacher, student_alone or student_kd"),
    output: Path | None = typer.Option(None, "--output", "-o", help="default: RUN_DIR/models/<model>.onnx"),
) -> None:
    """Export a run's model to ONNX and check it against PyTorch with ONNX Runtime on test inputs."""
    from kdkit.families.base import family_of_run

    family_of_run(run_dir).export(run_dir, model, output, console)


@app.command(epilog=_guide("docs/deploying.md#using-the-student"))
def predict(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    inputs: Path = typer.Argument(..., help=".npy or .csv of inputs, an image or a folder of images (image runs), "
                                  "a .txt with one text per line or a .csv / .jsonl (text runs)"),
    model: str = typer.Option("student_kd", help="teacher, student_alone or student_kd"),
    output: Path | None = typer.Option(None, "--output", "-o", help="also write the predictions as this CSV"),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="language-model runs: longest "
                                              "completion (default: up to the models' context)"),
    text_column: str | None = typer.Option(None, "--text-column", help="text runs: the .csv column or .jsonl field "
                                           "holding the texts (default: the run's own data.text_column)"),
) -> None:
    """Predict classes of new inputs with a run's model, preprocessed as at training time; prints CSV lines. For a
    language-model run: continue each line of a .txt (greedy), printing prompt and completion."""
    from kdkit.families.base import Options, family_of_run

    options = Options(max_new_tokens=max_new_tokens, text_column=text_column)
    text = family_of_run(run_dir).predict(run_dir, inputs, model, options)
    console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    if output is not None:
        from kdkit.io.checkpoint import write_atomic

        write_atomic(output, text)
        Console(stderr=True).print(f"predictions: {output}", markup=False, highlight=False)


@app.command(epilog=_guide("docs/results.md#the-report"))
def report(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    screenshot: Path | None = typer.Option(None, help="also save a PNG of the report's top (needs chromium)"),
) -> None:
    """Write report.html (self-contained) and report.md: generalization, fidelity, cost and plots of a run."""
    from kdkit.families.runs import write_report

    files = write_report(run_dir)
    console.print(f"report: {files.html}\n        {files.markdown} (+ {len(files.figures)} figures)")
    if screenshot is not None:
        from kdkit.report.browser import screenshot as take_screenshot

        console.print(f"screenshot: {take_screenshot(files.html, screenshot)}")


@app.command(epilog=_guide("docs/results.md#why-it-paid-or-not-the-diagnosis"))
def diagnose(
    run_dir: Path = typer.Argument(..., help="a run directory of `kdkit demo`, `train` (classification or language "
                                   "model) or `tabular fit`"),
    as_json: bool = typer.Option(False, "--json", help="print the signals, the prediction and the advice as JSON"),
) -> None:
    """Why distillation paid or not: the run's signals (teacher confidence, student fit, agreement, sizes) and the
    advice of the rules that read them, next to the measured verdict."""
    from kdkit.report.diagnosis import diagnosis_text, load_diagnosis

    found = load_diagnosis(run_dir)
    if as_json:
        import json

        data = {**found.diagnosis.as_dict(), "kind": found.kind,
                "measured": None if found.verdict is None else found.verdict.kind}
        console.print(json.dumps(data, indent=1), markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"kdkit diagnose: {run_dir} ({found.kind})", markup=False, highlight=False)
    for line in diagnosis_text(found):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command(epilog=_guide("docs/results.md#the-report"))
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="run directories (methods, schemes, seeds)"),
    output_dir: Path = typer.Option(Path("runs/compare"), "--output-dir", "-o", help="where to write"),
) -> None:
    """Several runs in one table (mean +- std over seeds) and one accuracy-vs-latency chart, HTML and Markdown."""
    from kdkit.families.runs import write_compare

    files = write_compare(run_dirs, output_dir)
    console.print(f"comparison: {files.html}\n            {files.markdown}")
    for line in files.groups:
        console.print(f"setting {line}", markup=False, highlight=False, soft_wrap=True)
    for line in files.verdicts:
        console.print(f"verdict {line}", markup=False, highlight=False, soft_wrap=True)


def _add_subapps() -> None:
    # optional extras: the tabular commands exist when their libraries (kdkit[tabular]) are installed
    try:
        from kdkit.families.tabular.cli import app as tabular_app
    except ImportError:
        return
    app.add_typer(tabular_app, name="tabular", help="Tabular distillation: boosted teachers, privileged columns.",
                  epilog=_guide("docs/guides/tables.md"))


_add_subapps()


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the Typer app and turns KdkitError into one line on stderr and exit code 2."""
    try:
        # standalone mode: Typer itself reports usage errors (exit 2) and exits 0 on success; only our own
        # errors come through, because pretty exceptions are off
        with plain_warnings():  # a warning for the user is one line, not a path into kdkit's source
            app(args=argv, prog_name="kdkit")
    except KdkitError as err:
        # escaped: a message may hold brackets, e.g. pip install 'kdkit[onnx]', that rich would take for markup
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
