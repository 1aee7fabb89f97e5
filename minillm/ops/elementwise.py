"""Elementwise ops: arithmetic (which broadcasts, so the backward sums the gradient back to
each operand's shape), the activations, clipping, selection and dropout."""
import math

import numpy as np

from .. import backends
from ..backends import xp_of
from ..rng import generator
from ..tensor import Tensor
from .core import as_tensor, check_broadcast, op, result, unbroadcast


# ---- arithmetic --------------------------------------------------------------------------
@op
def add(a, b):
    b = as_tensor(b, a)
    if a.shape == b.shape:  # the residual stream: the backend's add (each core its own rows in C)
        data = backends.current().add(a.data, b.data)
    else:
        check_broadcast("add", a, b)
        data = a.data + b.data
    return result(data, (a, b),
                  lambda g: (unbroadcast(g, a.shape), unbroadcast(g, b.shape)), "add")


@op
def sub(a, b):
    b = as_tensor(b, a)
    check_broadcast("sub", a, b)
    return result(a.data - b.data, (a, b),
                  lambda g: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)), "sub")


@op
def mul(a, b):
    b = as_tensor(b, a)
    check_broadcast("mul", a, b)
    return result(a.data * b.data, (a, b),
                  lambda g: (unbroadcast(g * b.data, a.shape), unbroadcast(g * a.data, b.shape)), "mul")


@op
def div(a, b):
    b = as_tensor(b, a)
    check_broadcast("div", a, b)
    out = a.data / b.data
    return result(out, (a, b),
                  lambda g: (unbroadcast(g / b.data, a.shape),
                             unbroadcast(-g * out / b.data, b.shape)), "div")


@op
def neg(a):
    return result(-a.data, (a,), lambda g: (-g,), "neg")


@op
def power(a, exponent):
    """``a ** exponent``; a tensor exponent needs a > 0 for its gradient (a^b · log a)."""
    if isinstance(exponent, Tensor):
        check_broadcast("power", a, exponent)
        out = a.data ** exponent.data
        return result(out, (a, exponent),
                      lambda g: (unbroadcast(g * exponent.data * a.data ** (exponent.data - 1), a.shape),
                                 unbroadcast(g * out * xp_of(out).log(a.data), exponent.shape)), "power")
    out = a.data ** exponent
    return result(out, (a,), lambda g: (g * exponent * a.data ** (exponent - 1),), "power")


# ---- functions of one input ----------------------------------------------------------------
def _unary(name, forward, derivative):
    """An elementwise op whose derivative is a function of its input and output."""
    def apply(a):
        out = forward(xp_of(a.data), a.data)
        return result(out, (a,), lambda g: (g * derivative(xp_of(g), a.data, out),), name)
    apply.__name__ = apply.__qualname__ = name
    return op(apply)


exp = _unary("exp", lambda xp, x: xp.exp(x), lambda xp, x, y: y)
log = _unary("log", lambda xp, x: xp.log(x), lambda xp, x, y: 1 / x)
sqrt = _unary("sqrt", lambda xp, x: xp.sqrt(x), lambda xp, x, y: 0.5 / y)
tanh = _unary("tanh", lambda xp, x: xp.tanh(x), lambda xp, x, y: 1 - y * y)
absolute = _unary("absolute", lambda xp, x: xp.abs(x), lambda xp, x, y: xp.sign(x))


@op
def relu(a):
    """max(x, 0), by the backend's relu_forward and relu_backward."""
    backend = backends.current()
    return result(backend.relu_forward(a.data), (a,), lambda g: (backend.relu_backward(a.data, g),), "relu")


def stable_sigmoid(xp, x):
    """σ(x) on an array, from the exp of a negative number only: no overflow for large |x|."""
    z = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


sigmoid = _unary("sigmoid", stable_sigmoid, lambda xp, x, y: y * (1 - y))


def _erf(xp, x):
    if xp is np:
        return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()
    import cupyx.scipy.special  # only on a GPU, where CuPy is installed
    return cupyx.scipy.special.erf(x)


def _gelu_exact(xp, x):
    return 0.5 * x * (1 + _erf(xp, x / math.sqrt(2)))


def _gelu_exact_grad(xp, x, y):
    cdf = 0.5 * (1 + _erf(xp, x / math.sqrt(2)))
    return cdf + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


gelu_exact = _unary("gelu_exact", _gelu_exact, _gelu_exact_grad)


@op
def gelu_tanh(a):
    """GELU's tanh form, fused in the backend (one pass instead of a dozen temporaries)."""
    backend = backends.current()
    return result(backend.gelu_forward(a.data), (a,), lambda g: (backend.gelu_backward(a.data, g),), "gelu_tanh")


def gelu(a, approximate="none"):
    """GELU(x) = x·Φ(x) (``gelu_exact``); ``approximate="tanh"`` uses the GPT-2 tanh
    formula (``gelu_tanh``). torch's name and argument: it picks one of the two ops."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh'; got {approximate!r}")
    return gelu_tanh(a) if approximate == "tanh" else gelu_exact(a)


@op
def clip(a, low=None, high=None):
    """Clamp to [low, high]; the gradient flows only where the value was not clamped."""
    xp = xp_of(a.data)
    out = xp.clip(a.data, low, high)
    inside = (out == a.data).astype(a.dtype)
    return result(out, (a,), lambda g: (g * inside,), "clip")


# ---- selection and masking ------------------------------------------------------------------
@op
def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b`` (both broadcast)."""
    cond = (condition.data if isinstance(condition, Tensor) else condition).astype(bool)
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    out = xp_of(a.data).where(cond, a.data, b.data)
    return result(out, (a, b),
                  lambda g: (unbroadcast(g * cond, a.shape), unbroadcast(g * ~cond, b.shape)), "where")


def masked_fill(a, mask, value):
    return where(mask, as_tensor(value, a), a)


@op
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
