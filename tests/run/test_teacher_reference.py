"""A teacher loaded through teacher.checkpoint is referenced (path, size, SHA-256 in models/meta.json), not copied;
`--copy-teacher` copies it; a run whose referenced file changed or vanished is refused in one line naming the file;
`kdkit compare` pools runs whose teachers have the same weights, whichever path they were loaded from. Language-model
runs do the same with a teacher used as given: an hf_lm: folder (its files' SHA-256s) or a teacher.checkpoint file."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lm_configs import gpt2_folders
from rich.console import Console

import kdkit
from kdkit.cli import main
from kdkit.errors import RunDirError
from kdkit.families.classification.config import dump_config, parse_config
from kdkit.families.classification.pipeline import run


def _config(out: Path, seed: int, checkpoint: Path | None = None, alpha: float = 0.5) -> dict:
    return {"seed": seed, "output_dir": str(out), "data": {"name": "digits"},
            "train": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"},
            "teacher": {"name": "mlp", "params": {"hidden": [16]},
                        **({"checkpoint": str(checkpoint)} if checkpoint else {})},
            "student": {"name": "mlp", "params": {"hidden": [8]}},
            "distill": {"losses": [{"name": "kd", "T": 2.0, "alpha": alpha}]}}


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return done.value.code, out.out, out.err.strip()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """a trains its teacher; b loads a copy of a's teacher file (another path, the same bytes); c loads a's file
    with --copy-teacher (the layout of runs from before references); d loads it but distils with another alpha."""
    tmp = tmp_path_factory.mktemp("reference")
    quiet = Console(file=io.StringIO())
    run(parse_config(_config(tmp / "a", 0)), console=quiet, quick_cost=True)
    teacher = tmp / "elsewhere" / "teacher.safetensors"
    teacher.parent.mkdir()
    shutil.copy(tmp / "a" / "models" / "teacher.safetensors", teacher)
    said = Console(file=io.StringIO(), width=300)
    run(parse_config(_config(tmp / "b", 1, teacher)), console=said, quick_cost=True)
    (tmp / "b.log").write_text(said.file.getvalue())
    dump_config(parse_config(_config(tmp / "c", 2, tmp / "a" / "models" / "teacher.safetensors")), tmp / "c.yaml")
    with pytest.raises(SystemExit) as done:
        main(["train", str(tmp / "c.yaml"), "--copy-teacher"])
    assert not done.value.code
    run(parse_config(_config(tmp / "d", 3, teacher, alpha=0.9)), console=quiet, quick_cost=True)
    return {"a": tmp / "a", "b": tmp / "b", "c": tmp / "c", "d": tmp / "d", "teacher": teacher, "tmp": tmp}


def test_a_loaded_teacher_is_referenced_not_copied(runs):
    b, teacher = runs["b"], runs["teacher"]
    assert not (b / "models" / "teacher.safetensors").exists()
    assert (b / "models" / "student_kd.safetensors").is_file()
    entry = json.loads((b / "models" / "meta.json").read_text())["models"]["teacher"]
    assert entry["reference"] == {"path": str(teacher.resolve()), "bytes": teacher.stat().st_size,
                                  "sha256": _sha(teacher)}
    assert "teacher: not copied; the run refers to " + str(teacher.resolve()) in (runs["tmp"] / "b.log").read_text()
    x = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    from_a = kdkit.load(runs["a"], model="teacher").logits(torch.as_tensor(x))
    np.testing.assert_array_equal(kdkit.load(b, model="teacher").logits(torch.as_tensor(x)), from_a)


def test_copy_teacher_keeps_a_copy_that_loads_like_the_runs_of_earlier_versions(runs):
    c = runs["c"]
    copied = c / "models" / "teacher.safetensors"
    assert _sha(copied) == _sha(runs["a"] / "models" / "teacher.safetensors")  # the same weights, the same bytes
    assert "reference" not in json.loads((c / "models" / "meta.json").read_text())["models"]["teacher"]
    with np.load(c / "predictions.npz") as saved, np.load(runs["a"] / "predictions.npz") as trained:
        np.testing.assert_array_equal(saved["test_teacher"], trained["test_teacher"])


def test_evaluate_and_export_read_the_referenced_teacher(runs, capsys):
    b = runs["b"]
    code, _, err = _cli(capsys, "evaluate", str(b), "--quick")
    assert code == 0, err
    with np.load(b / "evaluation_predictions.npz") as again, np.load(b / "predictions.npz") as saved:
        np.testing.assert_allclose(again["test_teacher"], saved["test_teacher"], rtol=1e-6, atol=1e-6)
    assert "reference" in json.loads((b / "models" / "meta.json").read_text())["models"]["teacher"]  # kept
    pytest.importorskip("onnxruntime")
    code, out, err = _cli(capsys, "export", str(b), "--model", "teacher", "-o", str(runs["tmp"] / "teacher.onnx"))
    assert code == 0 and "same class 100.0%" in " ".join(out.split()), err


def test_a_changed_or_vanished_teacher_file_is_refused_in_one_line(runs, tmp_path, capsys):
    run_dir, teacher = tmp_path / "b", tmp_path / "teacher.safetensors"
    shutil.copytree(runs["b"], run_dir)
    shutil.copy(runs["teacher"], teacher)
    meta = json.loads((run_dir / "models" / "meta.json").read_text())
    meta["models"]["teacher"]["reference"]["path"] = str(teacher)  # this copy of the run refers to this copy
    (run_dir / "models" / "meta.json").write_text(json.dumps(meta))
    kdkit.load(run_dir, model="teacher")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(teacher))
    first = next(iter(weights))
    weights[first] = weights[first] + 1e-3  # retrained in place: the same size, other bytes
    save_file(weights, str(teacher))
    with pytest.raises(RunDirError, match=f"{teacher} has changed since {run_dir} used it as its teacher"):
        kdkit.load(run_dir, model="teacher")
    for args in (["predict", str(run_dir), str(tmp_path / "x.npy"), "--model", "teacher"], ["evaluate", str(run_dir)]):
        np.save(tmp_path / "x.npy", np.zeros((1, 64), np.float32))
        code, _, err = _cli(capsys, *args)
        assert code == 2 and len(err.splitlines()) == 1 and str(teacher) in err and "--copy-teacher" in err, err
    assert kdkit.load(run_dir, model="student_kd").role == "student_kd"  # the students need no teacher file
    teacher.unlink()
    code, _, err = _cli(capsys, "predict", str(run_dir), str(tmp_path / "x.npy"), "--model", "teacher")
    assert code == 2 and f"{teacher} is missing: {run_dir} uses it as its teacher" in err


def test_compare_pools_runs_whose_teachers_have_the_same_weights(runs, tmp_path, capsys):
    dirs = [str(runs[k]) for k in ("a", "b", "c", "d")]
    code, out, err = _cli(capsys, "compare", *dirs, "-o", str(tmp_path / "cmp"))
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("setting ")]
    assert len(lines) == 2, out  # a, b and c: one experiment, whichever file their teacher came from; d apart
    sha = _sha(runs["teacher"])[:12]
    assert lines[0].startswith("setting A: a, b, c: the same config.yaml apart from seed, output_dir and the "
                               "teacher's entry")
    assert f"a, b, c have the same teacher weights (SHA-256 {sha})" in lines[0]
    assert lines[1] == "setting B: d alone"
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| A | distilled student | 3 |" in md and "| B | distilled student | 1 |" in md
    assert "distill.losses=" in md  # the settings are named by what differs: the losses (alpha)
    cfg = yaml.safe_load((runs["b"] / "config.yaml").read_text())
    assert cfg["teacher"]["checkpoint"] == str(runs["teacher"])  # the path differs from a's and c's


def _lm_config(tmp: Path, name: str, folders: dict[str, Path], **teacher: object) -> Path:
    config = {
        "seed": 0, "output_dir": str(tmp / name),
        "data": {"name": "lm_files", "train_file": str(folders["rows"]), "test_file": str(folders["rows"]),
                 "seq_len": 8, "mode": "padded"},
        "teacher": {"name": f"hf_lm:{folders['teacher']}", **teacher},
        "student": {"name": f"hf_lm:{folders['student']}"},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "progress": False},
        "distill": {"scheme": {"name": "offline"}, "losses": [{"name": "ce"}, {"name": "forward_kl"}]},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory) -> dict[str, Path]:
    """Language-model runs: `given` uses the hf_lm: teacher folder as it is; `copied` the same with --copy-teacher;
    `checkpoint` loads `copied`'s teacher file into that folder's model; `trained` fine-tunes the teacher."""
    tmp = tmp_path_factory.mktemp("lm_reference")
    folders = gpt2_folders(tmp)
    logs = {}
    for name, extra, teacher in (("given", [], {}), ("copied", ["--copy-teacher"], {}),
                                 ("checkpoint", [], {"checkpoint": str(tmp / "copied/models/teacher.safetensors")}),
                                 ("trained", [], {"train": {"epochs": 1}})):
        out = io.StringIO()
        with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
            main(["train", str(_lm_config(tmp, name, folders, **teacher)), *extra])
        assert not done.value.code, out.getvalue()
        logs[name] = out.getvalue()
    return {**folders, **{name: tmp / name for name in logs}, "logs": logs, "tmp": tmp}


def _teacher_logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[3, 4, 5, 3, 4, 1]]))


def test_an_lm_teacher_used_as_given_is_referenced_and_reloads_to_the_same_predictions(lm_runs, capsys):
    from kdkit.models.lm import load_causal_lm

    given, folder = lm_runs["given"], lm_runs["teacher"]
    assert not (given / "models" / "teacher.safetensors").exists()
    assert (given / "models" / "student_kd.safetensors").is_file()
    ref = json.loads((given / "models" / "meta.json").read_text())["models"]["teacher"]["reference"]
    assert ref["path"] == str(folder.resolve())
    assert ref["files"]["model.safetensors"] == {"bytes": (folder / "model.safetensors").stat().st_size,
                                                 "sha256": _sha(folder / "model.safetensors")}
    assert {"config.json", "tokenizer.json"} <= set(ref["files"])
    said = " ".join(lm_runs["logs"]["given"].split())
    assert "teacher: not copied; the run refers to " + str(folder.resolve()) in said
    loaded = kdkit.load(given, model="teacher")
    torch.testing.assert_close(_teacher_logits(loaded.model), _teacher_logits(load_causal_lm(folder).eval()),
                               rtol=0, atol=0)
    code, _, err = _cli(capsys, "evaluate", str(given))
    assert code == 0, err
    trained = {r["role"]: r for r in json.loads((given / "results.json").read_text())["rows"]}
    again = {r["role"]: r for r in json.loads((given / "evaluation.json").read_text())["rows"]}
    assert again["teacher"]["perplexity"] == pytest.approx(trained["teacher"]["perplexity"], rel=1e-6)
    assert again["student_kd"]["perplexity"] == pytest.approx(trained["student_kd"]["perplexity"], rel=1e-6)


def test_copy_teacher_copies_an_lm_teacher_and_a_teacher_trained_in_the_run_is_saved(lm_runs):
    from safetensors.torch import load_file

    copied = lm_runs["copied"] / "models" / "teacher.safetensors"
    assert copied.is_file() and not (lm_runs["copied"] / "models" / "meta.json").exists()
    folder = load_file(str(lm_runs["teacher"] / "model.safetensors"))
    weights = load_file(str(copied))
    for key, value in folder.items():  # the run's copy holds the folder's weights (under the wrapper's "model.")
        torch.testing.assert_close(weights[f"model.{key}"], value, rtol=0, atol=0)
    trained = lm_runs["trained"] / "models" / "teacher.safetensors"
    assert trained.is_file() and not (lm_runs["trained"] / "models" / "meta.json").exists()
    assert any(not torch.equal(load_file(str(trained))[k], v) for k, v in weights.items())  # fine-tuned: its own
    checkpoint = json.loads((lm_runs["checkpoint"] / "models" / "meta.json").read_text())["models"]["teacher"]
    assert checkpoint["reference"] == {"path": str(copied.resolve()), "bytes": copied.stat().st_size,
                                       "sha256": _sha(copied)}
    assert not (lm_runs["checkpoint"] / "models" / "teacher.safetensors").exists()


def test_a_changed_or_vanished_lm_teacher_is_refused_in_one_line(lm_runs, tmp_path, capsys):
    run_dir, folder = tmp_path / "given", tmp_path / "teacher"
    shutil.copytree(lm_runs["given"], run_dir)
    shutil.copytree(lm_runs["teacher"], folder)
    meta = json.loads((run_dir / "models" / "meta.json").read_text())
    meta["models"]["teacher"]["reference"]["path"] = str(folder)  # this copy of the run refers to this copy
    (run_dir / "models" / "meta.json").write_text(json.dumps(meta))
    kdkit.load(run_dir, model="teacher")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 1e-3  # fine-tuned in place: the same size, other bytes
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RunDirError, match=f"{folder} has changed since {run_dir} used it as its teacher"):
        kdkit.load(run_dir, model="teacher")
    (tmp_path / "p.txt").write_text("one two\n")
    for args in (["predict", str(run_dir), str(tmp_path / "p.txt"), "--model", "teacher"], ["evaluate", str(run_dir)],
                 ["export", str(run_dir), "--model", "teacher", "-o", str(tmp_path / "t.onnx")]):
        code, _, err = _cli(capsys, *args)
        assert code == 2 and len(err.splitlines()) == 1 and "model.safetensors" in err, err
        assert str(folder) in err and "--copy-teacher" in err, err
    shutil.rmtree(folder)
    code, _, err = _cli(capsys, "predict", str(run_dir), str(tmp_path / "p.txt"), "--model", "teacher")
    assert code == 2 and f"{folder} is missing: {run_dir} uses it as its teacher" in err, err
    checkpoint = lm_runs["checkpoint"]
    assert kdkit.load(checkpoint, model="teacher").role == "teacher"
