"""Taps: tensors captured by module path with forward hooks, on plain and wrapped models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdkit.errors import ModelError
from kdkit.taps import Taps, resolve_module


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Wrapper(nn.Module):
    """Like DistributedDataParallel: the user's model is the only child, called `module`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class TupleBlock(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, x * 2


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    return Net()


def test_taps_capture_outputs_and_inputs_by_path(net):
    x = torch.randn(3, 6)
    with Taps(net, ["features.0", "features.2", "head:input"]) as taps:
        out = taps(x)
    hidden = net.features[0](x)
    assert torch.equal(out["features.0"], hidden)
    assert torch.equal(out["features.2"], net.features[2](torch.relu(hidden)))
    assert torch.equal(out["head:input"], net.features(x))
    assert torch.equal(out["logits"], net(x))


@pytest.mark.parametrize("wrap", [Wrapper, nn.DataParallel])
@pytest.mark.parametrize("path", ["features.2", "module.features.2"])
def test_wrapped_models_accept_paths_with_or_without_the_module_prefix(net, wrap, path):
    x = torch.randn(2, 6)
    wrapped = wrap(net)
    assert resolve_module(wrapped, path) is net.features[2]
    with Taps(wrapped, [path]) as taps:
        out = taps(x)
    assert torch.equal(out[path], net.features[2](torch.relu(net.features[0](x))))


def test_a_child_named_module_among_others_is_not_taken_for_a_wrapper():
    model = nn.Module()
    model.module, model.head = nn.Linear(2, 2), nn.Linear(2, 2)
    assert resolve_module(model, "head") is model.head
    assert resolve_module(model, "module") is model.module


def test_unknown_path_fails_at_start_with_close_matches(net):
    with pytest.raises(ModelError, match=r"no module 'feature\.2'.*close matches: .*features\.2"):
        Taps(net, ["feature.2"])
    with pytest.raises(ModelError, match="close matches: .*features.0"):
        Taps(Wrapper(net), ["module.features.O"])
    assert _hook_count(net) == 0


def test_hooks_are_removed_and_the_model_runs_untapped(net):
    taps = Taps(net, ["features.0", "head:input"])
    assert _hook_count(net) == 2
    taps.remove()
    taps.remove()  # twice is harmless
    assert _hook_count(net) == 0
    with Taps(net, ["features.1"]):
        assert _hook_count(net) == 1
    assert _hook_count(net) == 0


def test_forwards_outside_the_taps_keep_nothing(net):
    with Taps(net, ["features.0"]) as taps:
        net(torch.randn(2, 6))  # e.g. validation calls the model directly
        assert taps.captured == {}
        assert set(taps(torch.randn(2, 6))) == {"logits", "features.0"}
        assert taps.captured == {}


def test_a_module_that_does_not_run_is_reported(net):
    net.unused = nn.Linear(2, 2)
    with Taps(net, ["unused"]) as taps, pytest.raises(ModelError, match="did not run"):
        taps(torch.randn(2, 6))


def test_tuple_outputs_give_their_first_tensor():
    model = nn.Sequential(TupleBlock())
    model.forward = lambda x: model[0](x)[1]  # type: ignore[method-assign]
    with Taps(model, ["0"]) as taps:
        out = taps(torch.ones(2, 3))
    assert torch.equal(out["0"], torch.full((2, 3), 2.0))


def test_gradients_flow_through_tapped_tensors(net):
    with Taps(net, ["features.2"]) as taps:
        taps(torch.randn(4, 6))["features.2"].pow(2).sum().backward()
    assert net.features[0].weight.grad is not None and net.head.weight.grad is None


def test_term_paths_are_checked_before_training(net):
    from kdkit.terms import build_terms, check_paths

    teacher = Net()
    ok = build_terms([{"name": "at", "student": "features.0:input", "teacher": "module.features.2"}])
    check_paths(net, Wrapper(teacher), ok)
    bad = build_terms([{"name": "fitnet", "student": "features.0", "teacher": "featres.2"}])
    with pytest.raises(ModelError, match=r"the teacher Net has no module 'featres\.2'; close matches: features\.2"):
        check_paths(net, teacher, bad)
