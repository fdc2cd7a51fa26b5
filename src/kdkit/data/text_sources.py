"""The text sources' shared keys (:class:`WordTextSource`: kdkit's word vocabulary, or the raw text for models with
their own tokenizer, and texts nobody labelled) and the ``text_files`` source: your texts from files, read by
kdkit.data.text_files as word ids or by kdkit.data.raw_text keeping the raw text.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch.utils.data import TensorDataset

from kdkit.config.types import LaxPath
from kdkit.data.raw_text import load_text_files_raw, raw_unlabelled
from kdkit.data.source import ClassificationSource
from kdkit.data.text_files import TextBundle, load_text_files, read_texts, unlabelled_texts


class WordTextSource(ClassificationSource):
    """Keys of the text sources: kdkit's word vocabulary, or the raw text for models with their own tokenizer."""

    max_len: PositiveInt = Field(64, description="words kept per text (padded or cut)")
    min_freq: PositiveInt = Field(1, description="a word enters the vocabulary from this count")
    max_vocab: PositiveInt | None = Field(None, description="at most this many words in the vocabulary")
    raw_text: bool | None = Field(None, description="batches keep the raw text and each model tokenizes it its own "
                                  "way (hf: models with their tokenizer, word models with the vocabulary); default "
                                  "false: kdkit's word ids")
    unlabelled_file: LaxPath | None = Field(
        None, description="texts nobody labelled, for the teacher to label (a transfer set, beside or instead of "
        "transfer_size's): .csv / .jsonl with the text column, or a text file with one text per line")

    @model_validator(mode="after")
    def _unlabelled(self) -> WordTextSource:
        if self.unlabelled_file is not None and not self.unlabelled_file.is_file():
            raise ValueError(f"unlabelled_file: file not found: {self.unlabelled_file}")
        return self

    def keeps_raw_text(self) -> bool:
        return bool(self.raw_text)

    def with_unlabelled(self, bundle: TextBundle) -> TextBundle:
        """`bundle` with the texts of unlabelled_file added to its transfer set (label -1), encoded as its other
        texts are: raw bytes with raw_text, else ids of its vocabulary (counted on the training split only)."""
        if self.unlabelled_file is None:
            return bundle
        texts = read_texts(self.unlabelled_file, getattr(self, "text_column", "text"), hint="set data.text_column")
        if self.keeps_raw_text():
            extra = raw_unlabelled(texts, bundle.max_bytes)  # type: ignore[attr-defined]
        else:
            extra = unlabelled_texts(bundle.vocab, texts)  # type: ignore[arg-type]
        if bundle.transfer is not None:  # one TensorDataset, so batches stay whole-tensor slices
            extra = TensorDataset(*(torch.cat([a, b]) for a, b in zip(bundle.transfer.tensors, extra.tensors,
                                                                       strict=True)))
        bundle.transfer = extra
        return bundle


class TextFilesSource(WordTextSource):
    """text_files: your texts, .csv (header row) or .jsonl, one text and one label per row."""

    name: Literal["text_files"] = "text_files"
    train_file: LaxPath | None = Field(None, description="training texts, .csv (header row) or .jsonl")
    val_file: LaxPath | None = Field(None, description="validation texts (else carved from train)")
    test_file: LaxPath | None = Field(None, description="test texts")
    text_column: str = Field("text", description="the column holding the text")
    label_column: str = Field("label", description="the column holding the label")

    @model_validator(mode="after")
    def _files(self) -> TextFilesSource:
        if self.train_file is None or self.test_file is None:
            raise ValueError("text_files needs train_file and test_file (.csv with a header row, or .jsonl)")
        for key in ("train_file", "val_file", "test_file"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ValueError(f"{key}: file not found: {path}")
        if self.transfer_size and not self.raw_text:
            raise ValueError("text_files makes a transfer set (Tang et al.'s augmented sentences) only with "
                             "raw_text: true; set it, or data.transfer_size: 0")
        return self

    def load(self, seed: int) -> Any:
        """kdkit's word ids, or with ``raw_text`` the texts themselves (each model tokenizes them its own way;
        ``transfer_size`` adds Tang et al.'s augmented copies, ``unlabelled_file`` real texts nobody labelled)."""
        args = (self.train_file, self.test_file, self.val_file, self.text_column, self.label_column, self.max_len,
                self.min_freq, self.max_vocab, self.val_fraction, seed)
        if self.raw_text:
            return self.with_unlabelled(load_text_files_raw(*args, transfer_size=self.transfer_size))
        return self.with_unlabelled(load_text_files(*args))

