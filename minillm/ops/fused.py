"""Fused ops: one graph node for what would be several, with the forward and backward
kernels in the backend (``backends/reference.py``'s ``Backend`` is the reference). A node costs
Python time in the forward and the backward, so a block built from a few of these runs
far fewer nodes than the same block composed from elementwise ops.

A new fused op goes here: ``@op``, a docstring with the shapes and the equation, the
backend's ``<name>_forward``/``<name>_backward``, and a case in tests/test_ops.py."""
import numpy as np

from .. import backends
from ..backends import xp_of
from .core import op, result
from .elementwise import stable_sigmoid
from .shape import cast


@op
def layer_norm_rows(x, weight, bias, eps):
    """Layer norm over the last axis of an (..., D) tensor; kernels live in the backend,
    which sees the rows folded to (N, D) inside this one node (three reshape nodes around
    it cost more Python time than the kernel at nanoGPT's sizes)."""
    if x.dtype == np.float16:  # statistics in float32, as autocast does
        x = cast(x, np.float32)
    backend = backends.current()
    rows = x.data.reshape(-1, x.shape[-1])
    y, mu, rstd = backend.layernorm_forward(rows, weight.data, bias.data, eps)

    def backward(g):
        dx, dw, db = backend.layernorm_backward(g.reshape(rows.shape), rows, weight.data, mu, rstd)
        return dx.reshape(x.shape), dw, db

    return result(y.reshape(x.shape), (x, weight, bias), backward, "layer_norm_rows")


@op
def attention(q, k, v, causal, scale):
    """Fused (flash-style) attention: q (N, Tq, D), k and v (N_kv, Tk, D), N_kv dividing N
    (query head n reads key/value head n // (N / N_kv)); kernels live in the backend."""
    backend = backends.current()
    out, lse = backend.attention_forward(q.data, k.data, v.data, causal, scale)

    def backward(g):
        return backend.attention_backward(q.data, k.data, v.data, out, lse, g, causal, scale)

    return result(out, (q, k, v), backward, "attention")


@op
def attention_qkv(qkv, num_heads, causal, scale):
    """Self-attention from one (B, T, 3C) projection, q | k | v side by side as nanoGPT's
    c_attn makes them, to the (B, T, C) that the output projection takes.

    The same function as splitting into (B·H, T, C/H) heads, ``attention`` and merging the
    heads back, but one node instead of eleven, and on a backend that reads the heads where
    they lie (C) none of the four split/merge copies forward or backward; the gradient is
    one (B, T, 3C) array, so the projection's backward stays one GEMM."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"attention_qkv: expected (B, T, 3·C) with C divisible by num_heads={num_heads}, "
                         f"got {qkv.shape}")
    backend = backends.current()
    y, lse = backend.attention_qkv_forward(qkv.data, num_heads, causal, scale)

    def backward(g):
        return (backend.attention_qkv_backward(qkv.data, y, lse, g, num_heads, causal, scale),)

    return result(y, (qkv,), backward, "attention_qkv")


@op
def cross_entropy_rows(logits, target, ignore_index):
    """Per-row softmax cross-entropy of (N, C) logits against (N,) integer targets, fused
    in the backend: the probabilities are never stored, only each row's log-sum-exp."""
    if logits.dtype == np.float16:  # log-sum-exp in half precision loses too much: fp32
        logits = cast(logits, np.float32)
    backend = backends.current()
    losses, lse = backend.cross_entropy_forward(logits.data, target, ignore_index)
    return result(losses, (logits,),
                  lambda g: (backend.cross_entropy_backward(logits.data, target, lse, g, ignore_index),),
                  "cross_entropy_rows")


@op
def bce_with_logits(x, y):
    """Elementwise max(x,0) − x·y + log(1 + e^−|x|): the stable form of BCE on logits,
    with the exact gradient σ(x) − y."""
    xp = xp_of(x.data)
    out = xp.maximum(x.data, 0) - x.data * y.data + xp.log1p(xp.exp(-xp.abs(x.data)))
    return result(out, (x, y),
                  lambda g: (g * (stable_sigmoid(xp, x.data) - y.data), -g * x.data), "bce_with_logits")
