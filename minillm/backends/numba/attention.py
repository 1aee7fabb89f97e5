"""Flash attention in Numba on the GEMM micro-kernel: kernels/c/attention/v3_tiles.c, line for line.

The row kernels in numba/__init__.py (v1) compute one query against one key at a time:
dot products and axpys, bound by loads. Here a tile of QB query rows meets a block of KB
keys and both products of the tile are small GEMMs (``gemm.gemm_into``: packing and
the 6×16 register tile), with an online softmax between them along the key block:

    S = scale · Q_tile · K_blockᵀ      m, l rescaled by e^(m_old − m_new)     O_tile += P · V_block

Backward, one pass per key/value head (a thread owns whole key/value heads and the query
heads of their groups, so dK and dV need no atomics): P = exp(S − lse), dV += Pᵀ·dO,
dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(dO ∘ O)) · scale, dQ += dS·K, dK += dSᵀ·Q. Memory is
O(T·d) plus a QB×KB tile per thread.

Grouped-query attention: k and v may have N_kv heads for q's N (N_kv dividing N); query head
z reads key/value head z // (N / N_kv), with no copies.
"""
import math

import numba
import numpy as np
from numba import njit, prange

from .gemm import FLAGS, KC, MR, NR, gemm_into, slp_vectorised

QB, KB = 64, 256


