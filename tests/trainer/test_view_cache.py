"""Cached views (distill.cached_views; Shen & Xing 2022): a replayed view is the live augmentation with the same draws,
bit for bit; the stored teacher outputs are a live forward on that view (to float16 rounding); a run is reproducible
and a second one reads the store from disk."""

import copy
import json

import pytest
import torch
from image_folders import make_folder
from torch import nn
from torch.utils.data import ConcatDataset, TensorDataset

from kdkit.data.augment import Compose, CutMix, HorizontalFlip, MixUp, RandomCrop
from kdkit.data.image_folder import ImageTensors
from kdkit.data.loaders import make_loader
from kdkit.errors import ConfigError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import run as run_pipeline
from kdkit.labels import UNLABELLED, MixedTarget
from kdkit.schemes import OfflineDistillation
from kdkit.terms import build_terms
from kdkit.trainer.loop import fit
from kdkit.trainer.settings import TrainSettings
from kdkit.trainer.view_cache import ReplayedViews, expand_top_k, replay_views

AUGMENT = [{"name": "crop", "padding": 2}, {"name": "flip"}]


def _images(n: int = 12, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("mix", [MixUp(0.4), CutMix(1.0)])
def test_a_replayed_view_is_the_live_augmentation_bit_for_bit(mix):
    data = _images()
    spec = AUGMENT + [{"name": type(mix).__name__.lower(), "alpha": mix.alpha}]
    views = ReplayedViews(data, spec, views=3)
    index = torch.tensor([5, 0, 9, 3, 7])
    x, y = data.tensors[0][index], data.tensors[1][index]
    live_ops = Compose([RandomCrop(2), HorizontalFlip(), mix])
    g = torch.Generator().manual_seed(11)
    replica = torch.Generator()
    replica.set_state(g.get_state())
    offsets = live_ops.ops[0].draw(x, replica)  # the live ops' own draws, read from a copy of their generator
    flips = live_ops.ops[1].draw(x, replica)
    mixing = live_ops.ops[2].draw(x, replica)
    live_x, live_y = live_ops(x, y, g)
    d = views.renderer.draws  # record those draws as view 1 of the batch's samples
    d[0]["offsets"][index, 1] = offsets
    d[1]["flip"][index, 1] = flips
    perm, lam = (mixing[1], mixing[0]) if isinstance(mix, MixUp) else (mixing[1], mixing[2])
    d[2]["partner"][index, 1] = index[perm]
    d[2]["lam"][index, 1] = lam
    if isinstance(mix, CutMix):
        d[2]["box"][index, 1] = torch.tensor(mixing[0])
    replay_x, replay_y = views.renderer.render(index, torch.ones(len(index), dtype=torch.long))
    assert torch.equal(replay_x, live_x)
    assert torch.equal(replay_y.a, live_y.a) and torch.equal(replay_y.b, live_y.b)
    assert torch.allclose(replay_y.lam, torch.full((len(index),), lam, dtype=torch.float32))


def test_an_image_folders_flip_and_shift_replay_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 10, 12), dtype=torch.uint8, generator=g)
    live = ImageTensors(images, torch.arange(6) % 2, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3], flip=True, crop=3)
    views = ReplayedViews(live, None, views=2)
    assert [type(op).__name__ for op in views.renderer.ops] == ["HorizontalFlip", "RandomCrop"]
    for i in range(6):
        torch.manual_seed(100 + i)  # what __getitem__ will draw from the global generator: flip, then the offsets
        flip = bool(torch.rand(()) < 0.5)
        offsets = torch.randint(0, 7, (2,))
        torch.manual_seed(100 + i)
        expected, label = live[i]
        views.renderer.draws[0]["flip"][i, 0] = flip
        views.renderer.draws[1]["offsets"][i, 0] = offsets
        x, y = views.renderer.render(torch.tensor([i]), torch.tensor([0]))
        assert torch.equal(x[0], expected) and int(y[0]) == int(label)


def test_unlabelled_samples_and_concatenated_parts_keep_their_order():
    data = ConcatDataset([_images(5, seed=1), TensorDataset(torch.rand(4, 1, 8, 8))])
    views = ReplayedViews(data, AUGMENT, views=2)
    batch = views[torch.tensor([7, 1, 5, 0])]
    assert batch["y"][0] == UNLABELLED and batch["y"][2] == UNLABELLED
    assert batch["y"][1] == data[1][1] and batch["y"][3] == data[0][1]


def _scheme_and_views(tmp_path, top_k=None, views=3):
    data = _images()
    replayed = ReplayedViews(data, AUGMENT + [{"name": "mixup"}], views=views, top_k=top_k, seed=4)
    scheme = OfflineDistillation(_teacher(), _teacher(), build_terms([{"name": "kd", "alpha": 0.1}]))
    replay_views(scheme, replayed, None, TrainSettings(batch_size=8), tmp_path / "cache")
    return scheme, replayed


def test_stored_teacher_outputs_equal_a_live_forward_on_each_view_and_a_rerun_reads_them(tmp_path):
    scheme, views = _scheme_and_views(tmp_path)
    assert not scheme.cache.info()["reused"]
    index = torch.arange(12).repeat_interleave(3)
    view = torch.arange(3).repeat(12)
    with torch.no_grad():
        live = torch.log_softmax(scheme.teacher(views.renderer.render(index, view)[0]), -1)
    stored = views.outputs["log_probs"][index, view]
    assert stored.dtype == torch.float16
    assert torch.allclose(stored.float(), live, rtol=2**-10, atol=1e-6)  # float16 rounding
    views.set_epoch(3)
    picked = views.picked[:12]
    assert torch.equal(scheme.cache.get(torch.arange(12))["logits"], stored.view(12, 3, -1)[torch.arange(12),
                                                                                            picked].float())
    again, views2 = _scheme_and_views(tmp_path)  # a second run: the file, not the teacher
    assert again.cache.info()["reused"] and torch.equal(views2.outputs["log_probs"], views.outputs["log_probs"])


