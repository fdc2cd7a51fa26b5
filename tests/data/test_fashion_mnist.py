"""data.name: fashion_mnist. The parsing, splitting and error paths run on small fake idx files written here, so they
pass on any machine; the tests on the real 70,000 images skip (with the reason) where Debian's package
dataset-fashion-mnist is not installed. CI (.ci/run) installs it."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch
import yaml

from kdkit.cli import main
from kdkit.data import SOURCES, UNLABELLED, build_data
from kdkit.data.fashion_mnist import (
    CLASS_NAMES,
    DEFAULT_ROOT,
    FILES,
    fashion_mnist,
    read_split,
    split_indices,
    stratified_pick,
)
from kdkit.errors import ConfigError, DataError
from kdkit.families.classification.config import parse_config

needs_package = pytest.mark.skipif(
    not all((DEFAULT_ROOT / name).is_file() for pair in FILES.values() for name in pair),
    reason=f"Fashion-MNIST not installed in {DEFAULT_ROOT} (apt-get install dataset-fashion-mnist)",
)


def _idx(images: np.ndarray | None = None, labels: np.ndarray | None = None) -> bytes:
    """An idx file's bytes: uint8 images (N, 28, 28) (magic 0x803) or uint8 labels (N,) (magic 0x801)."""
    if images is not None:
        return struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes()
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def write_fake(root, per_class: dict[str, int] | None = None):
    """Fake Fashion-MNIST: `per_class[split]` images per class; image i of a split has pixel (0, 0) = i % 256 and
    pixel (0, 1) = i // 256, so a row can be traced back to its index."""
    per_class = per_class or {"train": 30, "test": 10}
    root.mkdir(parents=True, exist_ok=True)
    for split, (img_name, lab_name) in FILES.items():
        labels = np.repeat(np.arange(10), per_class[split])
        np.random.default_rng(1).shuffle(labels)
        images = np.random.default_rng(2).integers(0, 256, (len(labels), 28, 28))
        images[:, 0, 0], images[:, 0, 1] = np.arange(len(labels)) % 256, np.arange(len(labels)) // 256
        (root / img_name).write_bytes(gzip.compress(_idx(images=images)))
        (root / lab_name).write_bytes(gzip.compress(_idx(labels=labels)))
    return root


def _row_index(x: torch.Tensor) -> list[int]:
    pixels = (x[:, 0, 0, :2] * 255).round().long()
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


def _per_class(labels) -> list[int]:
    return np.bincount(np.asarray(labels), minlength=10).tolist()


# ------------------------------------------------------------------------------------------ fake files


def test_fake_bundle_shapes_values_and_names(tmp_path):
    b = fashion_mnist(write_fake(tmp_path), val_fraction=0.2)
    assert (len(b.train), len(b.val), len(b.test)) == (240, 60, 100) and b.transfer is None
    x, y = b.train.tensors
    assert x.shape == (240, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.99
    assert b.num_classes == 10 and b.input_shape == (1, 28, 28) and b.class_names == CLASS_NAMES
    assert CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[-1] == "Ankle boot"
    assert _per_class(b.val.tensors[1]) == [6] * 10  # stratified
    images, labels = read_split(tmp_path, "train")  # rows are the images at the indices the split names
    train_rows = _row_index(x)
    assert y.tolist() == labels[train_rows].tolist()
    assert torch.equal(x[:, 0], torch.as_tensor(images[train_rows], dtype=torch.float32) / 255)


def test_train_transfer_and_test_sizes_are_stratified_and_disjoint(tmp_path):
    b = fashion_mnist(write_fake(tmp_path), val_fraction=0.2, train_size=100, transfer_size=50, test_size=40)
    assert (len(b.train), len(b.val), len(b.transfer), len(b.test)) == (100, 60, 50, 40)
    assert _per_class(b.train.tensors[1]) == [10] * 10 and _per_class(b.test.tensors[1]) == [4] * 10
    assert b.transfer.tensors[1].tolist() == [UNLABELLED] * 50
    train, val, transfer = (set(_row_index(d.tensors[0])) for d in (b.train, b.val, b.transfer))
    assert len(train) == 100 and len(val) == 60 and len(transfer) == 50
    assert not (train & val or train & transfer or val & transfer)
    _, labels = read_split(tmp_path, "train")
    assert _per_class(labels[sorted(transfer)]) == [5] * 10  # stratified by the labels it hides


def test_split_is_seeded(tmp_path):
    write_fake(tmp_path)
    a, b, c = (fashion_mnist(tmp_path, seed=s, train_size=50, test_size=20) for s in (0, 0, 1))
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert set(_row_index(a.val.tensors[0])) != set(_row_index(c.val.tensors[0]))
    assert torch.equal(a.test.tensors[0], c.test.tensors[0])  # the test subset does not follow the run seed


def test_stratified_pick_keeps_class_shares():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = np.arange(100)
    picked, rest = stratified_pick(idx, labels, 10, np.random.default_rng(0))
    assert _per_class(labels[picked])[:3] == [6, 3, 1] and len(rest) == 90
    assert sorted(np.concatenate([picked, rest]).tolist()) == idx.tolist()
    picked, rest = stratified_pick(idx, labels, 7, np.random.default_rng(0))  # remainders go to the largest
    assert len(picked) == 7 and len(rest) == 93


def test_sizes_beyond_what_is_available_are_one_line(tmp_path):
    write_fake(tmp_path)
    with pytest.raises(ConfigError, match=r"transfer_size 100 is more than the 70 training images") as err:
        fashion_mnist(tmp_path, val_fraction=0.1, train_size=200, transfer_size=100)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"transfer_size 1 is more than the 0 .* smaller data.train_size"):
        fashion_mnist(tmp_path, transfer_size=1)
    with pytest.raises(ConfigError, match=r"train_size 271 is more than the 270"):
        fashion_mnist(tmp_path, val_fraction=0.1, train_size=271)
    with pytest.raises(ConfigError, match=r"test_size 101 is more than the 100 test images"):
        fashion_mnist(tmp_path, test_size=101)


