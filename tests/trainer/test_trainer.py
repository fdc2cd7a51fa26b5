"""The training loop: frozen teacher, best checkpoint, reproducibility, bad input, NaN, atomic checkpoints."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset
from toy import toy_data as _data
from toy import toy_net as _net

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit, load_weights, save_weights
from kdkit.data import Indexed, make_loader
from kdkit.errors import DataError, ModelError, NonFiniteLossError, StorageError
from kdkit.io.checkpoint import save_state
from kdkit.trainer.step import Scheme

QUIET = {"progress": False}


def test_teacher_is_frozen_and_bit_identical_after_distillation(tmp_path):
    data = _data()
    teacher = _net()
    fit(Supervised(teacher), make_loader(data, 32, True), None, TrainSettings(epochs=2, **QUIET))
    teacher.train()  # the user forgot eval(): distillation must still run it in eval mode
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # includes BatchNorm running stats
    student = _net(hidden=4)
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 4, "alpha": 0.5}]))
    fit(scheme, make_loader(data, 32, True), make_loader(data, 64, False), TrainSettings(epochs=2, **QUIET), tmp_path)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_distillation_moves_student_towards_teacher():
    data = _data(512)
    teacher = _net(hidden=32)
    fit(Supervised(teacher), make_loader(data, 32, True), None, TrainSettings(epochs=8, lr=1e-2, **QUIET))
    student = _net(hidden=8)
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 2}]))
    x = data.tensors[0]
    teacher.eval()
    kl_before = torch.nn.functional.kl_div(student.eval()(x).log_softmax(1), teacher(x).log_softmax(1),
                                           reduction="batchmean", log_target=True).item()
    fit(scheme, make_loader(data, 32, True), None, TrainSettings(epochs=8, lr=1e-2, **QUIET))
    with torch.no_grad():
        kl_after = torch.nn.functional.kl_div(student(x).log_softmax(1), teacher(x).log_softmax(1),
                                              reduction="batchmean", log_target=True).item()
    assert kl_after < 0.3 * kl_before


def test_best_checkpoint_is_the_best_epoch_and_is_restored(tmp_path):
    data = _data()
    model = _net()
    s = TrainSettings(epochs=6, lr=0.05, monitor="nll", **QUIET)
    result = fit(Supervised(model), make_loader(data, 32, True), make_loader(_data(seed=1), 64, False), s, tmp_path)
    values = [r["val_nll"] for r in result.history]
    assert result.best_epoch == 1 + min(range(len(values)), key=values.__getitem__)
    best = load_file(str(tmp_path / "checkpoints" / "model.best.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())  # the model ends at its best
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 7)) and all("val_macro_f1" in r for r in lines)
    assert (tmp_path / "checkpoints" / "model.last.safetensors").exists()


def test_keep_last_ends_at_the_last_epoch_and_still_saves_the_best(tmp_path):
    def train(keep):
        torch.manual_seed(0)
        model = _net()
        s = TrainSettings(epochs=6, lr=0.05, monitor="nll", keep=keep, **QUIET)
        result = fit(Supervised(model), make_loader(_data(), 32, True), make_loader(_data(seed=1), 64, False), s,
                     tmp_path / keep)
        return model.state_dict(), result

    last_state, result = train("last")
    best_state, best_result = train("best")
    assert result.best_epoch == best_result.best_epoch < 6  # the same run, so the same best epoch (not the last)
    saved_last = load_file(str(tmp_path / "last" / "checkpoints" / "model.last.safetensors"))
    saved_best = load_file(str(tmp_path / "last" / "checkpoints" / "model.best.safetensors"))
    assert all(torch.equal(saved_last[k], v) for k, v in last_state.items())
    assert all(torch.equal(saved_best[k], v) for k, v in best_state.items())
    assert not all(torch.equal(saved_best[k], v) for k, v in last_state.items())


def test_higher_is_better_metrics_pick_the_maximum(tmp_path):
    result = fit(Supervised(_net()), make_loader(_data(), 32, True), make_loader(_data(seed=2), 64, False),
                 TrainSettings(epochs=4, lr=0.05, **QUIET))
    f1 = [r["val_macro_f1"] for r in result.history]
    assert result.best_metrics["macro_f1"] == max(f1)


def test_same_seed_same_weights():
    def train(seed):
        torch.manual_seed(123)
        model = _net()
        fit(Supervised(model), make_loader(_data(), 32, True, seed=seed), None,
            TrainSettings(epochs=2, seed=seed, **QUIET))
        return model.state_dict()

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping(tmp_path):
    s = TrainSettings(epochs=50, lr=1e-6, patience=2, monitor="nll", scheduler="none", **QUIET)
    result = fit(Supervised(_net()), make_loader(_data(), 64, True), make_loader(_data(seed=1), 64, False), s)
    assert result.stopped_early and len(result.history) < 50


def test_teacher_cache_gives_the_same_training_as_no_cache():
    data = _data()
    teacher = _net(hidden=32).eval()

    def distil(cache):
        torch.manual_seed(0)
        student = _net(hidden=4)
        dataset = Indexed(data) if cache else data
        scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd"}]),
                                     cache_size=len(data) if cache else None)
        fit(scheme, make_loader(dataset, 32, True), None, TrainSettings(epochs=3, **QUIET))
        return student.state_dict(), scheme

    (plain, _), (cached, scheme) = distil(False), distil(True)
    assert scheme.cache is not None and bool(scheme.cache.filled.all())
    assert all(torch.allclose(plain[k], cached[k], atol=1e-6) for k in plain)


def test_unlabelled_transfer_rows_are_accepted():
    labelled = _data(64)
    x_extra = torch.randn(64, 8)
    transfer = TensorDataset(x_extra, torch.full((64,), -1))
    teacher = _net().eval()
    scheme = OfflineDistillation(_net(hidden=4), teacher, build_terms([{"name": "kd", "alpha": 0.3}]))
    result = fit(scheme, make_loader(torch.utils.data.ConcatDataset([labelled, transfer]), 16, True), None,
                 TrainSettings(epochs=1, **QUIET))
    assert result.history[0]["train_loss"] > 0


def test_labels_outside_the_class_range():
    bad = TensorDataset(torch.randn(32, 8), torch.full((32,), 7))
    with pytest.raises(DataError, match="label 7 is outside the model's 3 classes"):
        fit(Supervised(_net()), make_loader(bad, 8, True), None, TrainSettings(epochs=1, **QUIET))


def test_empty_dataset():
    with pytest.raises(DataError, match="empty"):
        make_loader(TensorDataset(torch.empty(0, 8), torch.empty(0).long()), 8, True)


def test_teacher_and_student_with_different_class_counts():
    teacher = _net(c=5).eval()
    scheme = OfflineDistillation(_net(c=3), teacher, build_terms([{"name": "kd"}]))
    with pytest.raises(ModelError, match="teacher predicts 5 classes but the student 3"):
        fit(scheme, make_loader(_data(), 32, True), None, TrainSettings(epochs=1, **QUIET))


class _ExplodesLater(Scheme):
    """Trains normally, then returns NaN in the second epoch."""

    def losses(self, x, y, epoch, index=None):
        logits = self.student(x)
        loss = nn.functional.cross_entropy(logits, y)
        if epoch == 1:
            loss = loss * float("nan")
        return {"ce": loss}, {"ce": loss.detach()}, logits


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _net()
    expected = r"loss became nan at epoch 2, step 1.*model.last.safetensors \(epoch 1\)"
    with pytest.raises(NonFiniteLossError, match=expected):
        fit(_ExplodesLater(model), make_loader(_data(), 32, True), None, TrainSettings(epochs=3, **QUIET), tmp_path)
    last = load_file(str(tmp_path / "checkpoints" / "model.last.safetensors"))
    assert all(torch.isfinite(v.float()).all() for v in last.values())
    load_weights(_net(), tmp_path / "checkpoints" / "model.last.safetensors")  # still a valid file


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    model = _net()
    save_weights(model, path)
    original = path.read_bytes()

    def crash(tensors, filename, *a, **k):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("kdkit.io.checkpoint.save_file", crash)
    with pytest.raises(StorageError, match="cannot write .*w.safetensors"):  # one line, not a traceback
        save_state(_net().state_dict(), path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind


def test_loading_is_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Evil()}, path)
    with pytest.raises(ModelError, match="cannot read weights") as refused:
        load_weights(nn.Linear(2, 2), path)
    message = str(refused.value)
    assert "convert it to safetensors" in message and "will likely succeed" not in message
    assert "\n" not in message


def test_loading_a_wrong_shape_names_the_tensor(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(nn.Linear(4, 2), path)
    with pytest.raises(ModelError, match=r"shape mismatch in weight \(2, 4\) vs \(2, 3\)"):
        load_weights(nn.Linear(3, 2), path)


def test_torch_checkpoint_with_ddp_prefix_loads(tmp_path):
    src = nn.Linear(3, 2)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "m.pt")
    dst = load_weights(nn.Linear(3, 2), tmp_path / "m.pt")
    assert torch.equal(dst.weight, src.weight)


def test_on_epoch_sees_every_record_and_can_stop_training(tmp_path):
    seen = []

    def stop_after_two(record):
        seen.append(record["epoch"])
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # any exception: e.g. Optuna's TrialPruned

    model = _net(seed=0)
    with pytest.raises(KeyboardInterrupt):
        fit(Supervised(model), make_loader(_data(64), 16, True), make_loader(_data(32, seed=1), 32, False),
            TrainSettings(epochs=5, progress=False), run_dir=tmp_path, name="m", on_epoch=stop_after_two)
    assert seen == [1, 2]
    assert (tmp_path / "checkpoints" / "m.last.safetensors").is_file()  # what was saved stays
