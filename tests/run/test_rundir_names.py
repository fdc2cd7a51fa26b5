"""The run directory's file and folder names are spelled in kdkit.run.rundir alone: every other module of src/ names
them through its constants and RunDir, so a name changes in one place. Documentation (docstrings, a command's help,
a config key's description) may describe the layout in words."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import kdkit
from kdkit.run import rundir
from kdkit.run.rundir import RunDir, run_kind

SRC = Path(kdkit.__file__).parent
OWNER = Path(rundir.__file__)
# files of other folders that happen to share a name with a run directory's file, each owned by its own module
OWN_FORMATS = {
    ("lm/cache.py", "meta.json"): "the top-k cache folder's own description of itself",
    ("models/hf_text.py", "tokenizer.json"): "a Hugging Face model folder's tokenizer files",
    ("models/hf_text.py", "vocab.json"): "a Hugging Face model folder's tokenizer files",
}


def _names() -> tuple[set[str], set[str]]:
    """(file names, folder names) that kdkit.run.rundir defines: its upper-case string constants."""
    values = {v for k, v in vars(rundir).items() if k.isupper() and isinstance(v, str)}
    files = {Path(v).name for v in values if "." in Path(v).name}
    folders = {v for v in values if "." not in v} | {str(Path(v).parent) for v in values if "/" in v}
    return files, folders


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the string constants that document: docstrings, and help= / description= arguments."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
            out.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "description"):
            out |= {id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant)}
    return out


def _spelled(path: Path, files: set[str], folders: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _documentation(tree)
    file_names = re.compile(r"(?<![\w])(" + "|".join(re.escape(n) for n in sorted(files)) + r")(?![\w])")
    folder_paths = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(n) for n in sorted(folders)) + r")/")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value in folders | files:
            found.append((node.lineno, node.right.value))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [(node.lineno, m.group(1)) for m in file_names.finditer(node.value)]
            found += [(node.lineno, m.group(1) + "/") for m in folder_paths.finditer(node.value)]
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    files, folders = _names()
    assert {"config.yaml", "metrics.jsonl", "results.json", "predictions.npz", "meta.json"} <= files
    assert {"models", "checkpoints", "teacher_topk"} <= folders
    sample = tmp_path / "sample.py"
    sample.write_text('"""results.json in a docstring is fine."""\n'
                      'a = run / "models"\nb = f"{run}/results.json"\nc = "models/x.onnx"\nd = "a model"\n')
    assert sorted(_spelled(sample, files, folders)) == [(2, "models"), (3, "results.json"), (4, "models/")]


def test_no_module_but_rundir_spells_a_run_directory_name() -> None:
    files, folders = _names()
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == OWNER:
            continue
        rel = path.relative_to(SRC).as_posix()
        offenders += [f"{rel}:{line}: {name}" for line, name in _spelled(path, files, folders)
                      if (rel, name) not in OWN_FORMATS]
    assert offenders == []


def test_run_dir_paths(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.config == tmp_path / "config.yaml" and run.results == tmp_path / "results.json"
    assert run.weights("student_kd") == tmp_path / "models" / "student_kd.safetensors"
    assert run.checkpoint("teacher", "best") == tmp_path / "checkpoints" / "teacher.best.safetensors"
    assert run.meta == tmp_path / "models" / "meta.json" and run.onnx("teacher") == tmp_path / "models/teacher.onnx"
    assert Path(run) == tmp_path and str(run) == str(tmp_path)
    assert set(rundir.FINAL_FILES) <= set(rundir.RUN_FILES) and rundir.RESULTS in rundir.FINAL_FILES


def test_which_family_wrote_a_run(tmp_path: Path) -> None:
    assert run_kind(tmp_path) == "classification"  # nothing says otherwise: the classification reader explains
    RunDir(tmp_path).config.write_text("kind: tabular\n")
    assert RunDir(tmp_path).kind() == "tabular"
    RunDir(tmp_path).results.write_text('{"kind": "lm"}')
    assert run_kind(tmp_path) == "lm"  # results.json is read first
