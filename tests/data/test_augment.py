"""Batch augmentation in the training step: one view per sample for teacher and student (Beyer et al. 2022),
exact MixUp/CutMix/crop/flip, MixedTarget losses, reproducible draws and the config refusals."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
from kdkit.data import make_loader
from kdkit.data.augment import (
    CutMix,
    HorizontalFlip,
    MixedTarget,
    MixUp,
    RandomCrop,
    augment_generator,
    build_augment,
)
from kdkit.errors import ConfigError, DataError
from kdkit.families.classification.config import parse_config
from kdkit.losses import DKD, KDLoss, build_loss, token_kd_loss
from kdkit.losses.kd import hard_label_ce
from kdkit.schemes.data_free import distill_data_free
from kdkit.trainer.loop import check_labels

QUIET = {"progress": False}
SPECS = [{"name": "crop", "padding": 2}, {"name": "flip"}, {"name": "mixup", "alpha": 0.2}]
SHAPES = [(6, 12), (6, 2, 12), (6, 3, 8, 10)]  # signals (N, L), (N, C, L) and images (N, C, H, W)


def _signals(n: int = 96, c: int = 2, length: int = 12, classes: int = 3, seed: int = 0) -> TensorDataset:
    """Signals (N, C, L) whose class is the channel-0 segment with the largest mean."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, length, generator=g)
    return TensorDataset(x, x[:, 0].view(n, classes, -1).mean(-1).argmax(1))


def _net(c: int = 2, length: int = 12, classes: int = 3, hidden: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * length, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def _record_inputs(model: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen


def _generators(seed: int = 0) -> tuple[torch.Generator, torch.Generator]:
    """Two generators in the same state: one for the op, one to redraw its parameters."""
    g = torch.Generator().manual_seed(seed)
    twin = torch.Generator()
    twin.set_state(g.get_state())
    return g, twin


def _expected_views(data: TensorDataset, specs: list[dict], seed: int, epochs: int, batch: int) -> list[torch.Tensor]:
    """The views fit should make: the same loader order, the same ops, the generator fit seeds from `seed`."""
    loader, augment, g = make_loader(data, batch, True), build_augment(specs), augment_generator(seed)
    return [augment(x, y, g)[0] for _ in range(epochs) for x, y in loader]


# (a) function matching: the teacher and the student get the same, augmented, tensor in every step


def test_teacher_and_student_receive_the_identical_augmented_batch():
    data = _signals()
    teacher = _net(hidden=32, seed=1)
    fit(Supervised(teacher), make_loader(data, 32, True), None, TrainSettings(epochs=1, **QUIET))
    student = _net(hidden=8, seed=2)
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 4, "alpha": 0.5}]))
    to_teacher, to_student = _record_inputs(teacher), _record_inputs(student)
    fit(scheme, make_loader(data, 32, True), None, TrainSettings(epochs=2, augment=SPECS, seed=5, **QUIET))
    # the student's first call is fit's one-row probe of the number of classes (the teacher is not probed), then
    # one call of each per step
    assert len(to_teacher) + 1 == len(to_student) == 1 + 2 * 3
    assert all(torch.equal(t, s) for t, s in zip(to_teacher, to_student[1:], strict=True))
    expected = _expected_views(data, SPECS, seed=5, epochs=2, batch=32)
    assert all(torch.equal(s, e) for s, e in zip(to_student[1:], expected, strict=True))
    raw = [x for _ in range(2) for x, _ in make_loader(data, 32, True)]
    assert not any(torch.equal(s, r) for s, r in zip(to_student[1:], raw, strict=True))  # views, not raw inputs


# (b) MixUp and the cross-entropy of mixed labels


def test_mixup_is_exactly_the_convex_combination_with_the_drawn_partner():
    x, y = torch.randn(16, 3, 5, 5), torch.arange(16) % 4
    g, twin = _generators(7)
    out, target = MixUp(alpha=0.4)(x, y, g)
    lam, perm = MixUp(alpha=0.4).draw(x, twin)
    assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(16)) and not torch.equal(perm, torch.arange(16))
    assert torch.equal(out, lam * x + (1.0 - lam) * x[perm])
    assert isinstance(target, MixedTarget) and target.lam == lam
    assert torch.equal(target.a, y) and torch.equal(target.b, y[perm])


