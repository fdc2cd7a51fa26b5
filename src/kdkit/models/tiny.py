"""Small image students for CPU deployment.

``tiny_cnn``: the smallest useful image classifier, one conv block (C -> 4 channels, 3x3, BatchNorm, ReLU, 2x2
max-pool) and a linear layer on the flattened map. Its size follows the image size and the classes: 36 C + 8
parameters in the block and (4 * H/2 * W/2 + 1) * classes in the linear layer, which holds almost all of them:
100,470 parameters for 2 classes at 224x224 RGB, 7,894 for 10 classes at 28x28 grey (Fashion-MNIST), 10,366 for 10
classes at 32x32 RGB (:func:`tiny_cnn_params` computes it; the run's table prints it). Its compute is one 3x3
convolution, so it runs one to two orders of magnitude faster than a ResNet-18 on CPU. It is the student of
the image-folder pipeline: how much of a big teacher's accuracy survives this size is what the table shows.

``small_cnn``: a family of slightly larger students (conv-BN-ReLU-pool blocks whose width doubles, then global
average pooling and a linear head). The head does not grow with the image size, so the same knobs work at
32x32 and at 224x224.

``strided_cnn``: students that downsample at once, so their compute stays small while their parameters grow. Two
stride-2 conv blocks (C -> width -> 2 * width channels) leave a map of a quarter of the image's side, which an
adaptive average pool brings to ``grid`` x ``grid`` (7 x 7 by default: at 28x28 the pool changes nothing); a
small MLP head (``hidden`` units, 0 for a linear head) holds most of the weights: a weight in the head costs one
multiply-add per image, a weight in a full-resolution convolution one per pixel. At 28x28 the 106k-parameter
setting (width 16, hidden 64) needs about 0.36M multiply-adds and has no full-resolution layer (bench/kd_regimes.py
times it against its teacher). The head's size does not depend on the image size.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from kdkit.errors import ConfigError


def _check_image_shape(name: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError(f"{name} needs (channels, height, width) image inputs, got shape {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


class TinyCNN(nn.Module):
    """conv3x3(C -> width) - BatchNorm - ReLU - maxpool 2x2 - flatten - linear(width * H/2 * W/2 -> classes)."""

    def __init__(self, in_channels: int, size: Sequence[int], num_classes: int, width: int = 4) -> None:
        super().__init__()
        h, w = size
        if min(h, w) < 2:
            raise ConfigError(f"tiny_cnn needs images of at least 2x2 pixels, got {h}x{w}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),  # BatchNorm's shift makes a bias redundant
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * (h // 2) * (w // 2), num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """`depth` blocks of conv3x3-BN-ReLU-maxpool (widths width, 2*width, 4*width, ...), global average pooling,
    dropout and a linear head. Pooling stops once the map is 1 pixel wide, so deep settings on small images work."""

    def __init__(
        self, in_channels: int, size: Sequence[int], num_classes: int, width: int = 16, depth: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ConfigError(f"small_cnn needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        blocks: list[nn.Module] = []
        cin, h, w = in_channels, *size
        for i in range(depth):
            cout = width * 2**i
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                       nn.ReLU(inplace=True)]
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class StridedCNN(nn.Module):
    """conv3x3/2(C -> width) - BN - ReLU - conv3x3/2(width -> 2 width) - BN - ReLU - adaptive average pool to grid x
    grid - flatten - [linear(-> hidden) - ReLU] - linear(-> classes)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, hidden: int = 64, grid: int = 7) -> None:
        super().__init__()
        if width < 1 or hidden < 0 or grid < 1:
            raise ConfigError(f"strided_cnn needs width >= 1, hidden >= 0 and grid >= 1, got width={width}, "
                              f"hidden={hidden}, grid={grid}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(grid),
        )
        flat = 2 * width * grid * grid
        layers: list[nn.Module] = [nn.Flatten()]
        layers += [nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)] if hidden else [
            nn.Linear(flat, num_classes)]
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def tiny_cnn_params(input_shape: Sequence[int], num_classes: int, width: int = 4) -> int:
    """tiny_cnn's parameter count for (C, H, W) images: conv (no bias) + BatchNorm + linear."""
    c, h, w = _check_image_shape("tiny_cnn", input_shape)
    return 9 * c * width + 2 * width + (width * (h // 2) * (w // 2) + 1) * num_classes


def build_tiny_cnn(input_shape: Sequence[int], num_classes: int, width: int = 4) -> TinyCNN:
    c, h, w = _check_image_shape("tiny_cnn", input_shape)
    return TinyCNN(c, (h, w), num_classes, width=width)


def build_small_cnn(
    input_shape: Sequence[int], num_classes: int, width: int = 16, depth: int = 3, dropout: float = 0.0
) -> SmallCNN:
    c, h, w = _check_image_shape("small_cnn", input_shape)
    return SmallCNN(c, (h, w), num_classes, width=width, depth=depth, dropout=dropout)


def build_strided_cnn(
    input_shape: Sequence[int], num_classes: int, width: int = 16, hidden: int = 64, grid: int = 7
) -> StridedCNN:
    c, _, _ = _check_image_shape("strided_cnn", input_shape)
    return StridedCNN(c, num_classes, width=width, hidden=hidden, grid=grid)
