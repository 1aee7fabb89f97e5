"""Recurrent networks: RNN, GRU and the LSTM in two variants (document 000, §3.1.3).

The ``document`` LSTM computes the source document's six equations literally:

    i_t = σ(W_ix x_t + W_ih h_{t-1} + b_i)        input gate     (输入门)
    f_t = σ(W_fx x_t + W_fh h_{t-1} + b_f)        forget gate    (遗忘门)
    o_t = σ(W_ox x_t + W_oh h_{t-1} + b_o)        output gate    (输出门)
    h_t = tanh(W_ih h_{t-1} + W_hx x_t + b_h)     "current hidden state"
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ h_t               cell state     (细胞状态)
    y_t = σ(W_oh c_t + b_o)                       the step's output (the second "o_t")

Read literally this is not the textbook LSTM: ``W_ih`` serves the input gate *and* the
candidate h_t (one array; its gradient is the sum of both uses), ``W_oh`` and ``b_o``
serve the output gate *and* the output, h_t is the un-gated tanh candidate and is what
recurs, and the output gate o_t is computed and then shadowed by the second o_t — it
feeds nothing, so ``W_ox`` receives no gradient (``W_ox.grad`` stays None). We keep all
of that, because the point is to run what the document wrote and measure it.

The ``standard`` LSTM is the usual one, with PyTorch's layout (gates i, f, g, o stacked
in ``weight_ih`` (4H, I) and ``weight_hh`` (4H, H)) so its state_dict loads into
``torch.nn.LSTM``: c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t), and y_t = h_t.
"""
import math

import numpy as np

from .. import functional as F
from .. import ops
from ..rng import generator
from .module import Module, Parameter

VARIANTS = ("standard", "document")


def _uniform(shape, hidden_size):
    bound = 1 / math.sqrt(hidden_size)  # PyTorch's init for every recurrent weight
    return Parameter(generator().uniform(-bound, bound, size=shape).astype(np.float32))


def _check_input(name, x, input_size):
    if x.shape[-1] != input_size:
        raise ValueError(f"{name}: expected input of size {input_size} in the last dimension, got shape {x.shape}")


def _check_state(name, state, expected):
    if tuple(state.shape) != tuple(expected):
        raise ValueError(f"{name}: state has shape {tuple(state.shape)}, expected {tuple(expected)}")


