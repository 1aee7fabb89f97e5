"""The Numba backend: the hot primitives as JIT-compiled, multi-threaded CPU loops.

- matmul: the BLIS structure of kernels/c/matmul/ (v4 on) in Numba (gemm.py): packed
  panels and a 6×16 register tile the SLP vectoriser turns into FMAs on vector registers;
  ``_gemm_rows`` is v1, the row-blocked loop it replaced.
- attention: flash-style, in float32 tiles of queries × keys on the GEMM micro-kernel
  (attention.py). v1 stays here: each query row streams over the keys with an
  *online softmax* (running max m, running sum l, running output acc), so the T×T matrix
  never exists; its backward makes one pass over query rows (dQ) and one over key rows
  (dK, dV). It serves float64 (gradcheck) and is timed against the tiles.
- layer norm: one read of each row for its statistics, one to normalise; the backward
  reduces dw and db per thread, then adds the partial sums.
"""
import math

import numpy as np

from .. import BackendUnavailable
from ..arrays import gemm_operands
from ..reference import Backend, attention_groups, float32_kernel

try:
    from numba import njit, prange
except ImportError as exc:  # pragma: no cover - numba is a hard dependency, but say why
    raise BackendUnavailable(f"numba is not importable ({exc})") from None

from . import attention as tiles  # noqa: E402 (after the import check above)
from .gemm import sgemm  # noqa: E402
from .llama import LlamaLoops  # noqa: E402

ROWS = 4        # rows of C computed together: each B element loaded once serves four
K_BLOCK = 256   # a K-slice of B (K_BLOCK × N_BLOCK floats) stays in L2
N_BLOCK = 512   # four C rows of N_BLOCK floats stay in L1

_jit = dict(parallel=True, fastmath=True, cache=True, nogil=True)


