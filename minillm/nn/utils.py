"""Gradient clipping (document 000, §3.2.2): keep ‖∇θ J‖₂ ≤ C."""
import math

import numpy as np

from .. import backends
from ..tensor import Tensor


def _grads(parameters):
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Rescale all gradients together so their global norm is at most ``max_norm``:
    g ← g · C / (‖g‖ + 1e-6) when ‖g‖ > C. Every gradient keeps its direction. Returns the
    norm before clipping (as PyTorch does)."""
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be > 0; got {max_norm}")
    grads = _grads(parameters)
    if not grads:
        return Tensor(np.asarray(0.0, np.float32))
    xp, backend = backends.xp_of(grads[0].data), backends.current()
    arrays = [g.data for g in grads]
    if norm_type == math.inf:
        total = max(float(xp.abs(a).max()) for a in arrays)
    elif norm_type == 2:  # all tensors in one backend call (a parallel kernel in C)
        total = math.sqrt(backend.sum_of_squares_many(arrays))
    else:
        total = float(sum(float((xp.abs(a.astype(np.float64)) ** norm_type).sum()) for a in arrays)) ** (1 / norm_type)
    if not math.isfinite(total) and error_if_nonfinite:
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total}; "
                           f"pass error_if_nonfinite=False to clip anyway")
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1:
        backend.scale_many(arrays, coefficient)
    return Tensor(np.asarray(total, np.float32))


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into [−clip_value, clip_value]."""
    if not clip_value > 0:
        raise ValueError(f"clip_grad_value_: clip_value must be > 0; got {clip_value}")
    for g in _grads(parameters):
        xp = backends.xp_of(g.data)
        xp.clip(g.data, -clip_value, clip_value, out=g.data)
