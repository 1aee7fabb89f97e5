"""The C backend's int8 products (kernels/c/linear_int8.c, matmul_int8.c): int8 weights with a
float32 scale per output row and float32 activations (``linear_int8``, what
``minillm.compress.quantize_weights`` runs), and int8 · int8 → int32 (``matmul_int8``).
``Int8Kernels`` is a part of ``CBackend``; ``linear_int8_numbered`` runs one numbered version."""
import numpy as np

from .library import _c, _numbered, ffi, lib, pointer

# ---- int8 weights, float32 activations (linear_int8.c) ---------------------------------------
LINEAR_INT8 = _numbered("linear_int8")
# Up to this many rows the kernel; more: dequantised blocks of weights through the fp32 GEMM.
# The kernel reads each weight once and multiplies it, from L1, by every row's digits (2·K bytes
# a row, read again by every tile of 4 weight rows): it stays ahead of dequantising + the GEMM
# while those digits fit in L2, a few hundred rows.
INT8_KERNEL_ROWS = 256
DEQUANTIZED_FLOATS = 1 << 20  # the GEMM road's block of float32 weights (4 MB)


def _check_int8_shapes(x, qweight, scale, bias):
    n, k = qweight.shape
    if x.shape[1] != k or scale.shape != (n,) or (bias is not None and bias.shape != (n,)):
        raise ValueError(f"linear_int8: x {x.shape}, weight {qweight.shape}, scale {scale.shape} and bias "
                         f"{None if bias is None else bias.shape} do not fit (expected (M, K), (N, K), (N,), (N,))")


def linear_int8_numbered(version, x, qweight, scale, bias=None, threads=0):
    """``linear_int8`` by one of the numbered kernels (LINEAR_INT8), any number of rows."""
    if version not in LINEAR_INT8:
        raise ValueError(f"linear_int8: unknown version {version!r}; versions: {', '.join(LINEAR_INT8)}")
    _check_int8_shapes(x, qweight, scale, bias)
    x = _c(x.astype(np.float32, copy=False))
    qweight, scale = _c(qweight.astype(np.int8, copy=False)), _c(scale.astype(np.float32, copy=False))
    bias = None if bias is None else _c(bias.astype(np.float32, copy=False))
    (m, k), n = x.shape, qweight.shape[0]
    out = np.empty((m, n), np.float32)
    getattr(lib, version)(pointer(x), pointer(qweight), pointer(scale), ffi.NULL if bias is None else pointer(bias),
                          pointer(out), m, n, k, threads)
    return out


class Int8Kernels:
    """CBackend's int8 primitives (a mixin: ``linear_forward`` is CBackend's)."""

    def matmul_int8(self, a, b):
        a, b = _c(a.astype(np.int8, copy=False)), _c(b.astype(np.int8, copy=False))
        out = np.empty((a.shape[0], b.shape[0]), np.int32)
        lib.matmul_int8(pointer(a), pointer(b), pointer(out), a.shape[0], b.shape[0], a.shape[1])
        return out

    def linear_int8(self, x, qweight, scale, bias=None, threads=0):
        """y = x (s ⊙ W)ᵀ + b for float32 x (M, K) and int8 W (N, K) with a float32 scale per output
        row. Up to INT8_KERNEL_ROWS rows (decoding, short prompts) run the kernel (linear_int8.c: v5
        for one or two rows, v4 for more; v2 on a CPU without AVX512-VNNI), which reads each weight
        byte once; more rows (an evaluation batch) dequantise blocks of W for the fp32 GEMM."""
        if not (x.dtype == np.float32 and qweight.dtype == np.int8 and scale.dtype == np.float32
                and (bias is None or bias.dtype == np.float32) and x.ndim == 2 and qweight.ndim == 2):
            return super().linear_int8(x, qweight, scale, bias)
        _check_int8_shapes(x, qweight, scale, bias)
        if x.shape[0] > INT8_KERNEL_ROWS:
            return self._linear_int8_blocks(x, qweight, scale, bias)
        x, qweight, scale = _c(x), _c(qweight), _c(scale)
        out = np.empty((x.shape[0], qweight.shape[0]), np.float32)
        lib.linear_int8(pointer(x), pointer(qweight), pointer(scale), ffi.NULL if bias is None else pointer(_c(bias)),
                        pointer(out), x.shape[0], qweight.shape[0], x.shape[1], threads)
        return out

    def _linear_int8_blocks(self, x, qweight, scale, bias):
        n = qweight.shape[0]
        out = np.empty((x.shape[0], n), np.float32)
        step = max(1, DEQUANTIZED_FLOATS // max(qweight.shape[1], 1))
        for start in range(0, n, step):
            block = qweight[start:start + step].astype(np.float32)
            block *= scale[start:start + step, None]
            out[:, start:start + step] = self.linear_forward(x, block,
                                                             None if bias is None else bias[start:start + step])
        return out
