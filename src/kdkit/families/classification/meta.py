"""meta.json of a classification run: what its DataBundle tells about the inputs (kind, shape, dtype, class names,
preprocessing) and the models of each role, written when the run trains (the format and its reader: kdkit.run.meta).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdkit.adapters import example_inputs
from kdkit.io.checkpoint import write_atomic
from kdkit.run.meta import META_FORMAT, RAW_TEXT
from kdkit.run.rundir import VOCAB, RunDir


def describe_data(bundle: Any) -> dict[str, Any]:
    """kind, shapes, class names and preprocessing of a DataBundle, as saved in meta.json."""
    import torch

    example = example_inputs(bundle.test, size=1)
    vocab = getattr(bundle, "vocab", None)
    test = bundle.test.without_augmentation() if hasattr(bundle.test, "without_augmentation") else bundle.test
    labels = test[0][1] if len(test) else torch.zeros(())
    meta: dict[str, Any] = {
        "kind": "tensor", "input_shape": list(bundle.input_shape), "num_classes": int(bundle.num_classes),
        "input_dtype": str(example.dtype).removeprefix("torch."),
        "class_names": [str(c) for c in bundle.class_names] or [str(i) for i in range(bundle.num_classes)],
        "per_token": bool(getattr(labels, "ndim", 0) >= 1), "preprocessing": None,
        "model_kwargs": dict(getattr(bundle, "model_kwargs", {})),
    }
    if vocab is not None:
        meta["kind"] = "text"
        meta["preprocessing"] = {"vocabulary": Path(VOCAB).name, "max_len": vocab.max_len,
                                 "tokenizer": "lower-cased words and punctuation marks (kdkit.data.text.tokenize)"}
        if getattr(bundle, "raw_text", False):  # the models read the texts' bytes and tokenize them themselves
            meta["preprocessing"].update(raw_text=True, max_bytes=int(bundle.max_bytes), tokenizer=RAW_TEXT)
    elif hasattr(test, "mean") and hasattr(test, "images"):  # an image folder's ImageTensors
        channels, height, width = bundle.input_shape
        meta["kind"] = "image"
        meta["preprocessing"] = {"image_size": [height, width], "channels": channels, "scale": 1 / 255,
                                 "mean": test.mean.flatten().tolist(), "std": test.std.flatten().tolist()}
    return meta


def write_meta(run_dir: Path, bundle: Any, models: dict[str, Any], specs: dict[str, Any],
               references: dict[str, dict[str, Any]] | None = None) -> Path:
    """meta.json (and vocab.json for text) into run_dir/models; `specs` maps role -> the config's model entry,
    `references` role -> the file_reference of weights kept outside the run (a loaded teacher, not copied)."""
    references = references or {}
    meta = {"format": META_FORMAT, **describe_data(bundle), "models": {
        role: {"name": spec.name, "params": dict(spec.params),
               **({"reference": references[role]} if role in references else {"weights": f"{role}.safetensors"})}
        for role, spec in specs.items() if role in models}}
    vocab = getattr(bundle, "vocab", None)
    if vocab is not None:  # Vocabulary.save writes in place; go through a string for an atomic write
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            write_atomic(RunDir(run_dir).vocab, vocab.save(Path(tmp) / Path(VOCAB).name).read_text())
    return write_atomic(RunDir(run_dir).meta, json.dumps(meta, indent=2))
