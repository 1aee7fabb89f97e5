"""Swappable backends for the hot primitives.

A backend is one module ``<name>_backend.py`` exposing ``xp`` (its array module) and any
of the primitives of the reference backend ``numpy_backend`` (as functions, or as methods
of an object named ``primitives``); whatever it leaves out falls back to the reference. Pick one with ``set_backend(name)``, ``use_backend(name)`` or the
environment variable ``MINILLM_BACKEND``. Autograd lives apart (``minillm.ops``): it calls
``current().<primitive>`` and never knows which backend answered.
"""
import contextlib
import importlib
import os
import types

import numpy as np

PRIMITIVES = (
    "matmul",
    "attention_forward", "attention_backward",
    "layernorm_forward", "layernorm_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "gelu_forward", "gelu_backward",
    "rmsnorm_forward", "rmsnorm_backward", "rope_forward", "swiglu_forward", "swiglu_backward",
    "add",
    "matmul_int8", "linear_int8",
    "adam_update",
    "sum_of_squares_many", "scale_many",
    "scatter_add_rows",
)

KNOWN = {
    "numpy": "numpy_backend",
    "numba": "numba_backend",
    "c": "c_backend",
    "cuda-sim": "cuda_sim_backend",
    "cupy": "cupy_backend",
}


class BackendUnavailable(RuntimeError):
    """Raised by a backend module at import time, with the reason it cannot run here."""


_loaded = {}
_reasons = {}
_current = None


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name not in KNOWN:
        raise ValueError(f"set_backend: unknown backend {name!r}; known backends: {', '.join(KNOWN)}")
    if name in _reasons:
        raise BackendUnavailable(f"backend {name!r} is not available here: {_reasons[name]}")
    try:
        module = importlib.import_module(f".{KNOWN[name]}", __name__)
    except BackendUnavailable as exc:
        _reasons[name] = str(exc)
        raise BackendUnavailable(f"backend {name!r} is not available here: {exc}") from None
    reference = importlib.import_module(".numpy_backend", __name__)
    backend = types.SimpleNamespace(name=name, xp=module.xp)
    provider = getattr(module, "primitives", module)  # an object, or the module's functions
    for primitive in PRIMITIVES:
        setattr(backend, primitive, getattr(provider, primitive, getattr(reference, primitive)))
    # many tensors at once where the backend has a kernel for it, else its own one-at-a-time kernel
    backend.adam_update_many = getattr(provider, "adam_update_many", None) or _one_at_a_time(backend.adam_update)
    # self-attention from one (B, T, 3C) projection: a kernel that reads the heads where they
    # lie, or the backend's own (N, T, D) attention between a split and a merge
    backend.attention_qkv_forward, backend.attention_qkv_backward = (
        (provider.attention_qkv_forward, provider.attention_qkv_backward)
        if hasattr(provider, "attention_qkv_forward") else
        qkv_through(backend.attention_forward, backend.attention_backward))
    backend.linear_forward = getattr(provider, "linear_forward", None) or linear_through(backend.matmul)
    backend.linear_backward = getattr(provider, "linear_backward", None) or linear_backward_through(backend.matmul)
    _loaded[name] = backend
    return backend


def _one_at_a_time(adam_update):
    def adam_update_many(ps, gs, ms, vs, *hyper):
        for arrays in zip(ps, gs, ms, vs):
            adam_update(*arrays, *hyper)
    return adam_update_many


def split_qkv(qkv, heads):
    """The q, k and v of a (B, T, 3C) projection as contiguous (B·heads, T, C/heads) arrays."""
    b, t, c3 = qkv.shape
    d = c3 // 3 // heads
    parts = qkv.reshape(b, t, 3, heads, d).transpose(2, 0, 3, 1, 4).reshape(3, b * heads, t, d)
    return parts[0], parts[1], parts[2]


