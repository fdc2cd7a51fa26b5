"""The image-folder source: layout checks, decoding of mixed files, bad input, config rules, and the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from image_folders import CLASSES, make_folder
from image_folders import pixels as _pixels
from PIL import Image

from kdkit.cli import main
from kdkit.data import SOURCES, build_data
from kdkit.data.image_folder import IMAGENET_MEAN, IMAGENET_STD, SkippedImagesWarning, image_folder
from kdkit.errors import ConfigError, DataError
from kdkit.families.classification.config import load_config, parse_config
from kdkit.families.classification.pipeline import evaluate_run
from kdkit.families.classification.pipeline import run as run_pipeline


def test_splits_share_the_train_class_map(tmp_path):
    root = make_folder(tmp_path, {"train": 6, "val": 2, "test": 3})
    bundle = image_folder(root, image_size=16)
    assert bundle.class_names == sorted(CLASSES)
    assert bundle.num_classes == 2 and bundle.input_shape == (3, 16, 16)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (12, 4, 6)
    for ds in (bundle.train, bundle.val, bundle.test):
        x, y = ds[0]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        for i in range(len(ds)):  # the label is the index of the file's class folder in the sorted train classes
            assert int(ds[i][1]) == bundle.class_names.index(ds.files[i].parent.name)


def test_class_order_comes_from_train_even_if_test_lists_folders_differently(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "test": 2}, classes=("b_class", "a_class"))
    bundle = image_folder(root, image_size=8)
    assert bundle.class_names == ["a_class", "b_class"]
    assert [int(bundle.test[i][1]) for i in range(len(bundle.test))] == [0, 0, 1, 1]


def test_mixed_sizes_and_modes_become_the_requested_shape(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "test": 2})
    odd = tmp_path / "train" / "normal"
    rng = np.random.default_rng(1)
    Image.fromarray(_pixels(0, rng, 40, 90), "L").save(odd / "grey_wide.png")
    Image.fromarray(np.dstack([_pixels(0, rng, 31, 17)] * 3 + [np.full((31, 17), 255, np.uint8)]), "RGBA").save(
        odd / "rgba.png")
    Image.fromarray(_pixels(0, rng, 50, 50), "L").convert("P").save(odd / "palette.gif")
    Image.fromarray(np.full((12, 12), 128 * 257, np.uint16)).save(odd / "sixteen_bit.png")  # mode I;16
    Image.fromarray(_pixels(0, rng, 300, 200), "L").convert("CMYK").save(odd / "cmyk.jpg")
    bundle = image_folder(root, image_size=(10, 14), normalize="none")
    assert len(bundle.train) + len(bundle.val) == 4 + 5
    everything = [bundle.train[i][0] for i in range(len(bundle.train))] + [bundle.val[i][0] for i in
                                                                           range(len(bundle.val))]
    assert all(x.shape == (3, 10, 14) for x in everything)
    files = bundle.train.files + bundle.val.files
    grey16 = everything[[f.name for f in files].index("sixteen_bit.png")]
    assert torch.allclose(grey16, torch.full_like(grey16, 128 / 255), atol=2 / 255)  # 16-bit scaled, not clipped
    wide = everything[[f.name for f in files].index("grey_wide.png")]
    assert torch.equal(wide[0], wide[1]) and torch.equal(wide[1], wide[2])  # grey replicated to RGB


def test_one_channel_and_normalisation(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "test": 2})
    Image.new("RGB", (9, 9), (200, 100, 50)).save(tmp_path / "test" / "normal" / "flat.png")
    grey = image_folder(root, image_size=8, channels=1, normalize="none")
    assert grey.input_shape == (1, 8, 8) and grey.test[0][0].shape == (1, 8, 8)

    rgb = image_folder(root, image_size=8)  # ImageNet statistics by default
    i = [f.name for f in rgb.test.files].index("flat.png")
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(rgb.test[i][0][:, 4, 4], expected, atol=1e-5)
    custom = image_folder(root, image_size=8, normalize={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]})
    assert torch.allclose(custom.test[i][0][:, 4, 4], (torch.tensor([200, 100, 50]) / 255 - 0.5)
                          / torch.tensor([0.25, 0.5, 1.0]), atol=1e-5)


def test_val_is_carved_from_train_by_seed_when_missing(tmp_path):
    root = make_folder(tmp_path, {"train": 10, "test": 2})
    a = image_folder(root, image_size=8, val_fraction=0.2, seed=0)
    b = image_folder(root, image_size=8, val_fraction=0.2, seed=0)
    c = image_folder(root, image_size=8, val_fraction=0.2, seed=1)
    assert len(a.val) == 4 and len(a.train) == 16
    assert set(a.val.files).isdisjoint(a.train.files)
    assert set(a.val.files) | set(a.train.files) == {p for p in (root / "train").rglob("*") if p.is_file()}
    assert a.val.files == b.val.files and a.val.files != c.val.files
    assert sorted(int(a.val[i][1]) for i in range(len(a.val))) == [0, 0, 1, 1]  # stratified


def test_augment_flips_training_images_only(tmp_path):
    root = make_folder(tmp_path, {"train": 4, "test": 2})
    plain = image_folder(root, image_size=(8, 12), normalize="none", seed=0)
    flipping = image_folder(root, image_size=(8, 12), normalize="none", augment=True, seed=0)
    torch.manual_seed(0)
    draws = [flipping.train[0][0] for _ in range(20)]
    original = plain.train[0][0]
    assert any(torch.equal(d, original) for d in draws)
    assert any(torch.equal(d, original.flip(-1)) for d in draws)
    assert all(torch.equal(flipping.val[0][0], plain.val[0][0]) for _ in range(10))
    assert all(torch.equal(flipping.test[1][0], plain.test[1][0]) for _ in range(10))


def test_random_crop_shifts_training_images_only(tmp_path):
    root = make_folder(tmp_path, {"train": 4, "test": 2})
    plain = image_folder(root, image_size=(8, 12), normalize="none", seed=0)
    shifting = image_folder(root, image_size=(8, 12), normalize="none", random_crop=2, seed=0)
    torch.manual_seed(0)
    original = plain.train[0][0]
    draws = [shifting.train[0][0] for _ in range(300)]  # 25 offsets, each drawn with p = 1/25
    assert all(d.shape == original.shape for d in draws)
    assert any(torch.equal(d, original) for d in draws)  # offset (2, 2): the image itself
    # a shift right by one pixel: the interior equals the original moved by one column
    assert any(torch.equal(d[:, :, 1:], original[:, :, :-1]) and not torch.equal(d, original) for d in draws)
    assert torch.equal(shifting.test[1][0], plain.test[1][0]) and torch.equal(shifting.val[0][0], plain.val[0][0])
    fixed = shifting.train.without_augmentation()  # what evaluation reads: the images as they are, every time
    assert all(torch.equal(fixed[0][0], original) for _ in range(30)) and fixed[0][1] == plain.train[0][1]


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "test": 2})
    (root / "train" / "normal" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "train" / "normal" / "notes.txt").write_text("scanner 3")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    bundle = image_folder(root, image_size=8)
    assert bundle.class_names == sorted(CLASSES) and len(bundle.train) + len(bundle.val) == 4


@pytest.mark.parametrize("missing", ["train", "test"])
def test_missing_split_folder(tmp_path, missing):
    make_folder(tmp_path, {s: 2 for s in ("train", "test") if s != missing})
    with pytest.raises(DataError, match=f"missing split folder .*{missing}"):
        image_folder(tmp_path, image_size=8)


def test_missing_root_and_no_class_folders(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        image_folder(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "loose.png")
    with pytest.raises(DataError, match="no class folders .*one sub-folder per class"):
        image_folder(tmp_path)


def test_class_in_train_but_not_in_test(tmp_path):
    make_folder(tmp_path, {"train": 2}, classes=("cat", "dog", "owl"))
    make_folder(tmp_path, {"test": 2}, classes=("cat", "dog"))
    with pytest.raises(DataError, match="class 'owl' is in train/ but not in test/") as err:
        image_folder(tmp_path, image_size=8)
    assert "\n" not in str(err.value)


def test_class_in_test_but_not_in_train(tmp_path):
    make_folder(tmp_path, {"train": 2}, classes=("cat", "dog"))
    make_folder(tmp_path, {"test": 2}, classes=("cat", "dog", "owl"))
    with pytest.raises(DataError, match="class 'owl' is in test/ but not in train/"):
        image_folder(tmp_path, image_size=8)


def test_empty_class_folder(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "test": 2})
    (root / "test" / "pneumonia" / "000.png").unlink()
    (root / "test" / "pneumonia" / "001.jpg").unlink()
    with pytest.raises(DataError, match="pneumonia has no image files"):
        image_folder(root, image_size=8)


def _corrupt(root: Path) -> list[str]:
    (root / "train" / "normal" / "garbage.jpg").write_bytes(b"this is not a JPEG")
    whole = (root / "train" / "pneumonia" / "000.png").read_bytes()
    (root / "train" / "pneumonia" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return ["garbage.jpg", "truncated.png"]


def test_corrupt_images_stop_the_run_by_default(tmp_path):
    root = make_folder(tmp_path, {"train": 3, "test": 2})
    _corrupt(root)
    with pytest.raises(DataError, match=r"2 unreadable image\(s\) in .*train.*on_bad_image: skip") as err:
        image_folder(root, image_size=8)
    assert "garbage.jpg" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_images_are_skipped_with_a_warning_naming_them(tmp_path):
    root = make_folder(tmp_path, {"train": 3, "test": 2})
    names = _corrupt(root)
    with pytest.warns(SkippedImagesWarning, match=r"skipped 2 unreadable image\(s\)") as record:
        bundle = image_folder(root, image_size=8, on_bad_image="skip")
    message = str(record[0].message)
    assert all(name in message for name in names)
    assert len(bundle.train) + len(bundle.val) == 6
    assert sorted(p.name for p, _ in bundle.train.skipped) == names
    assert not any(f.name in names for f in bundle.train.files + bundle.val.files)


def test_a_class_left_empty_by_skipping_is_an_error(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "test": 1})
    (root / "test" / "normal" / "000.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="no readable images left in .*normal"), pytest.warns(SkippedImagesWarning):
        image_folder(root, image_size=8, on_bad_image="skip")


# ------------------------------------------------------------------------------------------------ config


def _raw_config(tmp_path: Path, **data) -> dict:
    return {
        "output_dir": str(tmp_path / "run"),
        "data": {"name": "image_folder", "root": str(tmp_path / "data"), **data},
        "teacher": {"name": "small_cnn"}, "student": {"name": "tiny_cnn"},
    }


def test_config_fills_image_defaults_and_builds_the_source(tmp_path):
    make_folder(tmp_path / "data", {"train": 2, "test": 2})
    cfg = parse_config(_raw_config(tmp_path, image_size=12))
    assert (cfg.data.channels, cfg.data.augment, cfg.data.normalize, cfg.data.on_bad_image) == (
        3, False, "imagenet", "error")
    assert "image_folder" in SOURCES
    assert build_data(cfg.data, seed=0).input_shape == (3, 12, 12)


def test_example_config_is_valid():
    cfg = load_config(Path(__file__).parents[2] / "configs" / "image_folder.yaml")
    assert cfg.data.name == "image_folder" and cfg.data.augment and not cfg.distill.cache_teacher
    assert cfg.teacher.name == "torchvision:resnet18" and cfg.teacher.params["weights"] == "DEFAULT"
    assert cfg.student.name == "strided_cnn" and cfg.distill.cached_views == 8


@pytest.mark.parametrize(("raw", "message"), [
    ({"data": {"name": "digits", "root": "x", "augment": True}}, "augment, root do not apply to data source 'digits'"),
    ({"data": {"name": "image_folder"}}, "image_folder needs root"),
    ({"data": {"name": "image_folder", "root": "x", "transfer_size": 10}}, "set data.transfer_size: 0"),
    ({"data": {"name": "image_folder", "root": "x", "channels": 2}}, "data.channels"),
    ({"data": {"name": "image_folder", "root": "x", "on_bad_image": "ignore"}}, "data.on_bad_image"),
    ({"data": {"name": "image_folder", "root": "x", "channels": 1, "normalize": {"mean": [0.5] * 3, "std": [1] * 3}}},
     "normalize needs 1 mean and 1 std"),
    ({"data": {"name": "image_folder", "root": "x", "augment": True}, "distill": {"cache_teacher": True}},
     "distill.cache_teacher: teacher outputs cannot be cached while data.augment"),
    ({"data": {"name": "image_folder", "root": "x", "random_crop": 4}, "distill": {"cache_teacher": True}},
     "distill.cache_teacher: teacher outputs cannot be cached"),
    ({"data": {"name": "image_folder", "root": "x", "random_crop": -1}}, "data.random_crop"),
])
def test_config_errors_are_one_line(raw, message):
    raw = {"teacher": {"name": "small_cnn"}, "student": {"name": "tiny_cnn"}, **raw}
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(raw)
    assert "\n" not in str(err.value)


def test_unlabelled_folder_is_a_transfer_set(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 3, "test": 2})
    rng = np.random.default_rng(1)
    (data / "unlabelled" / "batch1").mkdir(parents=True)
    for i in range(5):  # any nesting, any class mix: nobody labelled them
        Image.fromarray(_pixels(i % 2, rng), "L").save(data / "unlabelled" / "batch1" / f"u{i}.png")
    bundle = image_folder(data, image_size=16)
    assert len(bundle.transfer) == 5 and bundle.transfer.labels.tolist() == [-1] * 5
    assert bundle.transfer[0][0].shape == (3, 16, 16)
    (data / "unlabelled" / "batch1" / "u0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable image.*unlabelled"):
        image_folder(data, image_size=16)


def test_without_unlabelled_folder_there_is_no_transfer_set(tmp_path):
    assert image_folder(make_folder(tmp_path / "data", {"train": 2, "test": 2}), image_size=8).transfer is None


# ---------------------------------------------------------------------------------------------- pipeline


def test_pipeline_end_to_end(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 8, "test": 4})
    _corrupt(data)
    raw = _raw_config(tmp_path, image_size=32, on_bad_image="skip", val_fraction=0.25)
    raw["teacher"] = {"name": "torchvision:resnet18"}
    raw["train"] = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "progress": False}
    raw["distill"] = {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}], "cache_teacher": True}
    with pytest.warns(SkippedImagesWarning):
        result = run_pipeline(parse_config(raw), quick_cost=True)  # `kdkit train` minus the slow timing repeats
    run = tmp_path / "run"
    assert result.run_dir == run
    for name in ("config.yaml", "metrics.jsonl", "predictions.npz", "table.md", "models/teacher.safetensors",
                 "models/student_alone.safetensors", "models/student_kd.safetensors"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert [r["role"] for r in results["rows"]] == ["teacher", "student_alone", "student_kd"]
    assert results["data"]["input_shape"] == [3, 32, 32] and results["data"]["n_test"] == 8
    teacher, alone, kd = results["rows"]
    assert teacher["params"] > 100 * kd["params"]
    assert kd["speedup"] > 1 and kd["speedup"] == pytest.approx(teacher["latency_ms"] / kd["latency_ms"])
    preds = np.load(run / "predictions.npz")
    assert preds["test_labels"].tolist() == [0] * 4 + [1] * 4
    assert preds["test_student_kd"].shape == (8, 2)
    with pytest.warns(SkippedImagesWarning):  # the saved run re-evaluates from its own config and models
        again = evaluate_run(run, quick_cost=True)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in results["rows"]]


def test_command_line_reports_bad_image_config_in_one_line(tmp_path, capsys):
    make_folder(tmp_path / "data", {"train": 2})  # no test/ split
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(_raw_config(tmp_path, image_size=8)))
    with pytest.raises(SystemExit) as stop:
        main(["train", str(tmp_path / "cfg.yaml")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "missing split folder" in err and "test" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("change", "message"), [
    ({"teacher": {"name": "torchvision:resnet1"}}, "unknown torchvision model 'resnet1'; did you mean "
                                                   "torchvision:resnet18"),
    ({"student": {"name": "hf:no/such/folder"}}, "hf:no/such/folder is not a local directory"),
    ({"output_dir": "finished"}, "finished holds a finished run; pass --overwrite"),
])
def test_names_and_the_run_directory_are_checked_before_any_image_is_decoded(tmp_path, capsys, monkeypatch, change,
                                                                              message):
    import kdkit.data.image_folder

    def no_decoding(*args, **kwargs):
        raise AssertionError("images were decoded before the names and the run directory were checked")

    monkeypatch.setattr(kdkit.data.image_folder, "_decode_all", no_decoding)
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "data", {"train": 2, "test": 2})
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "results.json").write_text("{}")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**_raw_config(tmp_path, image_size=8), **change}))
    with pytest.raises(SystemExit) as stop:
        main(["train", str(tmp_path / "cfg.yaml")])
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""  # refused before any progress line
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_skipped_images_are_one_plain_warning_line(tmp_path, capsys):
    """The warning a user reads names the files, not the line of kdkit's source that raised it."""
    root = make_folder(tmp_path / "data", {"train": 3, "test": 2})
    _corrupt(root)
    raw = _raw_config(tmp_path, image_size=8, on_bad_image="skip")
    raw["distill"] = {"boundary": {"num_samples": 1000}}  # refused once the data is read: no training follows
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as stop:
        main(["train", str(tmp_path / "cfg.yaml")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 2, lines
    assert lines[0].startswith("warning: skipped 2 unreadable image(s) in ") and "garbage.jpg" in lines[0]
    assert "image_folder.py" not in lines[0] and "Warning" not in lines[0]
    assert lines[1].startswith("error: config error at distill.boundary.num_samples")
