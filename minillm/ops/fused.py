"""Fused ops: one graph node for what would be several, with the forward and backward
kernels in the backend (``backends/reference.py``'s ``Backend`` is the reference). A node costs
Python time in the forward and the backward, so a block built from a few of these runs
far fewer nodes than the same block composed from elementwise ops.

A new fused op goes here: ``@op``, a docstring with the shapes and the equation, the
backend's ``<name>_forward``/``<name>_backward``, and a case in tests/test_ops.py."""
import numpy as np

from .. import backends
from ..backends import xp_of
from .core import op, result
from .elementwise import stable_sigmoid
from .shape import cast


@op
def layer_norm_rows(x, weight, bias, eps):
    """Layer norm over the last axis of an (..., D) tensor; kernels live in the backend,
    which sees the rows folded to (N, D) inside this one node (three reshape nodes around
    it cost more Python time than the kernel at nanoGPT's sizes)."""
    if x.dtype == np.float16:  # statistics in float32, as autocast does
        x = cast(x, np.float32)
    backend = backends.current()
    rows = x.data.reshape(-1, x.shape[-1])
    y, mu, rstd = backend.layernorm_forward(rows, weight.data, bias.data, eps)

    def backward(g):
        dx, dw, db = backend.layernorm_backward(g.reshape(rows.shape), rows, weight.data, mu, rstd)
        return dx.reshape(x.shape), dw, db

    return result(y.reshape(x.shape), (x, weight, bias), backward, "layer_norm_rows")


@op
def attention(q, k, v, causal, scale):
    """Fused (flash-style) attention: q (N, Tq, D), k and v (N_kv, Tk, D), N_kv dividing N
    (query head n reads key/value head n // (N / N_kv)); kernels live in the backend."""
    backend = backends.current()
    out, lse = backend.attention_forward(q.data, k.data, v.data, causal, scale)

    def backward(g):
        return backend.attention_backward(q.data, k.data, v.data, out, lse, g, causal, scale)

    return result(out, (q, k, v), backward, "attention")


@op
def attention_heads(q, k, v, heads, kv_heads, causal, scale):
    """Attention between projections as Linear layers leave them: q (B, T, heads·D), k and v
    (B, T, kv_heads·D), kv_heads dividing heads (grouped-query attention) → (B, T, heads·D),
    ready for the output projection; the backend reads and writes the heads where they lie."""
    if q.ndim != 3 or k.shape != v.shape or k.ndim != 3 or q.shape[:2] != k.shape[:2] or heads % kv_heads \
            or q.shape[-1] % heads or k.shape[-1] != q.shape[-1] // heads * kv_heads:
        raise ValueError(f"attention_heads: expected q (B, T, heads·D), k and v (B, T, kv_heads·D) with kv_heads "
                         f"dividing heads; got q {q.shape}, k {k.shape}, v {v.shape}, heads={heads}, "
                         f"kv_heads={kv_heads}")
    backend = backends.current()
    y, lse = backend.attention_heads_forward(q.data, k.data, v.data, heads, kv_heads, causal, scale)

    def backward(g):
        return backend.attention_heads_backward(q.data, k.data, v.data, y, lse, g, heads, kv_heads, causal, scale)

    return result(y, (q, k, v), backward, "attention_heads")


