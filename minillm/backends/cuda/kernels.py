"""The backend primitives on top of the CUDA kernels in ``kernels/cuda/``: output
allocation and launch geometry, written once for both the GPU (``xp = cupy`` with a
RawModule launcher) and the CPU harness (``xp = numpy`` with the cuda-sim launcher).

The kernels are fp32. Other dtypes (float64 for gradcheck, float16) take the reference
(``float32_kernel``), as does attention with a head size above the kernels' HEAD_DIM_MAX.
"""
import numpy as np

from ..arrays import gemm_operands
from ..reference import Backend, attention_groups, float32_kernel

GEMM_BLOCK, GEMM_THREADS = 128, 256   # BM = BN and (BM/TM)·(BN/TN) in sgemm.cu
ATTN_THREADS, HEAD_DIM_MAX = 64, 128  # attention.cu
LN_THREADS, CE_THREADS = 128, 256     # layernorm.cu, cross_entropy.cu
ELEMENTWISE_THREADS = 256


def _address(a):
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def _head_suffix(d):
    """The attention build whose rows live in registers for this head size, if any."""
    return f"_d{d}" if d in (16, 32, 64) else ""


def _row_suffix(d):
    """The layer-norm build that holds a row in registers (8 or 32 values per thread)."""
    return "_r8" if d <= 8 * LN_THREADS else "_r32" if d <= 32 * LN_THREADS else ""


def _blocks(n, per_block):
    return (n + per_block - 1) // per_block


