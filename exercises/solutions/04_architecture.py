"""Chapter 04 exercises, solved (see exercises/04_architecture.py for the tasks)."""
import numpy as np


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def causal_attention(q, k, v):
    t, hs = q.shape[-2:]
    scores = q @ k.swapaxes(-2, -1) / np.sqrt(hs)                        # (..., T, T)
    scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)  # no key after its query
    return softmax(scores) @ v


def split_heads(x, n_head):
    b, t, c = x.shape
    return x.reshape(b, t, n_head, c // n_head).transpose(0, 2, 1, 3)


def merge_heads(y):
    b, nh, t, hs = y.shape
    return y.transpose(0, 2, 1, 3).reshape(b, t, nh * hs)


def multi_head_attention(x, p, n_head):
    q, k, v = (split_heads(x @ p["w_" + name] + p["b_" + name], n_head) for name in "qkv")
    return merge_heads(causal_attention(q, k, v)) @ p["w_o"] + p["b_o"]


def softmax_backward(s, g):
    return s * (g - (g * s).sum(axis=-1, keepdims=True))
