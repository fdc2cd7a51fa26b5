"""Capture intermediate tensors by module path with forward hooks, without editing the model.

``Taps(model, ["layer3.1.conv2", "layer2:input"])(x)`` returns ``{"logits": model(x), "layer3.1.conv2": ...,
"layer2:input": ...}``. A path names a submodule as in ``model.named_modules()``; the suffix ``:input`` takes
the module's (first) input instead of its output. Wrapped models (DDP, DataParallel) are handled: the
``module.`` prefix may be given or left out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from torch import Tensor, nn

from kdkit.errors import ModelError

LOGITS = "logits"
INPUT_SUFFIX = ":input"


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP and DataParallel keep the user's model in `.module`
    return model.module if isinstance(getattr(model, "module", None), nn.Module) else model


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at `path`; an unknown path raises ModelError listing the closest names."""
    base = _unwrap(model)
    plain = path.removeprefix("module.") if base is not model else path
    names = dict(base.named_modules())
    if plain in names:
        return names[plain]
    close = difflib.get_close_matches(plain, [n for n in names if n], n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else "see model.named_modules() for valid names"
    raise ModelError(f"{type(base).__name__} has no module '{path}'; {hint}")


def _first_tensor(value: object) -> Tensor:
    # Some blocks (e.g. transformer layers) return tuples or ModelOutput objects; the first tensor is the feature.
    if isinstance(value, Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, Tensor):
                return item
    raise ModelError(f"module output of type {type(value).__name__} holds no tensor to tap")


class Taps:
    """Forward hooks that record the outputs (or inputs) of named submodules during each forward pass."""

    def __init__(self, model: nn.Module, paths: Iterable[str] = ()) -> None:
        self.model = model
        self.paths = sorted({p for p in paths if p != LOGITS})
        self.captured: dict[str, Tensor] = {}
        self._handles = []
        for path in self.paths:
            module_path, takes_input = (path[: -len(INPUT_SUFFIX)], True) if path.endswith(INPUT_SUFFIX) else (
                path,
                False,
            )
            module = resolve_module(model, module_path)
            self._handles.append(module.register_forward_hook(self._hook(path, takes_input)))

    def _hook(self, path: str, takes_input: bool):
        def record(_module: nn.Module, inputs: tuple, output: object) -> None:
            self.captured[path] = _first_tensor(inputs if takes_input else output)

        return record

    def __call__(self, *args: object, **kwargs: object) -> dict[str, Tensor]:
        """Run the model; return its logits and the tapped tensors of this pass."""
        self.captured = {}
        out = {LOGITS: _first_tensor(self.model(*args, **kwargs))}
        out.update(self.captured)
        self.captured = {}
        return out

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
