"""bf16 mixed precision (``amp.autocast("bfloat16")``): float32 master weights, gradients and
optimizer state; a Linear layer's three products (y = x·Wᵀ + b, dx = g·W, dW = gᵀ·x) take
their inputs rounded to bfloat16 and sum them in float32, with float32 outputs; everything
else (attention, layer norm, softmax cross-entropy, the bias gradient Σ_rows g, the optimizer)
stays float32.

bf16 keeps float32's 8 exponent bits and drops 16 mantissa bits: a gradient that fits a
float32 fits a bf16, so no GradScaler is needed (fp16's 5 exponent bits are why it needs one).
The sums stay float32 because a running sum held in bf16 stops growing once each new product
is below half its spacing (2⁻⁸ of the sum): a K-long dot product would lose most of its terms.

The C backend runs the products on bf16 kernels (``c_bf16.py``: matmul_bf16.c's v4, which
rounds to bf16 inside the GEMM's packing; vdpbf16ps where the CPU has AVX512_BF16, a portable
loop where not). Other backends have none: they emulate, rounding each operand to bf16 values
held in float32 and running their float32 GEMM. The numbers are the same (a product of two
bf16 values is exact in float32) but the rounding is extra NumPy passes, so it is slower than
float32, and says so once.
"""
import warnings

from . import backends
from .bf16 import from_bf16, to_bf16

_warned = set()


def round_to_bf16(array):
    """float32 array → float32 array of the nearest bf16 values (ties to even)."""
    return backends.asarray(from_bf16(to_bf16(backends.to_numpy(array))))


def _emulated_forward(x, w, bias=None):
    return backends.current().linear_forward(round_to_bf16(x), round_to_bf16(w), bias)


def _emulated_backward(g, x, w, need_x=True, need_w=True, need_b=True):
    gx, gw, _ = backends.current().linear_backward(round_to_bf16(g), round_to_bf16(x), round_to_bf16(w),
                                                   need_x, need_w, False)
    return gx, gw, (g.sum(axis=0) if need_b else None)


def linear_products(backend):
    """(forward(x, w, bias), backward(g, x, w, need_x, need_w, need_b)) of a Linear layer on bf16
    inputs for ``backend``: its own bf16 kernels, or the emulation (with a warning, once)."""
    forward = getattr(backend, "linear_forward_bf16", None)
    if forward is not None:
        return forward, backend.linear_backward_bf16
    if backend.name not in _warned:
        _warned.add(backend.name)
        warnings.warn(f"minillm: autocast('bfloat16') on the {backend.name} backend emulates bf16 (rounding in "
                      f"NumPy, then float32 GEMMs): same numbers, slower than float32; the c backend has bf16 "
                      f"kernels", RuntimeWarning, stacklevel=3)
    return _emulated_forward, _emulated_backward


def matmul(a, b):
    """A product outside a Linear layer under bf16 autocast: both operands rounded to bf16
    (gradients pass the rounding unchanged), the product in float32."""
    from . import amp, ops
    linear_products(backends.current())  # the warning, where the backend has no bf16 kernels
    with amp.autocast(False):
        return ops.matmul(_rounded(a), _rounded(ops.as_tensor(b, a)))


def _rounded(t):
    from .ops import result
    return result(round_to_bf16(t.data), (t,), lambda g: (g,), "round_to_bf16")
