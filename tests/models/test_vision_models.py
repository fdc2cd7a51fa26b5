"""torchvision/timm models by name (head, channels, local pretrained weights, frozen backbone) and the tiny CNNs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models import resnet18, resnet34

from kdkit.errors import ConfigError, ModelError
from kdkit.io.checkpoint import save_weights
from kdkit.measure.cost import count_params
from kdkit.models import build_model
from kdkit.models.vision import trainable_fraction
from kdkit.schemes import Supervised
from kdkit.trainer.loop import fit
from kdkit.trainer.settings import TrainSettings

SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A ResNet-18 state dict shaped like torchvision's ImageNet file (1000-class head), random values."""
    torch.manual_seed(0)
    model = resnet18(num_classes=1000)
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_torchvision_head_matches_the_classes():
    model = build_model("torchvision:resnet18", SHAPE, 5)
    assert model.fc.out_features == 5
    assert model(torch.randn(2, *SHAPE)).shape == (2, 5)


def test_one_channel_input_rebuilds_the_stem():
    model = build_model("torchvision:resnet18", (1, 32, 32), 3)
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_pretrained_torch_file_loads_the_backbone_and_a_fresh_head(imagenet_file):
    path, saved = imagenet_file
    model = build_model("torchvision:resnet18", SHAPE, 3, pretrained=str(path))
    own = model.state_dict()
    for key, value in saved.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key
    assert own["fc.weight"].shape == (3, 512)


def test_pretrained_safetensors_of_a_fine_tuned_model_loads_the_head_too(tmp_path):
    torch.manual_seed(1)
    tuned = build_model("torchvision:resnet18", SHAPE, 4)
    path = save_weights(tuned, tmp_path / "tuned.safetensors")
    model = build_model("torchvision:resnet18", SHAPE, 4, pretrained=path)
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), tuned.eval()(x), atol=1e-5)


def test_pretrained_rgb_stem_on_grey_images_answers_as_on_grey_rgb(imagenet_file):
    path, saved = imagenet_file
    rgb = build_model("torchvision:resnet18", SHAPE, 2, pretrained=path).eval()
    grey = build_model("torchvision:resnet18", (1, 32, 32), 2, pretrained=path).eval()
    grey.fc.load_state_dict(rgb.fc.state_dict())
    assert torch.allclose(grey.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_pretrained_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet34.pt"
    torch.save(resnet34().state_dict(), path)
    with pytest.raises(ModelError, match="do not fit ResNet: .*check the model name") as err:
        build_model("torchvision:resnet18", SHAPE, 2, pretrained=path)
    assert "\n" not in str(err.value)


class NotWeights:
    pass


def test_pretrained_file_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": NotWeights()}, path)
    with pytest.raises(ModelError, match="cannot read weights"):
        build_model("torchvision:resnet18", SHAPE, 2, pretrained=path)
    with pytest.raises(ModelError, match="not found"):
        build_model("torchvision:resnet18", SHAPE, 2, pretrained=tmp_path / "missing.safetensors")


@pytest.mark.parametrize(("params", "message"), [
    ({"pretrained": True}, "path of a local weights file"),
    ({"weights_backbone": "DEFAULT"}, "would download weights"),  # named weights: tests/models/test_named_weights.py
])
def test_nothing_is_downloaded(params, message):
    with pytest.raises(ConfigError, match=message):
        build_model("torchvision:resnet18", SHAPE, 2, **params)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ConfigError, match="did you mean torchvision:resnet18"):
        build_model("torchvision:resnet81", SHAPE, 2)
    with pytest.raises(ConfigError, match="unknown model source 'tv:'"):
        build_model("tv:resnet18", SHAPE, 2)


