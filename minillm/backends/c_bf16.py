"""A Linear layer's three products on bf16 inputs with float32 sums, for the C backend
(``amp.autocast("bfloat16")``, see ``minillm/amp_bf16.py``): each is one call of
matmul_bf16.c's v4, which reads the float32 operands where they lie (transposed or not),
rounds them to bf16 as it packs them, and adds the bias as it stores.

    forward   y  = x · Wᵀ + b    x (N, K), W (M, K)
    backward  dx = g · W,  dW = gᵀ · x,  db = Σ_rows g (float32, NumPy's pairwise sum)
"""
import numpy as np

from .c_backend import ffi, lib, pointer


def has_dpbf16():
    return bool(lib.matmul_bf16_has_avx512bf16())


def kernel_name():
    """Which bf16 GEMM runs here, for ``minillm info``."""
    return ("vdpbf16ps (AVX512_BF16)" if has_dpbf16()
            else "portable loop (this build has no AVX512_BF16): correct, not fast")


def _product(a, b, m, n, k, strides_a, strides_b, bias=None):
    out = np.empty((m, n), np.float32)
    if out.size:
        lib.matmul_bf16_v4_from_float(pointer(a), pointer(b), ffi.NULL if bias is None else pointer(bias),
                                      pointer(out), m, n, k, *strides_a, *strides_b)
    return out


def _float32(name, *arrays):
    for a in arrays:
        if a.dtype != np.float32 or a.ndim not in (1, 2):
            raise TypeError(f"{name}: expected 2-D float32 operands (1-D bias), got {a.dtype} of shape {a.shape}")
    return [np.ascontiguousarray(a) for a in arrays]


def linear_forward_bf16(x, w, bias=None):
    """y (N, M) = x (N, K) · Wᵀ + b, x and W rounded to bf16, summed in float32."""
    x, w = _float32("linear_forward_bf16", x, w)
    (rows, k), (out, k_w) = x.shape, w.shape
    if k != k_w or (bias is not None and bias.shape != (out,)):
        raise ValueError(f"linear_forward_bf16: x {x.shape}, w {w.shape} and bias "
                         f"{None if bias is None else bias.shape} do not fit (expected x (N, K), w (M, K), bias (M,))")
    if bias is not None:
        bias = _float32("linear_forward_bf16", bias)[0]
    return _product(x, w, rows, out, k, (k, 1), (1, k), bias)  # B = Wᵀ: W's rows are its columns


def linear_backward_bf16(g, x, w, need_x=True, need_w=True, need_b=True):
    """dx = g·W, dW = gᵀ·x on bf16-rounded inputs with float32 sums, db = Σ_rows g in float32."""
    g, x, w = _float32("linear_backward_bf16", g, x, w)
    (rows, out), k = g.shape, x.shape[1]
    if x.shape[0] != rows or w.shape != (out, k):
        raise ValueError(f"linear_backward_bf16: g {g.shape}, x {x.shape} and w {w.shape} do not fit "
                         f"(expected g (N, M), x (N, K), w (M, K))")
    gx = _product(g, w, rows, k, out, (out, 1), (k, 1)) if need_x else None
    gw = _product(g, x, out, k, rows, (1, out), (k, 1)) if need_w else None  # A = gᵀ: g's columns
    gb = g.sum(axis=0) if need_b else None
    return gx, gw, gb
