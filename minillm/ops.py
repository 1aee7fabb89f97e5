"""Differentiable ops. Each computes its output array and a ``backward(g)`` that returns one
gradient per parent (``None`` for a parent that takes none).

``OPS`` is the registry of every op with a hand-written backward: the test-suite checks
that each one has a property-based gradcheck. Everything else in the library (functional,
nn, models) is composed from these.
"""
import builtins
import math
import operator

import numpy as np

from . import amp, backends
from .backends import xp_of
from .random import generator
from .tensor import Tensor, is_grad_enabled

OPS = {}


def op(name):
    def register(fn):
        OPS[name] = fn
        return fn
    return register


def result(data, parents, backward, name):
    """Wrap ``data`` as the output of op ``name``, recording the graph only when needed."""
    out = Tensor(data)
    if is_grad_enabled() and any(p.requires_grad for p in parents):
        out.requires_grad = True
        out._parents, out._backward, out._op = tuple(parents), backward, name
    return out


def as_tensor(value, like):
    """Python numbers and arrays meet a Tensor in its dtype (``x * 2.0`` stays float32)."""
    if isinstance(value, Tensor):
        return value
    dtype = like.dtype if np.isscalar(value) or not hasattr(value, "dtype") else None
    return Tensor(backends.asarray(value, dtype))


def unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def _check_broadcast(name, a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None


def _axes(name, dim, ndim):
    """Normalise ``dim`` (None, int or tuple) to a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        span = builtins.max(ndim, 1)
        if not -span <= d < span:
            raise IndexError(f"{name}: dim {d} is out of range for a tensor of {ndim} dimension(s) "
                             f"(expected {-span} <= dim < {span})")
        out.append(d % span)
    return tuple(sorted(set(out)))


# ---- elementwise arithmetic --------------------------------------------------------------
@op("add")
def add(a, b):
    b = as_tensor(b, a)
    if a.shape == b.shape:  # the residual stream: the backend's add (each core its own rows in C)
        data = backends.current().add(a.data, b.data)
    else:
        _check_broadcast("add", a, b)
        data = a.data + b.data
    return result(data, (a, b),
                  lambda g: (unbroadcast(g, a.shape), unbroadcast(g, b.shape)), "add")


@op("sub")
def sub(a, b):
    b = as_tensor(b, a)
    _check_broadcast("sub", a, b)
    return result(a.data - b.data, (a, b),
                  lambda g: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)), "sub")


@op("mul")
def mul(a, b):
    b = as_tensor(b, a)
    _check_broadcast("mul", a, b)
    return result(a.data * b.data, (a, b),
                  lambda g: (unbroadcast(g * b.data, a.shape), unbroadcast(g * a.data, b.shape)), "mul")


@op("div")
def div(a, b):
    b = as_tensor(b, a)
    _check_broadcast("div", a, b)
    out = a.data / b.data
    return result(out, (a, b),
                  lambda g: (unbroadcast(g / b.data, a.shape),
                             unbroadcast(-g * out / b.data, b.shape)), "div")


@op("neg")
def neg(a):
    return result(-a.data, (a,), lambda g: (-g,), "neg")


@op("pow")
def pow(a, exponent):
    """``a ** exponent``; a tensor exponent needs a > 0 for its gradient (a^b · log a)."""
    if isinstance(exponent, Tensor):
        _check_broadcast("pow", a, exponent)
        out = a.data ** exponent.data
        return result(out, (a, exponent),
                      lambda g: (unbroadcast(g * exponent.data * a.data ** (exponent.data - 1), a.shape),
                                 unbroadcast(g * out * xp_of(out).log(a.data), exponent.shape)), "pow")
    out = a.data ** exponent
    return result(out, (a,), lambda g: (g * exponent * a.data ** (exponent - 1),), "pow")


# ---- matrix product ------------------------------------------------------------------------
@op("matmul")
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


@op("linear")
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
    if (amp.is_autocast_enabled() or x.ndim == 0 or weight.ndim != 2 or x.dtype != weight.dtype
            or (bias is not None and (bias.ndim != 1 or bias.dtype != x.dtype))):
        y = matmul(x, transpose(weight, 0, 1))  # the general path: mixed precision, odd shapes
        return y if bias is None else add(y, bias)
    n, k = weight.shape
    if x.shape[-1] != k:
        raise ValueError(f"linear: input has {x.shape[-1]} features but the weight {weight.shape} expects {k}")
    if bias is not None and bias.shape[0] != n:
        raise ValueError(f"linear: bias has {bias.shape[0]} entries but the weight {weight.shape} has {n} outputs")
    backend = backends.current()
    rows = x.data.reshape(-1, k)
    out = backend.linear_forward(rows, weight.data, None if bias is None else bias.data)  # bias in the GEMM's stores

    def backward(g):
        gx, gw, gb = backend.linear_backward(g.reshape(-1, n), rows, weight.data, x.requires_grad,
                                             weight.requires_grad, bias is not None)
        return (None if gx is None else gx.reshape(x.shape), gw) + ((gb,) if bias is not None else ())

    parents = (x, weight) if bias is None else (x, weight, bias)
    return result(out.reshape(x.shape[:-1] + (n,)), parents, backward, "linear")


# ---- reductions ---------------------------------------------------------------------------
def _expand(g, shape, axes, keepdim):
    """Give a reduced gradient back the reduced axes so it broadcasts against the input."""
    if not keepdim:
        for axis in axes:
            g = xp_of(g).expand_dims(g, axis)
    return g


@op("sum")
def sum(a, dim=None, keepdim=False):
    axes = _axes("sum", dim, a.ndim)
    out = a.data.sum(axis=axes, keepdims=keepdim)
    return result(out, (a,), lambda g: (xp_of(g).broadcast_to(_expand(g, a.shape, axes, keepdim),
                                                               a.shape).copy(),), "sum")


@op("mean")
def mean(a, dim=None, keepdim=False):
    axes = _axes("mean", dim, a.ndim)
    count = math.prod(a.shape[i] for i in axes) if a.ndim else 1
    out = a.data.mean(axis=axes, keepdims=keepdim)
    return result(out, (a,), lambda g: (xp_of(g).broadcast_to(_expand(g, a.shape, axes, keepdim) / count,
                                                              a.shape).copy(),), "mean")


def _extreme(name, a, dim, keepdim, pick):
    axes = _axes(name, dim, a.ndim)
    out = pick(a.data, axis=axes, keepdims=True)
    # Ties share the gradient equally, as torch.amax/amin do.
    hit = (a.data == out)
    share = hit / hit.sum(axis=axes, keepdims=True)
    shown = out if keepdim else out.reshape([s for i, s in enumerate(a.shape) if i not in axes])
    return result(shown, (a,), lambda g: (_expand(g, a.shape, axes, keepdim) * share,), name)


@op("max")
def max(a, dim=None, keepdim=False):
    """The largest values over ``dim`` (values only, like ``torch.amax``)."""
    return _extreme("max", a, dim, keepdim, lambda x, **kw: x.max(**kw))


@op("min")
def min(a, dim=None, keepdim=False):
    return _extreme("min", a, dim, keepdim, lambda x, **kw: x.min(**kw))


@op("var")
def var(a, dim=None, keepdim=False, correction=1):
    """Variance with Bessel's correction by default, as ``torch.var``."""
    axes = _axes("var", dim, a.ndim)
    count = math.prod(a.shape[i] for i in axes) if a.ndim else 1
    if count - correction <= 0:
        raise ValueError(f"var: {count} element(s) over dim {dim} leave no degrees of freedom "
                         f"with correction={correction}")
    centred = a.data - a.data.mean(axis=axes, keepdims=True)
    out = (centred * centred).sum(axis=axes, keepdims=keepdim) / (count - correction)
    return result(out, (a,),
                  lambda g: (_expand(g, a.shape, axes, keepdim) * 2 * centred / (count - correction),), "var")


# ---- shape ---------------------------------------------------------------------------------
@op("reshape")
def reshape(a, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} "
                         f"({a.size} elements) into {shape}") from None
    return result(out, (a,), lambda g: (g.reshape(a.shape),), "reshape")


@op("permute")
def permute(a, *dims):
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    if sorted(d % builtins.max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {a.ndim} axes of {a.shape}")
    inverse = np.argsort([d % a.ndim for d in dims])
    return result(a.data.transpose(dims), (a,), lambda g: (g.transpose(inverse),), "permute")


def transpose(a, dim0, dim1):
    d0, d1 = _axes("transpose", dim0, a.ndim)[0], _axes("transpose", dim1, a.ndim)[0]
    dims = list(range(a.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(a, dims)


@op("getitem")
def getitem(a, index):
    """Basic slicing and integer-array indexing; the backward scatter-adds, so an index
    that repeats (the same token twice) gets the sum of its gradients."""
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        out = a.data[index]
    except IndexError as exc:
        raise IndexError(f"index: {exc} (tensor shape {a.shape})") from None

    basic = all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))
                for i in (index if isinstance(index, tuple) else (index,)))

    def backward(g):
        full = xp_of(g).zeros(a.shape, dtype=g.dtype)
        if basic:  # slices and integers select each element at most once: a plain store
            full[index] = g
            return (full,)
        return (backends.scatter_add(full, index, g),)

    return result(out, (a,), backward, "getitem")


