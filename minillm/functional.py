"""torch.nn.functional's names and argument order, composed from ``minillm.ops``."""
import math

import numpy as np

from . import backends, ops
from .masks import causal_mask
from .ops import dropout as _dropout, gelu, log_softmax, relu, sigmoid, softmax, tanh
from .tensor import Tensor

__all__ = [
    "linear", "softmax", "log_softmax", "cross_entropy", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "mse_loss", "layer_norm", "embedding", "gelu",
    "relu", "sigmoid", "tanh", "dropout", "scaled_dot_product_attention", "rms_norm", "silu",
]


def linear(x, weight, bias=None):
    """y = x Wᵀ + b, with W of shape (out_features, in_features) as in PyTorch (one graph
    node: ``ops.linear``)."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features but the weight {weight.shape} "
                         f"expects {weight.shape[-1]}")
    return ops.linear(x, weight, bias)


def dropout(x, p=0.5, training=True):
    return _dropout(x, p, training)


def _reduce(loss, reduction, name, count=None):
    if reduction == "mean":
        return loss.sum() / count if count is not None else loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


def cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    """L = −(1/n) Σ log p(target), p = softmax(logits); logits (N, C) or (N, C) flattened
    from any leading shape; target (N,) class indices. Targets equal to ``ignore_index``
    are left out of the sum and the count."""
    target = target.data if isinstance(target, Tensor) else backends.asarray(target)
    if logits.ndim > 2:
        logits = logits.reshape(-1, logits.shape[-1])
        target = target.reshape(-1)
    if logits.ndim != 2 or target.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: expected logits (N, C) and target (N,); "
                         f"got {logits.shape} and {tuple(target.shape)}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices; got dtype {target.dtype}")
    keep = target != ignore_index
    n_classes = logits.shape[1]
    valid = target[keep]
    if valid.size and (valid.min() < 0 or valid.max() >= n_classes):
        raise IndexError(f"cross_entropy: target index {int(valid.max() if valid.max() >= n_classes else valid.min())} "
                         f"is out of range for {n_classes} classes")
    loss = ops.cross_entropy_rows(logits, target, ignore_index)
    return _reduce(loss, reduction, "cross_entropy", count=max(int(keep.sum()), 1))


def binary_cross_entropy(p, y, reduction="mean"):
    """−[y log p + (1 − y) log(1 − p)], with each log clamped at −100 as PyTorch does."""
    y = ops.as_tensor(y, p)
    _same_shape("binary_cross_entropy", p, y)
    loss = -(y * p.log().clip(min=-100) + (1 - y) * (1 - p).log().clip(min=-100))
    return _reduce(loss, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(logits, y, reduction="mean"):
    y = ops.as_tensor(y, logits)
    _same_shape("binary_cross_entropy_with_logits", logits, y)
    return _reduce(ops.bce_with_logits(logits, y), reduction, "binary_cross_entropy_with_logits")


def mse_loss(x, y, reduction="mean"):
    y = ops.as_tensor(y, x)
    _same_shape("mse_loss", x, y)
    diff = x - y
    return _reduce(diff * diff, reduction, "mse_loss")


def _same_shape(name, a, b):
    if a.shape != b.shape:
        raise ValueError(f"{name}: input shape {a.shape} and target shape {b.shape} differ")


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x − mean) / sqrt(var + eps) · weight + bias over the trailing ``normalized_shape``."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm: input shape {x.shape} does not end in normalized_shape {normalized_shape}")
    width = math.prod(normalized_shape)
    xp = backends.xp_of(x.data)
    flat = lambda t: t if t.shape == (width,) else t.reshape(width)  # noqa: E731  (no node when it is)
    weight = flat(weight) if weight is not None else Tensor(xp.ones(width, x.dtype))
    bias = flat(bias) if bias is not None else Tensor(xp.zeros(width, x.dtype))
    if len(normalized_shape) == 1:
        return ops.layer_norm_rows(x, weight, bias, eps)
    lead = x.shape[:x.ndim - len(normalized_shape)]
    return ops.layer_norm_rows(x.reshape(lead + (width,)), weight, bias, eps).reshape(x.shape)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """x / √(mean(x²) + eps) · weight over the trailing ``normalized_shape`` (RMSNorm: no
    centring, no bias); eps None is the dtype's machine epsilon, as torch's."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"rms_norm: input shape {x.shape} does not end in normalized_shape {normalized_shape}")
    width = math.prod(normalized_shape)
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    if weight is None:
        weight = Tensor(backends.xp_of(x.data).ones(width, x.dtype))
    elif weight.shape != (width,):
        weight = weight.reshape(width)
    if len(normalized_shape) == 1:
        return ops.rms_norm_rows(x, weight, eps)
    lead = x.shape[:x.ndim - len(normalized_shape)]
    return ops.rms_norm_rows(x.reshape(lead + (width,)), weight, eps).reshape(x.shape)


