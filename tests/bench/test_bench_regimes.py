"""The regime map's and the omitted-class benchmark's own logic: which rows the map trains, on which data, and the
bias that the omitted-class student gets (checked against trying every bias)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
kd_regimes = pytest.importorskip("kd_regimes")
omitted_class = pytest.importorskip("omitted_class")

from kdkit.labels import UNLABELLED  # noqa: E402


def test_the_map_has_the_cells_the_design_lists():
    rows = kd_regimes.map_rows(kd_regimes.Scale(), list(kd_regimes.STUDENTS))
    assert len(rows) == len(set(rows)) == 3 * 12
    per_student = [r for r in rows if r.student == "100k"]
    assert {(r.labels, r.teacher, r.pool) for r in per_student} == {
        (1_000, None, False), (5_000, None, False), (57_000, None, False),
        (1_000, "knowing", True), (1_000, "knowing", False), (5_000, "knowing", True), (5_000, "knowing", False),
        (57_000, "knowing", False),  # all labels: there is no pool
        (1_000, "same labels", True), (1_000, "same labels", False),
        (5_000, "same labels", True), (5_000, "same labels", False)}
    others = kd_regimes.method_rows(kd_regimes.Scale(), ["KD", "DKD"])
    assert {(r.student, r.labels, r.teacher, r.pool, r.method) for r in others} == {
        ("100k", 1_000, "knowing", True, "DKD"), ("100k", 1_000, "knowing", False, "DKD")}
    assert kd_regimes.training_order(rows + others)[0].labels == 1_000


def test_every_row_trains_for_the_same_number_of_samples():
    data = kd_regimes.Data(torch.zeros(1), torch.zeros(1), np.arange(57_000), {}, None, None)
    samples = {(r.labels, r.pool): kd_regimes.row_epochs(r, data, 2) * (57_000 if r.pool else r.labels)
               for r in kd_regimes.map_rows(kd_regimes.Scale(), ["3k"])}
    assert samples == {(1_000, False): 114_000, (1_000, True): 114_000, (5_000, False): 110_000,
                       (5_000, True): 114_000, (57_000, False): 114_000}


@pytest.fixture(scope="module")
def quick_data():
    return kd_regimes.load_data(kd_regimes.Scale(1_200, (100, 400, 1_200), 500))


def test_pool_rows_hide_the_labels_outside_the_budget_and_share_their_inputs(quick_data):
    d = quick_data
    assert set(d.labelled[100]) <= set(d.full) and len(d.full) == 1_200
    assert np.bincount(d.y[torch.as_tensor(d.labelled[100])].numpy()).tolist() == [10] * 10  # stratified
    pooled, everything = d.pooled_set(100), d.pooled_set(1_200)
    assert torch.equal(pooled.tensors[0], everything.tensors[0])  # one store of teacher outputs serves both
    known = pooled.tensors[1] != UNLABELLED
    assert int(known.sum()) == 100
    assert torch.equal(pooled.tensors[1][known], d.y[torch.as_tensor(d.labelled[100])])
    assert bool((everything.tensors[1] != UNLABELLED).all())


def test_cached_views_replace_the_plain_cache_in_the_distill_section(tmp_path):
    kd = kd_regimes.METHODS["KD"]
    plain = kd_regimes.distill_section(kd, 0, tmp_path)
    views = kd_regimes.distill_section(kd, 8, tmp_path)
    assert plain["cache_teacher"] and plain["train"]["augment"] == [] and "cached_views" not in plain
    assert not views["cache_teacher"] and views["cached_views"] == 8
    assert views["train"]["augment"] == kd_regimes.AUGMENT


def _accuracy_with_bias(logits: np.ndarray, labels: np.ndarray, cls: int, bias: float) -> float:
    shifted = logits.copy()
    shifted[:, cls] += bias
    return float((shifted.argmax(1) == labels).mean())


def test_the_omitted_class_bias_is_the_best_one_on_the_data():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, c = int(rng.integers(5, 60)), int(rng.integers(2, 6))
        logits, labels, cls = rng.normal(size=(n, c)) * 3, rng.integers(0, c, n), int(rng.integers(0, c))
        bias = omitted_class.best_bias(logits, labels, cls)
        # predictions change only where the shifted logit crosses another: try just below and above every crossing
        crossings = (np.delete(logits, cls, axis=1) - logits[:, [cls]]).ravel()
        tries = np.concatenate([crossings - 1e-6, crossings + 1e-6])
        best = max(_accuracy_with_bias(logits, labels, cls, b) for b in tries)
        assert _accuracy_with_bias(logits, labels, cls, bias) == pytest.approx(best), trial