@op("cat")
def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    axis = _axes("cat", dim, tensors[0].ndim)[0]
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
                s != r for i, (s, r) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis):
            raise ValueError(f"cat: shapes {tensors[0].shape} and {t.shape} differ outside dim {dim}")
    out = xp_of(tensors[0].data).concatenate([t.data for t in tensors], axis=axis)
    edges = np.cumsum([0] + [t.shape[axis] for t in tensors])

    def backward(g):
        return [g[(slice(None),) * axis + (slice(lo, hi),)] for lo, hi in zip(edges[:-1], edges[1:])]

    return result(out, tensors, backward, "cat")


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need the same shape; got {sorted(shapes)}")
    axis = dim % (tensors[0].ndim + 1)
    return cat([reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors], dim=axis)


def split(a, split_size_or_sections, dim=0):
    """torch.split: pieces of ``split_size`` along ``dim`` (the last may be shorter), or
    pieces of the listed sizes."""
    axis = _axes("split", dim, a.ndim)[0]
    length = a.shape[axis]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [builtins.min(step, length - start) for start in range(0, length, step)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != length:
            raise ValueError(f"split: section sizes {sizes} sum to {builtins.sum(sizes)}, "
                             f"but dim {dim} has length {length}")
    edges = np.cumsum([0] + sizes)
    return [getitem(a, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(edges[:-1], edges[1:])]



@op("cast")
def cast(a, dtype):
    dtype = np.dtype(dtype)
    return result(a.data.astype(dtype), (a,), lambda g: (g.astype(a.dtype),), "cast")


# ---- elementwise functions ----------------------------------------------------------------
def _unary(name, forward, derivative):
    """An elementwise op whose derivative is a function of its input and output."""
    @op(name)
    def apply(a):
        out = forward(xp_of(a.data), a.data)
        return result(out, (a,), lambda g: (g * derivative(xp_of(g), a.data, out),), name)
    apply.__name__ = name
    return apply


exp = _unary("exp", lambda xp, x: xp.exp(x), lambda xp, x, y: y)
log = _unary("log", lambda xp, x: xp.log(x), lambda xp, x, y: 1 / x)
sqrt = _unary("sqrt", lambda xp, x: xp.sqrt(x), lambda xp, x, y: 0.5 / y)
tanh = _unary("tanh", lambda xp, x: xp.tanh(x), lambda xp, x, y: 1 - y * y)
abs = _unary("abs", lambda xp, x: xp.abs(x), lambda xp, x, y: xp.sign(x))
relu = _unary("relu", lambda xp, x: xp.maximum(x, 0), lambda xp, x, y: (x > 0).astype(x.dtype))


def _stable_sigmoid(xp, x):
    # exp of a negative number only: no overflow for large |x|
    z = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


sigmoid = _unary("sigmoid", _stable_sigmoid, lambda xp, x, y: y * (1 - y))

def _erf(xp, x):
    if xp is np:
        from math import erf
        return np.vectorize(erf, otypes=[x.dtype])(x) if x.size else x.copy()
    import cupyx.scipy.special
    return cupyx.scipy.special.erf(x)


def _gelu_exact(xp, x):
    return 0.5 * x * (1 + _erf(xp, x / math.sqrt(2)))


def _gelu_exact_grad(xp, x, y):
    cdf = 0.5 * (1 + _erf(xp, x / math.sqrt(2)))
    return cdf + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


gelu_exact = _unary("gelu", _gelu_exact, _gelu_exact_grad)


@op("gelu_tanh")
def gelu_tanh(a):
    """GELU's tanh form, fused in the backend (one pass instead of a dozen temporaries)."""
    backend = backends.current()
    return result(backend.gelu_forward(a.data), (a,), lambda g: (backend.gelu_backward(a.data, g),), "gelu_tanh")


def gelu(a, approximate="none"):
    """GELU(x) = x·Φ(x); ``approximate="tanh"`` uses the GPT-2 tanh formula."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh'; got {approximate!r}")
    return gelu_tanh(a) if approximate == "tanh" else gelu_exact(a)


@op("clip")
def clip(a, min=None, max=None):
    """Clamp to [min, max]; the gradient flows only where the value was not clamped."""
    xp = xp_of(a.data)
    out = xp.clip(a.data, min, max)
    inside = (out == a.data).astype(a.dtype)
    return result(out, (a,), lambda g: (g * inside,), "clip")


# ---- softmax family ------------------------------------------------------------------------
@op("softmax")
def softmax(a, dim=-1):
    axis = _axes("softmax", dim, a.ndim)[0]
    xp = xp_of(a.data)
    e = xp.exp(a.data - a.data.max(axis=axis, keepdims=True))
    out = e / e.sum(axis=axis, keepdims=True)
    return result(out, (a,), lambda g: (out * (g - (g * out).sum(axis=axis, keepdims=True)),), "softmax")


@op("log_softmax")
def log_softmax(a, dim=-1):
    """x − logsumexp(x), computed from the shifted values so 1e4 logits do not overflow."""
    axis = _axes("log_softmax", dim, a.ndim)[0]
    xp = xp_of(a.data)
    shifted = a.data - a.data.max(axis=axis, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return result(out, (a,), lambda g: (g - xp.exp(out) * g.sum(axis=axis, keepdims=True),), "log_softmax")


# ---- selection and masking ------------------------------------------------------------------
def _mask_array(mask):
    return mask.data if isinstance(mask, Tensor) else mask


@op("where")
def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b`` (both broadcast)."""
    cond = _mask_array(condition).astype(bool)
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    out = xp_of(a.data).where(cond, a.data, b.data)
    return result(out, (a, b),
                  lambda g: (unbroadcast(g * cond, a.shape), unbroadcast(g * ~cond, b.shape)), "where")


def masked_fill(a, mask, value):
    return where(mask, as_tensor(value, a), a)


@op("dropout")
def dropout(a, p=0.5, training=True):
    """Inverted dropout: zero each value with probability p and scale the rest by 1/(1−p),
    so evaluation needs no rescaling."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1); got {p}")
    if not training or p == 0:
        return a
    keep = generator().random(a.shape) >= p
    scale = backends.asarray(keep / (1 - p), a.dtype)
    return result(a.data * scale, (a,), lambda g: (g * scale,), "dropout")


# ---- fused primitives served by the backend ---------------------------------------------
@op("layer_norm")
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

    return result(y.reshape(x.shape), (x, weight, bias), backward, "layer_norm")


@op("attention")
def attention(q, k, v, causal, scale):
    """Fused (flash-style) attention on (N, T, D) tensors; kernels live in the backend."""
    backend = backends.current()
    out, lse = backend.attention_forward(q.data, k.data, v.data, causal, scale)

    def backward(g):
        return backend.attention_backward(q.data, k.data, v.data, out, lse, g, causal, scale)

    return result(out, (q, k, v), backward, "attention")


@op("attention_qkv")
def attention_qkv(qkv, num_heads, causal, scale):
    """Self-attention from one (B, T, 3C) projection, q | k | v side by side as nanoGPT's
    c_attn makes them, to the (B, T, C) that the output projection takes.

    The same function as splitting into (B·H, T, C/H) heads, ``attention`` and merging the
    heads back, but one node instead of eleven, and on a backend that reads the heads where
    they lie (C) none of the four split/merge copies forward or backward; the gradient is
    one (B, T, 3C) array, so the projection's backward stays one GEMM."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"attention_qkv: expected (B, T, 3·C) with C divisible by num_heads={num_heads}, "
                         f"got {qkv.shape}")
    backend = backends.current()
    y, lse = backend.attention_qkv_forward(qkv.data, num_heads, causal, scale)

    def backward(g):
        return (backend.attention_qkv_backward(qkv.data, y, lse, g, num_heads, causal, scale),)

    return result(y, (qkv,), backward, "attention_qkv")


@op("cross_entropy")
def cross_entropy_rows(logits, target, ignore_index):
    """Per-row softmax cross-entropy of (N, C) logits against (N,) integer targets, fused
    in the backend: the probabilities are never stored, only each row's log-sum-exp."""
    if logits.dtype == np.float16:  # log-sum-exp in half precision loses too much: fp32
        logits = cast(logits, np.float32)
    backend = backends.current()
    losses, lse = backend.cross_entropy_forward(logits.data, target, ignore_index)
    return result(losses, (logits,),
                  lambda g: (backend.cross_entropy_backward(logits.data, target, lse, g, ignore_index),),
                  "cross_entropy")


@op("bce_with_logits")
def bce_with_logits(x, y):
    """Elementwise max(x,0) − x·y + log(1 + e^−|x|): the stable form of BCE on logits,
    with the exact gradient σ(x) − y."""
    xp = xp_of(x.data)
    out = xp.maximum(x.data, 0) - x.data * y.data + xp.log1p(xp.exp(-xp.abs(x.data)))
    return result(out, (x, y),
                  lambda g: (g * (_stable_sigmoid(xp, x.data) - y.data), -g * x.data), "bce_with_logits")


# ---- Llama's blocks, fused in the backend -------------------------------------------------------
@op("rms_norm")
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

    return result(y.reshape(x.shape), (x, weight), backward, "rms_norm")


@op("rope")
def rope(x, cos, sin):
    """x (..., T, d) with dimension i paired with i + d/2 and each pair turned by its
    position's angle, ``cos``, ``sin`` (T, d/2) arrays (one angle per pair). The backward turns
    the gradient back: the same kernel with −sin."""
    half = x.shape[-1] // 2 if x.ndim >= 2 else 0
    if x.ndim < 2 or x.shape[-1] % 2 or cos.shape != (x.shape[-2], half) or sin.shape != cos.shape:
        raise ValueError(f"rope: expected x (..., T, d) with d even and cos, sin (T, d/2); got x {x.shape}, "
                         f"cos {cos.shape}, sin {sin.shape}")
    backend = backends.current()
    cos, sin = (backends.asarray(t, x.dtype) for t in (cos, sin))

    def backward(g):
        # the gradient in x's memory order (empty_like keeps it): for heads that are a view of a
        # (B, T, H·d) projection, the transpose's and reshape's backward then copy nothing
        return (backend.rope_forward(g, cos, -sin, xp_of(g).empty_like(x.data)),)

    return result(backend.rope_forward(x.data, cos, sin), (x,), backward, "rope")


@op("swiglu")
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


# ---- the ops as Tensor methods and operators (torch's names) --------------------------------
def _reflected(fn):
    return lambda self, other: fn(as_tensor(other, self), self)


def _dim_method(fn):
    return lambda self, dim=None, keepdim=False: fn(self, dim, keepdim)


for _name, _method in {
    "__add__": add, "__radd__": add, "__sub__": sub, "__rsub__": _reflected(sub),
    "__mul__": mul, "__rmul__": mul, "__truediv__": div, "__rtruediv__": _reflected(div),
    "__neg__": neg, "__pow__": pow, "__rpow__": _reflected(pow),
    "__matmul__": matmul, "__rmatmul__": _reflected(matmul), "__getitem__": getitem,
    "matmul": matmul, "sum": _dim_method(sum), "mean": _dim_method(mean),
    "max": _dim_method(max), "min": _dim_method(min), "amax": _dim_method(max), "amin": _dim_method(min),
    "var": lambda self, dim=None, keepdim=False, correction=1: var(self, dim, keepdim, correction),
    "reshape": reshape, "view": reshape, "permute": permute, "transpose": transpose,
    "split": split, "exp": exp, "log": log, "sqrt": sqrt, "tanh": tanh, "abs": abs,
    "sigmoid": sigmoid, "relu": relu, "gelu": gelu, "clip": clip, "clamp": clip,
    "softmax": softmax, "log_softmax": log_softmax, "masked_fill": masked_fill,
    "flatten": lambda self, start_dim=0: reshape(self, self.shape[:start_dim] + (-1,)),
    "unsqueeze": lambda self, dim: reshape(self, self.shape[:dim % (self.ndim + 1)] + (1,)
                                           + self.shape[dim % (self.ndim + 1):]),
    "squeeze": lambda self, dim: reshape(self, self.shape[:dim % self.ndim] + self.shape[dim % self.ndim + 1:])
    if self.shape[dim % self.ndim] == 1 else self,
    "argmax": lambda self, dim=None: Tensor(self.data.argmax(axis=dim)),
    "T": property(lambda self: permute(self, tuple(reversed(range(self.ndim))))),
}.items():
    setattr(Tensor, _name, _method)


def _compare(fn):
    return lambda self, other: Tensor(fn(self.data, other.data if isinstance(other, Tensor) else other))


for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(Tensor, f"__{_name}__", _compare(getattr(operator, _name)))
Tensor.__hash__ = object.__hash__  # tensors are graph nodes, keyed by identity