def test_frozen_backbone_trains_only_the_head(imagenet_file):
    path, _ = imagenet_file
    model = build_model("torchvision:resnet18", SHAPE, 2, pretrained=path, freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert trainable_fraction(model) < 0.001
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    data = [(torch.randn(8, *SHAPE), torch.randint(0, 2, (8,))) for _ in range(3)]
    fit(Supervised(model), data, None, TrainSettings(epochs=1, lr=0.1, progress=False, device="cpu"))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BatchNorm running statistics included: untouched


def test_freezing_random_weights_warns():
    with pytest.warns(UserWarning, match="random features"):
        build_model("torchvision:resnet18", SHAPE, 2, freeze_backbone=True)


def test_timm_model_with_local_weights_and_grey_input(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = timm.create_model("resnet10t", pretrained=False, num_classes=1000)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_model("timm:resnet10t", (1, 32, 32), 3, pretrained=path, freeze_backbone=True)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert torch.allclose(stem.weight, source.state_dict()["conv1.0.weight"].sum(1, keepdim=True))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    with pytest.raises(ConfigError, match="unknown timm model"):
        build_model("timm:no_such_net", SHAPE, 2)


# ------------------------------------------------------------------------------------------------ tiny CNNs


def test_tiny_cnn_is_one_conv_block_and_a_linear_layer_of_about_100k_params():
    model = build_model("tiny_cnn", (3, 224, 224), 2)
    kinds = [type(m) for m in model.modules() if not isinstance(m, (nn.Sequential, type(model)))]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear]
    conv = model.features[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (3, 4, (3, 3))
    linear_in = 4 * 112 * 112
    assert model.head[1].in_features == linear_in
    assert count_params(model) == 3 * 4 * 9 + 2 * 4 + linear_in * 2 + 2
    assert 90_000 < count_params(model) < 110_000
    assert count_params(build_model("torchvision:resnet18", (3, 224, 224), 2)) > 100 * count_params(model)
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 2)


def test_tiny_cnn_takes_grey_and_odd_sizes():
    model = build_model("tiny_cnn", (1, 31, 17), 4, width=6)
    assert model(torch.randn(2, 1, 31, 17)).shape == (2, 4)
    assert model.head[1].in_features == 6 * 15 * 8


def test_small_cnn_knobs_and_size_independent_head():
    base = build_model("small_cnn", (3, 32, 32), 10)
    wider = build_model("small_cnn", (3, 32, 32), 10, width=32)
    deeper = build_model("small_cnn", (3, 32, 32), 10, depth=4)
    assert count_params(wider) > count_params(base) and count_params(deeper) > count_params(base)
    assert count_params(build_model("small_cnn", (3, 96, 96), 10)) == count_params(base)
    assert deeper(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    tiny_image = build_model("small_cnn", (3, 4, 4), 2, depth=5)  # pooling stops at 1x1
    assert tiny_image(torch.randn(2, 3, 4, 4)).shape == (2, 2)


def test_strided_cnn_downsamples_twice_and_counts_its_params():
    model = build_model("strided_cnn", (1, 28, 28), 10, width=16, hidden=64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(1, 16, (2, 2)), (16, 32, (2, 2))]
    assert model.features(torch.randn(2, 1, 28, 28)).shape == (2, 32, 7, 7)
    convs_bn = 1 * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 2 * 32
    assert count_params(model) == convs_bn + (32 * 49 * 64 + 64) + (64 * 10 + 10)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    linear = build_model("strided_cnn", (1, 28, 28), 10, width=4, hidden=0)
    assert [type(m) for m in linear.head] == [nn.Flatten, nn.Linear] and linear.head[1].in_features == 8 * 49


def test_strided_cnn_head_does_not_grow_with_the_image():
    small = build_model("strided_cnn", (3, 28, 28), 2, width=8, hidden=32)
    large = build_model("strided_cnn", (3, 224, 224), 2, width=8, hidden=32)
    assert count_params(small) == count_params(large)
    assert large(torch.randn(2, 3, 224, 224)).shape == (2, 2)
    assert build_model("strided_cnn", (1, 5, 9), 3, grid=2)(torch.randn(2, 1, 5, 9)).shape == (2, 3)
    with pytest.raises(ConfigError, match="strided_cnn needs width >= 1"):
        build_model("strided_cnn", (1, 28, 28), 10, width=0)


@pytest.mark.parametrize("name", ["tiny_cnn", "small_cnn", "strided_cnn"])
def test_image_students_refuse_flat_inputs(name):
    with pytest.raises(ConfigError, match="needs \\(channels, height, width\\)"):
        build_model(name, (40,), 10)
