"""Chapter 03 exercises: recurrent networks, backpropagation through time, clipping
(read lessons/03_algorithms.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 3

NumPy and `math` only: the checks compare your answers with minillm's nn.LSTM, nn.RNN,
backward() and clip_grad_norm_ on freshly drawn sizes and numbers (float64). A batch is
held in rows, so a matrix W applied to a vector x is written x @ W.T.
"""
import math  # noqa: F401  (yours to use)

import numpy as np  # noqa: F401  (yours to use)


def document_lstm_step(W, x, h, c):
    """One step of document 000's LSTM, the six equations exactly as the lesson writes them.

    W: dict of arrays "W_ix", "W_fx", "W_ox", "W_hx" (H, I); "W_ih", "W_fh", "W_oh" (H, H);
    "b_i", "b_f", "b_o", "b_h" (H,). x: (B, I); h, c: (B, H), the previous step's state.
      i = σ(x W_ixᵀ + h W_ihᵀ + b_i)          f = σ(x W_fxᵀ + h W_fhᵀ + b_f)
      h_new = tanh(h W_ihᵀ + x W_hxᵀ + b_h)   (W_ih again: the document's equation)
      c_new = f ⊙ c + i ⊙ h_new               y = σ(c_new W_ohᵀ + b_o)
    (The first output gate o_t feeds nothing; you may leave it out.)
    Return (y, h_new, c_new), each (B, H).
    """
    raise NotImplementedError


def rnn_forward(W_xh, W_hh, b, xs):
    """A tanh RNN run over a sequence from h_0 = 0.

    W_xh: (H, I), W_hh: (H, H), b: (H,); xs: (T, B, I).
    h_t = tanh(x_t W_xhᵀ + h_{t−1} W_hhᵀ + b). Return every h_t stacked: (T, B, H).
    """
    raise NotImplementedError


def rnn_bptt(W_xh, W_hh, b, xs, grad_hs):
    """Backpropagation through time for rnn_forward.

    Same inputs as rnn_forward, plus grad_hs (T, B, H): the loss is L = Σ_t Σ h_t ⊙ grad_hs[t],
    so ∂L/∂h_t gets grad_hs[t] directly and, through h_{t+1}, whatever step t + 1 sends back.
    Walk t = T−1 … 0: δa = (1 − h_t²) ⊙ δh_t; add δaᵀ x_t to dW_xh, δaᵀ h_{t−1} to dW_hh,
    δa summed over the batch to db; send δa W_hh back to h_{t−1}.
    Return (dW_xh, dW_hh, db), shaped like W_xh, W_hh, b.
    """
    raise NotImplementedError


def clip_by_global_norm(grads, max_norm):
    """Gradient clipping by the global norm, in place.

    grads: a list of float arrays (any shapes); max_norm: C > 0.
    ‖g‖ is the L2 norm of all their elements together. When C / (‖g‖ + 1e-6) < 1, multiply
    every array by that factor, in place (g *= factor), so that the arrays the caller holds
    change; otherwise leave them as they are. Return ‖g‖ before clipping, a float.
    """
    raise NotImplementedError
