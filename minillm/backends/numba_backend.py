"""The Numba backend: the hot primitives as JIT-compiled, multi-threaded CPU loops.

- matmul: cache-blocked and register-blocked (four rows of C share each load of B), with
  a dot-product variant for ``a @ bᵀ`` so the backward never copies a transpose.
- attention: flash-style. Each query row streams over the keys with an *online softmax*
  (running max m, running sum l, running output acc), so the T×T matrix never exists;
  causal rows stop at their own position. The backward recomputes the probabilities
  from the saved log-sum-exp, in one pass over query rows (dQ) and one over key rows
  (dK, dV), so no two threads ever write the same output.
- layer norm: one read of each row for its statistics, one to normalise; the backward
  reduces dw and db per thread, then adds the partial sums.
"""
import math

import numpy as np

from . import BackendUnavailable
from . import numpy_backend as reference

try:
    from numba import njit, prange
except ImportError as exc:  # pragma: no cover - numba is a hard dependency, but say why
    raise BackendUnavailable(f"numba is not importable ({exc})") from None

xp = np

ROWS = 4        # rows of C computed together: each B element loaded once serves four
K_BLOCK = 256   # a K-slice of B (K_BLOCK × N_BLOCK floats) stays in L2
N_BLOCK = 512   # four C rows of N_BLOCK floats stay in L1

_jit = dict(parallel=True, fastmath=True, cache=True, nogil=True)


@njit(**_jit)
def _gemm_nn(a, b, c):
    """c[z] = a[z] @ b[z] for 3-D operands (a may be a transposed view)."""
    batches, m, k_total = a.shape
    n = b.shape[2]
    row_blocks = (m + ROWS - 1) // ROWS
    for task in prange(batches * row_blocks):
        z, i0 = task // row_blocks, (task % row_blocks) * ROWS
        rows = min(ROWS, m - i0)
        for j0 in range(0, n, N_BLOCK):
            j1 = min(j0 + N_BLOCK, n)
            for k0 in range(0, k_total, K_BLOCK):
                k1 = min(k0 + K_BLOCK, k_total)
                if rows == ROWS:
                    for k in range(k0, k1):
                        a0, a1, a2, a3 = a[z, i0, k], a[z, i0 + 1, k], a[z, i0 + 2, k], a[z, i0 + 3, k]
                        for j in range(j0, j1):
                            bkj = b[z, k, j]
                            c[z, i0, j] += a0 * bkj
                            c[z, i0 + 1, j] += a1 * bkj
                            c[z, i0 + 2, j] += a2 * bkj
                            c[z, i0 + 3, j] += a3 * bkj
                else:
                    for i in range(i0, i0 + rows):
                        for k in range(k0, k1):
                            aik = a[z, i, k]
                            for j in range(j0, j1):
                                c[z, i, j] += aik * b[z, k, j]


@njit(**_jit)
def _gemm_nt(a, b, c):
    """c[z] = a[z] @ b[z]ᵀ: every output is a dot product of two contiguous rows."""
    batches, m, k_total = a.shape
    n = b.shape[1]
    for task in prange(batches * m):
        z, i = task // m, task % m
        for j in range(n):
            acc = 0.0
            for k in range(k_total):
                acc += a[z, i, k] * b[z, j, k]
            c[z, i, j] = acc


def matmul(a, b, trans_a=False, trans_b=False):
    if np.result_type(a.dtype, b.dtype) not in (np.float32, np.float64):  # float16 under autocast
        return reference.matmul(a, b, trans_a, trans_b)
    op_a = a.swapaxes(-1, -2) if trans_a else a
    op_b = b.swapaxes(-1, -2) if trans_b else b
    batch = np.broadcast_shapes(op_a.shape[:-2], op_b.shape[:-2])
    m, n = op_a.shape[-2], op_b.shape[-1]
    dtype = np.result_type(a.dtype, b.dtype)
    a3 = np.broadcast_to(op_a, batch + op_a.shape[-2:]).reshape((-1,) + op_a.shape[-2:]).astype(dtype, copy=False)
    c = np.zeros((a3.shape[0], m, n), dtype)
    if trans_b and not trans_a:
        b3 = np.ascontiguousarray(np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:]), dtype)
        _gemm_nt(np.ascontiguousarray(a3), b3, c)
    else:
        b3 = np.ascontiguousarray(np.broadcast_to(op_b, batch + op_b.shape[-2:]).reshape((-1,) + op_b.shape[-2:]), dtype)
        _gemm_nn(a3, b3, c)
    return c.reshape(batch + (m, n))


