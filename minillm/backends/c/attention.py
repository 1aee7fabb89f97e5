"""The C backend's attention primitives (kernels/c/attention/): the layouts of q, k, v and the
output go to the kernels in an ``attention_t`` (a ``head_layout_t`` each: where head z starts,
how far apart its rows lie), so heads are read where they lie — in a KV cache, in the (B, T, 3C)
product of GPT's c_attn, in Llama's (B, T, (H + 2·H_kv)·D) — and never split, merged or
repeated by copies. ``AttentionKernels`` is a part of ``CBackend``."""
import numpy as np

from ..reference import attention_groups, float32_kernel
from .library import _c, _numbered, ffi, lib, pointer


def _heads_where_they_lie(a):
    """The head_layout_t of an (N, T, D) float32 array whose rows are contiguous (a KV cache's
    first T positions, a contiguous array): the kernels read it in place. None otherwise."""
    s0, s1, s2 = a.strides
    if s2 != 4 or s0 < 0 or s1 < 0 or s0 % 4 or s1 % 4:
        return None
    return {"heads": 1, "seq": s0 // 4, "step": 0, "ld": s1 // 4}


def _attention_kernel(version, direction):
    """The production path (kernels/c/attention/attention.c) for version None, else numbered
    version ``version`` (ATTENTION_VERSIONS)."""
    if version is None:
        return getattr(lib, f"attention_{direction}")
    if version not in ATTENTION_VERSIONS:
        raise ValueError(f"attention: unknown version {version!r}; versions: {', '.join(ATTENTION_VERSIONS)}")
    return getattr(lib, f"attention_{version}_{direction}")


def _problem(q, k, causal, scale, q_layout, kv_layout, out_layout):
    """The attention_t of q (N, Tq, D) against k (N_kv, Tk, D), with the three layouts."""
    return ffi.new("attention_t *", {"n": q.shape[0], "n_kv": k.shape[0], "t_query": q.shape[1],
                                     "t_key": k.shape[1], "d": q.shape[2], "causal": int(causal),
                                     "scale": float(scale), "q": q_layout, "kv": kv_layout, "out": out_layout})


def _qkv_parts(qkv, heads, kv_heads):
    """Pointers to the q, k and v blocks of a contiguous (B, T, (heads + 2·kv_heads)·D) array."""
    base, d = pointer(qkv), qkv.shape[-1] // (heads + 2 * kv_heads)
    return base, base + heads * d, base + (heads + kv_heads) * d


def _qkv_problem(qkv, heads, kv_heads, causal, scale, rotary=None):
    """Query head h of sequence b is the D columns from h·D of rows W = (heads + 2·kv_heads)·D
    long, key (value) head g the D columns from g·D of the k (v) block of the same rows; the
    output's heads lie side by side in (B, T, heads·D). ``rotary``: RoPE's (T, D/2) tables,
    contiguous float32, which the caller keeps alive through the kernel's call (v4 turns q and
    k as it reads them)."""
    b, t, w = qkv.shape
    d = w // (heads + 2 * kv_heads)
    rows = {"seq": t * w, "step": d, "ld": w}
    tables = {} if rotary is None else {"rope_cos": pointer(rotary[0]), "rope_sin": pointer(rotary[1])}
    return ffi.new("attention_t *", {"n": b * heads, "n_kv": b * kv_heads, "t_query": t, "t_key": t, "d": d,
                                     "causal": int(causal), "scale": float(scale), "q": {"heads": heads, **rows},
                                     "kv": {"heads": kv_heads, **rows},
                                     "out": {"heads": heads, "seq": t * heads * d, "step": d, "ld": heads * d},
                                     **tables})


def _tables(rotary, qkv, heads, kv_heads):
    """RoPE's tables as the kernel reads them, (T, D/2) contiguous float32 with D even; None
    when there is no rotary or the tables do not fit (the reference answers those)."""
    if rotary is None:
        return None
    d = qkv.shape[-1] // (heads + 2 * kv_heads)
    cos, sin = (_c(np.asarray(t, np.float32)) for t in rotary)
    if d % 2 or cos.shape != (qkv.shape[1], d // 2) or sin.shape != cos.shape:
        return None
    return cos, sin


def _qkv_fit(qkv, heads, kv_heads):
    """Does the projection split into whole heads, grouped evenly (else the reference answers)?"""
    return qkv.ndim == 3 and not (heads % kv_heads or qkv.shape[-1] % (heads + 2 * kv_heads))


def _heads_fit(q, k, v, heads, kv_heads):
    """Do the projections split into whole heads, grouped evenly (else the reference answers)?"""
    return not (q.shape[-1] % heads or k.shape[-1] % kv_heads or k.shape != v.shape or heads % kv_heads)


def _heads_problem(q, k, heads, kv_heads, causal, scale):
    """The attention_t of a (B, T, heads·D) q (and output) against (B, T, kv_heads·D) k and v:
    head h of sequence b starts at b·T·C + h·D, its rows C floats apart."""
    b, t, c = q.shape
    d, c_kv = c // heads, k.shape[-1]
    q_layout = {"heads": heads, "seq": t * c, "step": d, "ld": c}
    return ffi.new("attention_t *", {"n": b * heads, "n_kv": b * kv_heads, "t_query": t, "t_key": k.shape[1], "d": d,
                                     "causal": int(causal), "scale": float(scale), "q": q_layout, "out": q_layout,
                                     "kv": {"heads": kv_heads, "seq": k.shape[1] * c_kv, "step": d, "ld": c_kv}})


class AttentionKernels:
    """CBackend's attention primitives (a mixin)."""

    rotary_in_attention = True  # attention_qkv_* with rotary: v4 turns q and k as it loads them

    @float32_kernel(0, 1, 2)
    def attention_forward(self, q, k, v, causal, scale, version=None):
        """q (N, Tq, D), k and v (N_kv, Tk, D) with N_kv dividing N: query head n reads key/value
        head n // (N / N_kv), no copies. ``version`` runs one of the numbered versions
        (ATTENTION_VERSIONS) instead of the production path (kernels/c/attention/attention.c: a
        few queries go to the decoder). Arrays whose rows are contiguous, such as a KV cache's
        first Tk positions, are read in place."""
        attention_groups(q, k, v)
        if q.shape[-1] != v.shape[-1]:
            return super().attention_forward(q, k, v, causal, scale)
        kernel = _attention_kernel(version, "forward")
        if _heads_where_they_lie(q) is None:
            q = _c(q)
        if _heads_where_they_lie(k) is None or k.strides != v.strides:  # k and v share one layout
            k, v = _c(k), _c(v)
        out, lse = np.empty(q.shape, np.float32), np.empty(q.shape[:2], np.float32)
        problem = _problem(q, k, causal, scale, _heads_where_they_lie(q), _heads_where_they_lie(k),
                           _heads_where_they_lie(out))
        kernel(problem, pointer(q), pointer(k), pointer(v), pointer(out), pointer(lse))
        return out, lse

    @float32_kernel(0, 1, 2, 5)
    def attention_backward(self, q, k, v, out, lse, dout, causal, scale, version=None):
        """(dq, dk, dv) of ``attention_forward``; with N_kv < N each key/value head's gradient
        sums over its group (one thread owns a key/value head: no two write the same row)."""
        attention_groups(q, k, v)
        if q.shape[-1] != v.shape[-1]:
            return super().attention_backward(q, k, v, out, lse, dout, causal, scale)
        kernel = _attention_kernel(version, "backward")
        q, k, v, out, lse, dout = (_c(t.astype(np.float32, copy=False)) for t in (q, k, v, out, lse, dout))
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        problem = _problem(q, k, causal, scale, *(_heads_where_they_lie(a) for a in (q, k, out)))
        kernel(problem, pointer(q), pointer(k), pointer(v), pointer(out), pointer(lse), pointer(dout), pointer(dq),
               pointer(dk), pointer(dv))
        return dq, dk, dv

    @float32_kernel(0)
    def attention_qkv_forward(self, qkv, heads, causal, scale, kv_heads=None, rotary=None):
        """Causal self-attention straight from one (B, T, (heads + 2·kv_heads)·D) projection to
        (B, T, heads·D): the kernel reads each head where it lies (rows W apart; a query head
        reads its group's key/value head) and writes the heads side by side, so the split into
        heads, the merge back and the repeat of shared heads copy nothing. With ``rotary``, v4
        turns q and k as it loads them (kernels/c/attention/v4_rotary.c): no turned copy."""
        kv_heads = kv_heads or heads
        tables = _tables(rotary, qkv, heads, kv_heads) if _qkv_fit(qkv, heads, kv_heads) else None
        if not _qkv_fit(qkv, heads, kv_heads) or (rotary is not None and tables is None):
            return super().attention_qkv_forward(qkv, heads, causal, scale, kv_heads, rotary)
        qkv = _c(qkv)
        b, t, w = qkv.shape
        y = np.empty((b, t, w // (heads + 2 * kv_heads) * heads), np.float32)
        lse = np.empty((b * heads, t), np.float32)
        lib.attention_forward(_qkv_problem(qkv, heads, kv_heads, causal, scale, tables),
                              *_qkv_parts(qkv, heads, kv_heads), pointer(y), pointer(lse))
        return y, lse

    @float32_kernel(0, 1, 3)
    def attention_qkv_backward(self, qkv, y, lse, dy, heads, causal, scale, kv_heads=None, rotary=None):
        """With ``rotary``, dq and dk come back turned by −θ (the kernel's last step), the
        gradient with respect to the projection before the turn."""
        kv_heads = kv_heads or heads
        tables = _tables(rotary, qkv, heads, kv_heads) if _qkv_fit(qkv, heads, kv_heads) else None
        if not _qkv_fit(qkv, heads, kv_heads) or (rotary is not None and tables is None):
            return super().attention_qkv_backward(qkv, y, lse, dy, heads, causal, scale, kv_heads, rotary)
        qkv, y, lse, dy = _c(qkv), _c(y), _c(lse), _c(dy)
        dqkv = np.empty_like(qkv)  # every row of every head is zeroed by the kernel, then accumulated
        lib.attention_backward(_qkv_problem(qkv, heads, kv_heads, causal, scale, tables),
                               *_qkv_parts(qkv, heads, kv_heads), pointer(y), pointer(lse), pointer(dy),
                               *_qkv_parts(dqkv, heads, kv_heads))
        return dqkv

    @float32_kernel(0, 1, 2)
    def attention_heads_forward(self, q, k, v, heads, kv_heads, causal, scale):
        """Attention between (B, T, heads·D) and (B, T, kv_heads·D) projections read where they
        lie (head h of sequence b: the D columns from h·D of rows heads·D long), the output's
        heads written side by side: no split, merge or repeat copies anything."""
        if not _heads_fit(q, k, v, heads, kv_heads):
            return super().attention_heads_forward(q, k, v, heads, kv_heads, causal, scale)
        q, k, v = _c(q), _c(k), _c(v)
        y, lse = np.empty(q.shape, np.float32), np.empty((q.shape[0] * heads, q.shape[1]), np.float32)
        lib.attention_forward(_heads_problem(q, k, heads, kv_heads, causal, scale), pointer(q), pointer(k),
                              pointer(v), pointer(y), pointer(lse))
        return y, lse

    @float32_kernel(0, 1, 2, 3, 5)
    def attention_heads_backward(self, q, k, v, y, lse, dy, heads, kv_heads, causal, scale):
        if not _heads_fit(q, k, v, heads, kv_heads):
            return super().attention_heads_backward(q, k, v, y, lse, dy, heads, kv_heads, causal, scale)
        q, k, v, y, lse, dy = _c(q), _c(k), _c(v), _c(y), _c(lse), _c(dy)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)  # zeroed by the kernel, then summed
        lib.attention_backward(_heads_problem(q, k, heads, kv_heads, causal, scale), pointer(q), pointer(k),
                               pointer(v), pointer(y), pointer(lse), pointer(dy), pointer(dq), pointer(dk), pointer(dv))
        return dq, dk, dv


ATTENTION_VERSIONS = tuple(name[len("attention_"):-len("_forward")] for name in _numbered("attention")
                           if name.endswith("_forward"))
