"""Finite-difference gradient checking (the numerical proof behind every backward)."""
import numpy as np

from . import backends
from .rng import generator
from .tensor import Tensor, no_grad


def _scalar(fn, inputs, projection):
    """fn's output reduced to a number by a fixed random projection, so every output
    element's gradient is checked at once."""
    out = fn(*inputs)
    return out if projection is None else (out * projection).sum()


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-4, max_elements=200, verbose=True):
    """Compare autograd's gradient of ``fn`` with central differences, in float64.

    Every input that requires grad is checked on every element (a random sample of
    ``max_elements`` for larger inputs): |analytic − numeric| ≤ atol + rtol·|numeric|.
    Prints the worst absolute and relative error per input; returns True, or raises an
    AssertionError naming the input, the worst element and both values.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")
        inputs[i].grad = None

    out = fn(*inputs)
    projection = None
    if out.size != 1:
        projection = Tensor(backends.asarray(generator().standard_normal(out.shape), np.float64))
    _scalar(fn, inputs, projection).backward()

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
        flat = x.data.reshape(-1)
        positions = np.arange(flat.size)
        if flat.size > max_elements:
            positions = np.sort(generator().choice(flat.size, max_elements, replace=False))
        numeric = np.empty(len(positions))
        with no_grad():
            for n, pos in enumerate(positions):
                saved = flat[pos].item()
                flat[pos] = saved + eps
                plus = _scalar(fn, inputs, projection).item()
                flat[pos] = saved - eps
                minus = _scalar(fn, inputs, projection).item()
                flat[pos] = saved
                numeric[n] = (plus - minus) / (2 * eps)
        picked = analytic.reshape(-1)[positions]
        abs_err = np.abs(picked - numeric)
        rel_err = abs_err / np.maximum(np.abs(numeric), 1e-12)
        if verbose:
            print(f"gradcheck input {i} {x.shape}: max abs error {abs_err.max(initial=0):.2e}, "
                  f"max rel error {rel_err.max(initial=0):.2e}")
        bad = abs_err > atol + rtol * np.abs(numeric)
        if bad.any():
            worst = int(np.argmax(np.where(bad, abs_err, -1)))
            index = np.unravel_index(positions[worst], x.shape)
            raise AssertionError(
                f"gradcheck: input {i} of shape {x.shape}, element {tuple(int(j) for j in index)}: "
                f"analytic gradient {picked[worst]:.8g} vs numeric {numeric[worst]:.8g} "
                f"(abs error {abs_err[worst]:.2e} > atol {atol} + rtol {rtol} * |numeric|)")
    return True
