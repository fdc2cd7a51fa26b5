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


def _is_wrapper(model: nn.Module) -> bool:
    # DDP, DataParallel and similar wrappers hold the user's model as their only child, named `module`; a model
    # that merely has a submodule called `module` among others is not a wrapper
    children = [name for name, _ in model.named_children()]
    return children == ["module"]


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at `path`; an unknown path raises ModelError listing the closest names.

    On a wrapped model the ``module.`` prefix is optional: ``layer1`` and ``module.layer1`` name the same module.
    """
    names = dict(model.named_modules())
    wrapped = _is_wrapper(model)
    for candidate in (path, f"module.{path}") if wrapped else (path,):
        if candidate in names:
            return names[candidate]
    known, asked, base = [n for n in names if n], path, model
    if wrapped:  # suggest the user's own names, without the wrapper's prefix
        known = [n.removeprefix("module.") for n in known if n != "module"]
        asked, base = path.removeprefix("module."), model.module
    close = difflib.get_close_matches(asked, known, n=5, cutoff=0.5)
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
        self._active = False  # record only inside __call__: other forwards (validation, export) keep nothing
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
            if self._active:
                self.captured[path] = _first_tensor(inputs if takes_input else output)

        return record

    def __call__(self, *args: object, **kwargs: object) -> dict[str, Tensor]:
        """Run the model; return its logits and the tapped tensors of this pass."""
        self.captured, self._active = {}, True
        try:
            out = {LOGITS: _first_tensor(self.model(*args, **kwargs))}
        finally:
            self._active = False
        missing = [p for p in self.paths if p not in self.captured]
        if missing:
            raise ModelError(
                f"module(s) {', '.join(missing)} did not run in the forward pass, so nothing was captured; "
                "tap modules that the model's forward calls"
            )
        out.update(self.captured)
        self.captured = {}
        return out

    def remove(self) -> None:
        """Detach every hook; the model runs as if never tapped. Safe to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
