"""The teacher cache kept on disk (kdkit.trainer.teacher_cache): keyed by the teacher's weights, the data and the input
view, so stale outputs are never read; reused by a later run without a single teacher forward and with the same
student weights; a damaged file is rebuilt with a warning; validation logits computed once."""

import json
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from toy import toy_data, toy_net

from kdkit import OfflineDistillation, TrainSettings, build_terms, fit
from kdkit.data import Indexed, make_loader
from kdkit.trainer.teacher_cache import PersistentTeacherCache, persist_teacher_cache

QUIET = {"progress": False, "device": "cpu"}
KD = [{"name": "kd", "T": 2.0, "alpha": 0.5}]


def _counting(teacher: nn.Module) -> list[int]:
    """The batch size of every forward of `teacher`, recorded by a hook."""
    calls: list[int] = []
    teacher.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    return calls


def _scheme(teacher, train, val, cache_dir, settings=None, terms=KD, student_seed=1):
    student = toy_net(hidden=4, bn=False, seed=student_seed)
    scheme = OfflineDistillation(student, teacher, build_terms(terms), cache_size=len(train))
    persist_teacher_cache(scheme, train, val, settings or TrainSettings(**QUIET), cache_dir)
    return scheme


def _distil(teacher, train, val, cache_dir, epochs=2, student_seed=1, settings=None):
    """One cached distillation from a fixed student start; the student's weights and the scheme after it."""
    s = settings or TrainSettings(epochs=epochs, **QUIET)
    scheme = _scheme(teacher, train, val, cache_dir, s, student_seed=student_seed)
    fit(scheme, make_loader(train, 32, shuffle=True, seed=0), make_loader(val, 64, shuffle=False), s)
    scheme.close()
    return {k: v.clone() for k, v in scheme.student.state_dict().items()}, scheme


@pytest.fixture
def setup(tmp_path):
    teacher = toy_net(hidden=32, bn=False, seed=0).eval()
    return teacher, Indexed(toy_data(200)), toy_data(50, seed=1), tmp_path / "cache"


def _key(teacher, train, cache_dir, settings=None, terms=KD) -> str:
    cache = _scheme(teacher, train, None, cache_dir, settings, terms).cache
    assert isinstance(cache, PersistentTeacherCache)
    return cache.stored.key


def test_the_key_changes_with_the_weights_the_data_and_the_view(setup):
    teacher, train, _, cache_dir = setup
    base = _key(teacher, train, cache_dir)
    assert _key(teacher, train, cache_dir) == base  # deterministic

    other = toy_net(hidden=32, bn=False, seed=0)
    with torch.no_grad():
        other[0].weight[0, 0] += 1e-3  # one weight of the teacher
    assert _key(other, train, cache_dir) != base
    swapped = nn.Sequential(other[0], nn.Tanh(), other[2])  # the same state dict in another architecture
    with torch.no_grad():
        other[0].weight[0, 0] -= 1e-3
    assert _key(swapped, train, cache_dir) != base

    x, y = toy_data(200).tensors
    changed = x.clone()
    changed[7, 3] += 1e-4  # one input value
    assert _key(teacher, Indexed(TensorDataset(changed, y)), cache_dir) != base
    assert _key(teacher, Indexed(TensorDataset(x, (y + 1) % 3)), cache_dir) == base  # labels are no teacher input
    assert _key(teacher, Indexed(TensorDataset(x[:199], y[:199])), cache_dir) != base

    for view in ({"precision": "bf16"}, {"channels_last": True}, {"augment": [{"name": "flip"}]}):
        assert _key(teacher, train, cache_dir, TrainSettings(**QUIET, **view)) != base, view
    fitnet = [{"name": "fitnet", "student": "1", "teacher": "1"}]  # a tapped feature is kept too: another file
    assert _key(teacher, train, cache_dir, terms=KD + fitnet) != base


