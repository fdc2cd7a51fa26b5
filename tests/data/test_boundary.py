"""Boundary supporting samples (Heo et al. 2019): adversarial inputs pushed from a correctly classified base towards
a target class until the teacher's logit margin z_b - z_t is nearly zero, and `distill.boundary` adding them to the
distillation data."""

import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from toy import toy_data, toy_net

from kdkit import TrainSettings, fit
from kdkit.data import UNLABELLED, build_data, make_loader
from kdkit.data.boundary import TOKEN_IDS, boundary_samples
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.families.classification.config import BoundaryConfig, parse_config
from kdkit.families.classification.pipeline import check_boundary, run
from kdkit.schemes import Supervised
from kdkit.schemes.offline import OfflinePlan

D, C = 8, 3


@pytest.fixture(scope="module")
def teacher():
    net = toy_net(D, C, hidden=32, seed=0)
    fit(Supervised(net), make_loader(toy_data(512), 32, True), None,
        TrainSettings(epochs=8, lr=1e-2, progress=False))
    return net.eval()


@pytest.fixture(scope="module")
def data():
    return toy_data(512, seed=1).tensors


@pytest.fixture(scope="module")
def samples(teacher, data):
    x, y = data
    return boundary_samples(teacher, x, 200, labels=y, seed=0)


def _margins(teacher, x, base, target):
    with torch.no_grad():
        z = teacher(x)
    return z.gather(1, base[:, None])[:, 0] - z.gather(1, target[:, None])[:, 0], z


def _one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


def test_rows_are_unlabelled_inputs_of_the_right_shape(samples, data):
    x, y = samples.tensors
    assert x.shape == (200, D) and x.dtype == data[0].dtype
    assert torch.equal(y, torch.full((200,), UNLABELLED))
    assert len(set(samples.source.tolist())) == 200  # drawn without replacement while the pool lasts


def test_samples_stay_within_the_bounds(teacher, data, samples):
    x, y = data
    assert samples.tensors[0].min() >= x.min() and samples.tensors[0].max() <= x.max()  # default: the inputs' range
    tight = boundary_samples(teacher, x, 100, labels=y, bounds=(-0.5, 0.5), step_size=1.0, steps=20)
    assert tight.tensors[0].min() >= -0.5 and tight.tensors[0].max() <= 0.5
    assert tight.tensors[0].abs().max() == 0.5  # the clamp was needed: the bases reach beyond it


def test_bases_are_correctly_classified_and_target_second_is_the_runner_up(teacher, data, samples):
    x, y = data
    with torch.no_grad():
        z = teacher(x[samples.source])
    assert torch.equal(samples.base, z.argmax(1)) and torch.equal(samples.base, y[samples.source])
    assert torch.equal(samples.target, z.topk(2, dim=1).indices[:, 1])


def test_margin_moves_to_the_boundary_and_stays_on_the_base_side(teacher, data, samples):
    before, _ = _margins(teacher, data[0][samples.source], samples.base, samples.target)
    after, z = _margins(teacher, samples.tensors[0], samples.base, samples.target)  # measured anew, not reported
    assert torch.allclose(after, samples.margin_after, atol=1e-5) and torch.allclose(before, samples.margin_before)
    assert (after.abs() <= before.abs() + 1e-6).float().mean() >= 0.98
    assert after.abs().mean() < 0.1 * before.abs().mean()
    converged = after < 0.1  # the default margin_eps
    assert converged.float().mean() >= 0.9
    assert (after[converged] >= 0).float().mean() >= 0.95  # just on the base side, not across
    assert (z.argmax(1)[converged] == samples.base[converged]).float().mean() >= 0.9
    stats = samples.stats
    assert stats.num_samples == 200 and stats.margin_after == pytest.approx(float(after.mean()), abs=1e-5)
    assert stats.reached == pytest.approx(float(converged.float().mean()))
    assert stats.abs_margin_after < 0.1 * stats.abs_margin_before and 0 < stats.mean_steps <= 10
    assert "boundary samples: 200 generated" in stats.summary()


def test_one_step_of_size_one_is_the_linear_solution():
    # for a linear teacher the margin is linear in x, so step_size 1 lands exactly on z_b = z_t in one step
    torch.manual_seed(0)
    linear = nn.Linear(D, C)
    x = torch.randn(64, D)
    out = boundary_samples(linear, x, 32, steps=1, step_size=1.0, margin_eps=0.0, bounds=(-100.0, 100.0))
    assert out.margin_after.abs().max() < 1e-4 and (out.margin_before > 1e-3).all()


def test_random_target_is_another_class(teacher, data):
    x, y = data
    out = boundary_samples(teacher, x, 200, labels=y, target="random", seed=0)
    assert (out.target != out.base).all() and set(out.target.tolist()) == set(range(C))
    assert out.stats.abs_margin_after < 0.3 * out.stats.abs_margin_before


