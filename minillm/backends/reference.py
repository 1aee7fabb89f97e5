"""The reference backend, and the one declaration of every primitive.

``Backend``'s public methods ARE the primitives (``backends.PRIMITIVES`` is read from this
class): each is plain, composite array code with a docstring that states the shapes and
the equation. It is the ``numpy`` backend, and every other backend is a subclass that
overrides what it accelerates and is tested against these methods. They are written
against ``xp_of(array)`` rather than NumPy itself, so the same lines serve CuPy arrays.

Shapes: attention takes ``q`` (N, Tq, D), ``k`` and ``v`` (N_kv, Tk, D) with N = batch·heads and
N_kv dividing N (grouped-query attention, ``attention_groups``); layer norm takes ``x`` (N, D) and ``w``, ``b`` (D,).

``float32_kernel`` is the guard every kernel backend puts on its overrides: the kernel for
float32 arrays, the reference for anything else.
"""
import functools
import inspect
import math

import numpy as np

from ..masks import causal_mask
from .arrays import round_to_bf16, xp_of

SQRT_2_OVER_PI = 0.7978845608028654


def _xp_matmul(a, b, trans_a=False, trans_b=False):
    a = a.swapaxes(-1, -2) if trans_a else a
    b = b.swapaxes(-1, -2) if trans_b else b
    return xp_of(a).matmul(a, b)


def _sigmoid(a):
    """σ(a), for a of any sign without overflow (SwiGLU's gate)."""
    z = xp_of(a).exp(-abs(a))  # exp of a negative number only: no overflow
    return xp_of(a).where(a >= 0, 1 / (1 + z), z / (1 + z))


def _refuse_read_only(primitive, arrays, labels=None):
    """Raise before anything is written if an array that ``primitive`` updates in place is
    read-only: NumPy would stop only at that array's turn, after the others had changed, and a
    kernel would write through the flag (into a read-only memory map: a crash)."""
    for i, a in enumerate(arrays):
        if not getattr(a.flags, "writeable", True):  # (CuPy's arrays have no such flag)
            label = labels[i] if labels else f"arrays[{i}]"
            raise ValueError(f"{primitive}: {label} is read-only (a frozen array, a broadcast view or a read-only "
                             f"memory map), and {primitive} updates it in place")


def qkv_parts(qkv, heads, kv_heads=None):
    """The q, k and v column blocks (views) of one (B, T, (heads + 2·kv_heads)·D) projection,
    q | k | v side by side (kv_heads None: heads, nanoGPT's (B, T, 3C))."""
    kv_heads = kv_heads or heads
    d = qkv.shape[-1] // (heads + 2 * kv_heads)
    q_end, k_end = heads * d, (heads + kv_heads) * d
    return qkv[..., :q_end], qkv[..., q_end:k_end], qkv[..., k_end:]


def _qk_heads(qkv, heads, kv_heads):
    """The q and k heads of a (B, T, (heads + 2·kv_heads)·D) projection as (B, heads + kv_heads, T, D):
    a view, the heads where they lie (what RoPE turns)."""
    b, t, w = qkv.shape
    turned = heads + (kv_heads or heads)
    d = w // (turned + (kv_heads or heads))
    return qkv[..., :turned * d].reshape(b, t, turned, d).transpose(0, 2, 1, 3)


def split_heads(y, heads):
    """(B, T, C) -> (B·heads, T, C/heads), contiguous."""
    b, t, c = y.shape
    return y.reshape(b, t, heads, c // heads).transpose(0, 2, 1, 3).reshape(b * heads, t, c // heads)


def attention_groups(q, k, v, op="attention"):
    """Query heads per key/value head: q (N, Tq, D), k and v (N_kv, Tk, D) with N_kv dividing
    N (grouped-query attention: query head n reads key/value head n // (N / N_kv))."""
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or k.shape[:2] != v.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} need shapes (N, Tq, D), "
                         f"(N_kv, Tk, D), (N_kv, Tk, Dv)")
    if k.shape[0] == 0 or q.shape[0] % k.shape[0]:
        raise ValueError(f"{op}: {q.shape[0]} query heads cannot share {k.shape[0]} key/value heads evenly")
    return q.shape[0] // k.shape[0]


