"""A classification run's trained model, loaded from its run directory: `kdkit.load(run_dir, model="student_kd")`
and `kdkit predict`.

The model is rebuilt from the run's config.yaml and models/meta.json alone (no data is loaded: the training
images or texts may be gone), its weights read from models/<role>.safetensors, and it is handed back in eval
mode as a :class:`kdkit.deploy.inference.LoadedModel`. A quantization-aware student comes back as its int8
conversion, the model the table measured.

A raw-text run (``data.raw_text``) gives back the module it trained: an ``hf:`` model that tokenizes the text with
the tokenizer of its folder, a word model wrapped to encode it with the run's vocabulary; both read the texts'
UTF-8 bytes (:func:`kdkit.models.raw_text.encode_texts`), which is what :meth:`LoadedModel.read` gives them.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from kdkit.deploy.inference import LoadedModel
from kdkit.errors import KdkitError, RunDirError
from kdkit.families.classification.pipeline import run_config
from kdkit.io.checkpoint import load_weights
from kdkit.models import build_from_config
from kdkit.models.quantization import convert_quantized, prepare_qat
from kdkit.run.meta import read_meta, weights_file
from kdkit.run.rundir import RunDir
from kdkit.trainer.loop import seed_everything


def load_classification(run_dir: str | Path, model: str = "student_kd", device: str = "cpu") -> LoadedModel:
    """The classification run's `model` (teacher, student_alone or student_kd), in eval mode on `device`."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir, roles=(model,))
    meta = read_meta(run_dir)
    vocab = None
    if meta["kind"] == "text":
        from kdkit.data.vocabulary import Vocabulary

        vocab = Vocabulary.load(RunDir(run_dir).vocab)
    raw_text = cfg.data.keeps_raw_text()  # the config says it for runs whose meta.json predates the flag
    if raw_text and not (meta.get("preprocessing") or {}).get("raw_text"):
        from kdkit.data.raw_text import DEFAULT_MAX_BYTES
        from kdkit.run.meta import RAW_TEXT

        meta["preprocessing"] = {**meta["preprocessing"], "raw_text": True, "max_bytes": DEFAULT_MAX_BYTES,
                                 "tokenizer": RAW_TEXT}
    net, int8 = _build(run_dir, cfg, meta, model, vocab if raw_text else None)
    load_weights(net, weights_file(run_dir, model))
    net = convert_quantized(net) if int8 else net.to(device)
    net.eval()
    return LoadedModel(net, model, list(meta["class_names"]), tuple(meta["input_shape"]), meta["kind"],
                       meta.get("preprocessing"), vocab, meta, getattr(cfg.data, "text_column", "text"))


def _build(run_dir: Path, cfg: Any, meta: dict[str, Any], role: str, vocab: Any) -> tuple[nn.Module, bool]:
    """The untrained model of `role` as the run built it (wrapped to read raw text when `vocab` is given), and
    whether it is a quantization-aware student (to be converted to int8 once its weights are in)."""
    shape = tuple(meta["input_shape"])
    data = SimpleNamespace(input_shape=shape, num_classes=meta["num_classes"], model_kwargs=meta["model_kwargs"])
    if vocab is not None:
        from kdkit.data.raw_text import reading_raw_text

        data.wrap_model = lambda name, net: reading_raw_text(name, net, vocab)
    student = role != "teacher"
    spec = cfg.student if student else cfg.teacher
    seed_everything(cfg.seed + (1 if student else 0))  # the same start as training; the weights replace it anyway
    try:
        net = build_from_config(spec, data)
    except KdkitError as err:
        if spec.name.startswith(("hf:", "hf_lm:")):  # the architecture and the tokenizer live in that folder
            raise RunDirError(f"cannot load the {role} of {run_dir}: it is {spec.name}, whose folder holds its "
                              f"architecture and tokenizer ({err}); put the folder back there") from None
        raise
    int8 = student and cfg.student.quantize is not None
    if int8:
        dtype = torch.long if meta["input_dtype"].startswith("int") else torch.float32
        net = prepare_qat(net, torch.zeros((2, *shape), dtype=dtype), cfg.student.quantize)
    return net, int8