def test_seeded_and_reproducible(teacher, data):
    x, y = data
    first, again = (boundary_samples(teacher, x, 64, labels=y, target="random", seed=3) for _ in range(2))
    other = boundary_samples(teacher, x, 64, labels=y, target="random", seed=4)
    assert torch.equal(first.tensors[0], again.tensors[0]) and torch.equal(first.target, again.target)
    assert not torch.equal(first.source, other.source) and not torch.equal(first.tensors[0], other.tensors[0])


def test_teacher_is_unchanged_and_gets_its_modes_back(teacher, data):
    net = copy.deepcopy(teacher).train()  # left by the user in train mode, with trainable parameters
    net[0].weight.requires_grad_(False)  # one flag off: each flag comes back as it was
    flags = [p.requires_grad for p in net.parameters()]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    boundary_samples(net, data[0], 64, labels=data[1])
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # weights and BN running statistics


def test_a_request_beyond_the_pool(teacher, data):
    x, y = data[0][:30], data[1][:30]
    with torch.no_grad():
        pool = int((teacher(x).argmax(1) == y).sum())
    with pytest.raises(DataError) as err:  # 'second' would repeat samples exactly
        boundary_samples(teacher, x, pool + 1, labels=y)
    assert _one_line(err).startswith(f"boundary samples: num_samples {pool + 1} exceeds the {pool} inputs")
    out = boundary_samples(teacher, x, 3 * pool, labels=y, target="random")  # 'random': bases reused evenly
    counts = torch.bincount(out.source, minlength=30)
    assert len(out) == 3 * pool and out.stats.pool_size == pool and int(counts.max()) == 3
    assert int((counts > 0).sum()) == pool


def test_token_ids_are_one_line():
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4 * 5, C))
    ids = torch.randint(0, 10, (20, 5))
    with pytest.raises(ConfigError) as err:
        boundary_samples(embed, ids, 4)
    assert _one_line(err) == TOKEN_IDS == "boundary samples perturb continuous inputs (images, signals), not token ids"
    with pytest.raises(ConfigError, match="not token ids"):  # the same from a dataset of (ids, label) rows
        boundary_samples(embed, torch.utils.data.TensorDataset(ids, torch.zeros(20, dtype=torch.long)), 4)


@pytest.mark.parametrize(("kwargs", "error", "start"), [
    ({"num_samples": 0}, ConfigError, "boundary_samples needs num_samples, steps and batch_size >= 1"),
    ({"steps": 0}, ConfigError, "boundary_samples needs num_samples"),
    ({"step_size": 0.0}, ConfigError, "boundary_samples step_size must be > 0"),
    ({"margin_eps": -1.0}, ConfigError, "boundary_samples margin_eps must be >= 0"),
    ({"target": "third"}, ConfigError, "boundary_samples target must be 'second' or 'random'"),
    ({"bounds": (1.0, 0.0)}, ConfigError, "boundary_samples bounds must be (low, high)"),
    ({"labels": torch.zeros(3, dtype=torch.long)}, DataError, "boundary_samples got 512 inputs but 3 labels"),
])
def test_bad_arguments_are_one_line(teacher, data, kwargs, error, start):
    options = {"num_samples": 8, **kwargs}
    with pytest.raises(error) as err:
        boundary_samples(teacher, data[0], **options)
    assert _one_line(err).startswith(start)


def test_no_correct_base_and_a_wrong_teacher_are_one_line(teacher, data):
    x = data[0]
    with torch.no_grad():
        wrong = (teacher(x).argmax(1) + 1) % C
    with pytest.raises(DataError) as err:
        boundary_samples(teacher, x, 8, labels=wrong)
    assert "classifies none of them correctly" in _one_line(err)
    with pytest.raises(ModelError) as err:
        boundary_samples(nn.Sequential(nn.Linear(D, 1)), x, 8)
    assert _one_line(err).startswith("boundary samples need a teacher with at least two classes")


# ---- distill.boundary in a config and the pipeline

def _raw(tmp_path, boundary=None, scheme=None, **distill):
    return {
        "seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": "mnist1d"},
        "train": {"epochs": 1, "batch_size": 256, "lr": 3e-3, "progress": False},
        "teacher": {"name": "cnn1d", "params": {"width": 8, "depth": 2, "kernel": 3}},
        "student": {"name": "mlp", "params": {"hidden": [16]}},
        "distill": {"scheme": scheme or {"name": "offline"}, "boundary": boundary, **distill},
    }


