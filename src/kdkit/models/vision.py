"""Image models from torchvision (``torchvision:resnet18``) and timm (``timm:resnet18``, optional extra).

Every model is built with random weights and a classification head sized for the data's classes. Pretrained
weights come from a local file given as ``params: {pretrained: path}`` (.safetensors, or a torch checkpoint read with
``weights_only=True``), or by name, ``params: {weights: DEFAULT}``: for torchvision models, torchvision's own (or a
member of the model's weights enum, ``IMAGENET1K_V1``, ``ResNet18_Weights.IMAGENET1K_V1``), read the way torchvision
reads them, from torch hub's cache ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch), and downloaded into it
once when missing; for timm models, timm's (or one of its pretrained tags, ``a1_in1k``), read by timm from the
Hugging Face hub cache (kdkit.models.timm_weights). Offline without the file, one line names the file and the
folder to put it in. The weights (file or named) may be ImageNet's (their 1000-class head is left out and the new
head starts from random) or, from a file, a model already fine-tuned on the same classes (then the head is loaded
too). When the images have 1 channel instead of 3, the first convolution is rebuilt for 1 channel and its pretrained
kernel summed over the colour channels, which gives the same response to a grey image.

``freeze_backbone: true`` trains the head only (linear probing): every other parameter gets
``requires_grad=False``, and the frozen BatchNorm layers keep using their stored running statistics even in
training mode, so the features the head learns from are the ones it sees at test time.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from kdkit.errors import ConfigError, KdkitWarning, ModelError
from kdkit.io.checkpoint import read_state

# builder arguments that would make torchvision or timm fetch weights behind kdkit's back (`weights` is kdkit's own
# param, resolved by torchvision_weights or kdkit.models.timm_weights)
_DOWNLOADING = ("weights", "weights_backbone", "pretrained_cfg", "pretrained_cfg_overlay")


def _unknown_name(source: str, name: str, known: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(f'{source}:{c}' for c in close)}?" if close else f"see {source} for model names"
    return ConfigError(f"unknown {source} model '{name}'; {hint}")


def _check_params(source: str, pretrained: Any, kwargs: dict[str, Any]) -> None:
    blocked = [k for k in _DOWNLOADING if k in kwargs]
    if blocked:
        raise ConfigError(f"{source} model param '{blocked[0]}' would download weights outside kdkit: give a local "
                          "weights file as params.pretrained, or named weights as params.weights")
    if pretrained is not None and not isinstance(pretrained, (str, os.PathLike)):
        raise ConfigError(f"{source} model param 'pretrained' must be the path of a local weights file "
                          f"(.safetensors or .pt), got {pretrained!r}; nothing is downloaded at run time")
    if pretrained is not None and not os.path.isfile(pretrained):
        raise ModelError(f"pretrained weights file not found: {pretrained}; download it once (e.g. torchvision's "
                         "resnet18-f37072fd.pth) and give its local path in params.pretrained")


def head_name(model: nn.Module, num_classes: int) -> str:
    """Module path of the classification head: timm's `get_classifier()`, else the last Linear layer
    (torchvision puts the classifier last: `fc`, `classifier.1`, `heads.head`, ...)."""
    modules = list(model.named_modules())
    if hasattr(model, "get_classifier"):
        target = model.get_classifier()
        found = [n for n, m in modules if m is target]
    else:
        found = [n for n, m in modules if isinstance(m, nn.Linear)][-1:]
    if not found or getattr(dict(modules)[found[0]], "out_features", num_classes) != num_classes:
        raise ModelError(f"cannot find the classification head of {type(model).__name__} (a final Linear layer with "
                         f"{num_classes} outputs); use another model or a built-in one")
    return found[0]


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The stem: the first Conv2d in registration order (torchvision and timm register it first)."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def set_in_channels(model: nn.Module, channels: int) -> None:
    """Rebuild the stem convolution for `channels` input channels (torchvision models are built for RGB)."""
    stem = first_conv(model)
    if stem is None or stem[1].in_channels == channels:
        return
    name, old = stem
    if old.groups != 1:
        raise ModelError(f"cannot change the input channels of {type(model).__name__}: its first conv is grouped; "
                         "set data.channels: 3")
    _set_module(model, name, nn.Conv2d(
        channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
        bias=old.bias is not None, padding_mode=old.padding_mode,
    ))


def adapt_input_conv(weight: Tensor, channels: int) -> Tensor:
    """An RGB stem kernel (out, 3, k, k) for `channels` inputs: summed for 1 channel (a grey image x gives the
    response the RGB kernel gives to (x, x, x)); for more, tiled and rescaled to keep the output's scale."""
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :channels] * (weight.shape[1] / channels)


