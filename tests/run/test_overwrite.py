"""--overwrite replaces a run through the run layout: it removes every file and folder a run of any family writes
(kdkit.run.rundir's RUN_FILES and RUN_FOLDERS, which each family's declared run_files must stay within), whichever
family wrote them, and nothing else: a user's own files and `kdkit tune`'s study stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kdkit.cli import main
from kdkit.families.base import families
from kdkit.run import guard, rundir

pytestmark = pytest.mark.usefixtures("quick_timing")


def _fill(run_dir: Path, names: tuple[str, ...]) -> None:
    """Each name as an earlier run would leave it: a folder with a file in it, or a file."""
    for name in names:
        path = run_dir / name
        if name in rundir.RUN_FOLDERS or name == rundir.TUNE:
            path.mkdir(parents=True, exist_ok=True)
            (path / "kept.bin").write_bytes(b"old")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("old")


def _foreign(run_dir: Path) -> None:
    """Files of the user's own beside the run, which no overwrite may touch."""
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "mine").mkdir()
    (run_dir / "mine" / "tokenizer.json").write_text("mine")  # a run file's name, but not at the top level


@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_overwrite_removes_every_file_a_family_declares_and_keeps_the_users_own(family, tmp_path: Path) -> None:
    removed = set(rundir.RUN_FILES) | set(rundir.RUN_FOLDERS)
    assert set(family.run_files) - {rundir.TUNE} <= removed, set(family.run_files) - removed - {rundir.TUNE}
    run_dir = tmp_path / family.name
    run_dir.mkdir()
    _fill(run_dir, family.run_files)
    _foreign(run_dir)
    guard.claim(run_dir, overwrite=True).release()
    left = {p.name for p in run_dir.iterdir()}
    assert left == {"notes.txt", "mine"} | ({rundir.TUNE} if rundir.TUNE in family.run_files else set())
    assert (run_dir / "notes.txt").read_text() == "mine" and (run_dir / "mine" / "tokenizer.json").is_file()


def test_an_overwrite_removes_the_predictions_the_old_models_wrote_for_new_inputs(tmp_path) -> None:
    stale = tmp_path / rundir.INPUT_PREDICTIONS.format(input="new_rows")
    _fill(tmp_path, (rundir.RESULTS, stale.name))
    _foreign(tmp_path)
    (tmp_path / "predictions-of-mine.csv").mkdir()  # a folder: not a file the command writes
    (tmp_path / "my-predictions.csv").write_text("mine")
    guard.claim(tmp_path, overwrite=True).release()
    assert not stale.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"notes.txt", "mine", "predictions-of-mine.csv",
                                                    "my-predictions.csv"}


def test_a_tune_study_survives_an_overwrite_since_its_best_config_trains_into_the_same_directory(tmp_path) -> None:
    _fill(tmp_path, (rundir.RESULTS, rundir.TUNE))
    guard.claim(tmp_path, overwrite=True).release()
    assert not (tmp_path / rundir.RESULTS).exists() and (tmp_path / rundir.TUNE / "kept.bin").read_bytes() == b"old"


def test_files_left_by_another_family_alone_make_the_directory_an_unfinished_run(tmp_path: Path) -> None:
    for name in (rundir.TOKENIZER, rundir.TEACHER_TOPK, rundir.HOLDOUT):
        run_dir = tmp_path / name
        run_dir.mkdir()
        _fill(run_dir, (name,))
        assert guard.state_of(run_dir) == "unfinished", name


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exit_info:
        code = exit_info.code or 0
    return code, capsys.readouterr().err


def test_a_classification_run_over_a_language_model_and_a_tabular_run_leaves_none_of_their_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    _fill(out, (rundir.TOKENIZER, rundir.TEACHER_TOPK, rundir.HOLDOUT, rundir.CHECKPOINTS))
    (out / rundir.RESULTS).write_text(json.dumps({"kind": "lm"}))
    _foreign(out)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "output_dir": str(out), "data": {"name": "digits"},
        "train": {"epochs": 1, "batch_size": 64, "lr": 3e-3, "progress": False, "device": "cpu"},
        "teacher": {"name": "mlp", "params": {"hidden": [16]}}, "student": {"name": "mlp", "params": {"hidden": [8]}},
        "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}]}}))
    code, err = _cli(["train", str(config)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds a finished run; pass --overwrite" in err
    assert (out / rundir.TOKENIZER).is_file()  # refused: nothing touched
    code, err = _cli(["train", str(config), "--overwrite"], capsys)
    assert code == 0, err
    for stale in (rundir.TOKENIZER, rundir.TEACHER_TOPK, rundir.HOLDOUT):
        assert not (out / stale).exists(), stale
    assert not (out / rundir.CHECKPOINTS / "kept.bin").exists()
    assert json.loads((out / rundir.RESULTS).read_text()).get("kind") != "lm"
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine" / "tokenizer.json").read_text() == "mine"
