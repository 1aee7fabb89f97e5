"""What every op is built from: the registry, the output wrapper that records the graph,
and the checks and conversions that the op files share."""
import numpy as np

from .. import backends
from ..tensor import Tensor, is_grad_enabled

OPS = {}


def op(fn):
    """Register ``fn`` in ``OPS`` under its own name, so that the registry key, the function
    and ``ops.<name>`` are one name. The test-suite checks that each has a gradcheck."""
    if isinstance(fn, str):
        raise TypeError(f"op: write @op without a name (got @op({fn!r})); the key is the function's name")
    if fn.__name__ in OPS:
        raise ValueError(f"op: {fn.__name__!r} is registered twice")
    OPS[fn.__name__] = fn
    return fn


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


def check_broadcast(name, a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None


def normalize_axes(name, dim, ndim):
    """Normalise ``dim`` (None, int or tuple) to a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        span = max(ndim, 1)
        if not -span <= d < span:
            raise IndexError(f"{name}: dim {d} is out of range for a tensor of {ndim} dimension(s) "
                             f"(expected {-span} <= dim < {span})")
        out.append(d % span)
    return tuple(sorted(set(out)))
