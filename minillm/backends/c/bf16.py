"""A Linear layer's three products on bf16 inputs with float32 sums, for the C backend
(``amp.autocast("bfloat16")``, see ``minillm/amp_bf16.py``): each is matmul_bf16.c's v4, which
reads the float32 operands where they lie (transposed or not), rounds them to bf16 as it packs
them, and adds the bias as it stores.

    forward   y  = x · Wᵀ + b    x (N, K), W (M, K)
    backward  dx = g · W,  dW = gᵀ · x,  db = Σ_rows g (float32)

The backward is linear.c's ``linear_backward_bf16``: the float32 backward's sharing of the work
(each core its own rows of g and x for dx and a partial dW, the partials summed) with the
products on bf16 inputs.

``LinearBf16`` is a part of ``CBackend`` (its overrides of ``Backend.linear_forward_bf16`` and
``linear_backward_bf16``): the shapes and strides of the three products. The call into the
library is ``CBackend._bf16_product``, beside ``lib`` in ``__init__.py``.
"""
import numpy as np

from ..reference import float32_kernel


def _checked(name, *arrays):
    for a in arrays:
        if a.dtype != np.float32 or a.ndim not in (1, 2):
            raise TypeError(f"{name}: expected 2-D float32 operands (1-D bias), got {a.dtype} of shape {a.shape}")
    return arrays


class LinearBf16:
    """CBackend's bf16 Linear products (a mixin: ``_bf16_product`` and ``has_bf16_kernels`` are
    CBackend's). Without AVX512_BF16 in the build, the reference's emulation (operands rounded
    in array code, then the float32 C GEMM) is faster than matmul_bf16.c's portable loop, so
    the products fall back to it; ``amp_bf16`` warns once."""

    @float32_kernel(0, 1)
    def linear_forward_bf16(self, x, w, bias=None):
        """y (N, M) = x (N, K) · Wᵀ + b, x and W rounded to bf16, summed in float32."""
        if not self.has_bf16_kernels:
            return super().linear_forward_bf16(x, w, bias)
        x, w = _checked("linear_forward_bf16", x, w)
        (rows, k), (out, k_w) = x.shape, w.shape
        if k != k_w or (bias is not None and bias.shape != (out,)):
            raise ValueError(f"linear_forward_bf16: x {x.shape}, w {w.shape} and bias "
                             f"{None if bias is None else bias.shape} do not fit "
                             f"(expected x (N, K), w (M, K), bias (M,))")
        if bias is not None:
            _checked("linear_forward_bf16", bias)
        return self._bf16_product(x, w, rows, out, k, (k, 1), (1, k), bias)  # B = Wᵀ: W's rows are its columns

    @float32_kernel(0, 1, 2)
    def linear_backward_bf16(self, g, x, w, need_x=True, need_w=True, need_b=True):
        """dx = g·W, dW = gᵀ·x on bf16-rounded inputs with float32 sums, db = Σ_rows g in float32."""
        if not self.has_bf16_kernels:
            return super().linear_backward_bf16(g, x, w, need_x, need_w, need_b)
        g, x, w = _checked("linear_backward_bf16", g, x, w)
        (rows, out), k = g.shape, x.shape[1]
        if x.shape[0] != rows or w.shape != (out, k):
            raise ValueError(f"linear_backward_bf16: g {g.shape}, x {x.shape} and w {w.shape} do not fit "
                             f"(expected g (N, M), x (N, K), w (M, K))")
        if not (g.size and x.size):
            return super().linear_backward_bf16(g, x, w, need_x, need_w, need_b)
        g, x, w = (np.ascontiguousarray(a) for a in (g, x, w))
        gx = np.empty((rows, k), np.float32) if need_x else None
        gw = np.empty((out, k), np.float32) if need_w else None
        gb = np.empty(out, np.float32) if need_b else None
        self._lib.linear_backward_bf16(self._pointer(g), self._pointer(x), self._pointer(w),
                                       *(self._ffi.NULL if a is None else self._pointer(a) for a in (gx, gw, gb)),
                                       rows, k, out, 0)
        return gx, gw, gb
