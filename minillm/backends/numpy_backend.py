"""The reference backend: each primitive in plain, composite array code.

Written against ``xp_of(array)`` rather than NumPy itself, so the same lines serve as the
fallback for CuPy arrays. Every other backend is tested against these functions.

Shapes: attention takes ``q`` (N, Tq, D), ``k`` and ``v`` (N, Tk, D) with N = batch·heads;
layer norm takes ``x`` (N, D) and ``w``, ``b`` (D,).
"""
import math

import numpy as np

from ..masks import causal_mask
from . import xp_of

xp = np


def matmul(a, b, trans_a=False, trans_b=False):
    """``op(a) @ op(b)`` for (..., M, K) operands, where op transposes the last two axes
    when asked; batch axes broadcast. The backward of a matmul needs both transposes."""
    xp_ = xp_of(a)
    a = a.swapaxes(-1, -2) if trans_a else a
    b = b.swapaxes(-1, -2) if trans_b else b
    return xp_.matmul(a, b)


def attention_forward(q, k, v, causal, scale):
    """``out = softmax(scale · q kᵀ) v`` and the row-wise log-sum-exp ``lse`` that lets the
    backward rebuild the probabilities without storing them."""
    xp_ = xp_of(q)
    scores = matmul(q, k, trans_b=True) * scale  # (N, Tq, Tk)
    if causal:
        scores = xp_.where(causal_mask(xp_, q.shape[1], k.shape[1]), scores, -xp_.inf)
    peak = scores.max(axis=-1, keepdims=True)
    weights = xp_.exp(scores - peak)
    total = weights.sum(axis=-1, keepdims=True)
    out = matmul(weights / total, v)
    lse = (peak + xp_.log(total))[..., 0]
    return out.astype(q.dtype, copy=False), lse.astype(np.float32 if q.dtype != np.float64 else q.dtype)


def attention_backward(q, k, v, out, lse, dout, causal, scale):
    """With P = exp(S − lse): dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)),
    dQ = scale · dS K, dK = scale · dSᵀ Q."""
    xp_ = xp_of(q)
    scores = matmul(q, k, trans_b=True) * scale
    probs = xp_.exp(scores - lse[..., None])
    if causal:
        probs = xp_.where(causal_mask(xp_, q.shape[1], k.shape[1]), probs, 0)
    dv = matmul(probs, dout, trans_a=True)
    dprobs = matmul(dout, v, trans_b=True)
    row = (dout * out).sum(axis=-1, keepdims=True)
    dscores = probs * (dprobs - row) * scale
    dq = matmul(dscores, k)
    dk = matmul(dscores, q, trans_a=True)
    return tuple(g.astype(q.dtype, copy=False) for g in (dq, dk, dv))


def layernorm_forward(x, w, b, eps):
    """``y = (x − mean) · rstd · w + b`` over the last axis; returns y, mean, rstd."""
    xp_ = xp_of(x)
    mean = x.mean(axis=-1)
    centred = x - mean[:, None]
    rstd = 1.0 / xp_.sqrt((centred * centred).mean(axis=-1) + eps)
    y = centred * rstd[:, None] * w + b
    return y.astype(x.dtype, copy=False), mean, rstd.astype(mean.dtype, copy=False)


def layernorm_backward(dy, x, w, mean, rstd):
    """With x̂ = (x − mean)·rstd and g = dy·w: dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂))."""
    xhat = (x - mean[:, None]) * rstd[:, None]
    g = dy * w
    dx = rstd[:, None] * (g - g.mean(axis=-1, keepdims=True)
                          - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dw = (dy * xhat).sum(axis=0)
    db = dy.sum(axis=0)
    return dx.astype(x.dtype, copy=False), dw.astype(w.dtype, copy=False), db.astype(w.dtype, copy=False)


def cross_entropy_forward(logits, target, ignore_index):
    """Per-row loss ``lse − logits[target]`` (0 for ignored rows) and the row's lse.
    ``logits`` (N, C), ``target`` (N,) integers."""
    xp_ = xp_of(logits)
    peak = logits.max(axis=-1)
    lse = peak + xp_.log(xp_.exp(logits - peak[:, None]).sum(axis=-1))
    keep = target != ignore_index
    picked = logits[xp_.arange(logits.shape[0]), xp_.where(keep, target, 0)]
    return xp_.where(keep, lse - picked, 0).astype(logits.dtype, copy=False), lse


def cross_entropy_backward(logits, target, lse, dloss, ignore_index):
    """d loss_r / d logits_r = (softmax(logits_r) − onehot(target_r)) · dloss_r."""
    xp_ = xp_of(logits)
    keep = target != ignore_index
    grad = xp_.exp(logits - lse[:, None])
    grad[xp_.arange(logits.shape[0]), xp_.where(keep, target, 0)] -= 1
    return (grad * xp_.where(keep, dloss, 0)[:, None]).astype(logits.dtype, copy=False)


def add(a, b):
    """a + b for two arrays of one shape: the residual connections, and autograd's sum of two
    gradients for one tensor (a backend may keep each core on its own rows)."""
    return a + b


SQRT_2_OVER_PI = 0.7978845608028654


def gelu_forward(x):
    """GELU, tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). (x·x·x, not x**3:
    NumPy's pow is many times slower.)"""
    xp_ = xp_of(x)
    return (0.5 * x * (1 + xp_.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x)))).astype(x.dtype, copy=False)


def gelu_backward(x, dy):
    xp_ = xp_of(x)
    x2 = x * x
    t = xp_.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x2))
    grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x2)
    return (dy * grad).astype(x.dtype, copy=False)


