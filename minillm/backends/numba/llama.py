"""Llama's blocks for the Numba backend: RMSNorm, RoPE and SwiGLU's gate as parallel loops,
one pass over memory each where the reference makes several temporaries (the same ideas as
kernels/c/rmsnorm.c, rope.c and swiglu.c, whose comments give the arithmetic).

The loops are typed by their arrays, so float64 (gradcheck) runs the same code as float32;
the constants come from the arrays' dtype, so no float64 literal widens a float32 loop.
``LlamaLoops`` serves them as methods: ``NumbaBackend`` mixes it in, and a call the loops do
not take (another dtype, a rank they do not fold) goes on to ``Backend``'s method.
"""
import math

import numpy as np
from numba import get_num_threads, njit, prange


_jit = dict(parallel=True, fastmath=True, cache=True, nogil=True)
_HOST = (np.float32, np.float64)


@njit(**_jit)
def _rmsnorm_forward(x, w, eps, y, rstd):
    rows, d = x.shape
    one = x.dtype.type(1)
    for r in prange(rows):
        squares = x.dtype.type(0)
        for c in range(d):
            squares += x[r, c] * x[r, c]
        inv = one / math.sqrt(squares / x.dtype.type(d) + eps)
        for c in range(d):
            y[r, c] = x[r, c] * inv * w[c]
        rstd[r] = inv


@njit(**_jit)
def _rmsnorm_backward(dy, x, w, rstd, dx, dw_parts):
    """Rows in chunks, one dw partial per chunk (summed by the caller): no two threads add
    into the same dw."""
    rows, d = x.shape
    chunks = dw_parts.shape[0]
    per_chunk = (rows + chunks - 1) // chunks
    for chunk in prange(chunks):
        for r in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            inv = rstd[r]
            gx_mean = x.dtype.type(0)
            for c in range(d):
                xhat = x[r, c] * inv
                gx_mean += dy[r, c] * w[c] * xhat
                dw_parts[chunk, c] += dy[r, c] * xhat
            gx_mean /= x.dtype.type(d)
            for c in range(d):
                dx[r, c] = inv * (dy[r, c] * w[c] - x[r, c] * inv * gx_mean)


@njit(**_jit)
def _rope(x, cos, sin, out):
    """x, out (B, H, T, d), any strides; each (i, i + d/2) pair turned by its position's angle."""
    batch, heads, t_len, d = x.shape
    half = d // 2
    for row in prange(batch * heads * t_len):
        b, h, t = row // (heads * t_len), (row // t_len) % heads, row % t_len
        for i in range(half):
            x1, x2 = x[b, h, t, i], x[b, h, t, i + half]
            out[b, h, t, i] = x1 * cos[t, i] - x2 * sin[t, i]
            out[b, h, t, i + half] = x2 * cos[t, i] + x1 * sin[t, i]


@njit(fastmath=True, cache=True, inline="always")
def _sigmoid(a, one):
    """σ(a) from e^−|a| only, which cannot overflow."""
    z = math.exp(-abs(a))
    return one / (one + z) if a >= 0 else z / (one + z)


@njit(**_jit)
def _swiglu_forward(a, b, y):
    """a, b (rows, cols) with any strides (the halves of one wider array), y contiguous."""
    one = a.dtype.type(1)
    for r in prange(a.shape[0]):
        for c in range(a.shape[1]):
            y[r, c] = a[r, c] * _sigmoid(a[r, c], one) * b[r, c]


@njit(**_jit)
def _swiglu_backward(a, b, dy, da, db):
    one = a.dtype.type(1)
    for r in prange(a.shape[0]):
        for c in range(a.shape[1]):
            s = _sigmoid(a[r, c], one)
            silu = a[r, c] * s
            da[r, c] = dy[r, c] * b[r, c] * (s + silu * (one - s))
            db[r, c] = dy[r, c] * silu


def _rows(a):
    return a.reshape(-1, a.shape[-1])


class LlamaLoops:
    """RMSNorm, RoPE and SwiGLU's gate for ``NumbaBackend`` (mixed in before ``Backend``, so
    ``super()`` is the reference)."""

    def rmsnorm_forward(self, x, w, eps):
        if x.dtype not in _HOST or w.dtype != x.dtype:
            return super().rmsnorm_forward(x, w, eps)
        x = np.ascontiguousarray(x)
        y, rstd = np.empty_like(x), np.empty(x.shape[0], x.dtype)
        _rmsnorm_forward(x, w, x.dtype.type(eps), y, rstd)
        return y, rstd

    def rmsnorm_backward(self, dy, x, w, rstd):
        if x.dtype not in _HOST or not (dy.dtype == w.dtype == rstd.dtype == x.dtype):
            return super().rmsnorm_backward(dy, x, w, rstd)
        chunks = max(1, min(get_num_threads(), x.shape[0]))
        dx, dw_parts = np.empty_like(x), np.zeros((chunks, x.shape[1]), x.dtype)
        _rmsnorm_backward(np.ascontiguousarray(dy), np.ascontiguousarray(x), w, rstd, dx, dw_parts)
        return dx, dw_parts.sum(axis=0)

    def rope_forward(self, x, cos, sin, out=None):
        """Into ``out`` in whatever order it has (the backward: the projection's), else a new
        contiguous array; other ranks than 4 fold to (N, 1, T, d)."""
        if (x.dtype not in _HOST or x.ndim < 2 or not (cos.dtype == sin.dtype == x.dtype)
                or (out is not None and (out.ndim != 4 or x.ndim != 4 or out.dtype != x.dtype))):
            return super().rope_forward(x, cos, sin, out)
        x4 = x if x.ndim == 4 else x.reshape((-1, 1) + x.shape[-2:])
        out4 = np.empty(x4.shape, x.dtype) if out is None else out
        _rope(x4, np.ascontiguousarray(cos), np.ascontiguousarray(sin), out4)
        return out4.reshape(x.shape) if out is None else out

    def swiglu_forward(self, a, b):
        if a.dtype not in _HOST or b.dtype != a.dtype or a.shape != b.shape or a.ndim == 0 or not a.size:
            return super().swiglu_forward(a, b)
        y = np.empty(_rows(a).shape, a.dtype)
        _swiglu_forward(_rows(a), _rows(b), y)
        return y.reshape(a.shape)

    def swiglu_backward(self, a, b, dy, da=None, db=None):
        """Into ``da``, ``db`` (2-D, any strides: the halves of one gradient array) when given."""
        if (a.dtype not in _HOST or not (b.dtype == dy.dtype == a.dtype) or a.shape != b.shape or a.ndim == 0
                or not a.size or (da is not None and (da.ndim != 2 or da.dtype != a.dtype or db.dtype != a.dtype))):
            return super().swiglu_backward(a, b, dy, da, db)
        rows = _rows(a).shape
        da2, db2 = (np.empty(rows, a.dtype), np.empty(rows, a.dtype)) if da is None else (da, db)
        _swiglu_backward(_rows(a), _rows(b), np.ascontiguousarray(dy).reshape(rows), da2, db2)
        return (da2.reshape(a.shape), db2.reshape(b.shape)) if da is None else (da, db)