def test_config_parses_with_defaults_and_round_trips(tmp_path):
    cfg = parse_config(_raw(tmp_path, {"num_samples": 100}))
    assert cfg.distill.boundary == BoundaryConfig(num_samples=100, steps=10, step_size=0.5, target="second",
                                                  margin_eps=0.1)
    assert parse_config(cfg.model_dump(mode="json")) == cfg  # a run directory's config.yaml parses again
    assert parse_config(_raw(tmp_path)).distill.boundary is None  # off by default
    for scheme in ({"name": "assistants", "assistants": [{"name": "mlp"}]}, {"name": "born_again"},
                   {"name": "multi_teacher", "teachers": [{"name": "mlp"}]}):  # chains start at the teacher too
        assert parse_config(_raw(tmp_path, {"num_samples": 10}, scheme)).distill.boundary.num_samples == 10


@pytest.mark.parametrize(("boundary", "scheme", "words"), [
    ({"num_samples": 100}, {"name": "mutual"}, "config error at distill: scheme 'mutual' does not distil the teacher"),
    ({"num_samples": 100}, {"name": "self_distill"}, "scheme 'self_distill' does not distil"),
    ({"num_samples": 100}, {"name": "data_free", "num_samples": 64}, "scheme 'data_free' does not distil"),
    ({"num_samples": 0}, None, "config error at distill.boundary.num_samples:"),
    ({"num_samples": 10, "target": "far"}, None, "config error at distill.boundary.target:"),
    ({"num_samples": 10, "stepsize": 1.0}, None, "unknown key; did you mean 'step_size'?"),
])
def test_bad_boundary_configs_are_one_line(tmp_path, boundary, scheme, words):
    with pytest.raises(ConfigError) as err:
        parse_config(_raw(tmp_path, boundary, scheme))
    assert words in _one_line(err)


def test_data_checks_come_before_anything_trains(tmp_path):
    text = build_data(parse_config({**_raw(tmp_path, {"num_samples": 10}), "data": {"name": "synthetic_reviews"}})
                      .data, 0)
    with pytest.raises(ConfigError) as err:
        check_boundary(parse_config(_raw(tmp_path, {"num_samples": 10})), text)
    assert _one_line(err) == f"config error at distill.boundary: {TOKEN_IDS}; remove distill.boundary for this data"
    with pytest.raises(ConfigError) as err:  # more bases than training inputs: refused before the teacher trains
        run(parse_config(_raw(tmp_path, {"num_samples": 10**6})), console=Console(file=io.StringIO()))
    assert _one_line(err).startswith("config error at distill.boundary.num_samples: 1000000 exceeds the 3600")
    assert not (tmp_path / "run").exists()


def test_pipeline_adds_boundary_samples_to_the_distillation_set_only(tmp_path, monkeypatch):
    seen = {}
    original = OfflinePlan.distill

    def spy(self, distill_set, *args, **kwargs):
        seen["set"] = distill_set
        return original(self, distill_set, *args, **kwargs)

    monkeypatch.setattr(OfflinePlan, "distill", spy)
    out = io.StringIO()
    cfg = parse_config(_raw(tmp_path, {"num_samples": 64, "steps": 3}, cache_teacher=True))
    run(cfg, console=Console(file=out, width=300), quick_cost=True)
    n_train = len(build_data(cfg.data, cfg.seed).train)
    distill_set = seen["set"]
    assert len(distill_set) == n_train + 64  # Indexed (cache_teacher) over train + boundary samples
    last = distill_set[len(distill_set) - 1]
    assert last["y"] == UNLABELLED and last["index"] == n_train + 63 and last["x"].shape == (40,)
    assert "boundary samples: 64 generated from" in out.getvalue()
    stats = json.loads((tmp_path / "run" / "boundary.json").read_text())
    assert stats["num_samples"] == 64 and stats["margin_after"] < stats["margin_before"]
    assert math.isfinite(stats["abs_margin_after"])
    labels = np.load(tmp_path / "run" / "predictions.npz")["train_labels"]
    assert len(labels) == n_train  # train fidelity: the training inputs only, no boundary samples


def test_tune_makes_the_samples_once_and_trains_on_them(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    import kdkit.families.classification.tune as tune_module

    made, sizes = [], []
    make, build = tune_module.boundary_set, tune_module.distillation_set
    monkeypatch.setattr(tune_module, "boundary_set", lambda *a: made.append(1) or make(*a))
    monkeypatch.setattr(tune_module, "distillation_set", lambda *a: sizes.append(len(build(*a))) or build(*a))
    raw = {**_raw(tmp_path, {"num_samples": 50, "steps": 2}), "data": {"name": "digits"},
           "teacher": {"name": "cnn2d", "params": {"width": 8, "depth": 1}},
           "tune": {"trials": 2, "prune": False}}
    cfg = parse_config(raw)
    tune_module.tune(cfg, console=Console(file=io.StringIO()))
    n_train = len(build_data(cfg.data, cfg.seed).train)
    assert made == [1] and sizes == [n_train + 50, n_train + 50]
