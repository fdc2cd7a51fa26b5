"""Online schemes: Deep Mutual Learning (peers teach each other) and self-distillation from an EMA teacher."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from toy import toy_data as _data
from toy import toy_net as _net

from kdkit import TrainSettings, build_terms, fit
from kdkit.data import make_loader
from kdkit.errors import ConfigError, ModelError
from kdkit.schemes.mutual import MutualLearning
from kdkit.schemes.self_distill import SelfDistillation

QUIET = {"progress": False}


def _kl(p_logits, q_logits, T):
    """T^2 * KL(softmax(p/T) || softmax(q/T)), summed over classes, averaged over rows, written out by hand."""
    p = F.softmax(p_logits / T, dim=1)
    return T**2 * (p * (F.log_softmax(p_logits / T, dim=1) - F.log_softmax(q_logits / T, dim=1))).sum(1).mean()


@pytest.mark.parametrize("k", [2, 3])
def test_mutual_loss_matches_the_formula(k):
    torch.manual_seed(0)
    nets = [_net(hidden=8 + 4 * i, bn=False) for i in range(k)]
    x, y = _data(32).tensors
    y = y.clone()
    y[:5] = -1  # unlabelled rows: out of CE
    T, alpha = 2.0, 0.3
    weighted, raw, logits = MutualLearning(nets[0], nets[1:], T=T, alpha=alpha).losses(x, y, 0)
    with torch.no_grad():
        z = [net(x) for net in nets]
        ce = [F.cross_entropy(zk[5:], y[5:]) for zk in z]
        kl = [torch.stack([_kl(z[j], z[i], T) for j in range(k) if j != i]).mean() for i in range(k)]
        total = [alpha * c + (1 - alpha) * d for c, d in zip(ce, kl, strict=True)]
    assert torch.allclose(logits, z[0])
    assert torch.allclose(weighted["student"], total[0], atol=1e-6)
    assert torch.allclose(weighted["peers"], sum(total[1:]), atol=1e-6)
    assert torch.allclose(raw["ce"], ce[0]) and torch.allclose(raw["kl"], kl[0], atol=1e-6)
    assert torch.allclose(raw["peer_ce"], torch.stack(ce[1:]).mean(), atol=1e-6)
    assert torch.allclose(raw["peer_kl"], torch.stack(kl[1:]).mean(), atol=1e-6)


def test_mutual_soft_term_moves_only_its_own_network():
    torch.manual_seed(0)
    nets = [_net(), _net(hidden=12), _net(hidden=20)]
    scheme = MutualLearning(nets[0], nets[1:], T=3.0)
    x, y = _data(32).tensors
    _, ce, kl = scheme.per_network(x, y)
    for k in range(3):
        for i, net in enumerate(nets):
            grads = torch.autograd.grad(kl[k], list(net.parameters()), allow_unused=True, retain_graph=True)
            if i == k:
                assert any(g is not None and g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None for g in grads), f"KL of network {k} reached network {i}"
    weighted, _, _ = scheme.losses(x, y, 0)
    grads = torch.autograd.grad(weighted["student"], [p for n in nets[1:] for p in n.parameters()], allow_unused=True)
    assert all(g is None for g in grads)


def test_fit_trains_student_and_peers_and_saves_the_peers(tmp_path):
    torch.manual_seed(0)
    student, peer = _net(hidden=16), _net(hidden=32)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (student, peer)]
    train, val = _data(512), _data(256, seed=1)
    s = TrainSettings(epochs=6, lr=1e-2, keep="last", **QUIET)
    result = fit(MutualLearning(student, [peer], T=2.0), make_loader(train, 32, True), make_loader(val, 64, False),
                 s, tmp_path)
    for model, old in zip((student, peer), before, strict=True):
        assert not torch.equal(model[0].weight, old["0.weight"]) and not torch.equal(model[3].weight, old["3.weight"])
    x, y = val.tensors
    with torch.no_grad():
        assert (student.eval()(x).argmax(1) == y).float().mean() > 0.85
        assert (peer.eval()(x).argmax(1) == y).float().mean() > 0.85
    last = result.history[-1]
    assert last["val_agreement"] > 0.85 and "val_predictive_kl" in last  # validation compares student and peer
    assert {"train_ce", "train_kl", "train_peer_ce", "train_peer_kl"} <= set(last)
    saved = load_file(str(tmp_path / "checkpoints" / "model.extras.safetensors"))
    assert set(saved) == {f"0.{k}" for k in peer.state_dict()}
    assert all(torch.equal(saved[f"0.{k}"], v) for k, v in peer.state_dict().items())
    student_saved = load_file(str(tmp_path / "checkpoints" / "model.last.safetensors"))
    assert set(student_saved) == set(student.state_dict())  # the student checkpoint holds the student only


def test_mutual_eval_logits_returns_the_first_peer():
    student, peers = _net(), [_net(hidden=8), _net(hidden=4)]
    scheme = MutualLearning(student, peers)
    scheme.train(False)
    assert not any(m.training for m in (student, *peers))
    x = torch.randn(10, 8)
    s, t = scheme.eval_logits(x)
    assert t is not None and torch.equal(s, student(x)) and torch.equal(t, peers[0](x))


@pytest.mark.parametrize(("peers", "kwargs", "message"), [
    (0, {}, "MutualLearning needs at least one peer network besides the student; got none"),
    (1, {"T": 0.0}, "MutualLearning temperature T must be > 0, got 0.0"),
    (1, {"T": -1.0}, "MutualLearning temperature T must be > 0, got -1.0"),
    (1, {"alpha": 1.5}, "MutualLearning alpha must be in [0, 1], got 1.5"),
])
def test_mutual_bad_config_is_one_line(peers, kwargs, message):
    with pytest.raises(ConfigError) as err:
        MutualLearning(_net(), [_net() for _ in range(peers)], **kwargs)
    assert str(err.value) == message and "\n" not in str(err.value)


def test_mutual_peer_with_other_class_count_is_one_line():
    scheme = MutualLearning(_net(c=3), [_net(c=3), _net(c=5)])
    with pytest.raises(ModelError) as err:
        fit(scheme, make_loader(_data(), 32, True), None, TrainSettings(epochs=1, **QUIET))
    assert str(err.value).startswith("peer 1 predicts 5 classes but the student 3;") and "\n" not in str(err.value)


def test_ema_teacher_follows_the_formula_exactly():
    torch.manual_seed(0)
    student, decay = _net(), 0.9
    scheme = SelfDistillation(student, decay=decay)
    initial = [p.detach().clone() for p in student.parameters()]
    optimizer = torch.optim.SGD(list(scheme.parameters()), lr=0.5)
    x, y = _data(32).tensors
    weighted, _, _ = scheme.losses(x, y, 0)
    # no optimiser step yet, so no update: the teacher is still the student's copy
    assert all(torch.equal(t, p) for t, p in zip(scheme.teacher.parameters(), initial, strict=True))
    sum(weighted.values()).backward()
    assert all(not t.requires_grad and t.grad is None for t in scheme.teacher.parameters())
    optimizer.step()
    old = [t.detach().clone() for t in scheme.teacher.parameters()]
    new = [p.detach().clone() for p in student.parameters()]
    buffers = [b.clone() for b in student.buffers()]
    assert not all(torch.equal(a, b) for a, b in zip(old, new, strict=True))
    scheme.losses(x, y, 0)  # the update for the step above happens here
    for t, o, n in zip(scheme.teacher.parameters(), old, new, strict=True):
        assert torch.equal(t, decay * o + (1 - decay) * n)
    assert all(torch.equal(t, b) for t, b in zip(scheme.teacher.buffers(), buffers, strict=True))
    assert not scheme.teacher.training and all(t.grad is None for t in scheme.teacher.parameters())


def test_ema_warmup_copies_the_student():
    student = _net()
    scheme = SelfDistillation(student, decay=0.99, warmup_epochs=1)
    x, y = _data(32).tensors
    sum(scheme.losses(x, y, 0)[0].values()).backward()
    torch.optim.SGD(student.parameters(), lr=0.5).step()
    scheme.losses(x, y, 0)
    assert all(torch.equal(t, p) for t, p in zip(scheme.teacher.parameters(), student.parameters(), strict=True))


def test_fit_with_self_distillation():
    torch.manual_seed(0)
    student = _net()
    scheme = SelfDistillation(student, build_terms([{"name": "kd", "T": 2.0, "alpha": 0.5}]), decay=0.99)
    result = fit(scheme, make_loader(_data(512), 32, True), make_loader(_data(seed=1), 64, False),
                 TrainSettings(epochs=3, lr=1e-2, keep="last", **QUIET))
    assert all("val_agreement" in r for r in result.history) and result.history[-1]["val_accuracy"] > 0.6
    assert all(not p.requires_grad and p.grad is None for p in scheme.teacher.parameters())
    assert not torch.equal(student[0].weight, scheme.teacher[0].weight)
    assert scheme.steps == 3 * 16


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1])
def test_self_distillation_decay_out_of_range(decay):
    with pytest.raises(ConfigError) as err:
        SelfDistillation(_net(), decay=decay)
    assert str(err.value) == f"SelfDistillation decay must be in (0, 1) (e.g. 0.999), got {decay}"


def test_self_distillation_refuses_feature_terms():
    terms = build_terms([{"name": "kd"}, {"name": "fitnet", "student": "2", "teacher": "2"}])
    with pytest.raises(ConfigError) as err:
        SelfDistillation(_net(), terms)
    message = str(err.value)
    assert message == "loss term 'fitnet' reads 2; SelfDistillation compares logits only (no feature paths)"
    assert "\n" not in message


def test_ema_teacher_starts_from_the_student_as_it_is_at_the_first_step():
    student = _net(seed=0)
    scheme = SelfDistillation(student, decay=0.99)
    loaded = _net(seed=1).state_dict()
    student.load_state_dict(loaded)  # e.g. pretrained weights loaded after the scheme was built
    x, y = _data(16).tensors
    scheme.train()
    scheme.losses(x, y, 0)  # (the student's own forward then moves its BatchNorm statistics on)
    for name, value in scheme.teacher.state_dict().items():
        assert torch.equal(value, loaded[name]), name