def test_missing_root_names_the_package(tmp_path):
    with pytest.raises(DataError) as err:
        fashion_mnist(tmp_path / "nowhere")
    msg = str(err.value)
    assert msg == (f"Fashion-MNIST not found in {tmp_path / 'nowhere'}: install Debian's package "
                   "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set data.root to a folder "
                   "holding the four idx files")
    write_fake(tmp_path / "three")
    (tmp_path / "three" / FILES["test"][1]).unlink()  # one of the four missing: the same line
    with pytest.raises(DataError, match="Fashion-MNIST not found in .*three: install"):
        fashion_mnist(tmp_path / "three")


def test_missing_root_through_the_cli_is_one_line(tmp_path, capsys):
    cfg = {"output_dir": str(tmp_path / "run"), "data": {"name": "fashion_mnist", "root": str(tmp_path / "none")},
           "teacher": {"name": "cnn2d"}, "student": {"name": "mlp"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as done:
        main(["train", str(tmp_path / "run.yaml")])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and len(err.splitlines()) == 1 and "apt-get install dataset-fashion-mnist" in err


@pytest.mark.parametrize("damage", ["cut_gzip", "cut_data", "bad_magic", "not_gzip", "bad_label"])
def test_damaged_idx_file_is_one_data_error_naming_it(tmp_path, damage):
    write_fake(tmp_path)
    target = tmp_path / FILES["train"][0]
    if damage == "cut_gzip":  # the compressed stream ends early
        target.write_bytes(target.read_bytes()[:-500])
    elif damage == "cut_data":  # a whole gzip whose content is shorter than its header says
        target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes())[:-100]))
    elif damage == "bad_magic":  # a labels file where the images belong
        target.write_bytes((tmp_path / FILES["train"][1]).read_bytes())
    elif damage == "not_gzip":
        target.write_bytes(b"not a gzip file at all")
    else:
        target = tmp_path / FILES["train"][1]
        target.write_bytes(gzip.compress(_idx(labels=np.full(300, 11))))
    with pytest.raises(DataError) as err:
        fashion_mnist(tmp_path)
    msg = str(err.value)
    assert str(target) in msg and "\n" not in msg, msg
    if damage == "cut_data":
        assert "truncated" in msg


def test_cache_reads_a_file_once_and_again_when_it_changes(tmp_path):
    write_fake(tmp_path)
    first, _ = read_split(tmp_path, "test")
    again, _ = read_split(tmp_path, "test")
    assert again is first and not first.flags.writeable  # shared: nobody may write into the cache
    write_fake(tmp_path, {"train": 30, "test": 20})  # replaced on disk: read again
    assert len(read_split(tmp_path, "test")[0]) == 200


