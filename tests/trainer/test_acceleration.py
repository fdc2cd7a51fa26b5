"""Training-speed options (kdkit.trainer.acceleration): bf16 autocast on the CPU, fp16 refused there, gradient
accumulation equal to a larger batch, channels-last image models, torch.compile, and the teacher forward under
inference_mode with outputs that carry no autograd graph."""

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import TensorDataset
from toy import toy_data, toy_net

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
from kdkit.data import Indexed, make_loader
from kdkit.errors import ConfigError

QUIET = {"progress": False, "device": "cpu"}
KD = [{"name": "kd", "T": 2.0, "alpha": 0.5}]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("distil", [False, True])
def test_bf16_trains_on_the_cpu_under_autocast(distil):
    runs = {}
    for precision in ("fp32", "bf16"):
        student = toy_net(hidden=16, bn=False, seed=1)
        before = _snapshot(student)
        dtypes = []
        student[0].register_forward_hook(lambda m, i, out, seen=dtypes: seen.append(out.dtype) if m.training else None)
        teacher = toy_net(hidden=32, bn=False, seed=0).eval()
        scheme = OfflineDistillation(student, teacher, build_terms(KD)) if distil else Supervised(student)
        result = fit(scheme, make_loader(toy_data(128), 32, shuffle=True),
                     make_loader(toy_data(64, seed=1), 64, False),
                     TrainSettings(epochs=2, precision=precision, lr=1e-2, **QUIET))
        after = _snapshot(student)
        assert all(v.dtype == torch.float32 for v in after.values())  # weights stay float32
        assert any(not torch.equal(before[k], after[k]) for k in before)  # and were trained
        runs[precision] = (set(dtypes), result.history, after)
    (fp32_dtypes, fp32_history, fp32_weights), (bf16_dtypes, history, weights) = runs["fp32"], runs["bf16"]
    assert fp32_dtypes == {torch.float32} and bf16_dtypes == {torch.bfloat16}  # the forward ran in bfloat16
    assert all(math.isfinite(r["train_loss"]) for r in history)
    # the same training at a coarser precision: close to float32's, not identical to it
    assert history[-1]["train_loss"] == pytest.approx(fp32_history[-1]["train_loss"], rel=0.05)
    gap = max((weights[k] - fp32_weights[k]).abs().max().item() for k in weights)
    assert 0 < gap < 0.05


def test_fp16_is_refused_on_the_cpu_with_one_line():
    with pytest.raises(ValidationError, match="fp16 needs a CUDA device"):
        TrainSettings(precision="fp16", device="cpu")
    if not torch.cuda.is_available():  # device auto resolves to the CPU here: refused when fit knows it
        with pytest.raises(ConfigError, match="train.precision: precision fp16 needs a CUDA device.*bf16"):
            fit(Supervised(toy_net()), make_loader(toy_data(32), 16, True), None,
                TrainSettings(precision="fp16", progress=False))


def test_the_settings_parse_from_a_config_and_bad_values_are_one_line():
    from kdkit.families.classification.config import parse_config

    base = {"teacher": {"name": "mlp"}, "student": {"name": "mlp"}}
    cfg = parse_config({**base, "train": {"precision": "bf16", "channels_last": True, "compile": False,
                                          "grad_accumulation": 4}})
    s = cfg.settings("distill")
    assert (s.precision, s.channels_last, s.compile, s.grad_accumulation) == ("bf16", True, False, 4)
    for bad, key in (({"precision": "fp8"}, "train.precision"), ({"grad_accumulation": 0}, "train.grad_accumulation"),
                     ({"precision": "fp16", "device": "cpu"}, "train")):
        with pytest.raises(ConfigError, match=f"config error at {key}"):
            parse_config({**base, "train": bad})


def _gradients_per_step(batch: int, accumulation: int, epochs: int = 2):
    """The gradients at every optimizer step of a KD fit, and the final student, for one batch size and N."""
    seen: list[list[torch.Tensor]] = []

    def record(optimizer, args, kwargs):
        seen.append([p.grad.detach().clone() for group in optimizer.param_groups for p in group["params"]])

    handle = register_optimizer_step_pre_hook(record)
    try:
        student = toy_net(hidden=16, bn=False, seed=1)  # no BatchNorm: a micro-batch's statistics would differ
        teacher = toy_net(hidden=32, bn=False, seed=0).eval()
        fit(OfflineDistillation(student, teacher, build_terms(KD)), make_loader(toy_data(128), batch, True, seed=3),
            None, TrainSettings(epochs=epochs, lr=1e-2, grad_accumulation=accumulation, **QUIET))
    finally:
        handle.remove()
    return seen, student.state_dict()


