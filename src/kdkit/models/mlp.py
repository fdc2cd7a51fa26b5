"""Multi-layer perceptron on flattened inputs: the usual small student."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (64,), dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64,), dropout: float = 0.0):
    return MLP(math.prod(input_shape), num_classes, hidden=tuple(hidden), dropout=dropout)
