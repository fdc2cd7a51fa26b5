"""ONNX forms of the text models that run their RNN on packed sequences (``text_bilstm``, ``text_gru``).

Packing (``pack_padded_sequence``) is what lets those models skip padding, but neither ONNX exporter can capture a
PackedSequence, so the models as trained cannot be exported. Their forms here compute the same logits on padded
rows without packing; rows are left-aligned word ids padded with 0 on the right, as kdkit's Vocabulary writes them,
so a text of length n occupies positions 0..n-1:

* the forward direction reads the whole row and keeps its state at position n-1 (padding comes after, so it cannot
  have changed that state);
* the backward direction reads each row's first n positions reversed (positions n-1, ..., 0, then the padding),
  and keeps its state after n steps, which is where the packed backward pass ends.

An empty row counts as length 1, as in the packed models. Export builds these forms from the trained model's weights
(copies; the model is not changed) and checks their ONNX Runtime outputs against the packed model itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdkit.models.lstm import TextBiLSTM
from kdkit.models.text import PAD_ID, TextGRU


def _one_direction(rnn: nn.LSTM | nn.GRU, suffix: str) -> nn.LSTM | nn.GRU:
    """A single-layer, one-direction copy of `rnn`'s first layer in one direction ("" forward, "_reverse")."""
    if rnn.num_layers != 1:
        raise NotImplementedError("only single-layer RNNs have an ONNX form here")
    single = type(rnn)(rnn.input_size, rnn.hidden_size, batch_first=True, bias=rnn.bias)
    state = {name: getattr(rnn, f"{name}{suffix}").detach().clone() for name, _ in single.named_parameters()}
    single.load_state_dict(state)
    return single


def _lengths(x: Tensor) -> Tensor:
    return (x != PAD_ID).sum(1).clamp(min=1)


def _at(states: Tensor, positions: Tensor) -> Tensor:
    """states (N, L, H) at one position per row (N,) -> (N, H)."""
    index = positions.view(-1, 1, 1).expand(-1, 1, states.shape[-1])
    return states.gather(1, index).squeeze(1)


def reverse_within_length(h: Tensor, lengths: Tensor) -> Tensor:
    """h (N, L, D) with each row's first `lengths` positions in reverse order; the padding after them stays."""
    positions = torch.arange(h.shape[1], device=h.device).unsqueeze(0)
    source = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
    return h.gather(1, source.unsqueeze(-1).expand_as(h))


class UnpackedBiLSTM(nn.Module):
    """TextBiLSTM's function without packed sequences (see the module docstring)."""

    def __init__(self, model: TextBiLSTM) -> None:
        super().__init__()
        self.embed, self.head = model.embed, model.head
        self.forward_rnn = _one_direction(model.lstm, "")
        self.backward_rnn = _one_direction(model.lstm, "_reverse")

    def forward(self, x: Tensor) -> Tensor:
        lengths = _lengths(x)
        h = self.embed(x)
        forward_states, _ = self.forward_rnn(h)
        backward_states, _ = self.backward_rnn(reverse_within_length(h, lengths))
        last = lengths - 1
        return self.head(torch.cat([_at(forward_states, last), _at(backward_states, last)], dim=1))


class UnpackedGRU(nn.Module):
    """TextGRU's function without packed sequences: the GRU's state at each row's last word."""

    def __init__(self, model: TextGRU) -> None:
        super().__init__()
        self.embed, self.head = model.embed, model.head
        self.rnn = _one_direction(model.gru, "")

    def forward(self, x: Tensor) -> Tensor:
        states, _ = self.rnn(self.embed(x))
        return self.head(_at(states, _lengths(x) - 1))


def onnx_form(model: nn.Module) -> nn.Module:
    """The module to hand to the ONNX exporters for `model`: its unpacked form when it has one, else itself."""
    if isinstance(model, TextBiLSTM):
        return UnpackedBiLSTM(model).train(model.training)
    if isinstance(model, TextGRU) and model.gru.num_layers == 1:
        return UnpackedGRU(model).train(model.training)
    return model


__all__ = ["UnpackedBiLSTM", "UnpackedGRU", "onnx_form", "reverse_within_length"]