class LSTMCell(Module):
    """One LSTM step: ``cell(x, (h, c)) -> (y, (h, c))`` for x (B, input_size)."""

    def __init__(self, input_size, hidden_size, variant="standard"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"LSTMCell: unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
        self.input_size, self.hidden_size, self.variant = input_size, hidden_size, variant
        i, h = input_size, hidden_size
        if variant == "standard":
            self.weight_ih = _uniform((4 * h, i), h)
            self.weight_hh = _uniform((4 * h, h), h)
            self.bias_ih = _uniform((4 * h,), h)
            self.bias_hh = _uniform((4 * h,), h)
        else:
            for name in ("W_ix", "W_fx", "W_ox", "W_hx"):
                setattr(self, name, _uniform((h, i), h))
            for name in ("W_ih", "W_fh", "W_oh"):
                setattr(self, name, _uniform((h, h), h))
            for name in ("b_i", "b_f", "b_o", "b_h"):
                setattr(self, name, _uniform((h,), h))

    def initial_state(self, batch, like):
        zeros = ops.as_tensor(np.zeros((batch, self.hidden_size), like.dtype), like)
        return zeros, zeros

    def forward(self, x, state=None):
        _check_input("LSTMCell", x, self.input_size)
        h, c = state if state is not None else self.initial_state(x.shape[0], x)
        _check_state("LSTMCell", h, (x.shape[0], self.hidden_size))
        _check_state("LSTMCell", c, (x.shape[0], self.hidden_size))
        return self._document(x, h, c) if self.variant == "document" else self._standard(x, h, c)

    def _standard(self, x, h, c):
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)  # (B, 4H)
        i, f, g, o = ops.split(gates, self.hidden_size, dim=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, (h, c)

    def _document(self, x, h_prev, c_prev):
        i = ops.sigmoid(F.linear(x, self.W_ix) + F.linear(h_prev, self.W_ih) + self.b_i)
        f = ops.sigmoid(F.linear(x, self.W_fx) + F.linear(h_prev, self.W_fh) + self.b_f)
        self.output_gate = ops.sigmoid(F.linear(x, self.W_ox) + F.linear(h_prev, self.W_oh) + self.b_o)  # feeds nothing
        h = ops.tanh(F.linear(h_prev, self.W_ih) + F.linear(x, self.W_hx) + self.b_h)
        c = f * c_prev + i * h
        y = ops.sigmoid(F.linear(c, self.W_oh) + self.b_o)
        return y, (h, c)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, variant={self.variant!r}"


class RNNCell(Module):
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (PyTorch's names)."""

    gates = 1  # blocks of hidden_size rows stacked in each weight

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = _uniform((rows, input_size), hidden_size)
        self.weight_hh = _uniform((rows, hidden_size), hidden_size)
        self.bias_ih = _uniform((rows,), hidden_size)
        self.bias_hh = _uniform((rows,), hidden_size)

    def initial_state(self, batch, like):
        return ops.as_tensor(np.zeros((batch, self.hidden_size), like.dtype), like)

    def forward(self, x, h=None):
        _check_input(type(self).__name__, x, self.input_size)
        h = self.initial_state(x.shape[0], x) if h is None else h
        _check_state(type(self).__name__, h, (x.shape[0], self.hidden_size))
        h = self.step(x, h)
        return h, h

    def step(self, x, h):
        return ops.tanh(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))


class GRUCell(RNNCell):
    """PyTorch's GRU: r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(… z …),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h."""

    gates = 3  # r, z, n

    def step(self, x, h):
        xr, xz, xn = ops.split(F.linear(x, self.weight_ih, self.bias_ih), self.hidden_size, dim=-1)
        hr, hz, hn = ops.split(F.linear(h, self.weight_hh, self.bias_hh), self.hidden_size, dim=-1)
        r, z = ops.sigmoid(xr + hr), ops.sigmoid(xz + hz)
        n = ops.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class _Recurrent(Module):
    """A stack of cells run over a sequence; parameters are registered under PyTorch's
    per-layer names (``weight_ih_l0`` …, or ``W_ix_l0`` … for the document LSTM)."""

    cell_type = None

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=False, **cell_kwargs):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.batch_first = num_layers, batch_first
        self._cells = [self.cell_type(input_size if layer == 0 else hidden_size, hidden_size, **cell_kwargs)
                       for layer in range(num_layers)]
        for layer, cell in enumerate(self._cells):
            for name, p in cell.named_parameters():
                setattr(self, f"{name}_l{layer}", p)

    def train(self, mode=True):
        super().train(mode)
        for cell in self._cells:
            cell.train(mode)
        return self

    def _split_state(self, state, batch, x):
        """Per-layer states from the stacked (num_layers, B, H) form, or fresh zeros."""
        if state is None:
            return [cell.initial_state(batch, x) for cell in self._cells]
        name = type(self).__name__
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            _check_state(name, part, (self.num_layers, batch, self.hidden_size))
        per_layer = [tuple(part[layer] for part in parts) for layer in range(self.num_layers)]
        return per_layer if isinstance(state, tuple) else [s[0] for s in per_layer]

    def forward(self, x, state=None):
        """x (T, B, input) — or (B, T, input) with batch_first — → (output, final state),
        output stacking every step's y of the last layer, state stacked over layers."""
        name = type(self).__name__
        if x.ndim != 3:
            raise ValueError(f"{name}: expected a 3-D input (T, B, {self.input_size}) or with batch_first "
                             f"(B, T, {self.input_size}); got shape {x.shape}")
        _check_input(name, x, self.input_size)
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        states = self._split_state(state, x.shape[1], x)
        layer_input = [x[t] for t in range(x.shape[0])]
        finals = []
        for cell, layer_state in zip(self._cells, states):
            outputs = []
            for x_t in layer_input:
                y_t, layer_state = cell(x_t, layer_state)
                outputs.append(y_t)
            finals.append(layer_state)
            layer_input = outputs
        output = ops.stack(layer_input, dim=0)  # (T, B, H)
        if self.batch_first:
            output = output.transpose(0, 1)
        if isinstance(finals[0], tuple):
            final = tuple(ops.stack([f[i] for f in finals], dim=0) for i in range(len(finals[0])))
        else:
            final = ops.stack(finals, dim=0)
        return output, final

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}"


class LSTM(_Recurrent):
    cell_type = LSTMCell

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=False, variant="standard"):
        super().__init__(input_size, hidden_size, num_layers, batch_first, variant=variant)
        self.variant = variant

    def extra_repr(self):
        return super().extra_repr() + f", variant={self.variant!r}"


class RNN(_Recurrent):
    cell_type = RNNCell


class GRU(_Recurrent):
    cell_type = GRUCell
