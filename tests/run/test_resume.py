"""Exact resume of fit: a run interrupted between epochs or mid-epoch and resumed ends bit for bit where an
uninterrupted run ends (weights, history), also with augmentation, dropout, early stopping and an EMA teacher."""

import pytest
import torch
from torch import nn
from toy import toy_data, toy_net

from kdkit import Supervised, TrainSettings, fit
from kdkit.data import make_loader
from kdkit.errors import RunDirError
from kdkit.schemes.self_distill import SelfDistillation

QUIET = {"progress": False}
NOISY = {"augment": [{"name": "mixup", "alpha": 0.4}], "lr": 0.05, **QUIET}  # random streams that matter


class Stop(Exception):
    """Stands in for a kill."""


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 3))


def _fit(run_dir, scheme_of=Supervised, settings=None, resume=None, on_epoch=None, net=None):
    model = net or _net()
    scheme = scheme_of(model)
    s = settings or TrainSettings(epochs=3, **NOISY)
    result = fit(scheme, make_loader(toy_data(96), 16, True, seed=5), make_loader(toy_data(64, seed=1), 64, False),
                 s, run_dir, "m", on_epoch=on_epoch, resume=resume)
    return model, result


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _stop_after(epoch: int):
    def hook(record):
        if record["epoch"] == epoch:
            raise Stop
    return hook


@pytest.mark.parametrize("stop_at", [1, 2])
def test_resume_between_epochs_is_bit_identical(tmp_path, stop_at):
    whole, full = _fit(tmp_path / "whole")
    with pytest.raises(Stop):
        _fit(tmp_path / "cut", on_epoch=_stop_after(stop_at))
    resumed, result = _fit(tmp_path / "cut", resume=True)
    assert _same(whole, resumed)
    assert result.history == full.history and result.best_epoch == full.best_epoch
    logged = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 3  # the stopped epoch is logged once, not twice


def test_resume_mid_epoch_from_step_checkpoint_is_bit_identical(tmp_path):
    s = TrainSettings(epochs=2, checkpoint_every_steps=2, **NOISY)
    whole, full = _fit(tmp_path / "whole", settings=s)
    calls = {"n": 0}

    class Killed(Supervised):
        def losses(self, *args):
            calls["n"] += 1
            if calls["n"] == 9:  # epoch 2, step 3 (6 steps per epoch): after the step checkpoint at step 2
                raise Stop
            return super().losses(*args)

    with pytest.raises(Stop):
        _fit(tmp_path / "cut", scheme_of=Killed, settings=s)
    resumed, result = _fit(tmp_path / "cut", settings=s, resume=True)
    assert _same(whole, resumed)
    assert result.history == full.history  # the epoch's running sums were restored too


def test_resume_keeps_the_ema_teacher_of_self_distillation(tmp_path):
    def scheme_of(model):
        return SelfDistillation(model, decay=0.9)

    s = TrainSettings(epochs=3, **QUIET)
    whole_model = _net()
    whole = scheme_of(whole_model)
    fit(whole, make_loader(toy_data(96), 16, True, seed=5), None, s, tmp_path / "whole", "m")
    with pytest.raises(Stop):
        _fit(tmp_path / "cut", scheme_of=scheme_of, settings=s, on_epoch=_stop_after(1))
    model = _net()
    resumed = scheme_of(model)
    fit(resumed, make_loader(toy_data(96), 16, True, seed=5), None, s, tmp_path / "cut", "m", resume=True)
    assert _same(whole_model, model) and _same(whole.teacher, resumed.teacher)


def test_finished_stage_is_loaded_not_redone(tmp_path):
    trained, _ = _fit(tmp_path)
    after_training = torch.rand(4)  # what a later stage's new adapters would draw
    seen = []
    again, result = _fit(tmp_path, resume=True, on_epoch=seen.append)
    assert seen == [] and _same(trained, again) and len(result.history) == 3
    assert torch.equal(torch.rand(4), after_training)  # the random streams continue as after training


def test_resume_with_changed_settings_or_damaged_checkpoint_is_one_line(tmp_path):
    with pytest.raises(Stop):
        _fit(tmp_path, on_epoch=_stop_after(1))
    with pytest.raises(RunDirError, match="train.lr differ"):
        _fit(tmp_path, settings=TrainSettings(epochs=3, **{**NOISY, "lr": 0.01}), resume=True)
    (tmp_path / "checkpoints" / "m.resume.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(RunDirError, match="damaged"):
        _fit(tmp_path, resume=True)


def test_without_resume_the_checkpoint_is_ignored(tmp_path):
    with pytest.raises(Stop):
        _fit(tmp_path / "cut", on_epoch=_stop_after(1))
    fresh, _ = _fit(tmp_path / "cut")
    whole, _ = _fit(tmp_path / "whole")
    assert _same(fresh, whole)


def test_toy_net_helper_still_builds():  # the shared helper is unchanged by these tests
    assert isinstance(toy_net(seed=0), nn.Sequential)
