"""bf16 mixed precision (``amp.autocast("bfloat16")``): float32 master weights, gradients and
optimizer state; a Linear layer's three products (y = x·Wᵀ + b, dx = g·W, dW = gᵀ·x) take
their inputs rounded to bfloat16 and sum them in float32, with float32 outputs, and so does
any other matrix product autograd sees (``matmul``: the composite attention that a mask, dropout
or recorded weights send through q·kᵀ and P·v). The fused attention kernels, layer norm,
softmax cross-entropy, the bias gradient Σ_rows g and the optimizer stay float32.

bf16 keeps float32's 8 exponent bits and drops 16 mantissa bits: a gradient that fits a
float32 fits a bf16, so no GradScaler is needed (fp16's 5 exponent bits are why it needs one).
The sums stay float32 because a running sum held in bf16 stops growing once each new product
is below half its spacing (2⁻⁸ of the sum): a K-long dot product would lose most of its terms.

The products are backend primitives, ``linear_forward_bf16`` and ``linear_backward_bf16``
(``backends/reference.py``). The C backend overrides them with bf16 kernels
(``backends/c/bf16.py``: matmul_bf16.c's v4, which rounds to bf16 inside the GEMM's packing;
vdpbf16ps where the CPU has AVX512_BF16, a portable loop where not). Other backends inherit
the reference, which emulates: each operand rounded to bf16 values held in float32, then the
backend's own float32 GEMM. The numbers are the same (a product of two bf16 values is exact in
float32) but the rounding is extra array passes, so it is slower than float32, and says so once.
"""
import warnings

from . import backends
from .backends.arrays import round_to_bf16
from .backends.reference import Backend

_warned = set()


def has_kernels(backend):
    """Does ``backend`` run the bf16 products on kernels of its own (not the emulation)? The C
    backend does where its build has AVX512_BF16 (``has_bf16_kernels``); without it, it
    falls back to the emulation on its float32 GEMM."""
    return (type(backend).linear_forward_bf16 is not Backend.linear_forward_bf16
            and getattr(backend, "has_bf16_kernels", True))


def linear_products(backend):
    """(forward(x, w, bias), backward(g, x, w, need_x, need_w, need_b)) of a Linear layer on bf16
    inputs for ``backend``: its ``linear_forward_bf16`` and ``linear_backward_bf16``, with a
    warning, once, where they are the emulation."""
    if not has_kernels(backend) and backend.name not in _warned:
        _warned.add(backend.name)
        why = ("this CPU (or this build of the kernels) has no AVX512_BF16" if backend.name == "c"
               else "the c backend has bf16 kernels")
        warnings.warn(f"minillm: autocast('bfloat16') on the {backend.name} backend emulates bf16 (rounding in "
                      f"array code, then float32 GEMMs): same numbers, slower than float32; {why}",
                      RuntimeWarning, stacklevel=3)
    return backend.linear_forward_bf16, backend.linear_backward_bf16


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
