"""A loss is one file: its options model (types, defaults) registers it by name next to the loss, and config, terms
and training find it through the registry; its values are validated once, with one-line errors naming the key."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import ClassVar, Literal

import pytest
import torch
from torch import Tensor, nn

import kdkit
from kdkit.errors import ConfigError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import run
from kdkit.losses import LOSSES, build_loss, loss_classes
from kdkit.losses.registry import FAMILY, LOSS_REGISTRY, LossOptions
from kdkit.terms import build_terms

SRC = Path(kdkit.__file__).parent
BASE = {
    "seed": 0, "data": {"name": "digits"}, "train": {"epochs": 1, "batch_size": 64, "progress": False},
    "teacher": {"name": "mlp", "params": {"hidden": [16]}}, "student": {"name": "mlp", "params": {"hidden": [8]}},
}


def test_every_loss_file_registers_its_options_next_to_its_loss() -> None:
    registered = loss_classes()
    assert {"ce", "kd", "dkd", "dist", "fitnet", "at", "rkd_distance", "rkd_angle", "sp", "pkt", "fsp", "token_kd",
            "hidden_mse", "embedding_mse", "attention_kd", "value_relation", "forward_kl", "reverse_kl", "jsd", "tv",
            "uld"} == set(registered)
    for name, options in registered.items():
        assert options.__module__ == options.loss.__module__, name  # declared in the loss's own file
        assert LOSSES[name] is options.loss


@pytest.mark.parametrize("name", sorted(loss_classes()))
def test_options_defaults_are_the_losses_own(name: str) -> None:
    """A loss built from the config and one built in Python (``KDLoss()``) get the same values: the options model
    lists exactly the loss's keyword arguments, with the same defaults."""
    options = loss_classes()[name]
    params = {k: p for k, p in inspect.signature(options.loss.__init__).parameters.items()
              if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}  # nn.Module's own: no keys
    fields = {k: f for k, f in options.model_fields.items() if k != "name"}
    assert set(fields) == set(params)
    for key, field in fields.items():
        assert field.default == params[key].default, (name, key)


@pytest.mark.parametrize(("spec", "expected"), [
    ({"name": "kd", "T": "hot"}, "config error at distill.losses.0.T: Input should be a valid number"),
    ({"name": "kd", "standardize": "yes"}, "config error at distill.losses.0.standardize: Input should be a valid"),
    ({"name": "jsd", "chunk_size": 2.5}, "config error at distill.losses.0.chunk_size"),
    ({"name": "kd", "tau": 3}, "config error at distill.losses.0: loss 'kd' got unknown argument(s) ['tau']"),
    ({"name": "kdd"}, "config error at distill.losses.0: unknown loss 'kdd'; choose one of: "),
    ({"name": "kd", "T": 0}, "config error at distill.losses.0: loss 'kd': temperature T must be > 0"),
])
def test_a_bad_loss_value_is_one_line_naming_the_key(spec, expected) -> None:
    with pytest.raises(ConfigError) as err:
        build_terms([spec])
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_build_loss_refuses_a_wrong_type_naming_the_loss() -> None:
    with pytest.raises(ConfigError, match=r"loss 'dist': T: Input should be a valid number"):
        build_loss("dist", T="hot")


class SquaredGap(nn.Module):
    """Mean squared gap between the tempered probabilities: (1/N) sum_i ||softmax(s_i/T) - softmax(t_i/T)||^2."""

    calls: ClassVar[int] = 0

    def __init__(self, T: float = 1.0) -> None:
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        self.T = T

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None) -> Tensor:
        type(self).calls += 1
        gap = torch.softmax(student / self.T, 1) - torch.softmax(teacher / self.T, 1)
        return gap.square().sum(1).mean()


@pytest.fixture
def squared_gap():
    """A loss written as a user would, in one place: registered when its options class is created, unregistered
    afterwards (other tests list the losses)."""

    class SquaredGapOptions(LossOptions):
        name: Literal["squared_gap"] = "squared_gap"
        T: float = 1.0
        loss = SquaredGap

    SquaredGap.calls = 0
    yield SquaredGapOptions
    LOSS_REGISTRY.remove("squared_gap", FAMILY)


def test_a_new_loss_is_one_class_and_trains_through_config_and_terms(squared_gap, tmp_path) -> None:
    terms = build_terms([{"name": "squared_gap", "T": 2.0, "weight": 0.5}, {"name": "ce"}])
    assert isinstance(terms[0].loss, SquaredGap) and terms[0].loss.T == 2.0 and terms[0].weight == 0.5
    s, t = torch.zeros(3, 4), torch.eye(4)[:3] * 50
    assert terms[0].loss(s, t).item() == pytest.approx(0.75, abs=0.02)  # (3/4)^2 + 3 (1/4)^2
    with pytest.raises(ConfigError, match=r"distill.losses.0.T: Input should be a valid number"):
        build_terms([{"name": "squared_gap", "T": "warm"}])
    with pytest.raises(ConfigError, match=r"loss 'squared_gap': temperature T must be > 0"):
        build_terms([{"name": "squared_gap", "T": -1.0}])
    raw = {**BASE, "output_dir": str(tmp_path / "run"),
           "distill": {"losses": [{"name": "squared_gap", "T": 2.0}, {"name": "ce"}]}}
    run(parse_config(raw), quick_cost=True)
    assert SquaredGap.calls > 0  # the distilled student trained with it
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["model"] for r in results["rows"]] == ["teacher", "student alone", "distilled student"]


def test_no_module_lists_the_losses_by_hand() -> None:
    """The registry is the only list: kdkit/losses/__init__.py names no loss in a dict."""
    text = (SRC / "losses" / "__init__.py").read_text(encoding="utf-8")
    assert '"kd": ' not in text and "inspect.signature" not in text
