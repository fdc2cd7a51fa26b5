"""``text_bilstm``: the student of Tang et al. 2019 (*Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks*): word embeddings -> one bidirectional LSTM layer -> the last forward and the last backward hidden states,
concatenated -> ReLU hidden layer -> class logits.

    h = [LSTM_fwd(x)_last ; LSTM_bwd(x)_first]        (2 * hidden)
    logits = W_2 relu(W_1 h + b_1) + b_2

Rows are word ids (N, L) padded with 0 (see :mod:`kdkit.data.text`); the LSTM runs on packed sequences, so padding is
never read and appending pad tokens leaves the logits unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from kdkit.models.text import PAD_ID, _max_len, _need_vocab, check_ids


class TextBiLSTM(nn.Module):
    """Embedding -> BiLSTM (packed) -> [last forward state; last backward state] -> ReLU MLP -> logits."""

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 64, hidden: int = 64, fc: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, fc), nn.ReLU(), nn.Linear(fc, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        check_ids(x, self.vocab_size)
        lengths = (x != PAD_ID).sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
        _, (last, _) = self.lstm(packed)  # last: (2, N, hidden), forward then backward direction
        return self.head(torch.cat([last[0], last[1]], dim=1))


def build_text_bilstm(
    input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None, dim: int = 64, hidden: int = 64,
    fc: int = 64, dropout: float = 0.1,
) -> TextBiLSTM:
    _max_len(input_shape, "text_bilstm")
    return TextBiLSTM(_need_vocab("text_bilstm", vocab_size), num_classes, dim, hidden, fc, dropout)


__all__ = ["TextBiLSTM", "build_text_bilstm"]