def test_a_second_run_reuses_the_cache_without_a_teacher_forward_and_trains_the_same(setup):
    teacher, train, val, cache_dir = setup
    calls = _counting(teacher)
    first, scheme = _distil(teacher, train, val, cache_dir)
    assert sorted(set(calls)) == [8, 32, 50]  # training batches (200 = 6 x 32 + 8) and one validation pass
    assert calls.count(50) == 1  # the teacher saw the validation split once in two epochs
    info = scheme.cache.info()
    assert not info["reused"] and info["complete"] and info["build_seconds"] > 0
    assert info["bytes"] == 200 * 3 * 4  # float32 logits of 3 classes
    assert len(list(cache_dir.glob("*.safetensors"))) == 2  # training outputs and validation logits

    calls.clear()
    second, scheme = _distil(teacher, train, val, cache_dir)
    assert calls == []  # nothing ran the teacher: training outputs and validation logits came from disk
    assert scheme.cache.info()["reused"] and scheme.val_teacher.reused
    assert all(torch.equal(first[k], second[k]) for k in first)

    _distil(teacher, train, val, cache_dir, student_seed=5, epochs=1)  # another student, another schedule
    assert calls == []


def test_stale_outputs_are_never_used(setup):
    teacher, train, val, cache_dir = setup
    _distil(teacher, train, val, cache_dir, epochs=1)
    retrained = toy_net(hidden=32, bn=False, seed=3).eval()  # another teacher, same architecture
    calls = _counting(retrained)
    _, scheme = _distil(retrained, train, val, cache_dir, epochs=1)
    assert 32 in calls and 50 in calls and not scheme.cache.info()["reused"]
    stored = scheme.cache.store["logits"].cpu()
    with torch.no_grad():
        assert torch.allclose(stored, retrained(train.dataset.tensors[0]), atol=1e-6)
    assert len(list(cache_dir.glob("*.safetensors"))) == 4  # both teachers' files, side by side


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_cache_file_is_rebuilt_with_a_warning(setup, damage):
    teacher, train, val, cache_dir = setup
    first, scheme = _distil(teacher, train, val, cache_dir, epochs=1)
    path = scheme.cache.stored.path
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-5] ^= 0xFF  # one byte of the tensors: only the checksum can tell
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    calls = _counting(teacher)
    with pytest.warns(UserWarning, match="teacher cache .* is damaged"):
        again, scheme = _distil(teacher, train, val, cache_dir, epochs=1)
    assert 32 in calls and not scheme.cache.info()["reused"]  # recomputed, never read
    assert all(torch.equal(first[k], again[k]) for k in first)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file is sound
        _distil(teacher, train, val, cache_dir, epochs=1)
    assert 32 not in calls


def test_validation_logits_of_a_cached_teacher_are_computed_once_per_fit(setup):
    teacher, train, val, _ = setup
    calls = _counting(teacher)

    def history(cache: bool):
        student = toy_net(hidden=4, bn=False, seed=1)
        scheme = OfflineDistillation(student, teacher, build_terms(KD), cache_size=len(train) if cache else None)
        data = train if cache else train.dataset
        return fit(scheme, make_loader(data, 32, shuffle=True), make_loader(val, 64, shuffle=False),
                   TrainSettings(epochs=3, **QUIET)).history

    live = history(False)
    assert calls.count(50) == 3  # without a cache: every epoch
    calls.clear()
    cached = history(True)
    assert calls.count(50) == 1
    for a, b in zip(live, cached, strict=True):  # the same fidelity numbers, measured once
        assert a["val_agreement"] == pytest.approx(b["val_agreement"])
        assert a["val_predictive_kl"] == pytest.approx(b["val_predictive_kl"], rel=1e-5)


def test_the_pipeline_reports_the_cache_and_a_rerun_reuses_it(tmp_path, monkeypatch):
    from rich.console import Console

    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.pipeline import run

    def once(out: str) -> tuple[dict, str]:
        raw = {"seed": 0, "output_dir": str(tmp_path / out), "data": {"name": "digits"},
               "train": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"},
               "teacher": {"name": "mlp", "params": {"hidden": [16]}},
               "student": {"name": "mlp", "params": {"hidden": [8]}},
               "distill": {"losses": KD, "cache_teacher": True, "cache_dir": str(tmp_path / "cache")}}
        console = Console(record=True, width=200)
        run(parse_config(raw), console=console, quick_cost=True)
        results = json.loads((tmp_path / out / "results.json").read_text())
        return results["training"]["teacher_cache"], console.export_text()

    first, text = once("a")
    assert "teacher cache (train): built" in text and "teacher cache (validation): built" in text
    assert not first["train"]["reused"] and first["train"]["bytes"] > 0 and first["train"]["build_seconds"] > 0
    second, text = once("b")
    assert "teacher cache (train): reused" in text
    assert second["train"]["reused"] and second["validation"]["reused"]
    assert second["train"]["path"] == first["train"]["path"]


