"""The command line as a user meets it: demo, train from YAML, evaluate, and one clear line per config error."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdkit.cli import main
from kdkit.families.classification.demo import demo_config


def _run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exit_info:  # main() exits only on errors (code 2 for KdkitError)
        code = exit_info.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def quick_run(demo_quick_copy):
    return demo_quick_copy("runs")  # `kdkit demo --quick`, seed 0


def test_demo_quick_writes_a_complete_run_directory(quick_run):
    for name in ["config.yaml", "metrics.jsonl", "predictions.npz", "results.json", "table.md",
                 "models/teacher.safetensors", "models/student_alone.safetensors", "models/student_kd.safetensors",
                 "checkpoints/student_kd.best.safetensors"]:
        assert (quick_run / name).is_file(), name
    results = json.loads((quick_run / "results.json").read_text())
    assert [r["model"] for r in results["rows"]] == ["teacher", "student alone", "distilled student"]
    table = (quick_run / "table.md").read_text()
    for column in ["params", "latency", "throughput", "accuracy", "macro F1", "NLL", "ECE", "agreement", "pred. KL",
                   "speed-up"]:
        assert column in table
    teacher, alone, kd = results["rows"]
    assert teacher["params"] > 10 * kd["params"] and alone["params"] == kd["params"]
    assert teacher["accuracy"] > 0.5  # two epochs already teach the CNN something


def test_results_agree_with_saved_predictions(quick_run):
    from kdkit.measure import metrics

    preds = np.load(quick_run / "predictions.npz", allow_pickle=False)
    rows = {r["role"]: r for r in json.loads((quick_run / "results.json").read_text())["rows"]}
    kd_accuracy = metrics.accuracy(preds["test_student_kd"], preds["test_labels"])
    assert rows["student_kd"]["accuracy"] == pytest.approx(kd_accuracy)
    assert rows["student_kd"]["agreement"] == pytest.approx(
        metrics.agreement(preds["test_student_kd"], preds["test_teacher"]))
    assert (preds["train_labels"] == -1).sum() == 2000  # the transfer set is part of the distillation data


def test_same_command_same_numbers(quick_run, tmp_path, capsys):
    code, _, _ = _run(["demo", "--quick", "-o", str(tmp_path / "again")], capsys)
    assert code == 0
    first = np.load(quick_run / "predictions.npz")
    second = np.load(tmp_path / "again" / "predictions.npz")
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_evaluate_reproduces_the_table(quick_run, capsys):
    before = {r["role"]: r["accuracy"] for r in json.loads((quick_run / "results.json").read_text())["rows"]}
    code, out, _ = _run(["evaluate", str(quick_run), "--quick"], capsys)
    assert code == 0 and "distilled student" in out
    after = {r["role"]: r["accuracy"] for r in json.loads((quick_run / "evaluation.json").read_text())["rows"]}
    assert after == before  # evaluate writes its own file; training's results.json stays as it was


def test_cost_carries_spreads_and_cost_only_leaves_the_results_alone(quick_run, capsys):
    results = json.loads((quick_run / "results.json").read_text())
    for row in results["rows"]:  # every timing a median with its quartiles, every speed-up with its range
        assert row["latency_ms_q1"] <= row["latency_ms"] <= row["latency_ms_q3"]
        assert row["throughput_q1"] <= row["throughput"] <= row["throughput_q3"]
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"] and "speedup_certain" in row
    assert results["cost"]["interleaved"] and results["cost"]["threads"] >= 1 and "load_before" in results["cost"]
    before = {name: (quick_run / name).read_bytes() for name in ("results.json", "table.md", "predictions.npz")}
    code, out, _ = _run(["evaluate", str(quick_run), "--cost-only", "--quick", "--threads", "1"], capsys)
    assert code == 0 and "cost re-measured" in out and "interleaved" in out
    assert {name: (quick_run / name).read_bytes() for name in before} == before  # training's files untouched
    remeasured = json.loads((quick_run / "cost.json").read_text())
    assert remeasured["cost"]["threads"] == 1
    assert [r["role"] for r in remeasured["rows"]] == ["teacher", "student_alone", "student_kd"]
    assert all("accuracy" not in r and r["latency_ms_q3"] >= r["latency_ms"] for r in remeasured["rows"])
    from kdkit.report.build import build_document
    from kdkit.report.rundir import load_run

    titles = [section.title for section in build_document(load_run(quick_run)).sections]
    assert "Cost, re-measured" in titles  # the report shows the re-measured cost beside the training's


def test_train_from_yaml_with_a_teacher_checkpoint(quick_run, tmp_path, capsys):
    cfg = demo_config(quick=True).model_dump(mode="json")
    cfg["output_dir"] = str(tmp_path / "from_yaml")
    cfg["teacher"]["checkpoint"] = str(quick_run / "models" / "teacher.safetensors")
    cfg["data"]["transfer_size"] = 0
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = _run(["train", str(path), "--quick-timing"], capsys)  # checks the teacher, not the timing
    assert code == 0, err
    assert "teacher: loaded" in out
    rows = json.loads((tmp_path / "from_yaml" / "results.json").read_text())["rows"]
    original = json.loads((quick_run / "results.json").read_text())["rows"]
    assert rows[0]["accuracy"] == original[0]["accuracy"]  # the same teacher, loaded not retrained


def _config_error(tmp_path, capsys, mutate, text=None):
    cfg = demo_config(quick=True).model_dump(mode="json")
    cfg["output_dir"] = str(tmp_path / "never")
    mutate(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(cfg))
    code, out, err = _run(["train", str(path)], capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "never").exists()  # nothing trained, nothing written
    return lines[0]


def test_unknown_key_is_named_with_a_suggestion(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["teacher"].update(nmae="cnn1d"))
    assert "teacher.nmae" in line and "did you mean 'name'" in line


def test_wrong_type(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["train"].update(epochs="many"))
    assert "train.epochs" in line and "many" in line


def test_bad_override_in_a_stage(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["student"]["train"].update(lr=-1))
    assert "student.train.lr" in line


def test_missing_checkpoint_file(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["teacher"].update(checkpoint="nowhere/teacher.safetensors"))
    assert "teacher.checkpoint" in line and "file not found" in line


def test_unknown_model_and_loss(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["student"].update(name="resnet9000"))
    assert "unknown model 'resnet9000'" in line
    line = _config_error(tmp_path, capsys, lambda c: c["distill"].update(losses=[{"name": "kd", "tau": 3}]))
    assert "loss 'kd' got unknown argument(s) ['tau']" in line


def test_missing_required_section(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c.pop("student"))
    assert "student" in line and "missing" in line


def test_invalid_yaml(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: None, text="teacher: [unclosed\n")
    assert "not valid YAML" in line


def test_missing_config_file(tmp_path, capsys):
    code, _, err = _run(["train", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "config file not found" in err


@pytest.mark.parametrize("argv", [["evaluate"], ["train"], ["report"], ["compare"], ["demo", "--epochs", "3"]])
def test_usage_errors_are_short(argv, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and "Traceback" not in err and ("Missing" in err or "No such option" in err)


def test_evaluate_incomplete_run_dir(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("{}")
    code, _, err = _run(["evaluate", str(tmp_path)], capsys)
    assert code == 2 and "missing models/teacher.safetensors" in err


def test_teacher_with_other_class_count_is_refused(quick_run, tmp_path, capsys):
    from kdkit.io.checkpoint import save_weights
    from kdkit.models import build_model

    wrong = tmp_path / "teacher5.safetensors"
    save_weights(build_model("cnn1d", (40,), 5, width=64, depth=3), wrong)
    line = _config_error(tmp_path, capsys, lambda c: c["teacher"].update(checkpoint=str(wrong)))
    assert "head.1" in line and "shape mismatch" in line


def test_entry_point_prints_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: {name: cnn1d}\nstudent: {name: mlp}\nseeed: 1\n")
    kdkit = Path(sys.executable).with_name("kdkit")
    proc = subprocess.run([str(kdkit), "train", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "did you mean 'seed'" in proc.stderr


def test_missing_pretrained_file_fails_before_any_work(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["teacher"]["params"].update(pretrained="w/nothing.pth"))
    assert "teacher.params" in line and "w/nothing.pth" in line


def test_unknown_module_path_fails_before_any_training(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["distill"]["losses"].append(
        {"name": "fitnet", "weight": 1.0, "student": "features.0", "teacher": "featurs.1"}))
    assert "featurs.1" in line and "features.1" in line  # close match suggested


def test_tabular_commands_are_part_of_kdkit(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    (tmp_path / "test.csv").write_text("a\n1\n")
    code, _, err = _run(["tabular", "fit", "--train", str(tmp_path / "train.csv"), "--test",
                         str(tmp_path / "test.csv"), "--target", "label"], capsys)
    assert code == 2 and "label" in err and "Traceback" not in err


def test_unknown_data_source(tmp_path, capsys):
    line = _config_error(tmp_path, capsys, lambda c: c["data"].update(name="mnist"))
    assert "data.name" in line and "did you mean 'mnist1d'" in line


def test_error_text_in_brackets_is_printed_as_written(quick_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if kdkit[onnx] were not installed
    code, _, err = _run(["export", str(quick_run)], capsys)
    assert code == 2 and "pip install 'kdkit[onnx]'" in err  # not eaten as console markup


@pytest.mark.parametrize("task", ["text", "tagging"])
def test_demo_tasks_run_quick(task, tmp_path, capsys):
    code, out, _ = _run(["demo", "--task", task, "--quick", "-o", str(tmp_path / task)], capsys)
    assert code == 0 and "distilled student" in out
    assert (tmp_path / task / "results.json").is_file()


def test_unknown_demo_task_is_one_line(capsys):
    code, _, err = _run(["demo", "--task", "speech"], capsys)
    assert code == 2 and "choose one of: signals, text, tagging" in err
