"""Data-free distillation: DeepInversion synthesis from a BatchNorm teacher, then KD on the synthetic set only."""

import copy

import pytest
import torch
from toy import toy_data, toy_net

from kdkit import TrainSettings, fit, predict
from kdkit.data import make_loader
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.schemes import Supervised
from kdkit.schemes.data_free import distill_data_free, synthesize
from kdkit.schemes.inversion import BNStatisticsLoss, js_divergence, total_variation

QUIET = {"progress": False}
D, C = 8, 3
SMALL = {"steps": 40, "batch_size": 48, "tv_weight": 0.0, "l2_weight": 0.0}  # flat toy inputs: no image prior


@pytest.fixture(scope="module")
def teacher():
    net = toy_net(D, C, hidden=32, seed=0)
    fit(Supervised(net), make_loader(toy_data(512), 32, True), None, TrainSettings(epochs=8, lr=1e-2, **QUIET))
    return net.eval()


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_synthetic_inputs_get_their_target_classes(teacher):
    data = synthesize(teacher, 96, (D,), C, seed=0, **SMALL)
    x, y = data.tensors
    assert x.shape == (96, D) and y.shape == (96,)
    assert torch.equal(torch.bincount(y, minlength=C), torch.full((C,), 32))  # balanced target classes
    with torch.no_grad():
        hits = (teacher(x).argmax(1) == y).float().mean().item()
    assert hits >= 0.9


def test_bn_statistics_loss_drops_during_synthesis(teacher):
    data = synthesize(teacher, 96, (D,), C, seed=0, **SMALL)
    for batch in (0, 1):
        first, last = [h for h in data.history if h["batch"] == batch]
        assert (first["step"], last["step"]) == (0, SMALL["steps"] - 1)
        assert last["bn"] < 0.5 * first["bn"] and last["ce"] < first["ce"]
    # measured independently: the first synthetic batch matches the running statistics better than the very noise
    # it started from (the first draw of the seed-0 generator)
    with BNStatisticsLoss(teacher) as bn, torch.no_grad():
        teacher(data.tensors[0][:48])
        synthetic = bn.value.item()
        bn.reset()
        teacher(torch.randn(48, D, generator=torch.Generator().manual_seed(0)))
        noise = bn.value.item()
    assert synthetic < 0.5 * noise


def test_bn_statistics_loss_matches_the_formula():
    net = toy_net(D, C, seed=1)
    bn_layer = net[1]
    bn_layer.running_mean.uniform_(-1, 1)
    bn_layer.running_var.uniform_(0.5, 2)
    x = torch.randn(20, D)
    with BNStatisticsLoss(net.eval()) as bn, torch.no_grad():
        net(x)
        value = bn.value
        h = net[0](x)
    expected = (h.mean(0) - bn_layer.running_mean).norm() + (h.var(0, unbiased=False) - bn_layer.running_var).norm()
    assert torch.allclose(value, expected)
    assert _hooks(net) == 0  # removed on exit


def test_total_variation_and_js_by_hand():
    ramp = torch.arange(5.0).repeat(2, 1)  # neighbours differ by 1 along the last axis
    assert total_variation(ramp, image=False).item() == pytest.approx(1.0)
    image = torch.zeros(1, 1, 3, 3)
    image[..., 2, :] = 2.0  # only vertical neighbours differ: 3 of 6 pairs, squared difference 4
    assert total_variation(image, image=True).item() == pytest.approx(4 * 3 / 6)
    assert total_variation(image, image=False).item() == 0.0
    a = torch.tensor([[10.0, -10.0]])
    assert js_divergence(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert js_divergence(a, -a).item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-4)


def test_teacher_is_unchanged_and_stays_frozen(teacher):
    net = copy.deepcopy(teacher).train().requires_grad_(True)  # left by the user in train mode
    before = {k: v.clone() for k, v in net.state_dict().items()}
    synthesize(net, 48, (D,), C, seed=0, **SMALL)
    assert not net.training and not any(m.training for m in net.modules())
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # weights and BN buffers
    assert _hooks(net) == 0


def test_same_seed_gives_identical_output(teacher):
    first, again = (synthesize(teacher, 48, (D,), C, seed=3, **SMALL) for _ in range(2))
    other = synthesize(teacher, 48, (D,), C, seed=4, **SMALL)
    assert torch.equal(first.tensors[0], again.tensors[0]) and torch.equal(first.tensors[1], again.tensors[1])
    assert not torch.equal(first.tensors[0], other.tensors[0])


