"""timm's pretrained weights by name: ``timm:<model>`` with ``params: {weights: DEFAULT}`` (the model's default
pretrained tag) or one of its tags (``weights: a1_in1k`` for timm's ``resnet18.a1_in1k``).

timm loads them itself (``timm.create_model(..., pretrained=True)``), the way it always does: from the Hugging Face
hub cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``) for the weights timm keeps on
the hub (nearly all), from torch hub's cache (``$TORCH_HOME/hub/checkpoints``) for the few it keeps at a URL;
downloaded there once when missing, unless offline (``HF_HUB_OFFLINE=1``). timm drops the 1000-class head for
another number of classes and sums the RGB stem for grey images. Offline and not cached, one line names what is
missing and where to put it; the config's validation asks :func:`check_timm_weights`, so that is before any data is
read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import nn

from kdkit.errors import ConfigError, ModelError

TORCH_HUB_WEIGHTS = "checkpoints"  # torch.hub keeps downloaded weights in this folder of its directory

DEFAULT = "DEFAULT"  # the model's default pretrained tag, as torchvision's weights enums name theirs


@dataclass(frozen=True)
class TimmWeights:
    """Where timm finds the weights of `model` (its full name, architecture.tag): a hub repo and the files timm
    tries in it, in order, or else a URL whose file torch hub caches."""

    model: str
    repo: str | None
    revision: str | None
    files: tuple[str, ...]
    url: str | None

    def cached(self) -> bool:
        """Whether one of the files timm reads is in its cache already."""
        if self.repo is not None:
            from huggingface_hub import try_to_load_from_cache

            return any(isinstance(try_to_load_from_cache(self.repo, f, revision=self.revision), str)
                       for f in self.files)
        return (torch_hub_folder() / url_file(self.url or "")).is_file()

    def missing(self, reason: str) -> str:
        """One line: which weights are missing, why (`reason`), and where to put them."""
        if self.repo is not None:
            from huggingface_hub import constants

            folder = f"models--{self.repo.replace('/', '--')}"
            return (f"timm weights {self.model} are not in the Hugging Face hub cache ({reason}); put {folder}/ "
                    f"(from `hf download {self.repo} {self.files[0]}` where there is network) in "
                    f"{constants.HF_HUB_CACHE}/, or give a local file as params.pretrained")
        return (f"timm weights {self.model} are not in torch hub's cache ({reason}); put {url_file(self.url or '')} "
                f"(from {self.url}) in {torch_hub_folder()}/, or give a local file as params.pretrained")


def torch_hub_folder() -> Path:
    """Where torch.hub keeps downloaded weights (torchvision's and the few timm keeps at a URL)."""
    from torch.hub import get_dir

    return Path(get_dir()) / TORCH_HUB_WEIGHTS


def url_file(url: str) -> str:
    return Path(urlparse(url).path).name


def _hub_files(filename: str | None) -> tuple[str, ...]:
    """The files timm reads from a hub repo, in its order: a safetensors file before a pickled one."""
    from huggingface_hub.constants import PYTORCH_WEIGHTS_NAME, SAFETENSORS_SINGLE_FILE

    if filename is None or filename == PYTORCH_WEIGHTS_NAME:
        return SAFETENSORS_SINGLE_FILE, PYTORCH_WEIGHTS_NAME
    return ((filename[:-4] + ".safetensors", filename) if filename.endswith(".bin") else (filename,))


def timm_weights(name: str, weights: Any) -> TimmWeights:
    """The weights `weights` names for timm model `name`: DEFAULT (the tag in `name`, else timm's default tag of the
    architecture) or one of the architecture's pretrained tags. A name or tag timm has no weights for is one
    ConfigError line listing the tags there are."""
    import timm
    from timm.models import get_pretrained_cfg

    if not isinstance(weights, str):
        raise ConfigError(f"timm model param 'weights' is DEFAULT or a pretrained tag, got {weights!r}")
    arch, _, tag = name.partition(".")
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
    if not tags:
        raise ConfigError(f"timm model '{arch}' has no pretrained weights; give a local file as params.pretrained "
                          "or remove params.weights")
    wanted = tag if weights == DEFAULT else weights
    if wanted and (wanted not in tags or (tag and wanted != tag)):
        raise ConfigError(f"timm model '{name}' has no weights '{weights}'; choose DEFAULT or one of: "
                          f"{', '.join(tags if not tag else [tag])}")
    label = f"{arch}.{wanted}" if wanted else arch
    cfg = get_pretrained_cfg(label)
    if cfg is None or cfg.custom_load or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"timm weights {label} are read by timm's own custom code, which kdkit does not run; give "
                          "a local file as params.pretrained")
    repo, _, revision = (cfg.hf_hub_id or "").partition("@")
    return TimmWeights(f"{arch}.{cfg.tag}", repo or None, revision or None, _hub_files(cfg.hf_hub_filename), cfg.url)


def _before_2_6(version: str) -> bool:
    major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    return (major, minor) < (2, 6)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_timm_weights(name: str, weights: Any) -> TimmWeights:
    """The refusals that need no building: an unknown tag, and offline, weights not in the cache. Returns where
    timm finds the weights."""
    found = timm_weights(name, weights)
    if offline() and not found.cached():
        raise ModelError(found.missing("offline: HF_HUB_OFFLINE=1"))
    return found


def create_pretrained(name: str, weights: Any, num_classes: int, channels: int, **kwargs: Any) -> nn.Module:
    """timm model `name` with the pretrained weights `weights` names, loaded by timm from its cache (downloaded
    there when missing and online), a `num_classes` head and `channels` input channels."""
    import timm
    import torch

    if _before_2_6(torch.__version__):  # timm then unpickles downloaded .bin/.pth files with torch.load's old default
        raise ConfigError(f"named timm weights need torch >= 2.6 (its torch.load reads weights only), this is "
                          f"{torch.__version__}; give a local file as params.pretrained")
    found = check_timm_weights(name, weights)
    try:
        return timm.create_model(found.model, pretrained=True, num_classes=num_classes, in_chans=channels, **kwargs)
    except TypeError as err:
        raise ConfigError(f"timm model '{name}': {err}") from None
    except (OSError, RuntimeError, ValueError) as err:  # no network (an OSError), a damaged or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if found.cached():
            raise ModelError(f"cannot read timm weights {found.model} from its cache ({reason}); delete them there "
                             "to fetch them again") from None
        raise ModelError(found.missing(reason)) from None


__all__ = ["DEFAULT", "TimmWeights", "check_timm_weights", "create_pretrained", "timm_weights"]
