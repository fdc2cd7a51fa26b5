"""timm weights by name (params.weights: DEFAULT or a pretrained tag), loaded by timm itself from the Hugging Face hub
cache; tested offline (HF_HUB_OFFLINE) with a weights file written into a temporary cache in the layout
huggingface_hub reads (models--<org>--<name>/refs/main naming a snapshot that holds the file), never downloading."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import yaml

timm = pytest.importorskip("timm")
huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from kdkit.cli import main  # noqa: E402
from kdkit.errors import ConfigError, ModelError  # noqa: E402
from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.models import build_model  # noqa: E402

MODEL = "test_resnet"  # timm's own tiny test model (about 0.5M parameters) with pretrained weights on the hub
TAG = "r160_in1k"
REPO = f"timm/{MODEL}.{TAG}"
SHAPE = (3, 32, 32)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty, offline Hugging Face hub cache (and torch hub cache); any download attempt fails the test."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(huggingface_hub.file_download, "http_get", no_network)
    return cache


def _place_weights(cache: Path) -> dict[str, torch.Tensor]:
    """A 1000-class test_resnet state dict saved where huggingface_hub's cache keeps timm/test_resnet.r160_in1k's
    model.safetensors: refs/main names the snapshot, the snapshot holds the file."""
    torch.manual_seed(5)
    state = {k: v.clone() for k, v in timm.create_model(MODEL, pretrained=False).state_dict().items()}
    repo = cache / f"models--{REPO.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / commit / "model.safetensors"))
    return state


def _exit_code(argv: list[str], capsys) -> int:
    try:
        main(argv)
    except SystemExit as exit_info:
        if exit_info.code:
            print(capsys.readouterr().err)  # shown when the test fails
        return exit_info.code or 0
    return 0


def _head(model: torch.nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is model.get_classifier())


@pytest.mark.parametrize("name,weights", [(MODEL, "DEFAULT"), (MODEL, TAG), (f"{MODEL}.{TAG}", "DEFAULT")])
def test_named_timm_weights_load_the_backbone_from_the_hub_cache_and_a_fresh_head(hub_cache, name, weights):
    state = _place_weights(hub_cache)
    model = build_model(f"timm:{name}", SHAPE, 3, weights=weights)
    own, head = model.state_dict(), _head(model)
    backbone = [k for k in state if not k.startswith(f"{head}.")]
    assert len(backbone) > 10 and all(torch.equal(own[k], state[k]) for k in backbone)
    assert own[f"{head}.weight"].shape[0] == 3  # the 1000-class head is left out


def test_grey_images_get_the_stem_summed_over_the_colour_channels(hub_cache):
    state = _place_weights(hub_cache)
    model = build_model(f"timm:{MODEL}", (1, 32, 32), 3, weights="DEFAULT")
    stem = timm.models.get_pretrained_cfg(f"{MODEL}.{TAG}").first_conv + ".weight"
    assert torch.allclose(model.state_dict()[stem], state[stem].sum(dim=1, keepdim=True))


def test_a_frozen_backbone_over_named_weights_does_not_warn(hub_cache, recwarn):
    _place_weights(hub_cache)
    model = build_model(f"timm:{MODEL}", SHAPE, 3, weights="DEFAULT", freeze_backbone=True)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {_head(model).split(".")[0]}
    assert not [w for w in recwarn if "random features" in str(w.message)]


def test_offline_without_the_file_is_one_line_naming_it_and_the_cache_to_put_it_in(hub_cache):
    with pytest.raises(ModelError) as err:
        build_model(f"timm:{MODEL}", SHAPE, 3, weights="DEFAULT")
    text = str(err.value)
    assert "\n" not in text and f"models--timm--{MODEL}.{TAG}/" in text and f"{hub_cache}/" in text
    assert f"hf download {REPO} model.safetensors" in text


def test_the_cli_refuses_missing_weights_in_one_line_before_reading_any_data(hub_cache, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    out = tmp_path / "run"
    config.write_text(yaml.safe_dump({
        "output_dir": str(out), "data": {"name": "digits"}, "student": {"name": "mlp"},
        "teacher": {"name": f"timm:{MODEL}", "params": {"weights": "DEFAULT"}}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(config)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and f"models--timm--{MODEL}.{TAG}/" in err
    assert not out.exists()  # refused before the run directory was touched


@pytest.mark.parametrize("name,params,words", [
    (MODEL, {"weights": "in22k"}, f"no weights 'in22k'; choose DEFAULT or one of: {TAG}"),
    (f"{MODEL}.{TAG}", {"weights": "a1_in1k"}, "no weights 'a1_in1k'"),
    (MODEL, {"weights": 1}, "DEFAULT or a pretrained tag"),
    (MODEL, {"weights": "DEFAULT", "pretrained": "x.pth"}, "not both"),
    ("botnet50ts_256", {"weights": "DEFAULT"}, "no pretrained weights"),  # timm has none for it
])
def test_bad_weight_names_are_refused_before_any_download(hub_cache, name, params, words):
    _place_weights(hub_cache)  # refused although the default weights are there
    with pytest.raises(ConfigError, match=words):
        build_model(f"timm:{name}", SHAPE, 3, **params)


def test_a_config_teacher_takes_named_timm_weights_once_they_are_cached(hub_cache, tmp_path):
    raw = {"output_dir": str(tmp_path / "run"), "data": {"name": "digits"},
           "teacher": {"name": f"timm:{MODEL}", "params": {"weights": "DEFAULT"}}, "student": {"name": "mlp"}}
    with pytest.raises(ConfigError, match="not in the Hugging Face hub cache"):
        parse_config(raw)
    _place_weights(hub_cache)
    assert parse_config(raw).teacher.params == {"weights": "DEFAULT"}


def test_a_run_from_cached_timm_weights_trains_and_its_saved_run_loads_without_the_cache(hub_cache, tmp_path, capsys):
    import shutil

    from image_folders import make_folder

    _place_weights(hub_cache)
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "output_dir": str(out),
        "data": {"name": "image_folder", "root": str(make_folder(tmp_path / "images", {"train": 6, "val": 2,
                                                                                       "test": 2})),
                 "image_size": 32},
        "train": {"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu"},
        "teacher": {"name": f"timm:{MODEL}", "params": {"weights": "DEFAULT"}, "train": {"epochs": 1}},
        "student": {"name": "tiny_cnn"}, "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.5}]}}))
    assert _exit_code(["train", str(config)], capsys) == 0
    shutil.rmtree(hub_cache)  # the run keeps its teacher's weights: loading it needs no pretrained weights any more
    assert _exit_code(["evaluate", str(out)], capsys) == 0
    assert (out / "evaluation.json").is_file()


def test_named_timm_weights_are_refused_on_a_torch_that_unpickles_by_default(monkeypatch) -> None:
    """Before torch 2.6, torch.load unpickles by default, and timm reads hub .bin and URL .pth files with it."""
    from kdkit.models.timm_weights import _before_2_6, create_pretrained

    assert _before_2_6("2.5.1+cpu") and not _before_2_6("2.6.0") and not _before_2_6("2.14.1+cu130")
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ConfigError, match="need torch >= 2.6"):
        create_pretrained("test_resnet", "DEFAULT", num_classes=3, channels=3)