def test_config_parses_and_builds(tmp_path):
    raw = {"teacher": {"name": "cnn2d"}, "student": {"name": "mlp"},
           "data": {"name": "fashion_mnist", "root": str(write_fake(tmp_path)), "train_size": 50, "test_size": 30,
                    "transfer_size": 20, "val_fraction": 0.2}}
    cfg = parse_config(raw)
    assert "fashion_mnist" in SOURCES and cfg.data.train_size == 50 and cfg.data.test_size == 30
    b = build_data(cfg.data, seed=0)
    assert (len(b.train), len(b.val), len(b.transfer), len(b.test)) == (50, 60, 20, 30)


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "mnist1d", "root": "x"}, r"root does not apply to data source 'mnist1d' \(only to: fashion_mnist, "
     r"image_folder\)"),
    ({"name": "digits", "train_size": 10}, r"train_size does not apply to data source 'digits' \(only to: "
     r"fashion_mnist\)"),
    ({"name": "image_folder", "root": "x", "train_size": 10, "test_size": 5},
     r"test_size, train_size do not apply to data source 'image_folder' \(only to: fashion_mnist\)"),
    ({"name": "fashion_mnist", "image_size": 32}, r"image_size does not apply .* \(only to: image_folder\)"),
    ({"name": "fashion_mnist", "train_size": 0}, "greater than 0"),
])
def test_keys_of_other_sources_are_refused(data, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_config({"teacher": {"name": "cnn2d"}, "student": {"name": "mlp"}, "data": data})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------ the real files


@needs_package
def test_real_files_sizes_and_balance():
    x_train, y_train = read_split(DEFAULT_ROOT, "train")
    x_test, y_test = read_split(DEFAULT_ROOT, "test")
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert _per_class(y_train) == [6000] * 10 and _per_class(y_test) == [1000] * 10
    s = split_indices(y_train, y_test)
    assert (len(s.train), len(s.val), len(s.transfer), len(s.test)) == (54_000, 6_000, 0, 10_000)
    s = split_indices(y_train, y_test, seed=3, train_size=500, transfer_size=1000, test_size=200)
    assert _per_class(y_train[s.train]) == [50] * 10 and _per_class(y_train[s.transfer]) == [100] * 10
    assert _per_class(y_test[s.test]) == [20] * 10 and _per_class(y_train[s.val]) == [600] * 10
    train, val, transfer = set(s.train.tolist()), set(s.val.tolist()), set(s.transfer.tolist())
    assert not (train & val or train & transfer or val & transfer)
    again = split_indices(y_train, y_test, seed=3, train_size=500, transfer_size=1000, test_size=200)
    other = split_indices(y_train, y_test, seed=4, train_size=500, transfer_size=1000, test_size=200)
    assert np.array_equal(s.val, again.val) and np.array_equal(s.train, again.train)
    assert not np.array_equal(s.val, other.val) and not np.array_equal(s.train, other.train)


@needs_package
def test_real_bundle_from_config():
    cfg = parse_config({"teacher": {"name": "cnn2d"}, "student": {"name": "mlp"},
                        "data": {"name": "fashion_mnist", "train_size": 500, "test_size": 200, "transfer_size": 100}})
    b = build_data(cfg.data, seed=0)
    assert (len(b.train), len(b.val), len(b.transfer), len(b.test)) == (500, 6000, 100, 200)
    x, y = b.train.tensors
    assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert _per_class(y) == [50] * 10 and _per_class(b.test.tensors[1]) == [20] * 10
    assert b.transfer.tensors[1].eq(UNLABELLED).all() and b.class_names == CLASS_NAMES


@needs_package
def test_pipeline_end_to_end(tmp_path):
    from kdkit.families.classification.pipeline import run

    cfg = parse_config({
        "seed": 0, "output_dir": str(tmp_path / "run"),
        "data": {"name": "fashion_mnist", "train_size": 300, "test_size": 200, "val_fraction": 0.02},
        "train": {"epochs": 1, "batch_size": 64, "lr": 3e-3, "progress": False},
        "teacher": {"name": "cnn2d", "params": {"width": 4, "depth": 2}},
        "student": {"name": "mlp", "params": {"hidden": [16]}},
    })
    result = run(cfg, quick_cost=True)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["role"] for r in results["rows"]] == ["teacher", "student_alone", "student_kd"]
    assert [r["role"] for r in result.rows] == ["teacher", "student_alone", "student_kd"]
    assert results["data"]["input_shape"] == [1, 28, 28] and results["data"]["n_test"] == 200
