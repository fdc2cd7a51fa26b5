"""Quantization-aware students: fake quantization after prepare_qat, KD into a QAT student with the usual fit,
int8 conversion (smaller, agrees with the QAT model), and one-line errors."""

import copy

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import ConvBnReLU1d
from torch.ao.nn.quantized import Linear as QuantizedLinear
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from toy import toy_data, toy_net

from kdkit import OfflineDistillation, Supervised, Taps, TrainSettings, build_terms, fit, load_weights, predict
from kdkit.data import make_loader
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.measure.cost import cost_report, count_params, weights_size_bytes
from kdkit.measure.metrics import predictive_kl
from kdkit.models import build_model
from kdkit.models.quantization import convert_quantized, freeze_qat, prepare_qat, state_dict_bytes

QUIET = {"progress": False, "device": "cpu"}  # int8 kernels are CPU-only; keep every model there


def _wide_net() -> nn.Sequential:
    """Enough weights (about 69k) that the int8 state dict is dominated by weights, not by per-tensor overhead."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(8, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 3))


def _output_fake_quant(qat: torch.fx.GraphModule) -> FakeQuantizeBase:
    """The fake-quant module whose output the model returns."""
    output = next(n for n in qat.graph.nodes if n.op == "output")
    return qat.get_submodule(output.args[0].target)


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    model = toy_net(hidden=64, seed=1)
    fit(Supervised(model), make_loader(toy_data(512), 32, True), None, TrainSettings(epochs=5, lr=1e-2, **QUIET))
    return model.eval()


@pytest.fixture(scope="module", params=["x86", "qnnpack"])
def distilled(request, teacher):
    """A wide QAT student after a few epochs of KD, for each backend."""
    x, _ = toy_data(512).tensors
    qat = prepare_qat(_wide_net(), x[:32], backend=request.param)
    scheme = OfflineDistillation(qat, teacher, build_terms([{"name": "kd", "T": 2.0, "alpha": 0.5}]))
    fit(scheme, make_loader(toy_data(512), 32, True), None, TrainSettings(epochs=4, lr=3e-3, keep="last", **QUIET))
    return qat


def test_prepare_fuses_and_fake_quantises_a_copy():
    torch.manual_seed(0)
    student = build_model("cnn1d", (40,), 10, width=8, depth=3, kernel=3)  # its forward branches on x.dim()
    x = torch.randn(64, 40)
    qat = prepare_qat(student, x)
    assert isinstance(qat.get_submodule("features.0.0"), ConvBnReLU1d)  # conv-bn-relu fused for QAT
    fake_quants = [m for m in qat.modules() if isinstance(m, FakeQuantizeBase)]
    assert len(fake_quants) >= 8  # inputs, every block's output, every weight, the logits
    assert all(int(m.fake_quant_enabled) == 1 and int(m.observer_enabled) == 1 for m in fake_quants)
    assert qat.training and all(p.requires_grad for p in qat.parameters())
    logits = qat(x)
    assert logits.shape == (64, 10)
    grid = logits.detach() / _output_fake_quant(qat).scale
    assert torch.allclose(grid, grid.round(), atol=1e-3)  # the logits come out on the int8 grid
    float_grid = student.train()(x).detach() / _output_fake_quant(qat).scale
    assert not torch.allclose(float_grid, float_grid.round(), atol=1e-3)  # the float model's do not
    assert isinstance(student.features[0][1], nn.BatchNorm1d)  # the student itself is untouched
    assert not {id(p) for p in student.parameters()} & {id(p) for p in qat.parameters()}


def test_distilling_a_qat_student_lowers_the_kd_loss_and_checkpoints(teacher, tmp_path):
    x, _ = toy_data(256, seed=1).tensors
    qat = prepare_qat(toy_net(hidden=32, seed=2), x[:32])
    with torch.no_grad():
        target = teacher(x)
        before = predictive_kl(target, qat.eval()(x))
    scheme = OfflineDistillation(qat, teacher, build_terms([{"name": "kd", "T": 2.0}]))  # alpha 0: KD only
    result = fit(scheme, make_loader(toy_data(512), 32, True), make_loader(toy_data(256, seed=1), 64, False),
                 TrainSettings(epochs=5, lr=1e-2, keep="last", **QUIET), tmp_path)
    with torch.no_grad():
        logits = qat.eval()(x)
        after = predictive_kl(target, logits)
    assert after < 0.3 * before, (before, after)
    assert result.history[-1]["train_kd"] < result.history[0]["train_kd"]
    assert result.history[-1]["val_agreement"] > 0.8
    assert torch.equal(Taps(qat)(x)["logits"], logits)  # logits taps see the QAT model's output
    # the GraphModule student was checkpointed; it loads into a freshly prepared model and predicts the same
    fresh = prepare_qat(toy_net(hidden=32, seed=5), x[:32])
    load_weights(fresh, tmp_path / "checkpoints" / "model.last.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), logits)


def test_int8_model_is_smaller_quantized_and_agrees(distilled):
    qat_state = copy.deepcopy(distilled.state_dict())
    int8 = convert_quantized(distilled)
    linears = [m for m in int8.modules() if isinstance(m, QuantizedLinear)]  # fused linear-relu included
    assert len(linears) == 3 and all(m.weight().dtype == torch.qint8 for m in linears)
    assert not any(isinstance(m, FakeQuantizeBase) for m in int8.modules()) and not int8.training
    # the trained QAT model is not changed by the conversion
    assert distilled.state_dict().keys() == qat_state.keys()
    assert all(torch.equal(distilled.state_dict()[k], v) for k, v in qat_state.items())
    assert any(isinstance(m, FakeQuantizeBase) for m in distilled.modules())
    ratio = state_dict_bytes(int8) / state_dict_bytes(_wide_net())
    assert ratio < 0.35, ratio  # int8 weights: about a quarter of float32, plus scales and pickling overhead
    x, _ = toy_data(1000, seed=7).tensors  # held-out inputs
    with torch.no_grad():
        agree = (int8(x).argmax(1) == distilled.eval()(x).argmax(1)).float().mean().item()
    assert agree >= 0.97, agree  # measured 0.999 for both backends; rounding differs only near ties


def test_cost_and_predict_measure_an_int8_model(distilled):
    int8 = convert_quantized(distilled)  # no nn.Parameters left: the packed weights are not parameters
    float_net = _wide_net()
    # BatchNorm is folded into the first Linear: its 512 parameters are gone, every weight and bias is counted
    assert count_params(int8) == count_params(float_net) - 2 * 256
    cost = cost_report(int8, (8,), quick=True)
    assert cost["size_bytes"] < 0.35 * weights_size_bytes(float_net)
    assert cost["latency_ms"] > 0 and cost["throughput"] > 0
    logits, labels = predict(int8, make_loader(toy_data(64), 32, False))  # device found without parameters
    assert logits.shape == (64, 3) and labels.shape == (64,)


def _ranges_and_bn_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    kinds = ("scale", "zero_point", "min_val", "max_val", "running_mean", "running_var")
    return {k: v.clone() for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in kinds}


def test_eval_forwards_leave_ranges_alone_and_freeze_stops_them(distilled):
    model = copy.deepcopy(distilled)
    x = 3 * torch.randn(64, 8)  # wider than the training data: an observer would widen its range
    state = _ranges_and_bn_stats(model)
    assert len(state) >= 20
    with torch.no_grad():
        model.eval()(x)
    assert all(torch.equal(v, state[k]) for k, v in _ranges_and_bn_stats(model).items())
    freeze_qat(model).train()
    model(x).sum().backward()  # gradients still flow to the weights
    assert all(torch.equal(v, state[k]) for k, v in _ranges_and_bn_stats(model).items())
    assert all(p.grad is not None for p in model.parameters())
    unfrozen = copy.deepcopy(distilled).train()
    unfrozen(x)
    changed = [k for k, v in _ranges_and_bn_stats(unfrozen).items() if not torch.equal(v, state[k])]
    assert any(k.endswith("running_mean") for k in changed) and any(k.endswith("max_val") for k in changed)


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 3)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a value: FX cannot trace it
            x = -x
        return self.linear(x)


def test_untraceable_model_is_one_line():
    with pytest.raises(ModelError) as err:
        prepare_qat(_Branchy(), torch.randn(4, 8))
    message = str(err.value)
    assert message.startswith("cannot trace _Branchy for quantization-aware training (") and "\n" not in message
    assert "torch.where" in message


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: prepare_qat(toy_net(), torch.randn(4, 8), backend="arm"), ConfigError,
     "unknown quantization backend 'arm'; choose one of: x86, fbgemm, qnnpack"),
    (lambda: prepare_qat(toy_net(), [[0.0] * 8]), DataError,
     "prepare_qat needs `example` as a non-empty batch tensor of inputs, e.g. next(iter(loader))[0]"),
    (lambda: convert_quantized(toy_net()), ModelError,
     "Sequential was not prepared for quantization; make it with kdkit.models.quantization.prepare_qat(student, "
     "example) and train it before converting"),
])
def test_bad_input_is_one_line(call, error, message):
    with pytest.raises(error) as err:
        call()
    assert str(err.value) == message


def _qat_config(tmp_path, **student):
    from kdkit.families.classification.config import parse_config

    return parse_config({
        "seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": "mnist1d"},
        "train": {"epochs": 1, "batch_size": 256, "lr": 3e-3, **QUIET},
        "teacher": {"name": "cnn1d", "params": {"width": 16, "depth": 2}},
        "student": {"name": "cnn1d", "params": {"width": 32, "depth": 2}, **student},
        # KD at T = 4 with alpha 0.1, given explicitly (a config without distill.losses means [{name: kd}] with the
        # loss's own defaults)
        "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}]},
    })


def test_config_quantize_trains_both_students_qat_and_measures_int8(tmp_path):
    from kdkit.families.classification.pipeline import evaluate_run, run

    result = run(_qat_config(tmp_path, quantize="x86"), quick_cost=True)
    rows = {r["role"]: r for r in result.rows}
    assert rows["student_kd"]["model"] == "distilled student (int8)"
    assert rows["student_alone"]["model"] == "student alone (int8)" and rows["teacher"]["model"] == "teacher"
    float_student = build_model("cnn1d", (40,), 10, width=32, depth=2)
    # int8 weights: the size on disk is well under the float student's (measured about 0.3x)
    assert rows["student_kd"]["size_bytes"] < 0.5 * weights_size_bytes(float_student)
    assert rows["student_kd"]["accuracy"] > 0.2  # one epoch of QAT from scratch: above chance (0.1), not more
    again = {r["role"]: r for r in evaluate_run(tmp_path / "run", quick_cost=True)}  # QAT weights reload, reconvert
    assert again["student_kd"]["accuracy"] == rows["student_kd"]["accuracy"]
    import numpy as np

    import kdkit
    from kdkit.data import build_data

    loaded = kdkit.load(tmp_path / "run")  # the int8 conversion, as measured, rebuilt without the data
    assert not any(isinstance(m, FakeQuantizeBase) for m in loaded.model.modules())
    test_x = build_data(_qat_config(tmp_path).data, 0).test.tensors[0]
    with np.load(tmp_path / "run" / "predictions.npz") as npz:
        np.testing.assert_allclose(loaded.logits(test_x), npz["test_student_kd"], atol=1e-4)
    from kdkit.report import write_report

    report = write_report(tmp_path / "run").markdown.read_text()
    assert "distilled student (int8)" in report and "student alone (int8)" in report


def test_quantize_on_the_teacher_is_one_line(tmp_path):
    from kdkit.families.classification.config import parse_config

    raw = _qat_config(tmp_path).model_dump(mode="json")
    raw["teacher"]["quantize"] = "x86"
    with pytest.raises(ConfigError, match="student only"):
        parse_config(raw)
