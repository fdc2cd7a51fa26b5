"""What a user gets by default on images: the shipped templates and demos follow their own warnings, tiny_cnn's
stated sizes are its real sizes, and the verdict's next steps for an image folder name its unlabelled/ folder."""

from pathlib import Path

import pytest

from kdkit.families.classification.config import load_config
from kdkit.families.classification.demo import DEMOS, demo_config
from kdkit.models import build_model
from kdkit.models.tiny import tiny_cnn_params
from kdkit.verdict import LOSS, NONE, SMALL_VAL, advise

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task", sorted(DEMOS))
def test_demos_do_not_pick_an_epoch_on_a_validation_split_too_small_for_it(task):
    cfg = demo_config(task=task, quick=True)  # 400 validation samples each (test_verdict's quick run checks n_val)
    assert all(cfg.settings(stage).keep == "last" for stage in ("teacher", "student", "distill"))
    assert "small_val" not in [a.code for a in advise(LOSS, {}, 0.1, 400, cfg.settings("distill").keep)]
    assert "small_val" in [a.code for a in advise(LOSS, {}, 0.1, 400, "best")]  # what keep: best would have said


def test_the_image_template_ends_at_the_last_epoch_and_follows_the_regime_maps_recipe(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "image_folder.yaml")
    assert cfg.settings("distill").keep == "last"  # a small folder's 10% validation split is under SMALL_VAL
    assert SMALL_VAL == 500
    # the founding cell's recipe: a knowing (pretrained) teacher, the map's 100k student, KD at its tuned T and
    # alpha, augmented views replayed from the teacher's cache; unlabelled/ is read when the folder has one
    assert cfg.teacher.params["weights"] == "DEFAULT" and cfg.distill.use_transfer
    student = build_model(cfg.student.name, (3, 224, 224), 2, **cfg.student.params)
    assert 90_000 <= sum(p.numel() for p in student.parameters()) <= 120_000
    kd = cfg.distill.losses[0]
    assert (kd["name"], kd["T"], kd["alpha"], cfg.distill.cached_views) == ("kd", 4.0, 0.2, 8)


@pytest.mark.parametrize("shape,classes,stated", [((3, 224, 224), 2, 100_470), ((1, 28, 28), 10, 7_894),
                                                  ((3, 32, 32), 10, 10_366)])
def test_tiny_cnn_sizes_stated_in_its_docs_are_its_real_sizes(shape, classes, stated):
    real = sum(p.numel() for p in build_model("tiny_cnn", shape, classes).parameters())
    assert real == stated == tiny_cnn_params(shape, classes)
    docs = (ROOT / "src/kdkit/models/tiny.py").read_text()
    if shape != (3, 32, 32):
        assert f"{stated:,}" in docs


@pytest.mark.parametrize("kind", [LOSS, NONE])
def test_next_steps_for_an_image_folder_point_to_unlabelled_not_transfer_size(kind):
    images = advise(kind, {}, 0.1, data="image_folder")[0].next_step
    assert "unlabelled/" in images and "transfer_size" not in images
    assert "data.transfer_size" in advise(kind, {}, 0.1, data="mnist1d")[0].next_step
