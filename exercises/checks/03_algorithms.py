"""Checks for chapter 03: the LSTM step against nn.LSTMCell(variant="document"), the RNN
and its BPTT against nn.RNN and backward(), clipping against the norm computed here and
clip_grad_norm_; float64 throughout."""
import math

import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import nn
from minillm.exercise import Wrong, arrays, exercise, expect_close, sides
from minillm.nn.utils import clip_grad_norm_

TOL = 1e-9
NAMES = ("W_ix", "W_fx", "W_ox", "W_hx", "W_ih", "W_fh", "W_oh", "b_i", "b_f", "b_o", "b_h")


def as_float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


@st.composite
def lstm_case(draw):
    batch, inputs, hidden = draw(sides()), draw(sides()), draw(sides())
    return draw(arrays((batch, inputs))), draw(arrays((batch, hidden), -1, 1)), draw(arrays((batch, hidden)))


@exercise("document_lstm_step", xhc=lstm_case(), seed=st.integers(0, 2 ** 16))
def check_document_lstm_step(learner, xhc, seed):
    x, h, c = xhc
    minillm.manual_seed(seed)
    cell = as_float64(nn.LSTMCell(x.shape[1], h.shape[1], variant="document"))
    W = {name: getattr(cell, name).numpy().copy() for name in NAMES}
    with minillm.no_grad():
        y, (h_new, c_new) = cell(minillm.tensor(x), (minillm.tensor(h), minillm.tensor(c)))
    answer = learner.document_lstm_step(W, x.copy(), h.copy(), c.copy())
    if not isinstance(answer, tuple) or len(answer) != 3:
        raise Wrong(f"expected a triple (y, h_new, c_new), got {type(answer).__name__}")
    for got, expected, name in zip(answer, (y, h_new, c_new), ("y", "h_new", "c_new")):
        expect_close(got, expected.numpy(), TOL, name)


@st.composite
def rnn_case(draw):
    steps, batch, inputs, hidden = draw(sides()), draw(sides()), draw(sides()), draw(sides())
    return draw(arrays((steps, batch, inputs))), draw(arrays((steps, batch, hidden))), hidden


def library_rnn(xs, hidden, seed):
    """An nn.RNN in float64 with one bias (its second, bias_hh, set to zero), and its weights."""
    minillm.manual_seed(seed)
    rnn = as_float64(nn.RNN(xs.shape[2], hidden))
    rnn.bias_hh_l0.data[...] = 0
    weights = (rnn.weight_ih_l0.numpy().copy(), rnn.weight_hh_l0.numpy().copy(), rnn.bias_ih_l0.numpy().copy())
    return rnn, weights


@exercise("rnn_forward", case=rnn_case(), seed=st.integers(0, 2 ** 16))
def check_rnn_forward(learner, case, seed):
    xs, _, hidden = case
    rnn, (W_xh, W_hh, b) = library_rnn(xs, hidden, seed)
    with minillm.no_grad():
        expected, _ = rnn(minillm.tensor(xs))
    expect_close(learner.rnn_forward(W_xh, W_hh, b, xs.copy()), expected.numpy(), TOL, "the hidden states")


@exercise("rnn_bptt", case=rnn_case(), seed=st.integers(0, 2 ** 16))
def check_rnn_bptt(learner, case, seed):
    xs, grad_hs, hidden = case
    rnn, (W_xh, W_hh, b) = library_rnn(xs, hidden, seed)
    hs, _ = rnn(minillm.tensor(xs))
    (hs * minillm.tensor(grad_hs)).sum().backward()      # L = Σ h_t ⊙ grad_hs[t]
    answer = learner.rnn_bptt(W_xh, W_hh, b, xs.copy(), grad_hs.copy())
    if not isinstance(answer, tuple) or len(answer) != 3:
        raise Wrong(f"expected a triple (dW_xh, dW_hh, db), got {type(answer).__name__}")
    for got, p, name in zip(answer, (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0), ("dW_xh", "dW_hh", "db")):
        expect_close(got, p.grad.numpy(), TOL, name)


@st.composite
def gradient_lists(draw):
    shapes = draw(st.lists(st.lists(sides(), min_size=1, max_size=2).map(tuple), min_size=1, max_size=3))
    return [draw(arrays(shape, -3, 3)) for shape in shapes]


@exercise("clip_by_global_norm", grads=gradient_lists(), max_norm=st.sampled_from([0.1, 1.0, 5.0, 100.0]))
def check_clip_by_global_norm(learner, grads, max_norm):
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))   # the norm by hand, float64
    params = [nn.Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = minillm.tensor(g.copy())
    clip_grad_norm_(params, max_norm)
    ours = [g.copy() for g in grads]
    expect_close(learner.clip_by_global_norm(ours, max_norm), norm, TOL, "the norm before clipping")
    for i, (got, p) in enumerate(zip(ours, params)):
        expect_close(got, p.grad.numpy(), TOL, f"grads[{i}] after clipping (in place), as clip_grad_norm_ leaves it")
