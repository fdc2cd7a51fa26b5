"""Small 1-D and 2-D convolutional networks with width/depth knobs (conv-BN-ReLU blocks, then a linear head)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from kdkit.errors import ConfigError


def _block(conv: type[nn.Module], bn: type[nn.Module], pool: type[nn.Module], cin: int, cout: int, k: int, p: bool):
    layers = [conv(cin, cout, k, padding=k // 2, bias=False), bn(cout), nn.ReLU()]
    if p:
        layers.append(pool(2))
    return nn.Sequential(*layers)


def _conv_len(n: int, k: int) -> int:
    """Output length of a stride-1 conv with padding k // 2: n for odd kernels, n + 1 for even ones."""
    return n + 2 * (k // 2) - k + 1


class CNN1d(nn.Module):
    """Conv1d blocks; every block after the first halves the length. Accepts (N, L) or (N, C, L) input."""

    def __init__(
        self, in_channels: int, length: int, num_classes: int, width: int = 32, depth: int = 3, kernel: int = 5
    ) -> None:
        super().__init__()
        blocks, cin = [], in_channels
        for i in range(depth):
            blocks.append(_block(nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, cin, width, kernel, p=i > 0))
            cin = width
        self.features = nn.Sequential(*blocks)
        # the flattened size by arithmetic, not by a probe forward pass: in train mode a probe would move the
        # BatchNorm running statistics before training starts
        n = length
        for i in range(depth):
            n = _conv_len(n, kernel)
            if i > 0:
                if n < 2:
                    raise ConfigError(f"cnn1d: inputs of length {length} are too short for depth {depth} (every "
                                      "block after the first halves the length); use a smaller depth")
                n //= 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * n, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.head(self.features(x))


class CNN2d(nn.Module):
    """Conv2d blocks, each followed by 2x2 max-pooling while the map is larger than 2x2."""

    def __init__(
        self, in_channels: int, size: Sequence[int], num_classes: int, width: int = 32, depth: int = 2,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        blocks, cin, h, w = [], in_channels, *size
        for i in range(depth):
            h, w = _conv_len(h, kernel), _conv_len(w, kernel)  # an even kernel grows the map by one pixel
            pool = min(h, w) > 2
            blocks.append(_block(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, cin, width * 2**i, kernel, pool))
            cin = width * 2**i
            h, w = (h // 2, w // 2) if pool else (h, w)
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * h * w, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_cnn1d(input_shape: Sequence[int], num_classes: int, **kwargs) -> CNN1d:
    channels, length = (1, input_shape[0]) if len(input_shape) == 1 else (input_shape[0], input_shape[-1])
    return CNN1d(channels, length, num_classes, **kwargs)


def build_cnn2d(input_shape: Sequence[int], num_classes: int, **kwargs) -> CNN2d:
    if len(input_shape) != 3:
        raise ValueError(f"cnn2d needs (channels, height, width) inputs, got shape {tuple(input_shape)}")
    return CNN2d(input_shape[0], input_shape[1:], num_classes, **kwargs)