def test_tune_trials_share_one_cache(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    import io

    from rich.console import Console

    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.tune import tune
    from kdkit.trainer.teacher_cache import StoredOutputs

    found, original = [], StoredOutputs.load

    def load(self, samples):
        tensors = original(self, samples)
        found.append((self.parts["view"]["split"], tensors is not None))
        return tensors

    monkeypatch.setattr(StoredOutputs, "load", load)
    raw = {"seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": "digits"},
           "train": {"epochs": 1, "batch_size": 128, "progress": False, "device": "cpu"},
           "teacher": {"name": "mlp", "params": {"hidden": [16]}},
           "student": {"name": "mlp", "params": {"hidden": [8]}},
           "distill": {"losses": KD, "cache_teacher": True, "cache_dir": str(tmp_path / "cache")},
           "tune": {"trials": 3, "prune": False, "space": {"distill.losses.0.T": {"low": 1.0, "high": 8.0}}}}
    tune(parse_config(raw), console=Console(file=io.StringIO()))
    assert found[:2] == [("train", False), ("validation", False)]  # the first trial builds both files
    assert found[2:] == [("train", True), ("validation", True)] * 2  # the others read them


def test_an_output_whose_shape_changes_between_batches_is_refused_in_one_line():
    """Per-token features of texts padded per batch cannot sit in one slot per sample (Python API; configs refuse
    the combination at parse time)."""
    from kdkit.errors import ConfigError
    from kdkit.trainer.teacher_cache import TeacherCache

    cache = TeacherCache(4)
    cache.put(torch.tensor([0, 1]), {"logits": torch.zeros(2, 3), "hidden": torch.zeros(2, 5, 8)})
    with pytest.raises(ConfigError, match="'hidden' output changes shape between batches.*cache_teacher: false"):
        cache.put(torch.tensor([2, 3]), {"logits": torch.zeros(2, 3), "hidden": torch.zeros(2, 7, 8)})


def test_the_filled_check_stops_once_full_and_comes_back_after_a_partial_restore():
    from kdkit.trainer.teacher_cache import TeacherCache

    cache = TeacherCache(4)
    cache.put(torch.tensor([0, 1]), {"logits": torch.tensor([[1.0], [2.0]])})
    assert cache.get(torch.tensor([1, 2])) is None and not cache.complete
    cache.put(torch.tensor([2, 3]), {"logits": torch.tensor([[3.0], [4.0]])})
    assert cache.get(torch.tensor([3, 0]))["logits"].tolist() == [[4.0], [1.0]]
    assert cache.complete  # from here on no step indexes `filled` or waits for it
    scheme = OfflineDistillation(toy_net(seed=1), toy_net(seed=0), build_terms([{"name": "kd"}]), cache_size=4)
    scheme.cache = cache
    scheme.load_resume_state({"filled": torch.tensor([1, 0, 0, 0], dtype=torch.uint8),
                              "cache.logits": torch.zeros(4, 1)})
    assert scheme.cache.get(torch.tensor([1])) is None  # a restored, partly filled cache is checked again


def test_the_cache_is_built_as_its_own_stage_before_the_first_epoch(setup, capsys, monkeypatch):
    from kdkit.trainer import progress

    teacher, train, val, cache_dir = setup
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)  # a plain line per step: each one shows its ETA
    calls = _counting(teacher)
    s = TrainSettings(epochs=2, device="cpu")
    scheme = _scheme(teacher, train, val, cache_dir, s)
    seen = []
    fit(scheme, make_loader(train, 32, shuffle=True, seed=0), make_loader(val, 64, shuffle=False), s,
        name="student_kd", on_teacher_cache=lambda done: seen.append((bool(done.cache.filled.all()), len(calls))))
    assert seen == [(True, 7)]  # complete before epoch 1, by 7 teacher forwards (200 samples = 6 x 32 + 8)
    lines = capsys.readouterr().out.splitlines()
    stage = lines.index("student_kd: teacher cache: 1 pass x 7 steps")
    assert lines.index("student_kd: 2 epochs x 7 steps") > stage + 7
    assert lines[stage + 1].startswith("student_kd: teacher cache: pass 1/1, step 1/7, elapsed ")
    assert "ETA" in lines[stage + 1]
    assert calls[:7] == [32] * 6 + [8] and calls[7:] == [50]  # training forwards read the cache; one validation