@njit(fastmath=FLAGS, cache=True, nogil=True)
def _scratch(m, n):
    return (np.empty(((m + MR - 1) // MR * KC, MR), np.float32), np.empty(((n + NR - 1) // NR * KC, NR), np.float32),
            np.empty(MR * NR, np.float32))


@njit(fastmath=FLAGS, cache=True, nogil=True)
def _visible(i, offset, t_key, causal):
    """Keys 0 … visible − 1 are seen by query row i (queries are the last t_query positions)."""
    return min(i + offset + 1, t_key) if causal else t_key


@njit(fastmath=FLAGS, cache=True, nogil=True)
def _forward_tile(q, k, v, causal, scale, out, lse, z, i0, s, pa, pb, tile):
    """Rows i0 … i0 + QB of head z: the online softmax over key blocks."""
    t_query, d = q.shape[1], q.shape[2]
    t_key, zk = k.shape[1], z // (q.shape[0] // k.shape[0])
    offset = t_key - t_query
    rows = min(QB, t_query - i0)
    o = out[z, i0:i0 + rows]
    peak = np.full(rows, -np.inf, np.float32)
    total = np.zeros(rows, np.float32)
    keys = _visible(i0 + rows - 1, offset, t_key, causal)
    for j0 in range(0, keys, KB):
        cols = min(KB, keys - j0)
        sb = s[:rows, :cols]
        gemm_into(q[z, i0:i0 + rows], k[zk, j0:j0 + cols].T, sb, False, pa, pb, tile)  # Q·Kᵀ
        for r in range(rows):
            last = _visible(i0 + r, offset, t_key, causal) - j0
            block_peak = np.float32(-np.inf)
            for j in range(cols):
                sb[r, j] *= scale
                if j < last and sb[r, j] > block_peak:
                    block_peak = sb[r, j]
            new_peak = max(block_peak, peak[r])
            correction = math.exp(peak[r] - new_peak)  # rescale what came before
            peak[r] = new_peak
            if j0 > 0:
                for c in range(d):
                    o[r, c] *= correction
            block_total = np.float32(0)
            for j in range(cols):
                p = math.exp(sb[r, j] - new_peak) if j < last else np.float32(0)
                sb[r, j] = p
                block_total += p
            total[r] = total[r] * correction + block_total
        gemm_into(sb, v[zk, j0:j0 + cols], o, j0 > 0, pa, pb, tile)                # (+)= P·V
    for r in range(rows):
        inv = np.float32(1) / total[r]
        for c in range(d):
            o[r, c] *= inv
        lse[z, i0 + r] = peak[r] + math.log(total[r])


@njit(fastmath=FLAGS, cache=True, nogil=True, parallel=True)
def _forward(q, k, v, causal, scale, out, lse, chunks):
    n, t_query, d = q.shape
    q_tiles = (t_query + QB - 1) // QB
    for chunk in prange(chunks):  # one chunk per thread, so its scratch is allocated once
        pa, pb, tile = _scratch(max(QB, KB), max(KB, d))
        s = np.empty((QB, KB), np.float32)
        for task in range(chunk, n * q_tiles, chunks):
            _forward_tile(q, k, v, causal, scale, out, lse, task // q_tiles, (task % q_tiles) * QB, s, pa, pb, tile)


@njit(fastmath=FLAGS, cache=True, nogil=True)
def _backward_head(q, k, v, out, lse, dout, causal, scale, dq, dk, dv, z, zk, p, ds, row_dot, pa, pb, tile):
    """Query head z in one pass over its tiles, adding into dk[zk] and dv[zk] of the key/value
    head it reads; this thread alone writes dq[z], and every query head that reads zk."""
    t_query, d = q.shape[1], q.shape[2]
    t_key = k.shape[1]
    offset = t_key - t_query
    dq[z, :, :] = 0
    for i0 in range(0, t_query, QB):
        rows = min(QB, t_query - i0)
        qt, dot = q[z, i0:i0 + rows], dout[z, i0:i0 + rows]
        for r in range(rows):  # rowsum(dO ∘ O): the softmax's own term in dS
            acc = np.float32(0)
            for c in range(d):
                acc += dot[r, c] * out[z, i0 + r, c]
            row_dot[r] = acc
        keys = _visible(i0 + rows - 1, offset, t_key, causal)
        for j0 in range(0, keys, KB):
            cols = min(KB, keys - j0)
            pt, dst = p[:rows, :cols], ds[:rows, :cols]
            kb, vb = k[zk, j0:j0 + cols], v[zk, j0:j0 + cols]
            gemm_into(qt, kb.T, pt, False, pa, pb, tile)                               # Q·Kᵀ
            for r in range(rows):
                last = _visible(i0 + r, offset, t_key, causal) - j0
                for j in range(cols):
                    pt[r, j] = math.exp(pt[r, j] * scale - lse[z, i0 + r]) if j < last else np.float32(0)
            gemm_into(pt.T, dot, dv[zk, j0:j0 + cols], True, pa, pb, tile)               # dV += Pᵀ·dO
            gemm_into(dot, vb.T, dst, False, pa, pb, tile)                              # dP = dO·Vᵀ
            for r in range(rows):
                for j in range(cols):
                    dst[r, j] = pt[r, j] * (dst[r, j] - row_dot[r]) * scale
            gemm_into(dst, kb, dq[z, i0:i0 + rows], True, pa, pb, tile)                # dQ += dS·K
            gemm_into(dst.T, qt, dk[zk, j0:j0 + cols], True, pa, pb, tile)              # dK += dSᵀ·Q


@njit(fastmath=FLAGS, cache=True, nogil=True, parallel=True)
def _backward(q, k, v, out, lse, dout, causal, scale, dq, dk, dv, chunks):
    n, d = q.shape[0], q.shape[2]
    n_kv = k.shape[0]
    group = n // n_kv
    for chunk in prange(chunks):
        pa, pb, tile = _scratch(max(QB, KB), max(KB, d))
        p, ds, row_dot = np.empty((QB, KB), np.float32), np.empty((QB, KB), np.float32), np.empty(QB, np.float32)
        for zk in range(chunk, n_kv, chunks):  # a key/value head and all of its query heads
            dk[zk, :, :] = 0
            dv[zk, :, :] = 0
            for z in range(zk * group, (zk + 1) * group):
                _backward_head(q, k, v, out, lse, dout, causal, scale, dq, dk, dv, z, zk, p, ds, row_dot, pa, pb,
                               tile)


def attention_forward(q, k, v, causal, scale):
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    out = np.empty_like(q)
    lse = np.empty(q.shape[:2], np.float32)
    with slp_vectorised():  # compiles on the first call: see gemm.py
        _forward(q, k, v, bool(causal), np.float32(scale), out, lse, numba.get_num_threads())
    return out, lse


def attention_backward(q, k, v, out, lse, dout, causal, scale):
    q, k, v, out, dout = (np.ascontiguousarray(a) for a in (q, k, v, out, dout))
    lse = np.ascontiguousarray(lse, np.float32)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    with slp_vectorised():
        _backward(q, k, v, out, lse, dout, bool(causal), np.float32(scale), dq, dk, dv, numba.get_num_threads())
    return dq, dk, dv