@op
def attention_qkv(qkv, num_heads, causal, scale, kv_heads=None, rotary=None):
    """Self-attention from one projection, q | k | v side by side as nanoGPT's c_attn makes
    them, (B, T, 3C), to the (B, T, C) that the output projection takes.

    The same function as splitting into (B·H, T, C/H) heads, ``attention`` and merging the
    heads back, but one node instead of eleven, and on a backend that reads the heads where
    they lie (C) none of the four split/merge copies forward or backward; the gradient is
    one (B, T, 3C) array, so the projection's backward stays one GEMM.

    Llama's attention is the same node with two options. ``kv_heads`` (dividing num_heads):
    grouped-query attention, qkv (B, T, (num_heads + 2·kv_heads)·D). ``rotary`` = (cos, sin),
    (T, D/2) arrays as ``rope`` takes them: q and k are turned by their positions' angles
    before they meet (the C kernel turns them as it loads them and turns their gradient back
    as it finishes, so no turned copy is made; on other backends one turned copy is made here
    and kept for the backward), and q, k and v still come from one GEMM and go back to one."""
    kv_heads = kv_heads or num_heads
    if qkv.ndim != 3 or num_heads < 1 or num_heads % kv_heads or qkv.shape[-1] % (num_heads + 2 * kv_heads):
        raise ValueError(f"attention_qkv: expected (B, T, (num_heads + 2·kv_heads)·D) with kv_heads dividing "
                         f"num_heads; got {qkv.shape}, num_heads={num_heads}, kv_heads={kv_heads}")
    backend = backends.current()
    d = qkv.shape[-1] // (num_heads + 2 * kv_heads)
    if rotary is not None:
        rotary = tuple(backends.asarray(t, qkv.dtype) for t in rotary)
        cos, sin = rotary
        if cos.shape != (qkv.shape[1], d // 2) or sin.shape != cos.shape or d % 2:
            raise ValueError(f"attention_qkv: rotary tables must be (T, D/2) = {(qkv.shape[1], d // 2)} with D even; "
                             f"got cos {cos.shape}, sin {sin.shape}, D={d}")
    heads_in, turn_inside = qkv.data, rotary
    if rotary is not None and not backend.rotary_in_attention:  # turn one copy here, kept for the backward
        heads_in, turn_inside = backend.turn_qk(qkv.data, num_heads, kv_heads, rotary), None
    y, lse = backend.attention_qkv_forward(heads_in, num_heads, causal, scale, kv_heads, turn_inside)

    def backward(g):
        grad = backend.attention_qkv_backward(heads_in, y, lse, g, num_heads, causal, scale, kv_heads, turn_inside)
        if rotary is not None and turn_inside is None:
            grad = backend.turn_qk_back(xp_of(grad).ascontiguousarray(grad), num_heads, kv_heads, rotary)
        return (grad,)

    return result(y, (qkv,), backward, "attention_qkv")


@op
def cross_entropy_rows(logits, target, ignore_index):
    """Per-row softmax cross-entropy of (N, C) logits against (N,) integer targets, fused
    in the backend: the probabilities are never stored, only each row's log-sum-exp."""
    if logits.dtype == np.float16:  # log-sum-exp in half precision loses too much: fp32
        logits = cast(logits, np.float32)
    backend = backends.current()
    losses, lse = backend.cross_entropy_forward(logits.data, target, ignore_index)
    return result(losses, (logits,),
                  lambda g: (backend.cross_entropy_backward(logits.data, target, lse, g, ignore_index),),
                  "cross_entropy_rows")


@op
def bce_with_logits(x, y):
    """Elementwise max(x,0) − x·y + log(1 + e^−|x|): the stable form of BCE on logits,
    with the exact gradient σ(x) − y."""
    xp = xp_of(x.data)
    out = xp.maximum(x.data, 0) - x.data * y.data + xp.log1p(xp.exp(-xp.abs(x.data)))
    return result(out, (x, y),
                  lambda g: (g * (stable_sigmoid(xp, x.data) - y.data), -g * x.data), "bce_with_logits")


# ---- Llama's blocks: RMSNorm, rotary embeddings, SwiGLU's gate --------------------------------
@op
def rms_norm_rows(x, weight, eps):
    """RMSNorm over the last axis of an (..., D) tensor, y = x / √(mean(x²) + ε) · weight,
    the rows folded to (N, D) inside this one node (as ``layer_norm_rows``)."""
    if x.shape[-1:] != weight.shape or weight.ndim != 1:
        raise ValueError(f"rms_norm: weight {weight.shape} does not fit the last axis of input {x.shape}")
    if x.dtype == np.float16:  # statistics in float32, as autocast does
        x = cast(x, np.float32)
    backend = backends.current()
    rows = x.data.reshape(-1, x.shape[-1])
    y, rstd = backend.rmsnorm_forward(rows, weight.data.astype(x.dtype, copy=False), eps)

    def backward(g):
        dx, dw = backend.rmsnorm_backward(g.reshape(rows.shape), rows, weight.data.astype(x.dtype, copy=False),
                                          rstd)
        return dx.reshape(x.shape), dw.astype(weight.dtype, copy=False)

    return result(y.reshape(x.shape), (x, weight), backward, "rms_norm_rows")


@op
def rope(x, cos, sin, heads=None):
    """x (..., T, d) with dimension i paired with i + d/2 and each pair turned by its
    position's angle, ``cos``, ``sin`` (T, d/2) arrays (one angle per pair). The backward turns
    the gradient back: the same kernel with −sin.

    With ``heads``, x is a projection as a Linear layer leaves it, (B, T, heads·d): the kernel
    turns each head where it lies and writes the result (and the gradient) in the same layout,
    so no transpose, reshape or copy stands between the projection and ``attention_heads``."""
    if heads is not None:
        if x.ndim != 3 or heads < 1 or x.shape[-1] % heads or (x.shape[-1] // heads) % 2 \
                or cos.shape != (x.shape[1], x.shape[-1] // heads // 2) or sin.shape != cos.shape:
            raise ValueError(f"rope: expected x (B, T, heads·d) with d even and cos, sin (T, d/2); got x {x.shape}, "
                             f"heads={heads}, cos {cos.shape}, sin {sin.shape}")
    else:
        half = x.shape[-1] // 2 if x.ndim >= 2 else 0
        if x.ndim < 2 or x.shape[-1] % 2 or cos.shape != (x.shape[-2], half) or sin.shape != cos.shape:
            raise ValueError(f"rope: expected x (..., T, d) with d even and cos, sin (T, d/2); got x {x.shape}, "
                             f"cos {cos.shape}, sin {sin.shape}")
    backend = backends.current()
    cos, sin = (backends.asarray(t, x.dtype) for t in (cos, sin))

    def turned(a, sin):
        """``a`` turned by the angles (sin negated: back), into a new array in a's memory order."""
        xp = xp_of(a)
        if heads is None:  # for heads that are a view of a projection, empty_like keeps its layout
            return backend.rope_forward(a, cos, sin, xp.empty_like(a) if a.ndim == 4 else None)
        b, t, width = a.shape
        as_heads = (b, t, heads, width // heads)  # (B, T, H, d) in memory, seen as (B, H, T, d)
        out = xp.empty(as_heads, a.dtype)
        backend.rope_forward(xp.ascontiguousarray(a).reshape(as_heads).transpose(0, 2, 1, 3), cos, sin,
                             out.transpose(0, 2, 1, 3))
        return out.reshape(b, t, width)

    return result(turned(x.data, sin), (x,), lambda g: (turned(g, -sin),), "rope")


@op
def swiglu(a, b=None):
    """silu(a) · b = a·σ(a)·b, SwiGLU's gate, one pass forward and one backward. With ``b``
    None, ``a`` (..., 2H) holds gate | up side by side (one GEMM made both): the kernels read
    the halves where they lie and write the gradient's halves into one array, so the
    projection's backward stays one GEMM."""
    backend = backends.current()
    if b is not None:
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"swiglu: a {a.shape} {a.dtype} and b {b.shape} {b.dtype} must match in shape and dtype")
        return result(backend.swiglu_forward(a.data, b.data), (a, b),
                      lambda g: backend.swiglu_backward(a.data, b.data, g), "swiglu")
    if a.ndim == 0 or a.shape[-1] % 2:
        raise ValueError(f"swiglu: one input holds gate | up on its last axis, which must be even; got {a.shape}")
    half = a.shape[-1] // 2
    rows = a.data.reshape(-1, 2 * half)
    gate, up = rows[:, :half], rows[:, half:]

    def backward(g):
        grad = xp_of(rows).empty_like(rows)
        backend.swiglu_backward(gate, up, g.reshape(-1, half), grad[:, :half], grad[:, half:])
        return (grad.reshape(a.shape),)

    return result(backend.swiglu_forward(gate, up).reshape(a.shape[:-1] + (half,)), (a,), backward, "swiglu")