def split_heads(y, heads):
    """(B, T, C) -> (B·heads, T, C/heads), contiguous."""
    b, t, c = y.shape
    return y.reshape(b, t, heads, c // heads).transpose(0, 2, 1, 3).reshape(b * heads, t, c // heads)


def merge_heads(x, batch):
    """(B·heads, T, D) -> (B, T, heads·D): the heads side by side again."""
    n, t, d = x.shape
    return x.reshape(batch, n // batch, t, d).transpose(0, 2, 1, 3).reshape(batch, t, n // batch * d)


def qkv_through(attention_forward, attention_backward):
    """attention_qkv_forward/backward built from an (N, T, D) attention: split, attend, merge."""
    def forward(qkv, heads, causal, scale):
        out, lse = attention_forward(*split_qkv(qkv, heads), causal, scale)
        return merge_heads(out, qkv.shape[0]), lse

    def backward(qkv, y, lse, dy, heads, causal, scale):
        grads = attention_backward(*split_qkv(qkv, heads), split_heads(y, heads), lse, split_heads(dy, heads),
                                   causal, scale)
        return xp_of(qkv).concatenate([merge_heads(g, qkv.shape[0]) for g in grads], axis=-1)

    return forward, backward


def linear_through(matmul):
    """linear_forward(x, w, b) = x wᵀ + b for 2-D x from a backend's matmul and one add."""
    def linear_forward(x, w, bias=None):
        out = matmul(x, w, trans_b=True)
        if bias is not None:
            out += bias
        return out
    return linear_forward


def linear_backward_through(matmul):
    """linear_backward(g, x, w) = (g w, gᵀ x, Σ_rows g), each only when asked for, from a
    backend's matmul."""
    def linear_backward(g, x, w, need_x=True, need_w=True, need_b=True):
        return (matmul(g, w) if need_x else None, matmul(g, x, trans_a=True) if need_w else None,
                g.sum(axis=0) if need_b else None)
    return linear_backward


def get(name):
    """The backend called ``name`` (loading it if needed)."""
    return _load(name)


def current():
    """The active backend; the first call honours ``MINILLM_BACKEND`` (default numpy)."""
    global _current
    if _current is None:
        _current = _load(os.environ.get("MINILLM_BACKEND", "numpy"))
    return _current


def set_backend(name):
    global _current
    _current = _load(name)
    return _current


@contextlib.contextmanager
def use_backend(name):
    global _current
    previous = current()
    _current = _load(name)
    try:
        yield _current
    finally:
        _current = previous


def is_available(name):
    """Whether backend ``name`` runs here, loading that backend only (``status()`` loads every
    one, and building the CUDA harness for ``cuda-sim`` is not free)."""
    try:
        _load(name)
        return True
    except BackendUnavailable:
        return False


def status():
    """Every known backend mapped to "ok" or the reason it cannot run here (loads them all)."""
    report = {}
    for name in KNOWN:
        try:
            _load(name)
            report[name] = "ok"
        except BackendUnavailable:
            report[name] = _reasons[name]
    return report


def available():
    return [name for name, state in status().items() if state == "ok"]


# ---- array helpers shared by autograd and backends ----------------------------------------
def xp_of(array):
    """NumPy or CuPy, whichever owns ``array``."""
    return np if isinstance(array, (np.ndarray, np.generic)) else importlib.import_module("cupy")


def to_numpy(array):
    return np.asarray(array) if isinstance(array, (np.ndarray, np.generic)) else array.get()


def asarray(data, dtype=None):
    """``data`` as an array of the active backend's module."""
    xp = current().xp
    if xp is not np and isinstance(data, np.ndarray):
        return xp.asarray(data, dtype=dtype)
    if xp is np and not isinstance(data, (np.ndarray, np.generic, list, tuple, int, float, bool)):
        data = to_numpy(data)
    return xp.asarray(data, dtype=dtype)


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices adding up (an embedding's backward)."""
    xp = xp_of(target)
    if xp is np and isinstance(index, np.ndarray) and index.dtype.kind in "iu" and index.ndim >= 1:
        # rows gathered by an integer array (an embedding): the backend's scatter_add_rows
        flat = index.reshape(-1)
        flat = np.where(flat < 0, flat + target.shape[0], flat)  # -1 and n-1 are one row
        if flat.size and (flat.min() < 0 or flat.max() >= target.shape[0]):
            raise IndexError(f"scatter_add: index out of range for {target.shape[0]} rows")
        backend = current() if current().xp is np else _load("numpy")
        backend.scatter_add_rows(target, flat, values.reshape((flat.size,) + target.shape[1:]))
    elif xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target


def batched_operand(a, batch):
    """(3-D array, batch stride in elements) for a matmul operand broadcast to the leading
    ``batch`` dims: a 2-D operand is shared by every batch (stride 0), a full 3-D one is
    used as it is, anything else becomes a contiguous copy."""
    if a.ndim == 2:
        return a, 0
    if a.shape[:-2] == batch and a.ndim == 3:
        return a, a.strides[0] // a.itemsize
    xp = xp_of(a)
    flat = xp.ascontiguousarray(xp.broadcast_to(a, batch + a.shape[-2:])).reshape((-1,) + a.shape[-2:])
    return flat, flat.strides[0] // flat.itemsize


def gemm_operands(a, b, trans_a, trans_b):
    """Everything a strided batched GEMM kernel needs for ``op(a) @ op(b)``:
    (a3, batch stride of a, b3, batch stride of b, M, N, K, batch shape), where a3 and b3
    are (possibly transposed, broadcast) views or copies with 3 axes."""
    op_a = a.swapaxes(-1, -2) if trans_a else a
    op_b = b.swapaxes(-1, -2) if trans_b else b
    m, k = op_a.shape[-2:]
    n = op_b.shape[-1]
    batch = tuple(np.broadcast_shapes(op_a.shape[:-2], op_b.shape[:-2]))
    a3, sab = batched_operand(op_a, batch)
    b3, sbb = batched_operand(op_b, batch)
    return a3, sab, b3, sbb, m, n, k, batch