def _by_group(q, k, v, *per_query):
    """Query-side arrays as (N_kv, groups, T, ·) and k, v as (N_kv, 1, Tk, D): a matmul
    broadcasts each key/value head over its group's query heads, with no copies."""
    groups = attention_groups(q, k, v)
    split = tuple(a.reshape((k.shape[0], groups) + a.shape[1:]) for a in (q,) + per_query)
    return split[0], k[:, None], v[:, None], split[1:]


def merge_heads(x, batch):
    """(B·heads, T, D) -> (B, T, heads·D): the heads side by side again."""
    n, t, d = x.shape
    return x.reshape(batch, n // batch, t, d).transpose(0, 2, 1, 3).reshape(batch, t, n // batch * d)


class Backend:
    """The primitives, in composite array code. A backend subclasses this and overrides the
    primitives it has kernels for; the composite ones at the end (linear, linear on bf16
    inputs, qkv attention, Adam over many tensors) are written in terms of ``self.<other primitive>``, so a backend
    that overrides ``matmul`` or ``attention_forward`` gets them through its own kernels."""

    name = "numpy"
    xp = np

    # ---- products -------------------------------------------------------------------------
    def matmul(self, a, b, trans_a=False, trans_b=False):
        """``op(a) @ op(b)`` for (..., M, K) operands, where op transposes the last two axes
        when asked; batch axes broadcast. The backward of a matmul needs both transposes."""
        return _xp_matmul(a, b, trans_a, trans_b)

    def matmul_int8(self, a, b):
        """(M, K) int8 · (N, K)ᵀ int8 → (M, N) int32, accumulating exactly in 32 bits."""
        xp_ = xp_of(a)
        return xp_.matmul(a.astype(xp_.int32), b.astype(xp_.int32).T)

    def linear_int8(self, x, qweight, scale, bias=None):
        """y = x (s ⊙ W)ᵀ + b for float32 x (M, K) and int8 weights W (N, K) with one float32
        scale per output row (weight-only int8; the activations stay float32): the weights
        dequantised, then one float32 product."""
        xp_ = xp_of(x)
        w = qweight.astype(xp_.float32)
        w *= scale[:, None]
        out = x @ w.T
        if bias is not None:
            out += bias
        return out

    # ---- attention --------------------------------------------------------------------------
    def attention_forward(self, q, k, v, causal, scale):
        """``out = softmax(scale · q kᵀ) v`` (N, Tq, D) and the row-wise log-sum-exp ``lse``
        (N, Tq) that lets the backward rebuild the probabilities without storing them.
        ``causal``: query i sees keys up to i + Tk − Tq. k and v (N_kv, Tk, D) may have fewer
        heads than q: query head n reads key/value head n // (N / N_kv) (``attention_groups``)."""
        xp_ = xp_of(q)
        qg, kg, vg, _ = _by_group(q, k, v)
        scores = _xp_matmul(qg, kg, trans_b=True) * scale  # (N_kv, groups, Tq, Tk)
        if causal:
            scores = xp_.where(causal_mask(xp_, q.shape[1], k.shape[1]), scores, -xp_.inf)
        peak = scores.max(axis=-1, keepdims=True)
        weights = xp_.exp(scores - peak)
        total = weights.sum(axis=-1, keepdims=True)
        out = _xp_matmul(weights / total, vg).reshape(q.shape)
        lse = (peak + xp_.log(total))[..., 0].reshape(q.shape[:2])
        return out.astype(q.dtype, copy=False), lse.astype(np.float32 if q.dtype != np.float64 else q.dtype)

    def attention_backward(self, q, k, v, out, lse, dout, causal, scale):
        """(dq, dk, dv) of ``attention_forward``. With P = exp(S − lse): dV = Pᵀ dO,
        dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)), dQ = scale · dS K, dK = scale · dSᵀ Q;
        dK and dV of a key/value head sum over its group of query heads."""
        xp_ = xp_of(q)
        qg, kg, vg, (out, lse, dout) = _by_group(q, k, v, out, lse, dout)
        scores = _xp_matmul(qg, kg, trans_b=True) * scale
        probs = xp_.exp(scores - lse[..., None])
        if causal:
            probs = xp_.where(causal_mask(xp_, q.shape[1], k.shape[1]), probs, 0)
        dv = _xp_matmul(probs, dout, trans_a=True).sum(axis=1)
        dprobs = _xp_matmul(dout, vg, trans_b=True)
        row = (dout * out).sum(axis=-1, keepdims=True)
        dscores = probs * (dprobs - row) * scale
        dq = _xp_matmul(dscores, kg).reshape(q.shape)
        dk = _xp_matmul(dscores, qg, trans_a=True).sum(axis=1)
        return tuple(g.astype(q.dtype, copy=False) for g in (dq, dk, dv))

    # ---- normalisation, loss, elementwise -----------------------------------------------------
    def layernorm_forward(self, x, w, b, eps):
        """``y = (x − mean) · rstd · w + b`` over the last axis of x (N, D); returns y (N, D),
        mean (N,) and rstd = 1/√(var + eps) (N,)."""
        xp_ = xp_of(x)
        mean = x.mean(axis=-1)
        centred = x - mean[:, None]
        rstd = 1.0 / xp_.sqrt((centred * centred).mean(axis=-1) + eps)
        y = centred * rstd[:, None] * w + b
        return y.astype(x.dtype, copy=False), mean, rstd.astype(mean.dtype, copy=False)

    def layernorm_backward(self, dy, x, w, mean, rstd):
        """(dx, dw, db). With x̂ = (x − mean)·rstd and g = dy·w:
        dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)), dw = Σ_rows dy ⊙ x̂, db = Σ_rows dy."""
        xhat = (x - mean[:, None]) * rstd[:, None]
        g = dy * w
        dx = rstd[:, None] * (g - g.mean(axis=-1, keepdims=True)
                              - xhat * (g * xhat).mean(axis=-1, keepdims=True))
        dw = (dy * xhat).sum(axis=0)
        db = dy.sum(axis=0)
        return dx.astype(x.dtype, copy=False), dw.astype(w.dtype, copy=False), db.astype(w.dtype, copy=False)

    def cross_entropy_forward(self, logits, target, ignore_index):
        """Per-row loss ``lse − logits[target]`` (0 for ignored rows) and the row's lse, both
        (N,). ``logits`` (N, C), ``target`` (N,) integers."""
        xp_ = xp_of(logits)
        peak = logits.max(axis=-1)
        lse = peak + xp_.log(xp_.exp(logits - peak[:, None]).sum(axis=-1))
        keep = target != ignore_index
        picked = logits[xp_.arange(logits.shape[0]), xp_.where(keep, target, 0)]
        return xp_.where(keep, lse - picked, 0).astype(logits.dtype, copy=False), lse

    def cross_entropy_backward(self, logits, target, lse, dloss, ignore_index):
        """d loss_r / d logits_r = (softmax(logits_r) − onehot(target_r)) · dloss_r, (N, C)."""
        xp_ = xp_of(logits)
        keep = target != ignore_index
        grad = xp_.exp(logits - lse[:, None])
        grad[xp_.arange(logits.shape[0]), xp_.where(keep, target, 0)] -= 1
        return (grad * xp_.where(keep, dloss, 0)[:, None]).astype(logits.dtype, copy=False)

    def add(self, a, b):
        """a + b for two arrays of one shape: the residual connections, and autograd's sum of
        two gradients for one tensor (a backend may keep each core on its own rows)."""
        return a + b

    def gelu_forward(self, x):
        """GELU, tanh form, elementwise: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
        (x·x·x, not x**3: NumPy's pow is many times slower.)"""
        xp_ = xp_of(x)
        return (0.5 * x * (1 + xp_.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x)))).astype(x.dtype, copy=False)

    def gelu_backward(self, x, dy):
        """dy · GELU'(x), elementwise, for the tanh form."""
        xp_ = xp_of(x)
        x2 = x * x
        t = xp_.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x2))
        grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x2)
        return (dy * grad).astype(x.dtype, copy=False)

    def relu_forward(self, x):
        """ReLU, elementwise: max(x, 0) (NaN stays NaN)."""
        return xp_of(x).maximum(x, 0).astype(x.dtype, copy=False)

    def relu_backward(self, x, dy):
        """dy where x > 0, else 0 (even where dy is not finite), elementwise."""
        return xp_of(x).where(x > 0, dy, 0).astype(x.dtype, copy=False)

    # ---- Llama's blocks: RMSNorm, rotary embeddings, SwiGLU's gate --------------------------
    def rmsnorm_forward(self, x, w, eps):
        """``y = x · rstd · w`` over the last axis of x (N, D), rstd = 1/√(mean(x²) + ε); returns
        y and rstd (N,)."""
        xp_ = xp_of(x)
        rstd = 1.0 / xp_.sqrt((x * x).mean(axis=-1) + eps)
        return (x * rstd[:, None] * w).astype(x.dtype, copy=False), rstd.astype(x.dtype, copy=False)

    def rmsnorm_backward(self, dy, x, w, rstd):
        """With x̂ = x·rstd and g = dy·w: dx = rstd · (g − x̂ · mean(g ⊙ x̂)), dw = Σ_rows dy ⊙ x̂."""
        xhat = x * rstd[:, None]
        g = dy * w
        dx = rstd[:, None] * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
        return dx.astype(x.dtype, copy=False), (dy * xhat).sum(axis=0).astype(w.dtype, copy=False)

    def rope_forward(self, x, cos, sin, out=None):
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

    def swiglu_forward(self, a, b):
        """SwiGLU's gate: silu(a) · b = a·σ(a)·b, elementwise, for a and b of one shape (views of
        one array's two halves, say)."""
        return (a * _sigmoid(a) * b).astype(a.dtype, copy=False)

    def swiglu_backward(self, a, b, dy, da=None, db=None):
        """da = dy · b · σ(a)·(1 + a·(1 − σ(a))), db = dy · a·σ(a); written into ``da``, ``db``
        when given (the two halves of one gradient array, say)."""
        s = _sigmoid(a)
        silu = a * s
        grads = (dy * b * (s + silu * (1 - s))).astype(a.dtype, copy=False), (dy * silu).astype(b.dtype, copy=False)
        if da is None:
            return grads
        da[...], db[...] = grads
        return da, db

    # ---- in place: embedding gradients, clipping, the optimizer ------------------------------
    def scatter_add_rows(self, target, index, values):
        """target[index[i]] += values[i] for a 1-D integer ``index`` in [0, rows), repeats adding
        up (an embedding's backward); returns target. The rows sorted by index and each run
        added with one reduceat, instead of np.add.at's element-wise loop."""
        _refuse_read_only("scatter_add_rows", (target,), ("target",))
        order = np.argsort(index, kind="stable")
        unique, starts = np.unique(index[order], return_index=True)
        target[unique] += np.add.reduceat(values[order], starts, axis=0)
        return target

    def sum_of_squares_many(self, arrays):
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

    def scale_many(self, arrays, factor):
        """x ← x · factor, in place, for every array (clipping's rescale)."""
        _refuse_read_only("scale_many", arrays)
        for a in arrays:
            a *= a.dtype.type(factor)

    def adam_update(self, p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
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

    # ---- composites: through the backend's own primitives above -------------------------------
    def adam_update_many(self, ps, gs, ms, vs, lr, beta1, beta2, eps, weight_decay, decoupled, step):
        """``adam_update`` over lists of tensors (an optimizer's step): here one at a time
        through this backend's ``adam_update``; a backend may do all in one kernel call."""
        for arrays in zip(ps, gs, ms, vs):
            self.adam_update(*arrays, lr, beta1, beta2, eps, weight_decay, decoupled, step)

    def linear_forward(self, x, w, bias=None):
        """y = x wᵀ + b for 2-D x (N, K), w (M, K), bias (M,) or None: this backend's matmul
        and one add."""
        out = self.matmul(x, w, trans_b=True)
        if bias is not None:
            out += bias
        return out

    def linear_backward(self, g, x, w, need_x=True, need_w=True, need_b=True):
        """(g w, gᵀ x, Σ_rows g) for y = x wᵀ + b with g (N, M), x (N, K), w (M, K), each only
        when asked for (else None), by this backend's matmul."""
        return (self.matmul(g, w) if need_x else None, self.matmul(g, x, trans_a=True) if need_w else None,
                g.sum(axis=0) if need_b else None)

    def linear_forward_bf16(self, x, w, bias=None):
        """``linear_forward`` on x and w rounded to bfloat16, with sums and output in x's
        precision (``amp.autocast("bfloat16")``): here the rounding in array code, then this
        backend's ``linear_forward``. The numbers are a bf16 kernel's (a product of two bf16
        values is exact in float32), the time is not: a backend with bf16 kernels overrides it
        (c: matmul_bf16.c's v4 rounds as it packs)."""
        return self.linear_forward(round_to_bf16(x), round_to_bf16(w), bias)

    def linear_backward_bf16(self, g, x, w, need_x=True, need_w=True, need_b=True):
        """``linear_backward`` with g, x and w rounded to bfloat16 for the two products
        (g w, gᵀ x); Σ_rows g from the unrounded g."""
        gx, gw, _ = self.linear_backward(round_to_bf16(g), round_to_bf16(x), round_to_bf16(w), need_x, need_w,
                                         False)
        return gx, gw, (g.sum(axis=0) if need_b else None)

    def attention_qkv_forward(self, qkv, heads, causal, scale, kv_heads=None, rotary=None):
        """Self-attention from one projection, q | k | v side by side: (B, T, (heads + 2·kv_heads)·D),
        kv_heads dividing heads (None: heads, nanoGPT's (B, T, 3C)); y (B, T, heads·D) and lse
        (B·heads, T). ``rotary`` = (cos, sin), (T, D/2) tables as ``rope_forward`` takes them:
        q and k are turned by their positions' angles first (Llama). Here the turn is a copy
        of the projection (``turn_qk``) and the three parts go to this backend's
        ``attention_heads_forward``; a backend may read the heads where they lie, and turn
        them as it reads them (``rotary_in_attention``), instead."""
        if rotary is not None:
            qkv = self.turn_qk(qkv, heads, kv_heads, rotary)
        return self.attention_heads_forward(*qkv_parts(qkv, heads, kv_heads), heads, kv_heads or heads, causal, scale)

    def attention_qkv_backward(self, qkv, y, lse, dy, heads, causal, scale, kv_heads=None, rotary=None):
        """d qkv (B, T, (heads + 2·kv_heads)·D) of ``attention_qkv_forward``: this backend's
        ``attention_heads_backward``, its three gradients side by side; with ``rotary``, q and
        k are turned again (nothing was kept from the forward) and their gradients turned back."""
        turned = qkv if rotary is None else self.turn_qk(qkv, heads, kv_heads, rotary)
        grads = self.attention_heads_backward(*qkv_parts(turned, heads, kv_heads), y, lse, dy, heads,
                                              kv_heads or heads, causal, scale)
        grad = xp_of(qkv).concatenate(grads, axis=-1)
        if rotary is not None:
            self.turn_qk_back(grad, heads, kv_heads, rotary)
        return grad

    # Whether attention_qkv_forward/backward turn q and k themselves as they read them (C's v4).
    # Where they do not, ops.attention_qkv turns one copy with turn_qk and keeps it for the
    # backward, rather than have the primitives turn a copy forward and another backward.
    rotary_in_attention = False

    def turn_qk(self, qkv, heads, kv_heads, rotary):
        """A C-ordered copy of the projection with q's and k's heads turned by ``rotary``."""
        cos, sin = rotary
        turned = xp_of(qkv).empty(qkv.shape, qkv.dtype)  # C order: its heads are views to write into
        self.rope_forward(_qk_heads(qkv, heads, kv_heads), cos, sin, _qk_heads(turned, heads, kv_heads))
        v_from = (heads + (kv_heads or heads)) * (qkv.shape[-1] // (heads + 2 * (kv_heads or heads)))
        turned[..., v_from:] = qkv[..., v_from:]
        return turned

    def turn_qk_back(self, grad, heads, kv_heads, rotary):
        """The gradient of a turned projection (C-ordered) made the gradient of the projection
        before the turn, in place: q's and k's heads turned by −θ."""
        cos, sin = rotary
        self.rope_forward(_qk_heads(grad, heads, kv_heads), cos, -sin, _qk_heads(grad, heads, kv_heads))
        return grad

    def attention_heads_forward(self, q, k, v, heads, kv_heads, causal, scale):
        """Attention between projections as a Linear layer leaves them: q (B, T, heads·D), k and
        v (B, T, kv_heads·D), kv_heads dividing heads (grouped-query attention); y (B, T, heads·D),
        the heads side by side, and lse (B·heads, T). Here the heads are split out, attended by
        this backend's ``attention_forward`` and merged; a backend may read them where they lie."""
        out, lse = self.attention_forward(split_heads(q, heads), split_heads(k, kv_heads), split_heads(v, kv_heads),
                                          causal, scale)
        return merge_heads(out, q.shape[0]), lse

    def attention_heads_backward(self, q, k, v, y, lse, dy, heads, kv_heads, causal, scale):
        """(dq, dk, dv) of ``attention_heads_forward``, each in its input's (B, T, ·) layout."""
        dq, dk, dv = self.attention_backward(split_heads(q, heads), split_heads(k, kv_heads), split_heads(v, kv_heads),
                                             split_heads(y, heads), lse, split_heads(dy, heads), causal, scale)
        return merge_heads(dq, q.shape[0]), merge_heads(dk, q.shape[0]), merge_heads(dv, q.shape[0])


backend = Backend()  # the "numpy" backend


def float32_kernel(*arrays, writes=()):
    """The guard on a backend's override, written once: the kernel runs when the positional
    arguments at ``arrays`` are float32 and those at ``writes`` (updated in place) are
    contiguous and writeable; any other call goes to ``Backend``'s method of the same name —
    float64 for gradcheck, float16 under autocast, and a read-only output, which the reference
    refuses with a clear error where a kernel would write through the flag (and crash on a
    read-only memory map). One dtype check a call: a GPT step makes hundreds of these calls."""
    def decorate(kernel):
        reference = getattr(Backend, kernel.__name__)
        accepted = set(inspect.signature(reference).parameters)

        def _known(kwargs):  # the kernel's own options (threads=, version=) mean nothing to the reference
            return {key: value for key, value in kwargs.items() if key in accepted}

        @functools.wraps(kernel)
        def method(self, *args, **kwargs):
            for i in arrays:
                if args[i].dtype != np.float32:
                    return reference(self, *args, **_known(kwargs))
            for i in writes:
                flags = args[i].flags
                if not (flags.c_contiguous and getattr(flags, "writeable", True)):
                    return reference(self, *args, **_known(kwargs))
            return kernel(self, *args, **kwargs)
        return method
    return decorate