# ---- Llama's blocks ---------------------------------------------------------------------
def rmsnorm_forward(x, w, eps):
    """``y = x · rstd · w`` over the last axis of x (N, D), rstd = 1/√(mean(x²) + ε); returns
    y and rstd (N,)."""
    xp_ = xp_of(x)
    rstd = 1.0 / xp_.sqrt((x * x).mean(axis=-1) + eps)
    return (x * rstd[:, None] * w).astype(x.dtype, copy=False), rstd.astype(x.dtype, copy=False)


def rmsnorm_backward(dy, x, w, rstd):
    """With x̂ = x·rstd and g = dy·w: dx = rstd · (g − x̂ · mean(g ⊙ x̂)), dw = Σ_rows dy ⊙ x̂."""
    xhat = x * rstd[:, None]
    g = dy * w
    dx = rstd[:, None] * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx.astype(x.dtype, copy=False), (dy * xhat).sum(axis=0).astype(w.dtype, copy=False)


def rope_forward(x, cos, sin, out=None):
    """x (..., T, d) with each pair (i, i + d/2) turned by its position's angle (Hugging Face's
    layout), cos and sin (T, d/2) one entry per pair: (x₁, x₂) → (x₁c − x₂s, x₂c + x₁s),
    into ``out`` (an array of x's shape, any strides) when given. The rotation by −θ (the
    backward) is the same call with −sin."""
    xp_ = xp_of(x)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    y = xp_.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype, copy=False)
    if out is None:
        return y
    out[...] = y
    return out


def _sigmoid(a):
    z = xp_of(a).exp(-abs(a))  # exp of a negative number only: no overflow
    return xp_of(a).where(a >= 0, 1 / (1 + z), z / (1 + z))


def swiglu_forward(a, b):
    """SwiGLU's gate: silu(a) · b = a·σ(a)·b, elementwise, for a and b of one shape (views of
    one array's two halves, say)."""
    return (a * _sigmoid(a) * b).astype(a.dtype, copy=False)


def swiglu_backward(a, b, dy, da=None, db=None):
    """da = dy · b · σ(a)·(1 + a·(1 − σ(a))), db = dy · a·σ(a); written into ``da``, ``db``
    when given (the two halves of one gradient array, say)."""
    s = _sigmoid(a)
    silu = a * s
    grads = (dy * b * (s + silu * (1 - s))).astype(a.dtype, copy=False), (dy * silu).astype(b.dtype, copy=False)
    if da is None:
        return grads
    da[...], db[...] = grads
    return da, db


def _refuse_read_only(primitive, arrays, labels=None):
    """Raise before anything is written if an array that ``primitive`` updates in place is
    read-only: NumPy would stop only at that array's turn, after the others had changed, and a
    kernel would write through the flag (into a read-only memory map: a crash)."""
    for i, a in enumerate(arrays):
        if not getattr(a.flags, "writeable", True):  # (CuPy's arrays have no such flag)
            label = labels[i] if labels else f"arrays[{i}]"
            raise ValueError(f"{primitive}: {label} is read-only (a frozen array, a broadcast view or a read-only "
                             f"memory map), and {primitive} updates it in place")


def scatter_add_rows(target, index, values):
    """target[index[i]] += values[i] for a 1-D integer ``index`` in [0, rows), repeats adding
    up (an embedding's backward): the rows sorted by index and each run added with one
    reduceat, ~10× faster than np.add.at's element-wise loop."""
    _refuse_read_only("scatter_add_rows", (target,), ("target",))
    order = np.argsort(index, kind="stable")
    unique, starts = np.unique(index[order], return_index=True)
    target[unique] += np.add.reduceat(values[order], starts, axis=0)
    return target


def matmul_int8(a, b):
    """(M, K) int8 · (N, K)ᵀ int8 → (M, N) int32, accumulating exactly in 32 bits."""
    xp_ = xp_of(a)
    return xp_.matmul(a.astype(xp_.int32), b.astype(xp_.int32).T)


def linear_int8(x, qweight, scale, bias=None):
    """y = x (s ⊙ W)ᵀ + b for float32 x (M, K) and int8 weights W (N, K) with one float32 scale
    per output row (weight-only int8; the activations stay float32): the weights dequantised,
    then one float32 product."""
    xp_ = xp_of(x)
    w = qweight.astype(xp_.float32)
    w *= scale[:, None]
    out = x @ w.T
    if bias is not None:
        out += bias
    return out


def sum_of_squares_many(arrays):
    """Σ x² over every element of every array (a gradient norm's square), as a Python float:
    one dot product per array, no temporaries (|x|, x², a float64 copy were three arrays
    each). float32 accumulation (BLAS keeps partial sums per lane) errs by ~1e-6 relative,
    far below what a clipping threshold can notice; float16 is widened (its squares overflow)."""
    total = 0.0
    for a in arrays:
        flat = a.reshape(-1)
        flat = flat if flat.dtype.itemsize >= 4 else flat.astype(np.float32)
        total += float(xp_of(a).dot(flat, flat))
    return total


def scale_many(arrays, factor):
    """x ← x · factor, in place, for every array (clipping's rescale)."""
    _refuse_read_only("scale_many", arrays)
    for a in arrays:
        a *= a.dtype.type(factor)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """One Adam step, in place on the parameter ``p`` and the moments ``m``, ``v``:

        AdamW (decoupled):  θ ← θ(1 − ηλ)          Adam: g ← g + λθ
        m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²
        θ ← θ − η/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)

    Several NumPy passes and temporaries per tensor here; a backend fuses them into one."""
    _refuse_read_only("adam_update", (p, m, v), ("the parameter", "m", "v"))
    xp_ = xp_of(p)
    if weight_decay:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    step_size = lr / (1 - beta1 ** step)
    denom = xp_.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
    p -= (step_size * m / denom).astype(p.dtype, copy=False)