@njit(**_jit)
def _gemm_rows(a, b, c):
    """v1: c = a @ b (2-D, contiguous), four rows of C at a time: each B element loaded once
    serves four rows, but C's rows are loaded, updated and stored on every k — the
    memory-bound pattern that gemm.py's register tile removes."""
    m, k_total = a.shape
    n = b.shape[1]
    c[:, :] = 0
    for block in prange((m + ROWS - 1) // ROWS):
        i0 = block * ROWS
        rows = min(ROWS, m - i0)
        for j0 in range(0, n, N_BLOCK):
            j1 = min(j0 + N_BLOCK, n)
            for k0 in range(0, k_total, K_BLOCK):
                k1 = min(k0 + K_BLOCK, k_total)
                for i in range(i0, i0 + rows):
                    for k in range(k0, k1):
                        aik = a[i, k]
                        for j in range(j0, j1):
                            c[i, j] += aik * b[k, j]


NUMBERED = ("v1_rows", "v2_packed")


def matmul_numbered(version, a, b):
    """C = A·B (2-D float32) with one of the numbered teaching versions."""
    if version not in NUMBERED:
        raise ValueError(f"matmul_numbered: unknown version {version!r}; versions: {', '.join(NUMBERED)}")
    a, b = (np.ascontiguousarray(x, np.float32) for x in (a, b))
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    (_gemm_rows if version == "v1_rows" else sgemm)(a, b, c)
    return c


@njit(**_jit)
def _attention_forward(q, k, v, causal, scale, out, lse):
    n, t_query, d = q.shape
    t_key, group = k.shape[1], n // k.shape[0]  # query head z reads key/value head z // group
    for task in prange(n * t_query):
        z, i = task // t_query, task % t_query
        zk = z // group
        last = i + t_key - t_query + 1 if causal else t_key
        peak, total = -np.inf, 0.0
        acc = np.zeros(d, np.float64)
        for j in range(last):
            s = 0.0
            for x in range(d):
                s += q[z, i, x] * k[zk, j, x]
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
                acc[x] += p * v[zk, j, x]
        for x in range(d):
            out[z, i, x] = acc[x] / total
        lse[z, i] = peak + math.log(total)


@njit(**_jit)
def _attention_backward_dq(q, k, v, out, lse, dout, causal, scale, dq):
    n, t_query, d = q.shape
    t_key, group = k.shape[1], n // k.shape[0]
    for task in prange(n * t_query):
        z, i = task // t_query, task % t_query
        zk = z // group
        last = i + t_key - t_query + 1 if causal else t_key
        row = 0.0  # rowsum(dO ⊙ O): the softmax Jacobian's correction term
        for x in range(d):
            row += dout[z, i, x] * out[z, i, x]
        for x in range(d):
            dq[z, i, x] = 0.0
        for j in range(last):
            s, dp = 0.0, 0.0
            for x in range(d):
                s += q[z, i, x] * k[zk, j, x]
                dp += dout[z, i, x] * v[zk, j, x]
            ds = math.exp(s * scale - lse[z, i]) * (dp - row) * scale
            for x in range(d):
                dq[z, i, x] += ds * k[zk, j, x]


@njit(**_jit)
def _attention_backward_dkv(q, k, v, out, lse, dout, causal, scale, dk, dv):
    """A task is one key of one key/value head, summed over every query head of its group."""
    n, t_query, d = q.shape
    n_kv, t_key = k.shape[0], k.shape[1]
    group, offset = n // n_kv, t_key - t_query
    for task in prange(n_kv * t_key):
        zk, j = task // t_key, task % t_key
        first = max(j - offset, 0) if causal else 0
        for x in range(d):
            dk[zk, j, x] = 0.0
            dv[zk, j, x] = 0.0
        for z in range(zk * group, (zk + 1) * group):
            for i in range(first, t_query):
                s, dp, row = 0.0, 0.0, 0.0
                for x in range(d):
                    s += q[z, i, x] * k[zk, j, x]
                    dp += dout[z, i, x] * v[zk, j, x]
                    row += dout[z, i, x] * out[z, i, x]
                p = math.exp(s * scale - lse[z, i])
                ds = p * (dp - row) * scale
                for x in range(d):
                    dv[zk, j, x] += p * dout[z, i, x]
                    dk[zk, j, x] += ds * q[z, i, x]


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


_f = np.float32
SQRT_2_OVER_PI, GELU_CUBIC, HALF, ONE = _f(0.7978845608028654), _f(0.044715), _f(0.5), _f(1.0)
# tanh as a clamped rational function (the 13/6 form Eigen uses, as in kernels/c/gelu/gelu.h):
# math.tanh is a scalar libm call that stops the loop from vectorising, and the former
# version's float64 literals (0.5, 1.0, …) silently promoted every float32 lane to float64.
TANH_LIMIT = _f(7.90531110763549805)
TANH_P = tuple(_f(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                4.89352455891786e-03))
TANH_Q = tuple(_f(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                4.89352518554385e-03))


@njit(fastmath=True, cache=True, inline="always")
def _tanh(x):
    clamped = min(max(x, -TANH_LIMIT), TANH_LIMIT)
    x2 = clamped * clamped
    p = TANH_P[0]
    for c in TANH_P[1:]:
        p = p * x2 + c
    q = TANH_Q[0]
    for c in TANH_Q[1:]:
        q = q * x2 + c
    # exactly ±1 past the clamp (a select, not a branch, so the loop still vectorises), so
    # GELU's derivative (1 − t²) is exactly 0 there, as the float64 reference's
    return clamped * p / q if abs(x) < TANH_LIMIT else (ONE if x > 0 else -ONE)


@njit(**_jit)
def _gelu_forward(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = HALF * v * (ONE + _tanh(SQRT_2_OVER_PI * v * (ONE + GELU_CUBIC * v * v)))


@njit(**_jit)
def _gelu_backward(x, dy, dx):
    three = _f(3.0)
    for i in prange(x.size):
        v = x[i]
        v2 = v * v
        t = _tanh(SQRT_2_OVER_PI * v * (ONE + GELU_CUBIC * v2))
        dx[i] = dy[i] * (HALF * (ONE + t) + HALF * v * (ONE - t * t) * SQRT_2_OVER_PI * (ONE + three * GELU_CUBIC * v2))


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




class NumbaBackend(LlamaLoops, Backend):
    """The primitives as the Numba loops above, and Llama's blocks as those of llama.py
    (``LlamaLoops``); the rest are the reference's."""

    name = "numba"

    @float32_kernel(0, 1)
    def matmul(self, a, b, trans_a=False, trans_b=False):
        """float32 through the packed GEMM (gemm.py); other dtypes (float64 for gradcheck,
        float16 under autocast) take the reference."""
        a3, _, b3, _, m, n, k, batch = gemm_operands(a, b, trans_a, trans_b)
        batches = int(np.prod(batch, dtype=np.int64))
        c = np.empty((batches, m, n), np.float32)
        for z in range(batches):  # a 2-D operand is shared by every batch
            sgemm(a3 if a3.ndim == 2 else a3[z], b3 if b3.ndim == 2 else b3[z], c[z])
        return c.reshape(batch + (m, n))

    def attention_forward(self, q, k, v, causal, scale, version="tiles"):
        """float32: the tiles of attention.py; ``version="rows"`` (or float64) runs v1, the
        row kernels here. k and v may have fewer heads than q (grouped-query attention)."""
        attention_groups(q, k, v)
        if version == "tiles" and q.dtype == k.dtype == v.dtype == np.float32:
            return tiles.attention_forward(q, k, v, causal, scale)
        out = np.empty_like(q)
        lse = np.empty(q.shape[:2], np.float64 if q.dtype == np.float64 else np.float32)
        _attention_forward(q, k, v, causal, scale, out, lse)
        return out, lse

    def attention_backward(self, q, k, v, out, lse, dout, causal, scale, version="tiles"):
        attention_groups(q, k, v)
        if version == "tiles" and q.dtype == k.dtype == v.dtype == dout.dtype == np.float32:
            return tiles.attention_backward(q, k, v, out, lse, dout, causal, scale)
        dout = np.ascontiguousarray(dout)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        _attention_backward_dq(q, k, v, out, lse, dout, causal, scale, dq)
        _attention_backward_dkv(q, k, v, out, lse, dout, causal, scale, dk, dv)
        return dq, dk, dv

    def layernorm_forward(self, x, w, b, eps):
        y = np.empty_like(x)
        mean, rstd = np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
        _layernorm_forward(np.ascontiguousarray(x), w, b, eps, y, mean, rstd)
        return y, mean, rstd

    def layernorm_backward(self, dy, x, w, mean, rstd):
        from numba import get_num_threads
        chunks = max(1, min(get_num_threads() * 4, x.shape[0]))
        dx = np.empty_like(x)
        dw_parts = np.zeros((chunks, x.shape[1]), np.float64)
        db_parts = np.zeros((chunks, x.shape[1]), np.float64)
        _layernorm_backward(np.ascontiguousarray(dy), x, w, mean, rstd, dx, dw_parts, db_parts)
        return dx, dw_parts.sum(0).astype(w.dtype), db_parts.sum(0).astype(w.dtype)

    @float32_kernel(0)
    def gelu_forward(self, x):
        flat = np.ascontiguousarray(x).reshape(-1)
        y = np.empty_like(flat)
        _gelu_forward(flat, y)
        return y.reshape(x.shape)

    @float32_kernel(0)  # (dy is converted to x's dtype)
    def gelu_backward(self, x, dy):
        flat = np.ascontiguousarray(x).reshape(-1)
        dx = np.empty_like(flat)
        _gelu_backward(flat, np.ascontiguousarray(dy, dtype=x.dtype).reshape(-1), dx)
        return dx.reshape(x.shape)

    @float32_kernel(0, 1, 2, 3, writes=(0, 2, 3))
    def adam_update(self, p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
        """One fused pass per tensor (see reference.Backend.adam_update for the formula); the
        reference refuses a read-only p, m or v."""
        if not g.flags.c_contiguous:
            return super().adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)
        f = np.float32
        keep, coupled = (1 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
        _adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), f(beta1), f(beta2), f(eps),
                     f(keep), f(coupled), f(lr / (1 - beta1 ** step)), f(1 / math.sqrt(1 - beta2 ** step)))


backend = NumbaBackend()