def test_mixup_weight_follows_beta_alpha_alpha():
    alpha, g, x = 0.2, torch.Generator().manual_seed(0), torch.zeros(2, 3)
    lams = torch.tensor([MixUp(alpha).draw(x, g)[0] for _ in range(4000)])
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); alpha = 0.2 puts most of the mass near 0 and 1
    assert abs(lams.mean().item() - 0.5) < 0.03
    assert abs(lams.var().item() - 1.0 / (4 * (2 * alpha + 1))) < 0.02


def test_cross_entropy_of_a_mixed_target_is_the_weighted_sum_over_labelled_rows():
    torch.manual_seed(0)
    logits = torch.randn(10, 4, requires_grad=True)
    a = torch.tensor([0, 1, 2, 3, -1, 0, 1, 2, 3, -1])
    b = torch.tensor([3, -1, 1, 0, 2, -1, -1, 3, 0, 1])
    lam = 0.3

    def ce(t: torch.Tensor) -> torch.Tensor:  # mean over the labelled rows, written out
        rows = t != -1
        return -logits[rows].log_softmax(1).gather(1, t[rows, None]).mean()

    expected = lam * ce(a) + (1 - lam) * ce(b)
    mixed = MixedTarget(a, b, lam)
    torch.testing.assert_close(hard_label_ce(logits, mixed), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(build_loss("ce")(logits, None, mixed), expected, rtol=1e-6, atol=1e-7)
    teacher = torch.randn(10, 4)
    kd = KDLoss(T=2.0, alpha=0.5)(logits, teacher, mixed)
    soft = F.kl_div((logits / 2).log_softmax(1), (teacher / 2).log_softmax(1), reduction="batchmean",
                    log_target=True) * 4
    torch.testing.assert_close(kd, 0.5 * expected + 0.5 * soft, rtol=1e-6, atol=1e-7)
    unlabelled = MixedTarget(torch.full((10,), -1), torch.full((10,), -1), lam)
    assert hard_label_ce(logits, unlabelled).item() == 0.0


def test_dkd_keeps_a_shared_label_and_takes_the_teachers_class_for_two_labels():
    torch.manual_seed(0)
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    y, other = torch.arange(8) % 5, (torch.arange(8) + 1) % 5
    dkd = DKD()
    torch.testing.assert_close(dkd(s, t, MixedTarget(y, y.clone(), 0.3)), dkd(s, t, y))
    torch.testing.assert_close(dkd(s, t, MixedTarget(y, other, 0.3)), dkd(s, t, None))  # teacher's top class


def test_token_kd_refuses_mixed_labels_and_check_labels_reads_both_parts():
    with pytest.raises(ConfigError, match="token_kd"):
        token_kd_loss(torch.randn(4, 3), torch.randn(4, 3), MixedTarget(torch.zeros(4).long(), torch.ones(4).long(),
                                                                        0.5), alpha=0.5)
    check_labels(MixedTarget(torch.tensor([0, -1]), torch.tensor([2, 1]), 0.5), 3)
    with pytest.raises(DataError, match="label 3"):
        check_labels(MixedTarget(torch.tensor([0, 1]), torch.tensor([1, 3]), 0.5), 3)


# (c) CutMix


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cutmix_pastes_one_box_from_the_partner_and_lam_is_the_kept_area(shape):
    n, spatial = shape[0], shape[2:] if len(shape) > 2 else shape[1:]
    # every sample is filled with its own number, so each position shows which sample it came from
    x = torch.arange(n, dtype=torch.float32).view(n, *[1] * (len(shape) - 1)).expand(shape).clone()
    y = torch.arange(n)
    for seed in range(20):
        g, twin = _generators(seed)
        out, target = CutMix(alpha=1.0)(x, y, g)
        box, perm, lam = CutMix(alpha=1.0).draw(x, twin)
        region = (..., *(slice(lo, hi) for lo, hi in box))
        inside = torch.zeros(spatial, dtype=torch.bool)
        inside[tuple(slice(lo, hi) for lo, hi in box)] = True
        expected = torch.where(inside, x[perm], x)
        assert torch.equal(out, expected)
        assert torch.equal(out[region], x[perm][region])
        assert lam == pytest.approx(1.0 - inside.sum().item() / math.prod(spatial), abs=0)
        assert torch.equal(target.a, y) and torch.equal(target.b, y[perm]) and target.lam == lam
        moved = perm != torch.arange(n)  # samples whose partner is another sample: the pasted share is visible
        for i in torch.nonzero(moved).flatten().tolist():
            share = (out[i] != x[i]).float().mean().item()
            assert share == pytest.approx(1.0 - lam, abs=1e-6)
    assert CutMix(1.0).draw(x, torch.Generator().manual_seed(1))[2] < 1.0  # some boxes are not empty


# (d) crop and flip


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_crop_is_a_shifted_window_of_the_padded_input(shape, mode):
    torch.manual_seed(0)
    x, pad = torch.randn(shape), 2
    out, y = RandomCrop(pad, mode)(x, torch.arange(shape[0]), torch.Generator().manual_seed(3))
    assert out.shape == x.shape and torch.equal(y, torch.arange(shape[0]))
    spatial = len(shape) - 2 if len(shape) > 2 else 1
    flat = x.unsqueeze(1) if x.dim() == 2 else x
    padded = F.pad(flat, [pad] * (2 * spatial), mode="reflect" if mode == "reflect" else "constant")
    padded = padded.squeeze(1) if x.dim() == 2 else padded
    sizes = x.shape[-spatial:]
    found = []
    for i in range(len(x)):  # search every offset for the window the output shows
        hits = [o for o in _offsets(spatial, 2 * pad + 1)
                if torch.equal(out[i], padded[i][(..., *(slice(a, a + s) for a, s in zip(o, sizes, strict=True)))])]
        assert hits, f"sample {i} is no window of its padded input"
        found.append(hits[0])
    assert len(set(found)) > 1  # offsets are drawn per sample


def _offsets(dims: int, count: int) -> list[tuple[int, ...]]:
    grids = torch.meshgrid(*[torch.arange(count)] * dims, indexing="ij")
    return [tuple(int(g.flatten()[k]) for g in grids) for k in range(count**dims)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_crop_without_padding_and_flip_with_p_0_are_identities_flip_with_p_1_reverses(shape):
    x, g = torch.randn(shape), torch.Generator().manual_seed(0)
    assert torch.equal(RandomCrop(0)(x, None, g)[0], x)
    assert torch.equal(HorizontalFlip(p=0.0)(x, None, g)[0], x)
    assert torch.equal(HorizontalFlip(p=1.0)(x, None, g)[0], x.flip(-1))


def test_flip_with_p_half_flips_about_half_of_the_samples():
    x = torch.arange(5.0).repeat(400, 1)
    out, _ = HorizontalFlip(0.5)(x, None, torch.Generator().manual_seed(0))
    flipped = out[:, 0] == 4.0
    assert 160 < int(flipped.sum()) < 240
    assert torch.equal(out[flipped], x[flipped].flip(-1)) and torch.equal(out[~flipped], x[~flipped])


# (e) reproducibility


def _views_of_a_fit(seed: int, specs: list[dict] = SPECS) -> list[torch.Tensor]:
    model = _net(seed=0)
    seen = _record_inputs(model)
    fit(Supervised(model), make_loader(_signals(), 32, True), None,
        TrainSettings(epochs=2, augment=specs, seed=seed, **QUIET))
    return seen[1:]  # without the probe


def test_same_seed_same_views_different_seed_different_views():
    first, again, other = _views_of_a_fit(3), _views_of_a_fit(3), _views_of_a_fit(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_student_alone_and_a_distilled_student_see_the_same_views():
    alone = _views_of_a_fit(9)
    student = _net(hidden=8, seed=2)
    seen = _record_inputs(student)
    scheme = OfflineDistillation(student, _net(hidden=32, seed=1), build_terms([{"name": "kd", "alpha": 0.5}]))
    fit(scheme, make_loader(_signals(), 32, True), None, TrainSettings(epochs=2, augment=SPECS, seed=9, **QUIET))
    assert all(torch.equal(a, b) for a, b in zip(alone, seen[1:], strict=True)) and len(alone) == len(seen) - 1


# (f) config


BASE = {"teacher": {"name": "mlp"}, "student": {"name": "mlp"}}


def test_config_takes_augment_per_stage():
    cfg = parse_config({**BASE, "train": {"augment": [{"name": "mixup", "alpha": 0.2}]},
                        "distill": {"train": {"augment": [{"name": "crop", "padding": 4}, {"name": "flip"}]}}})
    assert cfg.settings("teacher").augment == [{"name": "mixup", "alpha": 0.2}]
    assert [op["name"] for op in cfg.settings("distill").augment] == ["crop", "flip"]
    assert parse_config(BASE).settings("distill").augment == []


@pytest.mark.parametrize(("raw", "words"), [
    ({"train": {"augment": [{"name": "mixpu"}]}},
     "config error at train.augment: unknown augmentation 'mixpu'; choose one of: crop, cutmix, flip, mixup"),
    ({"distill": {"train": {"augment": [{"name": "crop", "pad": 4}]}}},
     "config error at distill.train.augment: augmentation 'crop' got unknown argument(s) ['pad']; it accepts: "
     "['mode', 'padding']"),
    ({"train": {"augment": [{"name": "mixup", "alpha": 0}]}}, "alpha must be a number > 0"),
    ({"train": {"augment": [{"name": "crop", "mode": "wrap"}]}}, "mode must be reflect or zeros"),
    ({"train": {"augment": [{"name": "mixup"}, {"name": "cutmix"}]}}, "at most one of mixup, cutmix"),
    ({"distill": {"cache_teacher": True, "train": {"augment": [{"name": "flip"}]}}},
     "config error at distill.cache_teacher: teacher outputs cannot be cached while distill.train.augment changes "
     "the inputs every epoch; set distill.cache_teacher: false"),
    ({"train": {"augment": [{"name": "crop"}]}, "distill": {"cache_teacher": True}},
     "while train.augment changes"),
    ({"train": {"augment": [{"name": "flip"}]}, "distill": {"losses": [{"name": "token_kd"}]}},
     "not token ids"),
])
def test_bad_augment_configs_are_one_line(raw, words):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **raw})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_augment_only_for_the_teacher_does_not_block_the_cache():
    parse_config({**BASE, "teacher": {"name": "mlp", "train": {"augment": [{"name": "mixup"}]}},
                  "distill": {"cache_teacher": True}})


def test_token_ids_per_token_labels_and_a_teacher_cache_are_refused_with_one_line():
    ids = TensorDataset(torch.randint(0, 10, (8, 5)), torch.randint(0, 2, (8,)))
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(20, 2))
    with pytest.raises(ConfigError, match=r"augmentation applies to float inputs \(images, signals\), not token ids"):
        fit(Supervised(model), make_loader(ids, 4, True), None, TrainSettings(epochs=1, augment=SPECS, **QUIET))
    with pytest.raises(ConfigError, match="one label per sample"):
        MixUp()(torch.randn(4, 6), torch.zeros(4, 6).long(), torch.Generator())
    scheme = OfflineDistillation(_net(seed=2), _net(seed=1), build_terms([{"name": "kd"}]), cache_size=96)
    with pytest.raises(ConfigError, match="cannot be cached"):
        fit(scheme, make_loader(_signals(), 32, True), None, TrainSettings(epochs=1, augment=SPECS, **QUIET))


