"""Adapters: created from probed shapes, trained with the student, saved apart from it; the teacher never moves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kdkit.adapters import Resize, TupleAdapter, attach_adapters, example_inputs, make_adapter
from kdkit.data import make_loader
from kdkit.errors import ModelError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import run
from kdkit.io.checkpoint import read_state
from kdkit.losses import LOSSES
from kdkit.models import build_model
from kdkit.schemes import OfflineDistillation
from kdkit.terms import build_terms, tapped_paths
from kdkit.trainer.loop import fit
from kdkit.trainer.settings import TrainSettings

SHAPE = (1, 8, 8)


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = build_model("cnn2d", SHAPE, 3, width=8, depth=2)  # features.0: (8, 4, 4), features.1: (16, 2, 2)
    student = build_model("cnn2d", SHAPE, 3, width=2, depth=2)  # features.0: (2, 4, 4), features.1: (4, 2, 2)
    return student, teacher


@pytest.mark.parametrize(
    ("student", "teacher"),
    [((2, 4, 4), (8, 4, 4)), ((2, 8, 8), (8, 4, 4)), ((2, 2, 2), (8, 4, 4)), ((3, 10), (5, 20)), ((7,), (9,)),
     ((7,), (4, 5)), ((2, 3, 3), (11,)), ((2, 4, 4), (2, 2, 2))],
)
def test_make_adapter_maps_student_to_teacher_shape(student, teacher):
    adapter = make_adapter(student, teacher)
    assert adapter(torch.randn(5, *student)).shape == (5, *teacher)


def test_adapter_kinds():
    assert isinstance(make_adapter((4, 3, 3), (4, 3, 3)), nn.Identity)
    conv = make_adapter((2, 4, 4), (8, 4, 4))
    assert [type(m) for m in conv] == [nn.Conv2d] and conv[0].kernel_size == (1, 1)
    assert [type(m) for m in make_adapter((3, 10), (5, 20))] == [Resize, nn.Conv1d]
    assert [type(m) for m in make_adapter((7,), (9,))] == [nn.Linear]


def test_resize_pools_when_shrinking_and_interpolates_when_growing():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(Resize((2, 2))(x), nn.functional.avg_pool2d(x, 2))
    assert Resize((8, 8))(x).shape == (1, 1, 8, 8)


def test_attach_adapters_only_where_a_loss_needs_one_and_shapes_differ():
    student, teacher = _models()
    terms = build_terms([
        {"name": "fitnet", "student": "features.0", "teacher": "features.0"},
        {"name": "at", "student": "features.0", "teacher": "features.0"},
        {"name": "fitnet", "student": "logits", "teacher": "logits"},  # same shape: nothing to adapt
        {"name": "fsp", "student": ["features.0", "features.1"], "teacher": ["features.0", "features.1"]},
    ])
    student.train()
    bn = student.features[0][1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    attached = attach_adapters(student, teacher, terms, torch.randn(4, *SHAPE))
    assert attached == ["fitnet", "fsp"]
    assert terms[1].adapter is None and terms[2].adapter is None
    assert isinstance(terms[3].adapter, TupleAdapter)
    # the probe is an eval-mode forward: BatchNorm statistics and train/eval modes are left as they were
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    assert student.training and all(m.training for m in student.modules())
    assert not teacher.training or all(m.training for m in teacher.modules())


def test_list_of_paths_gives_the_loss_a_tuple():
    terms = build_terms([{"name": "fsp", "student": ["features.0", "features.1"], "teacher": ["features.0", "h"]}])
    assert terms[0].student_key == ("features.0", "features.1")
    assert tapped_paths(terms) == ({"features.0", "features.1"}, {"features.0", "h"})


def test_missing_adapter_fails_with_the_fix():
    student, teacher = _models()
    terms = build_terms([{"name": "fitnet", "student": "features.0", "teacher": "features.0"}])
    scheme = OfflineDistillation(student, teacher, terms)  # no example: no adapter
    with pytest.raises(ModelError, match="attach_adapters"):
        scheme.losses(torch.randn(4, *SHAPE), torch.zeros(4, dtype=torch.long), 0)


def _spec(name: str) -> list[dict]:
    feature = {"student": "features.0", "teacher": "features.0"}
    extra = {
        "fitnet": feature, "at": feature, "sp": feature, "rkd_distance": feature, "rkd_angle": feature,
        "pkt": feature, "fsp": {"student": ["features.0", "features.1"], "teacher": ["features.0", "features.1"]},
    }
    return [{"name": name, **extra.get(name, {})}]


# the transformer-to-transformer losses read tap points of hf: text models (tests/text/test_text_real.py covers them)
@pytest.mark.parametrize("name", sorted(n for n in LOSSES if not getattr(LOSSES[n], "default_key", ())))
def test_gradients_reach_student_and_adapters_never_the_teacher(name):
    student, teacher = _models()
    x, y = torch.randn(6, *SHAPE), torch.tensor([0, 1, 2, 0, 1, 2])
    scheme = OfflineDistillation(student, teacher, build_terms(_spec(name)), example=x[:2])
    scheme.train()
    weighted, _, _ = scheme.losses(x, y, epoch=100)
    sum(weighted.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    for p in scheme.extras.parameters():  # adapters, where the loss has one
        assert p.grad is not None and p.grad.abs().sum() > 0
    scheme.close()


def test_training_updates_adapters_keeps_teacher_bit_identical():
    student, teacher = _models()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    terms = build_terms([{"name": "ce"}, {"name": "fitnet", "weight": 10, "student": "features.0",
                                          "teacher": "features.0"}])
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, *SHAPE, generator=g), torch.randint(0, 3, (64,), generator=g))
    scheme = OfflineDistillation(student, teacher, terms, example=example_inputs(data))
    adapter_before = [p.detach().clone() for p in terms[1].adapter.parameters()]
    assert adapter_before
    settings = TrainSettings(epochs=2, batch_size=16, progress=False, device="cpu", monitor="loss")
    history = fit(scheme, make_loader(data, 16, shuffle=True), None, settings).history
    assert "train_fitnet" in history[-1] and "train_ce" in history[-1]
    adapter_after = list(terms[1].adapter.parameters())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(adapter_before, adapter_after, strict=True))
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(key.startswith("adapter") or ".adapter" in key for key in student.state_dict())


def test_pipeline_exports_the_student_without_its_adapters(tmp_path: Path):
    cfg = parse_config({
        "output_dir": str(tmp_path / "run"),
        "data": {"name": "digits"},
        "train": {"epochs": 1, "batch_size": 256, "progress": False, "device": "cpu"},
        "teacher": {"name": "cnn2d", "params": {"width": 8}},
        "student": {"name": "cnn2d", "params": {"width": 2}},
        "distill": {"losses": [{"name": "kd", "T": 4}, {"name": "fitnet", "weight": 10, "student": "features.0",
                                                        "teacher": "features.0"}], "cache_teacher": True},
    })
    result = run(cfg, quick_cost=True)
    exported = read_state(result.run_dir / "models" / "student_kd.safetensors")
    alone = read_state(result.run_dir / "models" / "student_alone.safetensors")
    assert set(exported) == set(alone)  # exactly the student's own weights
    extras = read_state(result.run_dir / "checkpoints" / "student_kd.extras.safetensors")
    assert extras["1.adapter.0.weight"].shape == (8, 2, 1, 1)  # term 1's 1x1 conv: 2 -> 8 channels
    assert all(k not in exported for k in extras)