def test_top_k_keeps_the_largest_log_probabilities_and_spreads_the_rest(tmp_path):
    _, full = _scheme_and_views(tmp_path, views=2)
    _, top = _scheme_and_views(tmp_path, top_k=2, views=2)
    index = torch.arange(12)
    exact, approx = full.teacher_logits(index), top.teacher_logits(index)
    assert torch.allclose(approx.exp().sum(-1), torch.ones(12), atol=1e-3)
    kept = exact.topk(2, -1).indices
    assert torch.allclose(approx.gather(1, kept), exact.gather(1, kept), atol=1e-3)
    assert torch.allclose(expand_top_k(torch.log(torch.tensor([[0.5, 0.3]])), torch.tensor([[2, 0]]), 4),
                          torch.log(torch.tensor([[0.3, 0.1, 0.5, 0.1]])), rtol=1e-6)


def _distil(tmp_path, seed=0):
    data = _images(24)
    replayed = ReplayedViews(data, AUGMENT + [{"name": "cutmix"}], views=4, seed=seed)
    student = _teacher()
    scheme = OfflineDistillation(student, _teacher(), build_terms([{"name": "kd", "alpha": 0.3}]))
    s = TrainSettings(epochs=3, batch_size=8, seed=seed, progress=False, augment=AUGMENT + [{"name": "cutmix"}])
    replay_views(scheme, replayed, None, s, tmp_path / "cache")
    fit(scheme, make_loader(replayed, 8, shuffle=True, seed=seed), None, s)
    return {k: v.clone() for k, v in student.state_dict().items()}, replayed


def test_a_run_with_cached_views_is_reproducible_and_picks_views_per_epoch(tmp_path):
    first, views = _distil(tmp_path)
    second, _ = _distil(tmp_path)
    assert all(torch.equal(first[k], second[k]) for k in first)
    picks = []
    for epoch in range(3):
        views.set_epoch(epoch)
        picks.append(views.picked.clone())
    assert not torch.equal(picks[0], picks[1]) and set(torch.cat(picks).tolist()) == {0, 1, 2, 3}


def test_replayed_mixed_labels_weigh_each_rows_cross_entropy_by_its_own_lam():
    from kdkit.losses.kd import hard_label_ce

    logits = torch.randn(4, 3)
    a, b = torch.tensor([0, 1, 2, UNLABELLED]), torch.tensor([1, 1, 0, 2])
    lam = torch.tensor([0.2, 0.9, 0.5, 0.7])
    nll = -torch.log_softmax(logits, 1)
    expected = (lam[:3] * nll[torch.arange(3), a[:3]]).mean() + ((1 - lam) * nll[torch.arange(4), b]).mean()
    assert hard_label_ce(logits, MixedTarget(a, b, lam)).item() == pytest.approx(expected.item(), rel=1e-6)
    same = hard_label_ce(logits, MixedTarget(a, b, torch.full((4,), 0.3)))  # one lam for all: the batch formula
    assert same.item() == pytest.approx(hard_label_ce(logits, MixedTarget(a, b, 0.3)).item(), rel=1e-6)


def test_an_image_folder_with_random_crop_distils_from_cached_views_and_reuses_them(tmp_path):
    make_folder(tmp_path / "data", {"train": 6, "test": 3})
    raw = {"output_dir": str(tmp_path / "run"), "seed": 1,
           "data": {"name": "image_folder", "root": str(tmp_path / "data"), "image_size": 16, "augment": True,
                    "random_crop": 2, "val_fraction": 0.25},
           "teacher": {"name": "small_cnn"}, "student": {"name": "tiny_cnn"},
           "train": {"epochs": 2, "batch_size": 4, "progress": False},
           "distill": {"cached_views": 2, "cache_dir": str(tmp_path / "cache"), "losses": [{"name": "kd"}]}}
    run_pipeline(parse_config(raw), quick_cost=True)
    cache = json.loads((tmp_path / "run" / "results.json").read_text())["training"]["teacher_cache"]
    assert cache["train"]["views"] == 2 and not cache["train"]["reused"]
    again = copy.deepcopy(raw)
    again["output_dir"], again["student"] = str(tmp_path / "run2"), {"name": "tiny_cnn", "params": {"width": 4}}
    run_pipeline(parse_config(again), quick_cost=True)
    assert json.loads((tmp_path / "run2" / "results.json").read_text())["training"]["teacher_cache"]["train"]["reused"]


@pytest.mark.parametrize("distill,train,words", [
    ({"cached_views": 4, "cache_teacher": True}, AUGMENT, "replaces cache_teacher"),
    ({"cached_views": 4}, [], "nothing augments"),
    ({"cached_views": 4, "losses": [{"name": "fitnet", "student": "0", "teacher": "0"}]}, AUGMENT, "reads the"),
    ({"cached_views": 4, "scheme": {"name": "mutual"}}, AUGMENT, "only scheme offline"),
    ({"cached_top_k": 3}, AUGMENT, "applies to cached_views"),
])
def test_cached_views_refuses_what_it_cannot_replay_in_one_line(distill, train, words):
    raw = {"data": {"name": "mnist1d"}, "teacher": {"name": "mlp"}, "student": {"name": "mlp"},
           "train": {"augment": train}, "distill": distill}
    with pytest.raises(ConfigError, match=words):
        parse_config(raw)