def test_two_accumulated_micro_batches_give_the_gradients_of_one_double_batch():
    big, big_weights = _gradients_per_step(batch=32, accumulation=1)
    small, small_weights = _gradients_per_step(batch=16, accumulation=2)
    assert len(big) == len(small) == 2 * 4  # 128 / 32 = 4 optimizer steps per epoch either way
    for a, b in zip(big, small, strict=True):
        assert all(torch.allclose(x, y, atol=1e-6, rtol=1e-5) for x, y in zip(a, b, strict=True))
    assert all(torch.allclose(big_weights[k], small_weights[k], atol=1e-5) for k in big_weights)
    unscaled, _ = _gradients_per_step(batch=16, accumulation=1, epochs=1)
    assert len(unscaled) == 8  # without accumulation every micro-batch is a step


def _image_scheme(channels_last_seen: list[bool]):
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 3))
    student[0].register_forward_pre_hook(  # training batches (not the eval-mode probe of the first step)
        lambda m, i: channels_last_seen.append(i[0].is_contiguous(memory_format=torch.channels_last))
        if m.training else None)
    return student


def test_channels_last_trains_an_image_model_to_the_same_weights():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 8, 8, generator=g)  # 2 channels: one would be both layouts at once
    data = TensorDataset(x, (x.mean((1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 0).long())
    weights, layouts = {}, {}
    for flag in (False, True):
        seen: list[bool] = []
        student = _image_scheme(seen)
        fit(Supervised(student), make_loader(data, 16, True), None,
            TrainSettings(epochs=2, channels_last=flag, **QUIET))
        weights[flag], layouts[flag] = _snapshot(student), seen
        assert student[0].weight.is_contiguous(memory_format=torch.channels_last) == flag
    assert all(layouts[True]) and not any(layouts[False])  # the batches were converted, only when asked
    assert all(torch.allclose(weights[False][k], weights[True][k], atol=1e-5) for k in weights[False])
    flat = toy_net(seed=1)  # 2-D inputs and no convolution: nothing to convert, training as usual
    fit(Supervised(flat), make_loader(toy_data(64), 16, True), None, TrainSettings(epochs=1, channels_last=True,
                                                                                    **QUIET))


def test_compile_trains_like_eager_and_hands_back_an_eager_model():
    results, compiled_while_training = {}, []
    for flag in (False, True):
        student = toy_net(hidden=8, bn=False, seed=1)
        teacher = toy_net(hidden=16, bn=False, seed=0).eval()
        scheme = OfflineDistillation(student, teacher, build_terms(KD))

        def during(record, model=student):
            compiled_while_training.append(getattr(model, "_compiled_call_impl", None) is not None)

        try:
            fit(scheme, make_loader(toy_data(64), 32, True), None, TrainSettings(epochs=1, compile=flag, **QUIET),
                on_epoch=during)
        except Exception as err:  # a CPU without a working compiler toolchain: nothing of kdkit's to test
            if flag and "compile" in type(err).__module__ + str(err).lower():
                pytest.skip(f"torch.compile does not work on this machine: {str(err).splitlines()[0]}")
            raise
        scheme.close()
        results[flag] = student
    eager, compiled = results[False], results[True]
    assert compiled_while_training == [False, True]
    assert getattr(compiled, "_compiled_call_impl", None) is None  # handed back uncompiled
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefix
    assert all(torch.allclose(eager.state_dict()[k], compiled.state_dict()[k], atol=1e-5)
               for k in eager.state_dict())


@pytest.mark.parametrize("cached", [False, True])
def test_the_teacher_runs_under_inference_mode_and_its_outputs_carry_no_graph(cached):
    teacher = toy_net(hidden=32, bn=False, seed=0)
    modes: list[bool] = []
    teacher.register_forward_hook(lambda m, i, o: modes.append(torch.is_inference_mode_enabled()))
    terms = build_terms([*KD, {"name": "fitnet", "student": "1", "teacher": "1"}])  # mse saves its target
    data = toy_data(64)
    scheme = OfflineDistillation(toy_net(hidden=32, bn=False, seed=1), teacher, terms,
                                 cache_size=len(data) if cached else None)
    outputs = []
    original = scheme.teacher_outputs

    def spy(x, index=None):
        out = original(x, index)
        outputs.append(out)
        return out

    scheme.teacher_outputs = spy
    fit(scheme, make_loader(Indexed(data) if cached else data, 16, True), make_loader(data, 64, False),
        TrainSettings(epochs=2, **QUIET))
    scheme.close()
    assert modes and all(modes)  # training and validation forwards alike
    # 4 batches x 2 epochs read by the steps; a cache is filled first in its own pass over the 4 batches
    assert len(outputs) == (12 if cached else 8) and all(set(o) == {"logits", "1"} for o in outputs)
    for out in outputs:
        for t in out.values():
            assert not t.requires_grad and t.grad_fn is None and not t.is_inference()