def torchvision_weights(name: str, weights: Any) -> Any:
    """The member of torchvision's weights enum of model `name` that `weights` names: DEFAULT, a member such as
    IMAGENET1K_V1, or Enum.member (ResNet18_Weights.IMAGENET1K_V1)."""
    from torchvision import models as tvm

    if not isinstance(weights, str):
        raise ConfigError(f"torchvision model param 'weights' is a name such as DEFAULT or IMAGENET1K_V1, got "
                          f"{weights!r}")
    try:
        enum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        raise ConfigError(f"torchvision model '{name}' has no named weights; give a local file as params.pretrained "
                          "or remove params.weights") from None
    owner, _, member = weights.rpartition(".")
    names = list(enum.__members__)
    if (owner and owner != enum.__name__) or member not in names:
        raise ConfigError(f"torchvision model '{name}' has no weights '{weights}'; choose one of: {', '.join(names)}")
    return enum[member]


def fetch_weights(weights: Any) -> dict[str, Tensor]:
    """The state dict of torchvision `weights`, as torchvision gets it: from torch hub's cache, downloaded into it
    (with torchvision's hash check) when missing; read with weights_only=True."""
    from kdkit.models.timm_weights import torch_hub_folder, url_file

    file = url_file(weights.url)
    folder = torch_hub_folder()
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as err:  # no network (URLError is an OSError), a bad hash, a damaged file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if (folder / file).is_file():
            raise ModelError(f"cannot read torchvision weights {folder / file} ({reason}); delete the file to "
                             "fetch it again") from None
        raise ModelError(f"torchvision weights {weights} are not in torch hub's cache and could not be downloaded "
                         f"({reason}); put {file} (from {weights.url}) in {folder}/") from None


def load_pretrained(model: nn.Module, path: str | os.PathLike, head: str) -> list[str]:
    """Load a local weights file into everything but (when its shape differs) the head. Returns the checkpoint
    keys left out. A file for another architecture raises ModelError naming the first mismatch."""
    return load_state(model, read_state(path), str(path), head)