def test_student_distilled_on_synthetic_data_only_beats_chance(teacher):
    synthetic = synthesize(teacher, 192, (D,), C, seed=0, **SMALL)
    student = toy_net(D, C, hidden=16, seed=5)
    result = distill_data_free(student, teacher, synthetic, T=4.0,
                               settings=TrainSettings(epochs=10, lr=1e-2, batch_size=32, **QUIET))
    assert len(result.history) == 10 and "train_kd" in result.history[-1]
    test = make_loader(toy_data(512, seed=1), 512, False)
    logits, labels = predict(student, test)
    accuracy = float((logits.argmax(1) == labels).mean())
    chance = float(torch.bincount(torch.as_tensor(labels)).max()) / len(labels)  # majority-class rate
    assert accuracy > chance + 0.3
    assert _hooks(student) == 0 and _hooks(teacher) == 0


def test_competition_favours_disagreement_and_leaves_the_student_alone(teacher):
    student = toy_net(D, C, hidden=16, seed=5)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    plain = synthesize(teacher, 48, (D,), C, seed=0, **SMALL)
    compete = synthesize(teacher, 48, (D,), C, seed=0, student=student, competition_weight=1.0, **SMALL)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # BN buffers included
    assert all(p.grad is None for p in student.parameters()) and student.training  # its mode is given back
    x_plain, x_compete = plain.tensors[0], compete.tensors[0]
    with torch.no_grad():
        student.eval()
        js_plain, js_compete = js_divergence(teacher(x_plain), student(x_plain)), js_divergence(
            teacher(x_compete), student(x_compete))
    assert js_compete > js_plain and compete.history[-1]["js"] > 0


def _one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


def test_teacher_without_batchnorm_is_one_line(teacher):
    plain = toy_net(D, C, bn=False, seed=0)
    with pytest.raises(ModelError) as err:
        synthesize(plain, 8, (D,), C, **SMALL)
    assert _one_line(err) == ("Sequential has no BatchNorm layer with running statistics, so the BN-statistics prior "
                              "has nothing to match; use a BatchNorm teacher or set bn_weight=0")
    data = synthesize(plain, 8, (D,), C, bn_weight=0.0, **SMALL)  # CE and priors alone still work
    assert data.tensors[0].shape == (8, D) and all(h["bn"] == 0.0 for h in data.history)


@pytest.mark.parametrize(("args", "kwargs", "error", "start"), [
    ((8, (5,), C), {}, ModelError, "the teacher cannot take inputs of shape (5,) ("),
    ((8, (D,), 4), {}, ModelError, "the teacher outputs shape (2, 3) but num_classes is 4;"),
    ((8, (), C), {}, ConfigError, "input_shape must be one sample's positive sizes"),
    ((8, (D,), C), {"batch_size": 1}, ConfigError, "synthesize batch_size must be >= 2"),
    ((0, (D,), C), {}, ConfigError, "synthesize needs num_samples, num_classes and steps >= 1"),
    ((8, (D,), C), {"tv_weight": -1.0}, ConfigError, "synthesize weights must be >= 0; got tv_weight=-1.0"),
    ((8, (D,), C), {"competition_weight": 1.0}, ConfigError, "competition_weight > 0 needs a student"),
])
def test_bad_arguments_are_one_line(teacher, args, kwargs, error, start):
    options = {**SMALL, "steps": 2, **kwargs}
    with pytest.raises(error) as err:
        synthesize(teacher, *args, **options)
    assert _one_line(err).startswith(start)


def test_empty_synthetic_set_is_one_line(teacher):
    empty = torch.utils.data.TensorDataset(torch.zeros(0, D), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError) as err:
        distill_data_free(toy_net(D, C, seed=1), teacher, empty)
    assert _one_line(err) == "the synthetic set is empty; call synthesize with num_samples >= 1"


def test_inputs_without_labels_are_distilled_as_unlabelled(teacher):
    x = synthesize(teacher, 48, (D,), C, seed=0, **SMALL).tensors[0]
    student = toy_net(D, C, hidden=16, seed=5)
    before = student[0].weight.clone()
    result = distill_data_free(student, teacher, torch.utils.data.TensorDataset(x),
                               settings=TrainSettings(epochs=1, batch_size=16, **QUIET))
    assert result.history[-1]["train_accuracy"] is None  # every row was unlabelled (-1)
    assert result.history[-1]["train_kd"] > 0 and not torch.equal(before, student[0].weight)