class CudaKernels(Backend):
    """The backend both CUDA backends are: ``name``, the array module ``xp`` and the
    ``launch(kernel, grid, block, *args)`` that runs a kernel of kernels/cuda."""

    def __init__(self, name, xp, launch):
        self.name, self.xp, self.launch = name, xp, launch

    def _contiguous(self, a):
        return self.xp.ascontiguousarray(a)

    # ---- matmul -----------------------------------------------------------------------------
    SGEMM_VERSIONS = ("sgemm_v1_naive", "sgemm_v2_coalesced", "sgemm_v3_shared", "sgemm_v4_registers",
                      "sgemm_v5_vectorized")

    def sgemm_numbered(self, version, a, b):
        """C = A·B for 2-D float32 A, B with one numbered SGEMM version, launched with the
        geometry it was written for (lesson 02 and the benchmarks walk through them).
        v5 needs K and N to be multiples of 4."""
        m, k = a.shape
        n = b.shape[1]
        c = self.xp.empty((m, n), np.float32)
        if version == "sgemm_v1_naive":
            self.launch(version, (_blocks(m, 16), _blocks(n, 16)), (16, 16), a, b, c, m, n, k)
        elif version == "sgemm_v2_coalesced":
            self.launch(version, (_blocks(n, 16), _blocks(m, 16)), (16, 16), a, b, c, m, n, k)
        elif version == "sgemm_v3_shared":
            self.launch(version, (_blocks(n, 32), _blocks(m, 32)), (32, 32), a, b, c, m, n, k)
        elif version == "sgemm_v4_registers":
            self.launch(version, (_blocks(n, GEMM_BLOCK), _blocks(m, GEMM_BLOCK), 1), (GEMM_THREADS,),
                        a, b, c, m, n, k, 0, k, 1, 0, n, 1)
        elif version == "sgemm_v5_vectorized":
            if k % 4 or n % 4:
                raise ValueError(f"sgemm_v5_vectorized: K and N must be multiples of 4; got K={k}, N={n}")
            self.launch(version, (_blocks(n, GEMM_BLOCK), _blocks(m, GEMM_BLOCK), 1), (GEMM_THREADS,),
                        a, b, c, m, n, k)
        else:
            raise ValueError(f"sgemm_numbered: unknown version {version!r}; versions: {', '.join(self.SGEMM_VERSIONS)}")
        return c

    @float32_kernel(0, 1)
    def matmul(self, a, b, trans_a=False, trans_b=False):
        a3, sab, b3, sbb, m, n, k, batch = gemm_operands(a, b, trans_a, trans_b)
        batches = int(np.prod(batch, dtype=np.int64))
        out = self.xp.empty((batches, m, n), np.float32)
        if m == 0 or n == 0 or batches == 0:
            return out.reshape(batch + (m, n))
        grid = (_blocks(n, GEMM_BLOCK), _blocks(m, GEMM_BLOCK), batches)
        vectorizable = (k % 4 == 0 and n % 4 == 0 and a3.flags.c_contiguous and b3.flags.c_contiguous
                        and (batches == 1 or (sab == m * k and sbb == k * n))
                        and _address(a3) % 16 == 0 and _address(b3) % 16 == 0)
        if vectorizable:
            self.launch("sgemm_v5_vectorized", grid, (GEMM_THREADS,), a3, b3, out, m, n, k)
        else:
            sam, sak = (s // a3.itemsize for s in a3.strides[-2:])
            sbk, sbn = (s // b3.itemsize for s in b3.strides[-2:])
            self.launch("sgemm_v4_registers", grid, (GEMM_THREADS,), a3, b3, out, m, n, k,
                        sab, sam, sak, sbb, sbk, sbn)
        return out.reshape(batch + (m, n))

    # ---- attention ---------------------------------------------------------------------------
    @staticmethod
    def _attention_ok(q, v):
        return q.shape[-1] <= HEAD_DIM_MAX and q.shape[-1] == v.shape[-1]

    def _repeat_kv(self, q, k, v):
        """The CUDA kernels take as many key/value heads as query heads: for grouped-query
        attention each key/value head is copied for every query head of its group (the
        C and Numba kernels index it instead). attention_backward sums the copies' gradients."""
        groups = attention_groups(q, k, v)
        return (k, v) if groups == 1 else (self.xp.repeat(k, groups, axis=0), self.xp.repeat(v, groups, axis=0))

    @float32_kernel(0, 1, 2)
    def attention_forward(self, q, k, v, causal, scale):
        if not self._attention_ok(q, v):
            return super().attention_forward(q, k, v, causal, scale)
        k, v = self._repeat_kv(q, k, v)
        q, k, v = (self._contiguous(t) for t in (q, k, v))
        n, t_query, d = q.shape
        out = self.xp.empty_like(q)
        lse = self.xp.empty((n, t_query), np.float32)
        self.launch("attention_forward" + _head_suffix(d), (_blocks(t_query, ATTN_THREADS), n), (ATTN_THREADS,),
                    q, k, v, out, lse, t_query, k.shape[1], d, int(causal), float(scale))
        return out, lse

    @float32_kernel(0, 1, 2)
    def attention_backward(self, q, k, v, out, lse, dout, causal, scale):
        if not self._attention_ok(q, v):
            return super().attention_backward(q, k, v, out, lse, dout, causal, scale)
        xp, n_kv = self.xp, k.shape[0]
        k, v = self._repeat_kv(q, k, v)
        q, k, v, out, lse, dout = (self._contiguous(t) for t in (q, k, v, out, lse, dout))
        n, t_query, d = q.shape
        t_key = k.shape[1]
        row_dot = xp.empty((n, t_query), np.float32)
        self.launch("attention_row_dot", (_blocks(n * t_query, ELEMENTWISE_THREADS),), (ELEMENTWISE_THREADS,),
                    dout, out, row_dot, n * t_query, d)
        dq, dk, dv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
        common = (t_query, t_key, d, int(causal), float(scale))
        self.launch("attention_backward_dq" + _head_suffix(d), (_blocks(t_query, ATTN_THREADS), n), (ATTN_THREADS,),
                    q, k, v, lse, row_dot, dout, dq, *common)
        self.launch("attention_backward_dkv" + _head_suffix(d), (_blocks(t_key, ATTN_THREADS), n), (ATTN_THREADS,),
                    q, k, v, lse, row_dot, dout, dk, dv, *common)
        if n_kv != n:  # the group's copies of a key/value head add up
            dk, dv = (g.reshape(n_kv, n // n_kv, t_key, d).sum(axis=1) for g in (dk, dv))
        return dq, dk, dv

    # ---- layer norm --------------------------------------------------------------------------
    @float32_kernel(0, 1, 2)
    def layernorm_forward(self, x, w, b, eps):
        xp = self.xp
        x = self._contiguous(x)
        rows, d = x.shape
        y = xp.empty_like(x)
        mean, rstd = xp.empty(rows, np.float32), xp.empty(rows, np.float32)
        if rows:
            self.launch("layernorm_forward" + _row_suffix(d), (rows,), (LN_THREADS,), x, self._contiguous(w), self._contiguous(b),
                        y, mean, rstd, d, float(eps))
        return y, mean, rstd

    @float32_kernel(0, 1, 2)
    def layernorm_backward(self, dy, x, w, mean, rstd):
        xp = self.xp
        dy, x = self._contiguous(dy), self._contiguous(x)
        rows, d = x.shape
        blocks = max(1, min(rows, 1024))
        dx = xp.empty_like(x)
        dw_part, db_part = xp.empty((blocks, d), np.float32), xp.empty((blocks, d), np.float32)
        dw, db = xp.empty(d, np.float32), xp.empty(d, np.float32)
        self.launch("layernorm_backward" + _row_suffix(d), (blocks,), (LN_THREADS,), dy, x, self._contiguous(w), mean, rstd,
                    dx, dw_part, db_part, rows, d)
        for part, total in ((dw_part, dw), (db_part, db)):
            self.launch("layernorm_reduce_columns", (_blocks(d, ELEMENTWISE_THREADS),), (ELEMENTWISE_THREADS,),
                        part, total, blocks, d)
        return dx, dw, db

    # ---- softmax cross-entropy ------------------------------------------------------------
    @float32_kernel(0)
    def cross_entropy_forward(self, logits, target, ignore_index):
        xp = self.xp
        logits, target = self._contiguous(logits), xp.ascontiguousarray(target, dtype=np.int64)
        rows, classes = logits.shape
        loss, lse = xp.empty(rows, np.float32), xp.empty(rows, np.float32)
        if rows:
            self.launch("cross_entropy_forward", (rows,), (CE_THREADS,), logits, target, loss, lse,
                        classes, int(ignore_index))
        return loss, lse

    @float32_kernel(0, 3)
    def cross_entropy_backward(self, logits, target, lse, dloss, ignore_index):
        xp = self.xp
        logits, target = self._contiguous(logits), xp.ascontiguousarray(target, dtype=np.int64)
        rows, classes = logits.shape
        dlogits = xp.empty_like(logits)
        if rows * classes:
            self.launch("cross_entropy_backward", (_blocks(rows * classes, ELEMENTWISE_THREADS),),
                        (ELEMENTWISE_THREADS,), logits, target, self._contiguous(lse), self._contiguous(dloss),
                        dlogits, rows, classes, int(ignore_index))
        return dlogits

    # ---- GELU ------------------------------------------------------------------------------------
    def _elementwise_grid(self, n):
        return (max(1, min(_blocks(n, ELEMENTWISE_THREADS), 65535)),)

    @float32_kernel(0)
    def gelu_forward(self, x):
        x = self._contiguous(x)
        y = self.xp.empty_like(x)
        self.launch("gelu_forward", self._elementwise_grid(x.size), (ELEMENTWISE_THREADS,), x, y, x.size)
        return y

    @float32_kernel(0, 1)
    def gelu_backward(self, x, dy):
        x, dy = self._contiguous(x), self._contiguous(dy)
        dx = self.xp.empty_like(x)
        self.launch("gelu_backward", self._elementwise_grid(x.size), (ELEMENTWISE_THREADS,), x, dy, dx, x.size)
        return dx
