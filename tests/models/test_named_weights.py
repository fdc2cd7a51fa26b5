"""torchvision weights by name (params.weights: DEFAULT, IMAGENET1K_V1, Enum.member), read as torchvision reads them
from torch hub's cache under TORCH_HOME; tested offline with a weights file placed there, never downloading."""

import urllib.error

import pytest
import torch
import torchvision

from kdkit.errors import ConfigError, ModelError
from kdkit.families.classification.config import parse_config
from kdkit.models import build_model

SHAPE = (3, 32, 32)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _place_imagenet_file(folder) -> dict:
    """A 1000-class ResNet-18 state dict saved under the name torchvision's IMAGENET1K_V1 weights have."""
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "resnet18-f37072fd.pth")
    return state


@pytest.mark.parametrize("name", ["DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"])
def test_named_weights_load_the_backbone_from_torch_hubs_cache_and_a_fresh_head(torch_home, name):
    state = _place_imagenet_file(torch_home)
    model = build_model("torchvision:resnet18", SHAPE, 3, weights=name)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert own["fc.weight"].shape == (3, 512)


def test_offline_without_the_file_is_one_line_naming_the_file_and_the_folder(torch_home):
    with pytest.raises(ModelError) as err:
        build_model("torchvision:resnet18", SHAPE, 3, weights="DEFAULT")
    text = str(err.value)
    assert "\n" not in text and "resnet18-f37072fd.pth" in text and f"{torch_home}/" in text


@pytest.mark.parametrize("params,words", [
    ({"weights": "IMAGENET1K_V9"}, "no weights 'IMAGENET1K_V9'; choose one of: IMAGENET1K_V1, DEFAULT"),
    ({"weights": "VGG11_Weights.DEFAULT"}, "no weights"),
    ({"weights": "DEFAULT", "pretrained": "x.pth"}, "not both"),
])
def test_bad_weight_names_are_refused_before_any_download(torch_home, params, words):
    with pytest.raises(ConfigError, match=words):
        build_model("torchvision:resnet18", SHAPE, 3, **params)


def test_a_config_teacher_takes_named_weights(torch_home, tmp_path):
    _place_imagenet_file(torch_home)
    raw = {"output_dir": str(tmp_path / "run"), "data": {"name": "digits"},
           "teacher": {"name": "torchvision:resnet18", "params": {"weights": "DEFAULT"}}, "student": {"name": "mlp"}}
    assert parse_config(raw).teacher.params == {"weights": "DEFAULT"}