def silu(x):
    """x · σ(x) (also called swish)."""
    return x * sigmoid(x)


def embedding(idx, weight):
    """Rows of ``weight`` picked by integer indices; repeated indices add their gradients."""
    idx = idx.data if isinstance(idx, Tensor) else backends.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers; got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        bad = int(idx.max()) if idx.max() >= weight.shape[0] else int(idx.min())
        raise IndexError(f"embedding: index {bad} is out of range for {weight.shape[0]} embeddings")
    return weight[idx]


def _repeat_heads(x, groups):
    """(..., H, T, D) -> (..., H·groups, T, D), each head repeated for ``groups`` consecutive
    query heads; the backward adds the copies' gradients (``cat``)."""
    lead, (h, t, d) = x.shape[:-3], x.shape[-3:]
    x = x.reshape(lead + (h, 1, t, d))
    return ops.cat([x] * groups, dim=-3).reshape(lead + (h * groups, t, d))


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0,
                                 enable_gqa=False):
    """softmax(q kᵀ · scale + mask) v over (..., T, D) tensors, scale = 1/√D by default.

    Without a mask or dropout it runs the backend's fused kernel, which never builds the
    T×T matrix; ``attn_mask`` (True = may attend, or an additive float mask) takes the
    composite path. With ``is_causal`` the queries are the last Tq positions of the keys,
    so a single new query attends to the whole KV cache. With ``enable_gqa`` (PyTorch's name),
    q (..., Hq, Tq, D) may have more heads than k, v (..., Hkv, Tk, D), Hkv dividing Hq: query
    head h reads key/value head h // (Hq / Hkv) (grouped-query attention), and the fused
    kernels read the shared heads where they are instead of copying them for every group."""
    heads_match = q.shape[:-2] == k.shape[:-2] or (
        enable_gqa and q.ndim == k.ndim >= 3 and q.shape[:-3] == k.shape[:-3] and k.shape[-3] > 0
        and q.shape[-3] % k.shape[-3] == 0)
    if q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1] or not heads_match:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape} "
                         f"need shapes (..., Tq, D), (..., Tk, D), (..., Tk, Dv)"
                         + ("; with enable_gqa, k's heads (axis -3) must divide q's" if enable_gqa else ""))
    if is_causal and q.shape[-2] > k.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: causal attention needs Tq <= Tk; "
                         f"got Tq={q.shape[-2]}, Tk={k.shape[-2]}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if attn_mask is None and dropout_p == 0.0 and q.shape[-1] == v.shape[-1]:
        lead = q.shape[:-2]
        fold = lambda t: t.reshape((-1,) + t.shape[-2:])  # noqa: E731  (..., T, D) -> (N, T, D)
        out = ops.attention(fold(q), fold(k), fold(v), bool(is_causal), float(scale))
        return out.reshape(lead + out.shape[-2:])
    if k.shape[:-2] != q.shape[:-2]:  # the composite needs every query head's keys: copies
        k, v = _repeat_heads(k, q.shape[-3] // k.shape[-3]), _repeat_heads(v, q.shape[-3] // k.shape[-3])
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        xp = backends.xp_of(q.data)
        scores = scores.masked_fill(~causal_mask(xp, q.shape[-2], k.shape[-2]), -np.inf)
    if attn_mask is not None:
        mask = attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask
        scores = scores.masked_fill(~mask, -np.inf) if mask.dtype == bool else scores + mask
    weights = softmax(scores, dim=-1)
    weights = _dropout(weights, dropout_p, dropout_p > 0)
    return weights @ v
