"""A freshly built model has untouched BatchNorm statistics: building must not run data through it in train mode
(which would move running_mean/var before training, e.g. cnn1d's old probe to find its flattened size)."""

import pytest
import torch
from torch import nn

from kdkit.errors import ConfigError
from kdkit.models import MODELS, build_model

SHAPES = {  # an input shape each built-in builder accepts, and the extra arguments it needs
    "mlp": ((1, 28, 28), {}),
    "cnn1d": ((40,), {"width": 8, "depth": 3}),
    "cnn2d": ((1, 28, 28), {"width": 4, "depth": 2}),
    "tiny_cnn": ((3, 16, 16), {}),
    "small_cnn": ((1, 28, 28), {"width": 4, "depth": 2}),
    "strided_cnn": ((1, 28, 28), {"width": 4, "hidden": 8}),
    "text_transformer": ((16,), {"vocab_size": 50, "dim": 16, "heads": 2, "layers": 1}),
    "text_bow": ((16,), {"vocab_size": 50}),
    "text_cnn": ((16,), {"vocab_size": 50}),
    "text_gru": ((16,), {"vocab_size": 50}),
    "text_bilstm": ((16,), {"vocab_size": 50}),
    "lm_transformer": ((16,), {"width": 16, "heads": 2}),  # num_classes = the vocabulary
}


def _assert_fresh(model: nn.Module) -> None:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
        assert int(bn.num_batches_tracked) == 0


def test_every_builtin_builder_is_covered():
    assert set(SHAPES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_fresh_model_has_initial_batchnorm_statistics(name):
    shape, kwargs = SHAPES[name]
    _assert_fresh(build_model(name, shape, 10, **kwargs))


def test_fresh_cnn1d_statistics_for_1d_and_channel_inputs():
    for shape in [(40,), (3, 40)]:
        model = build_model("cnn1d", shape, 10, width=8, depth=3)
        assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
        _assert_fresh(model)


def test_torchvision_model_has_initial_batchnorm_statistics():
    pytest.importorskip("torchvision")
    _assert_fresh(build_model("torchvision:resnet18", (1, 32, 32), 10))


@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
@pytest.mark.parametrize(("length", "depth"), [(40, 1), (40, 3), (41, 4), (7, 3), (2, 2)])
def test_cnn1d_head_fits_the_features(kernel, length, depth):
    """The flattened size is computed, not probed: it must equal what the features give, for odd and even
    kernels and lengths."""
    model = build_model("cnn1d", (length,), 3, width=4, depth=depth, kernel=kernel).eval()
    assert model(torch.zeros(2, length)).shape == (2, 3)


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("size", [(28, 28), (7, 9), (3, 3)])
def test_cnn2d_head_fits_the_features(kernel, size):
    model = build_model("cnn2d", (1, *size), 3, width=4, depth=3, kernel=kernel).eval()
    assert model(torch.zeros(2, 1, *size)).shape == (2, 3)


def test_cnn1d_too_deep_for_its_input_is_one_line():
    with pytest.raises(ConfigError, match="length 3 are too short for depth 4"):
        build_model("cnn1d", (3,), 3, depth=4)
