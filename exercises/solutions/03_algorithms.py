"""Chapter 03 exercises, solved (see exercises/03_algorithms.py for the tasks)."""
import math

import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def document_lstm_step(W, x, h, c):
    i = sigmoid(x @ W["W_ix"].T + h @ W["W_ih"].T + W["b_i"])
    f = sigmoid(x @ W["W_fx"].T + h @ W["W_fh"].T + W["b_f"])
    h_new = np.tanh(h @ W["W_ih"].T + x @ W["W_hx"].T + W["b_h"])
    c_new = f * c + i * h_new
    y = sigmoid(c_new @ W["W_oh"].T + W["b_o"])
    return y, h_new, c_new


def rnn_forward(W_xh, W_hh, b, xs):
    h, hs = np.zeros((xs.shape[1], W_hh.shape[0])), []
    for x in xs:
        h = np.tanh(x @ W_xh.T + h @ W_hh.T + b)
        hs.append(h)
    return np.stack(hs)


def rnn_bptt(W_xh, W_hh, b, xs, grad_hs):
    hs = rnn_forward(W_xh, W_hh, b, xs)
    dW_xh, dW_hh, db = np.zeros_like(W_xh), np.zeros_like(W_hh), np.zeros_like(b)
    dh_next = np.zeros_like(hs[0])
    for t in reversed(range(len(xs))):
        h_prev = hs[t - 1] if t else np.zeros_like(hs[0])
        da = (1 - hs[t] ** 2) * (grad_hs[t] + dh_next)
        dW_xh += da.T @ xs[t]
        dW_hh += da.T @ h_prev
        db += da.sum(axis=0)
        dh_next = da @ W_hh
    return dW_xh, dW_hh, db


def clip_by_global_norm(grads, max_norm):
    norm = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads))
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for g in grads:
            g *= scale
    return norm
