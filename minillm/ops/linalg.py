"""Products: ``matmul`` with NumPy's rules, and ``linear`` (x Wᵀ + b as one graph node).
Both run the backend's GEMM; the backward is two more products."""
import numpy as np

from .. import amp, amp_bf16, backends
from .core import as_tensor, op, result, unbroadcast
from .elementwise import add
from .shape import cast, reshape, transpose


@op
def matmul(a, b):
    """NumPy's matmul rules: 1-D operands gain (and lose) an axis, batch axes broadcast."""
    b = as_tensor(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension; got shapes {a.shape} and {b.shape}")
    a2 = a.data[None, :] if a.ndim == 1 else a.data
    b2 = b.data[:, None] if b.ndim == 1 else b.data
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align "
                         f"({a2.shape[-1]} != {b2.shape[-2]})")
    try:
        np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast") from None
    if amp.autocast_dtype() == "bfloat16" and a.dtype == np.float32:
        return amp_bf16.matmul(a, b)  # bf16 operands, float32 product
    if amp.is_autocast_enabled() and a.dtype == np.float32:
        # mixed precision: the product runs in float16; the casts' backward hands float32
        # gradients back to the float32 master weights
        with amp.autocast(False):
            return matmul(cast(a, np.float16), cast(b, np.float16))
    if a2.ndim > 2 and b2.ndim == 2:
        # (..., M, K) @ (K, N): one (ΣM, K) @ (K, N) product, and a weight gradient that is
        # one product too instead of a batch of them summed afterwards.
        folded = matmul(reshape(a, (-1, a.shape[-1])), b)
        return reshape(folded, a.shape[:-1] + b.shape[1:])  # a 1-D b adds no axis
    kernel = backends.current().matmul
    out = kernel(a2, b2)

    def backward(g):
        g2 = g.reshape(out.shape)
        ga = unbroadcast(kernel(g2, b2, trans_b=True), a2.shape).reshape(a.shape)
        gb = unbroadcast(kernel(a2, g2, trans_a=True), b2.shape).reshape(b.shape)
        return ga, gb

    if a.ndim == 1:
        out_view = out[..., 0, :]
    else:
        out_view = out
    if b.ndim == 1:
        out_view = out_view[..., 0]
    return result(out_view, (a, b), backward, "matmul")


@op
def linear(x, weight, bias=None):
    """y = x Wᵀ + b as one graph node, W (out, in) as in PyTorch.

    The composite x @ W.T + b is five nodes (a transpose, two reshapes around the folded
    product, the product, a broadcast add whose backward sums over the rows); each costs
    Python time in the forward and the backward, and the add makes one more pass over the
    output. Here the forward is one GEMM with B transposed in the packing plus the bias
    added in place, and the backward is the three results the chain rule asks for, from one
    backend call: dx = g W, dW = gᵀ x (A transposed in the packing), db = Σ_rows g (C: each
    core its own rows of g)."""
    weight, bias = as_tensor(weight, x), None if bias is None else as_tensor(bias, x)
    if (amp.autocast_dtype() == "float16" or x.ndim == 0 or weight.ndim != 2 or x.dtype != weight.dtype
            or (bias is not None and (bias.ndim != 1 or bias.dtype != x.dtype))):
        y = matmul(x, transpose(weight, 0, 1))  # the general path: mixed precision, odd shapes
        return y if bias is None else add(y, bias)
    n, k = weight.shape
    if x.shape[-1] != k:
        raise ValueError(f"linear: input has {x.shape[-1]} features but the weight {weight.shape} expects {k}")
    if bias is not None and bias.shape[0] != n:
        raise ValueError(f"linear: bias has {bias.shape[0]} entries but the weight {weight.shape} has {n} outputs")
    backend = backends.current()
    forward, backward_products = backend.linear_forward, backend.linear_backward
    if amp.autocast_dtype() == "bfloat16" and x.dtype == np.float32:
        forward, backward_products = amp_bf16.linear_products(backend)  # bf16 inputs, float32 sums
    rows = x.data.reshape(-1, k)
    out = forward(rows, weight.data, None if bias is None else bias.data)  # bias in the GEMM's stores

    def backward(g):
        gx, gw, gb = backward_products(g.reshape(-1, n), rows, weight.data, x.requires_grad,
                                       weight.requires_grad, bias is not None)
        return (None if gx is None else gx.reshape(x.shape), gw) + ((gb,) if bias is not None else ())

    parents = (x, weight) if bias is None else (x, weight, bias)
    return result(out.reshape(x.shape[:-1] + (n,)), parents, backward, "linear")