@njit(**_jit)
def _attention_forward(q, k, v, causal, scale, out, lse):
    n, t_query, d = q.shape
    t_key = k.shape[1]
    for task in prange(n * t_query):
        z, i = task // t_query, task % t_query
        last = i + t_key - t_query + 1 if causal else t_key
        peak, total = -np.inf, 0.0
        acc = np.zeros(d, np.float64)
        for j in range(last):
            s = 0.0
            for x in range(d):
                s += q[z, i, x] * k[z, j, x]
            s *= scale
            if s > peak:  # a new maximum rescales everything gathered so far
                correction = math.exp(peak - s)
                total *= correction
                for x in range(d):
                    acc[x] *= correction
                peak = s
            p = math.exp(s - peak)
            total += p
            for x in range(d):
                acc[x] += p * v[z, j, x]
        for x in range(d):
            out[z, i, x] = acc[x] / total
        lse[z, i] = peak + math.log(total)


def attention_forward(q, k, v, causal, scale):
    out = np.empty_like(q)
    lse = np.empty(q.shape[:2], np.float64 if q.dtype == np.float64 else np.float32)
    _attention_forward(q, k, v, causal, scale, out, lse)
    return out, lse


@njit(**_jit)
def _attention_backward_dq(q, k, v, out, lse, dout, causal, scale, dq):
    n, t_query, d = q.shape
    t_key = k.shape[1]
    for task in prange(n * t_query):
        z, i = task // t_query, task % t_query
        last = i + t_key - t_query + 1 if causal else t_key
        row = 0.0  # rowsum(dO ⊙ O): the softmax Jacobian's correction term
        for x in range(d):
            row += dout[z, i, x] * out[z, i, x]
        for x in range(d):
            dq[z, i, x] = 0.0
        for j in range(last):
            s, dp = 0.0, 0.0
            for x in range(d):
                s += q[z, i, x] * k[z, j, x]
                dp += dout[z, i, x] * v[z, j, x]
            ds = math.exp(s * scale - lse[z, i]) * (dp - row) * scale
            for x in range(d):
                dq[z, i, x] += ds * k[z, j, x]


@njit(**_jit)
def _attention_backward_dkv(q, k, v, out, lse, dout, causal, scale, dk, dv):
    n, t_query, d = q.shape
    t_key = k.shape[1]
    offset = t_key - t_query
    for task in prange(n * t_key):
        z, j = task // t_key, task % t_key
        first = max(j - offset, 0) if causal else 0
        for x in range(d):
            dk[z, j, x] = 0.0
            dv[z, j, x] = 0.0
        for i in range(first, t_query):
            s, dp, row = 0.0, 0.0, 0.0
            for x in range(d):
                s += q[z, i, x] * k[z, j, x]
                dp += dout[z, i, x] * v[z, j, x]
                row += dout[z, i, x] * out[z, i, x]
            p = math.exp(s * scale - lse[z, i])
            ds = p * (dp - row) * scale
            for x in range(d):
                dv[z, j, x] += p * dout[z, i, x]
                dk[z, j, x] += ds * q[z, i, x]


def attention_backward(q, k, v, out, lse, dout, causal, scale):
    dout = np.ascontiguousarray(dout)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _attention_backward_dq(q, k, v, out, lse, dout, causal, scale, dq)
    _attention_backward_dkv(q, k, v, out, lse, dout, causal, scale, dk, dv)
    return dq, dk, dv


@njit(**_jit)
def _layernorm_forward(x, w, b, eps, y, mean, rstd):
    rows, d = x.shape
    for r in prange(rows):
        total, squares = 0.0, 0.0
        for c in range(d):
            value = x[r, c]
            total += value
            squares += value * value
        mu = total / d
        inv = 1.0 / math.sqrt(max(squares / d - mu * mu, 0.0) + eps)
        for c in range(d):
            y[r, c] = (x[r, c] - mu) * inv * w[c] + b[c]
        mean[r], rstd[r] = mu, inv