def load_state(model: nn.Module, state: dict[str, Tensor], source: str, head: str) -> list[str]:
    """load_pretrained for a state dict already read (`source` names it in errors)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    stem = first_conv(model)
    stem_key = f"{stem[0]}.weight" if stem else None
    prefix = f"{head}."
    load: dict[str, Tensor] = {}
    skipped, unexpected, wrong = [], [], []
    for key, value in state.items():
        if key not in own:
            (skipped if key.startswith(prefix) else unexpected).append(key)
        elif own[key].shape == value.shape:
            load[key] = value
        elif key.startswith(prefix):
            skipped.append(key)  # e.g. the 1000-class ImageNet head: the new head keeps its random init
        elif key == stem_key and value.dim() == 4 and value.shape[0] == own[key].shape[0]:
            load[key] = adapt_input_conv(value, own[key].shape[1])
        else:
            wrong.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
    missing = [k for k in own if k not in load and not k.startswith(prefix) and not k.endswith("num_batches_tracked")]
    problem = (f"shape mismatch in {wrong[0]}" if wrong else f"unexpected key {unexpected[0]}" if unexpected
               else f"missing key {missing[0]}" if missing else "")
    if problem:
        count = len(wrong) + len(unexpected) + len(missing)
        raise ModelError(f"pretrained weights {source} do not fit {type(model).__name__}: {problem}"
                         f"{f' (+{count - 1} more)' if count > 1 else ''}; check the model name and the file")
    model.load_state_dict(load, strict=False)
    return skipped


def _keep_running_stats(module: nn.Module, args: tuple) -> None:
    module.training = False  # forward pre-hook: a frozen BatchNorm always normalises with its stored statistics


def freeze_except_head(model: nn.Module, head: str) -> None:
    """Train only the head: requires_grad=False on every other parameter; frozen BatchNorms stay in eval mode."""
    prefix = f"{head}."
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefix))
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not name.startswith(prefix):
            module.register_forward_pre_hook(_keep_running_stats)


def _finish(model: nn.Module, num_classes: int, pretrained: Any, freeze: bool, named: Any = None,
            loaded: bool = False) -> nn.Module:
    """Load `pretrained` (a file) or `named` (torchvision weights) around the head, then freeze what is asked.
    `loaded`: the builder loaded pretrained weights itself (timm's by name)."""
    if pretrained is None and named is None and not freeze:
        return model  # the head only needs finding to load around it or to freeze the rest
    head = head_name(model, num_classes)
    if pretrained is not None:
        load_pretrained(model, pretrained, head)
    if named is not None:
        load_state(model, fetch_weights(named), f"{named}", head)
    if freeze:
        if pretrained is None and named is None and not loaded:
            warnings.warn("freeze_backbone without pretrained weights trains a head on random features; "
                          "set params.pretrained to a weights file", KdkitWarning, stacklevel=3)
        freeze_except_head(model, head)
    return model


def _channels(input_shape: Sequence[int], source: str) -> int:
    if len(input_shape) != 3:
        raise ConfigError(f"{source} models need (channels, height, width) images, got shape {tuple(input_shape)}")
    return int(input_shape[0])


def check_torchvision_name(name: str) -> None:
    """Refuse a name that is not one of torchvision's image classifiers, without building anything (a config's
    validation calls it, so that the mistake is reported before any image is read)."""
    try:
        from torchvision import models as tvm
    except ImportError:
        raise ConfigError("torchvision is not installed; pip install 'kdkit[vision]'") from None
    known = tvm.list_models(module=tvm)  # image classification models only
    if name not in known:
        raise _unknown_name("torchvision", name, known)


def check_timm_name(name: str) -> None:
    """Refuse a name timm does not know, without building anything."""
    try:
        import timm
    except ImportError:
        raise ConfigError("timm is not installed; pip install 'kdkit[timm]'") from None
    if not timm.is_model(name):
        raise _unknown_name("timm", name, timm.list_models())


def resolve_torchvision(
    name: str, input_shape: Sequence[int], num_classes: int, pretrained: str | os.PathLike | None = None,
    freeze_backbone: bool = False, weights: str | None = None, **kwargs: Any,
) -> nn.Module:
    """`torchvision:<name>` with a `num_classes` head, random init, then optional weights (a local file, or
    torchvision's by name) and freezing."""
    try:
        from torchvision import models as tvm
    except ImportError:
        raise ConfigError("torchvision is not installed; pip install 'kdkit[vision]'") from None
    if weights is not None and pretrained is not None:
        raise ConfigError("give the model's weights once: params.weights (torchvision's, by name) or "
                          "params.pretrained (a local file), not both")
    _check_params("torchvision", pretrained, kwargs)
    channels = _channels(input_shape, "torchvision")
    check_torchvision_name(name)
    named = torchvision_weights(name, weights) if weights is not None else None  # checked before any download
    try:
        model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"torchvision model '{name}': {err}") from None
    set_in_channels(model, channels)
    return _finish(model, num_classes, pretrained, freeze_backbone, named)


def resolve_timm(
    name: str, input_shape: Sequence[int], num_classes: int, pretrained: str | os.PathLike | None = None,
    freeze_backbone: bool = False, weights: str | None = None, **kwargs: Any,
) -> nn.Module:
    """`timm:<name>` with `num_classes` and the data's `in_chans`: random init, then optional weights (a local
    file, or timm's by name, loaded by timm from its cache) and freezing."""
    try:
        import timm
    except ImportError:
        raise ConfigError("timm is not installed; pip install 'kdkit[timm]'") from None
    if weights is not None and pretrained is not None:
        raise ConfigError("give the model's weights once: params.weights (timm's, by name) or params.pretrained (a "
                          "local file), not both")
    _check_params("timm", pretrained, kwargs)
    channels = _channels(input_shape, "timm")
    check_timm_name(name)
    if weights is not None:
        from kdkit.models.timm_weights import create_pretrained

        model = create_pretrained(name, weights, num_classes, channels, **kwargs)
        return _finish(model, num_classes, None, freeze_backbone, loaded=True)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels, **kwargs)
    except TypeError as err:
        raise ConfigError(f"timm model '{name}': {err}") from None
    return _finish(model, num_classes, pretrained, freeze_backbone)


def trainable_fraction(model: nn.Module) -> float:
    """Share of parameters that will be trained (1.0 unless the backbone is frozen)."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)


__all__ = ["check_timm_name", "check_torchvision_name", "resolve_torchvision", "resolve_timm", "load_pretrained",
           "load_state", "torchvision_weights", "fetch_weights", "freeze_except_head", "head_name",
           "adapt_input_conv", "set_in_channels", "trainable_fraction"]