# (g) 1-D signals and images alike


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("spec", [{"name": "crop", "padding": 3}, {"name": "crop", "padding": 2, "mode": "zeros"},
                                  {"name": "flip"}, {"name": "mixup"}, {"name": "cutmix"}], ids=lambda s: s["name"])
def test_every_op_keeps_the_shape_of_signals_and_images(shape, spec):
    x, y = torch.randn(shape), torch.arange(shape[0]) % 3
    out, target = build_augment([spec])(x, y, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)
    labels = [target.a, target.b] if isinstance(target, MixedTarget) else [target]
    assert all(t.shape == y.shape for t in labels)


# (h) end to end


def test_supervised_and_distilled_students_train_with_mixup():
    data, val = _signals(192), _signals(64, seed=1)
    mixup = [{"name": "mixup", "alpha": 0.2}]
    teacher = _net(hidden=32, seed=1)
    result = fit(Supervised(teacher), make_loader(data, 32, True), make_loader(val, 64, False),
                 TrainSettings(epochs=6, lr=1e-2, augment=mixup, **QUIET))
    losses = [r["train_loss"] for r in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert all(r["train_accuracy"] is not None for r in result.history)
    scheme = OfflineDistillation(_net(hidden=8, seed=2), teacher, build_terms([{"name": "kd", "T": 4, "alpha": 0.5}]))
    result = fit(scheme, make_loader(data, 32, True), make_loader(val, 64, False),
                 TrainSettings(epochs=6, lr=1e-2, augment=[*SPECS[:2], {"name": "cutmix"}], **QUIET))
    losses = [r["train_loss"] for r in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert result.history[-1]["val_accuracy"] > 1 / 3


def test_data_free_distillation_with_augment_does_not_cache_the_teacher():
    teacher = _net(hidden=32, seed=1)
    synthetic = TensorDataset(torch.randn(64, 2, 12), torch.arange(64) % 3)
    result = distill_data_free(_net(hidden=8, seed=2), teacher, synthetic,
                               settings=TrainSettings(epochs=1, augment=SPECS, **QUIET))
    assert math.isfinite(result.history[-1]["train_loss"])
