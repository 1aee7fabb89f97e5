"""Reductions over ``dim`` (None: every axis; an int or a tuple of them) and the softmax
family, which normalises along one axis. The backward hands each input element the
gradient of the value it went into: the reduced axes come back by broadcasting.

``sum_over``, ``amax`` and ``amin`` are not called ``sum``, ``max`` and ``min``, so that
this package's own code keeps Python's builtins; ``Tensor.sum()``, ``.max()`` and
``.min()`` keep torch's names."""
import math

from ..backends import xp_of
from .core import normalize_axes, op, result


def _expand(g, shape, axes, keepdim):
    """Give a reduced gradient back the reduced axes so it broadcasts against the input."""
    if not keepdim:
        for axis in axes:
            g = xp_of(g).expand_dims(g, axis)
    return g


@op
def sum_over(a, dim=None, keepdim=False):
    axes = normalize_axes("sum", dim, a.ndim)
    out = a.data.sum(axis=axes, keepdims=keepdim)
    return result(out, (a,), lambda g: (xp_of(g).broadcast_to(_expand(g, a.shape, axes, keepdim),
                                                               a.shape).copy(),), "sum_over")


@op
def mean(a, dim=None, keepdim=False):
    axes = normalize_axes("mean", dim, a.ndim)
    count = math.prod(a.shape[i] for i in axes) if a.ndim else 1
    out = a.data.mean(axis=axes, keepdims=keepdim)
    return result(out, (a,), lambda g: (xp_of(g).broadcast_to(_expand(g, a.shape, axes, keepdim) / count,
                                                              a.shape).copy(),), "mean")


def _extreme(name, a, dim, keepdim, pick):
    axes = normalize_axes(name, dim, a.ndim)
    out = pick(a.data, axis=axes, keepdims=True)
    # Ties share the gradient equally, as torch.amax/amin do.
    hit = (a.data == out)
    share = hit / hit.sum(axis=axes, keepdims=True)
    shown = out if keepdim else out.reshape([s for i, s in enumerate(a.shape) if i not in axes])
    return result(shown, (a,), lambda g: (_expand(g, a.shape, axes, keepdim) * share,), name)


@op
def amax(a, dim=None, keepdim=False):
    """The largest values over ``dim`` (values only, as ``torch.amax``)."""
    return _extreme("amax", a, dim, keepdim, lambda x, **kw: x.max(**kw))


@op
def amin(a, dim=None, keepdim=False):
    """The smallest values over ``dim`` (values only, as ``torch.amin``)."""
    return _extreme("amin", a, dim, keepdim, lambda x, **kw: x.min(**kw))


@op
def var(a, dim=None, keepdim=False, correction=1):
    """Variance with Bessel's correction by default, as ``torch.var``."""
    axes = normalize_axes("var", dim, a.ndim)
    count = math.prod(a.shape[i] for i in axes) if a.ndim else 1
    if count - correction <= 0:
        raise ValueError(f"var: {count} element(s) over dim {dim} leave no degrees of freedom "
                         f"with correction={correction}")
    centred = a.data - a.data.mean(axis=axes, keepdims=True)
    out = (centred * centred).sum(axis=axes, keepdims=keepdim) / (count - correction)
    return result(out, (a,),
                  lambda g: (_expand(g, a.shape, axes, keepdim) * 2 * centred / (count - correction),), "var")


# ---- softmax family ------------------------------------------------------------------------
@op
def softmax(a, dim=-1):
    axis = normalize_axes("softmax", dim, a.ndim)[0]
    xp = xp_of(a.data)
    e = xp.exp(a.data - a.data.max(axis=axis, keepdims=True))
    out = e / e.sum(axis=axis, keepdims=True)
    return result(out, (a,), lambda g: (out * (g - (g * out).sum(axis=axis, keepdims=True)),), "softmax")


@op
def log_softmax(a, dim=-1):
    """x − logsumexp(x), computed from the shifted values so 1e4 logits do not overflow."""
    axis = normalize_axes("log_softmax", dim, a.ndim)[0]
    xp = xp_of(a.data)
    shifted = a.data - a.data.max(axis=axis, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return result(out, (a,), lambda g: (g - xp.exp(out) * g.sum(axis=axis, keepdims=True),), "log_softmax")