def layernorm_forward(x, w, b, eps):
    y = np.empty_like(x)
    mean, rstd = np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
    _layernorm_forward(np.ascontiguousarray(x), w, b, eps, y, mean, rstd)
    return y, mean, rstd


@njit(**_jit)
def _layernorm_backward(dy, x, w, mean, rstd, dx, dw_parts, db_parts):
    rows, d = x.shape
    chunks = dw_parts.shape[0]
    per_chunk = (rows + chunks - 1) // chunks
    for chunk in prange(chunks):
        for r in range(chunk * per_chunk, min(rows, (chunk + 1) * per_chunk)):
            mu, inv = mean[r], rstd[r]
            g_mean, gx_mean = 0.0, 0.0
            for c in range(d):
                xhat = (x[r, c] - mu) * inv
                g = dy[r, c] * w[c]
                g_mean += g
                gx_mean += g * xhat
                dw_parts[chunk, c] += dy[r, c] * xhat
                db_parts[chunk, c] += dy[r, c]
            g_mean /= d
            gx_mean /= d
            for c in range(d):
                xhat = (x[r, c] - mu) * inv
                dx[r, c] = inv * (dy[r, c] * w[c] - g_mean - xhat * gx_mean)


def layernorm_backward(dy, x, w, mean, rstd):
    from numba import get_num_threads
    chunks = max(1, min(get_num_threads() * 4, x.shape[0]))
    dx = np.empty_like(x)
    dw_parts = np.zeros((chunks, x.shape[1]), np.float64)
    db_parts = np.zeros((chunks, x.shape[1]), np.float64)
    _layernorm_backward(np.ascontiguousarray(dy), x, w, mean, rstd, dx, dw_parts, db_parts)
    return dx, dw_parts.sum(0).astype(w.dtype), db_parts.sum(0).astype(w.dtype)


SQRT_2_OVER_PI = 0.7978845608028654


@njit(**_jit)
def _gelu_forward(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = 0.5 * v * (1.0 + math.tanh(SQRT_2_OVER_PI * v * (1.0 + 0.044715 * v * v)))


@njit(**_jit)
def _gelu_backward(x, dy, dx):
    for i in prange(x.size):
        v = x[i]
        v2 = v * v
        t = math.tanh(SQRT_2_OVER_PI * v * (1.0 + 0.044715 * v2))
        dx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * v2))


def gelu_forward(x):
    if x.dtype not in (np.float32, np.float64):
        return reference.gelu_forward(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _gelu_forward(flat, y)
    return y.reshape(x.shape)


def gelu_backward(x, dy):
    if x.dtype not in (np.float32, np.float64):
        return reference.gelu_backward(x, dy)
    flat = np.ascontiguousarray(x).reshape(-1)
    dx = np.empty_like(flat)
    _gelu_backward(flat, np.ascontiguousarray(dy, dtype=x.dtype).reshape(-1), dx)
    return dx.reshape(x.shape)


@njit(**_jit)
def _adam_update(p, g, m, v, beta1, beta2, eps, keep, coupled, step_size, rsqrt_bc2):
    # every scalar arrives as the arrays' dtype, so no float64 literal promotes the loop
    one = p.dtype.type(1)
    for i in prange(p.size):
        grad = g[i] + coupled * p[i]
        mi = beta1 * m[i] + (one - beta1) * grad
        vi = beta2 * v[i] + (one - beta2) * grad * grad
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * keep - step_size * mi / (math.sqrt(vi) * rsqrt_bc2 + eps)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """One fused pass per tensor (see numpy_backend.adam_update for the formula)."""
    if not (p.dtype == g.dtype == m.dtype == v.dtype == np.float32
            and all(a.flags.c_contiguous for a in (p, g, m, v))):
        return reference.adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)
    f = np.float32
    keep, coupled = (1 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
    _adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), f(beta1), f(beta2), f(eps), f(keep),
                 f(coupled), f(lr / (1 - beta1 ** step)), f(1 / math.sqrt(1 - beta2 ** step)))
