"""What a trained model needs besides its weights, saved with the run as ``run_dir/models/meta.json`` (and the
text vocabulary as ``run_dir/models/vocab.json``):

    kind            "tensor" (rows of numbers shaped like input_shape), "image" (decoded, resized, normalised image
                    files) or "text" (texts turned into word ids by the vocabulary)
    input_shape, input_dtype, num_classes, class_names, per_token (sequence labelling: one class per word)
    preprocessing   image: image_size [H, W], channels, mean and std applied after scaling to [0, 1];
                    text: the vocabulary file and max_len; raw text (data.raw_text) also raw_text: true and
                    max_bytes, the models then reading the texts' bytes and tokenizing them themselves
    models          per role: the model's name and params, and its weights file (in models/); a teacher loaded
                    from ``teacher.checkpoint`` and left unchanged is referenced instead of copied: its
                    ``reference`` holds the file's absolute path, size and SHA-256, checked at every load

A language-model run's meta.json holds only its format, "kind": "lm" and such references: a teacher used as given
(a ``teacher.checkpoint`` file, or a pretrained ``hf_lm:`` folder whose reference lists each file's size and SHA-256
and one SHA-256 over them all) is referenced instead of copied, unless ``kdkit train --copy-teacher``.

Saved at training time because the data that knew these facts (the image folder's normalisation, the vocabulary
counted on the training split) may be gone when the student is used; `kdkit.load` and `kdkit predict` read it
without rebuilding the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdkit.errors import RunDirError
from kdkit.run.rundir import RunDir

META_FORMAT = 1
RAW_TEXT = ("each model its own: an hf: model the tokenizer in its folder, a word model the vocabulary (lower-cased "
            "words and punctuation marks, kdkit.data.text.tokenize); inputs are the texts' UTF-8 bytes "
            "(kdkit.models.raw_text.encode_texts)")


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """meta.json of a run directory; RunDirError saying how to get one when it is missing or unreadable."""
    path = RunDir(run_dir).meta
    if not path.is_file():
        raise RunDirError(f"{path} is missing (runs trained before kdkit saved it); rebuild it with "
                          f"`kdkit evaluate {run_dir}`")
    from kdkit.io.textfile import read_text

    try:
        meta = json.loads(read_text(path, RunDirError))
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON ({err.msg}); rebuild it with `kdkit evaluate {run_dir}`") \
            from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise RunDirError(f"{path} has format {meta.get('format') if isinstance(meta, dict) else None!r}; this "
                          f"kdkit reads format {META_FORMAT}: rebuild it with `kdkit evaluate {run_dir}`")
    shape, names = meta.get("input_shape"), meta.get("class_names")
    damaged = [key for key, ok in (
        ("kind", meta.get("kind") in ("tensor", "image", "text")),
        ("input_shape", isinstance(shape, list) and all(type(v) is int and v > 0 for v in shape)),
        ("input_dtype", isinstance(meta.get("input_dtype"), str)),
        ("num_classes", type(meta.get("num_classes")) is int and meta["num_classes"] > 0),
        ("class_names", isinstance(names, list) and len(names) == meta.get("num_classes")),
        ("model_kwargs", isinstance(meta.get("model_kwargs", {}), dict)),
        ("preprocessing", meta.get("kind") != "image" or (isinstance(meta.get("preprocessing"), dict) and {
            "image_size", "channels", "scale", "mean", "std"} <= set(meta["preprocessing"]))),
    ) if not ok]
    if damaged:
        raise RunDirError(f"{path} is damaged ({', '.join(damaged)} missing or invalid); rebuild it with "
                          f"`kdkit evaluate {run_dir}`")
    return meta


def input_metadata(inputs: dict[str, tuple[list[Any], str]], tokenizer: dict[str, Any] | None = None) -> dict[str, str]:
    """The ONNX metadata keys that describe a graph's inputs, from name -> (shape, dtype) with dynamic axes named
    ("batch", "sequence"): kdkit.inputs (all of them, JSON, in graph order), and kdkit.input_name, input_shape
    and input_dtype of the first. With `tokenizer` (a raw-text model's, see kdkit.deploy.export_text), kdkit.tokenizer
    and kdkit.preprocessing describe it: the texts are tokenized outside the graph."""
    first = next(iter(inputs))
    out = {"kdkit.inputs": json.dumps({name: {"shape": shape, "dtype": dtype}
                                       for name, (shape, dtype) in inputs.items()}),
           "kdkit.input_name": first, "kdkit.input_shape": json.dumps(inputs[first][0]),
           "kdkit.input_dtype": inputs[first][1]}
    if tokenizer is not None:
        out["kdkit.tokenizer"] = out["kdkit.preprocessing"] = json.dumps(tokenizer)
    return out


def onnx_metadata(run_dir: str | Path, role: str) -> dict[str, str]:
    """What an exported ONNX file carries (as kdkit.* strings, JSON where structured): the input's name ("input"
    here; raw-text exports overlay their token-id inputs with input_metadata), shape and dtype, the class names, the
    data kind and its preprocessing; empty for runs without a meta.json. A text run's vocabulary stays in
    models/vocab.json, named here."""
    path = RunDir(run_dir).meta
    if not path.is_file():
        return {}
    meta = read_meta(run_dir)
    return {"kdkit.model": role, "kdkit.class_names": json.dumps(meta["class_names"]), "kdkit.kind": meta["kind"],
            "kdkit.preprocessing": json.dumps(meta["preprocessing"]),
            **input_metadata({"input": (["batch", *meta["input_shape"]], meta["input_dtype"])})}


_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> SHA-256: a file checked twice is read once


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (remembered for a file whose size and mtime are unchanged)."""
    import hashlib

    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASHED:
        return _HASHED[key]
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def file_reference(path: str | Path) -> dict[str, Any]:
    """What meta.json keeps of weights referenced, not copied: the absolute path, size and SHA-256 of the file."""
    path = Path(path).expanduser().resolve()
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def references(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """role -> reference of the weights a run keeps outside its directory (none for runs that copied them)."""
    path = RunDir(run_dir).meta
    try:
        models = json.loads(path.read_text(encoding="utf-8")).get("models", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {role: entry["reference"] for role, entry in models.items()
            if isinstance(entry, dict) and isinstance(entry.get("reference"), dict)}


def folder_reference(path: str | Path) -> dict[str, Any]:
    """What meta.json keeps of a model folder referenced, not copied (an hf_lm: folder: weights, config and tokenizer
    files): its absolute path, per file directly in it (hidden files aside) the size and SHA-256, and one SHA-256
    over those, which stands for the folder's weights when runs are compared."""
    import hashlib

    path = Path(path).expanduser().resolve()
    files = {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
             for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".")}
    summary = "\n".join(f"{name} {entry['sha256']}" for name, entry in files.items())
    return {"path": str(path), "files": files, "sha256": hashlib.sha256(summary.encode()).hexdigest()}


def reference_change(reference: dict[str, Any]) -> str | None:
    """None when the referenced file or folder still holds the bytes it had when referenced; "missing" when it is
    gone; else what changed (for a folder, its first file that differs)."""
    path = Path(str(reference.get("path")))
    if "files" in reference:
        if not path.is_dir():
            return "missing"
        now, then = folder_reference(path)["files"], reference["files"]
        differ = [name for name in sorted({*now, *then}) if now.get(name) != then.get(name)]
        if not differ:
            return None
        how = "is gone" if differ[0] not in now else "is new" if differ[0] not in then else "has other bytes"
        return f"its file {differ[0]} {how}"
    if not path.is_file():
        return "missing"
    if path.stat().st_size != reference.get("bytes") or file_sha256(path) != reference.get("sha256"):
        return "its SHA-256 no longer matches the recorded one"
    return None


def reference_line(role: str, reference: dict[str, Any]) -> str:
    """The line a run prints when it refers to its `role`'s weights instead of copying them."""
    return (f"{role}: not copied; the run refers to {reference['path']} (SHA-256 {reference['sha256'][:12]}...), "
            "which must stay as it is (`--copy-teacher` copies it)")


def weights_file(run_dir: str | Path, role: str) -> Path:
    """The weights of a run's `role`: models/<role>.safetensors, or the file or folder meta.json references (a
    teacher used as given, kept where it was), which must still be there with the same bytes; RunDirError naming it
    otherwise."""
    run_dir = Path(run_dir)
    ref = references(run_dir).get(role)
    if ref is None:
        return RunDir(run_dir).weights(role)
    path = Path(str(ref.get("path")))
    again = f"put it back, or retrain with `kdkit train CONFIG --copy-teacher` to keep a copy in {run_dir}"
    change = reference_change(ref)
    if change == "missing":
        raise RunDirError(f"{path} is missing: {run_dir} uses it as its {role} (referenced, not copied); {again}")
    if change is not None:
        raise RunDirError(f"{path} has changed since {run_dir} used it as its {role} ({change}; reference in "
                          f"{RunDir(run_dir).meta}); {again}")
    return path


def weights_sha256(run_dir: str | Path, role: str) -> str | None:
    """SHA-256 of the weights of a run's `role` (the referenced file's, as recorded), None when there are none."""
    ref = references(run_dir).get(role)
    if ref is not None:
        return str(ref.get("sha256"))
    path = RunDir(run_dir).weights(role)
    return file_sha256(path) if path.is_file() else None


def teacher_reference(weights_digest: str, loaded: tuple[dict[str, Any], str] | None) -> dict[str, dict[str, Any]]:
    """{"teacher": reference} when the teacher is used as given and unchanged: `weights_digest` (of its weights now)
    equals the digest it was loaded with, and the file or folder still holds the bytes it had then; else {} and the
    run saves the teacher's weights like the other models'."""
    if loaded is None:
        return {}
    reference, digest = loaded
    if weights_digest != digest or reference_change(reference) is not None:
        return {}
    return {"teacher": reference}
