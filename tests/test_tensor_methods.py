"""Tensor's operators and methods (torch's names): each is written on ``class Tensor`` in
tensor.py, and each computes what NumPy computes, with a gradient that central
differences confirm, on drawn values and awkward shapes."""
import ast
import operator
import pathlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minillm
from minillm import Tensor
from strategies import away_from_zero, distinct, positive, sides, values

# Every name Tensor had before its methods moved into tensor.py (they were attached by a
# loop at the end of ops.py): none may go missing.
METHODS = [
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__neg__", "__pow__", "__rpow__", "__matmul__", "__rmatmul__", "__getitem__",
    "matmul", "sum", "mean", "max", "min", "amax", "amin", "var", "reshape", "view", "permute",
    "transpose", "split", "exp", "log", "sqrt", "tanh", "abs", "sigmoid", "relu", "gelu", "clip",
    "clamp", "softmax", "log_softmax", "masked_fill", "flatten", "unsqueeze", "squeeze", "argmax",
    "T", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__hash__",
]


def test_every_method_is_written_on_the_class_in_tensor_py():
    tree = ast.parse((pathlib.Path(minillm.__file__).parent / "tensor.py").read_text())
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Tensor")
    written = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    written |= {target.id for node in cls.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    missing = sorted(set(METHODS) - written)
    assert not missing, f"not written in class Tensor (tensor.py): {missing}"
    assert all(name in vars(Tensor) for name in METHODS)


def _logsoftmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


# name -> (domain of x, how to call the method on tensor x, the same with NumPy on array x).
# `other` is a second array of x's shape (or a scalar); methods that take dims get one.
UNARY = {
    "__neg__": (None, lambda x: -x, lambda x: -x),
    "pow": (positive, lambda x: x.pow(-1.5), lambda x: x ** -1.5),  # torch's name for **, new here
    "__getitem__": (None, lambda x: x[..., ::2], lambda x: x[..., ::2]),
    "sum": (None, lambda x: x.sum(-1, True), lambda x: x.sum(-1, keepdims=True)),
    "mean": (None, lambda x: x.mean(0), lambda x: x.mean(0)),
    "max": (distinct, lambda x: x.max(-1), lambda x: x.max(-1)),
    "min": (distinct, lambda x: x.min(), lambda x: x.min()),
    "amax": (distinct, lambda x: x.amax(0, keepdim=True), lambda x: x.max(0, keepdims=True)),
    "amin": (distinct, lambda x: x.amin(dim=-1), lambda x: x.min(-1)),
    "var": (None, lambda x: x.var(-1, False, 0), lambda x: x.var(-1)),
    "reshape": (None, lambda x: x.reshape(-1), lambda x: x.reshape(-1)),
    "view": (None, lambda x: x.view(x.shape[1], -1), lambda x: x.reshape(x.shape[1], -1)),
    "permute": (None, lambda x: x.permute(1, 0), lambda x: x.transpose(1, 0)),
    "transpose": (None, lambda x: x.transpose(-1, 0), lambda x: x.T),
    "exp": (None, lambda x: x.exp(), np.exp),
    "log": (positive, lambda x: x.log(), np.log),
    "sqrt": (positive, lambda x: x.sqrt(), np.sqrt),
    "tanh": (None, lambda x: x.tanh(), np.tanh),
    "abs": (away_from_zero, lambda x: x.abs(), np.abs),
    "sigmoid": (None, lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "relu": (away_from_zero, lambda x: x.relu(), lambda x: np.maximum(x, 0)),
    "gelu": (None, lambda x: x.gelu(), lambda x: _gelu(x, "none")),
    "gelu_tanh": (None, lambda x: x.gelu("tanh"), lambda x: _gelu(x, "tanh")),
    "clip": (distinct, lambda x: x.clip(min=-0.3137, max=0.4219), lambda x: np.clip(x, -0.3137, 0.4219)),
    "clamp": (distinct, lambda x: x.clamp(-0.3137), lambda x: np.maximum(x, -0.3137)),
    "softmax": (None, lambda x: x.softmax(0), lambda x: np.exp(_logsoftmax(x, 0))),
    "log_softmax": (None, lambda x: x.log_softmax(), lambda x: _logsoftmax(x, -1)),
    "masked_fill": (None, lambda x: x.masked_fill(np.eye(*x.shape, dtype=bool), 0.25),
                    lambda x: np.where(np.eye(*x.shape, dtype=bool), 0.25, x)),
    "flatten": (None, lambda x: x.unsqueeze(0).flatten(1), lambda x: x.reshape(1, -1)),
    "unsqueeze": (None, lambda x: x.unsqueeze(-1), lambda x: x[..., None]),
    "squeeze": (None, lambda x: x.unsqueeze(1).squeeze(1), lambda x: x),
    "T": (None, lambda x: x.T, lambda x: x.T),
    "split": (None, lambda x: minillm.cat(x.split(2, dim=1)[::-1], dim=1),
              lambda x: np.concatenate(np.split(x, range(2, x.shape[1], 2), axis=1)[::-1], axis=1)),
}

BINARY = {
    "__add__": (lambda x, y: x + y, np.add),
    "__radd__": (lambda x, y: y.numpy() + x, np.add),
    "__sub__": (lambda x, y: x - y, np.subtract),
    "__rsub__": (lambda x, y: y.numpy() - x, lambda x, y: y - x),
    "__mul__": (lambda x, y: x * y, np.multiply),
    "__rmul__": (lambda x, y: y.numpy() * x, np.multiply),
    "__truediv__": (lambda x, y: x / (y * y + 1), lambda x, y: x / (y * y + 1)),
    "__rtruediv__": (lambda x, y: y.numpy() / (x * x + 1), lambda x, y: y / (x * x + 1)),
    "__pow__": (lambda x, y: (x * x + 1) ** y, lambda x, y: (x * x + 1) ** y),
    "__rpow__": (lambda x, y: (y.numpy() * y.numpy() + 1) ** x, lambda x, y: (y * y + 1) ** x),
    "__matmul__": (lambda x, y: x @ y.T, lambda x, y: x @ y.T),
    "__rmatmul__": (lambda x, y: y.numpy().T @ x, lambda x, y: y.T @ x),
    "matmul": (lambda x, y: x.matmul(y.T), lambda x, y: x @ y.T),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_method(name, data):
    domain, method, ref = UNARY[name]
    shape = (data.draw(sides.filter(lambda s: s > 1)), data.draw(sides))
    x = data.draw((domain or values)(shape))
    t = minillm.tensor(x, requires_grad=True)
    out = method(t)
    np.testing.assert_allclose(out.numpy(), ref(x), rtol=1e-12, atol=1e-12, err_msg=name)
    assert minillm.gradcheck(method, t, verbose=False)


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_method(name, data):
    method, ref = BINARY[name]
    shape = (data.draw(sides), data.draw(sides))
    x, y = data.draw(values(shape)), data.draw(values(shape))
    reflected = name.startswith("__r")  # the method is reached from an ndarray on the left: a constant
    t, u = minillm.tensor(x, requires_grad=True), minillm.tensor(y, requires_grad=not reflected)
    np.testing.assert_allclose(method(t, u).numpy(), ref(x, y), rtol=1e-12, atol=1e-12, err_msg=name)
    assert minillm.gradcheck(method, t, u, verbose=False)
    assert reflected or u.grad is not None


def test_python_numbers_keep_the_tensor_dtype():
    t = minillm.tensor(np.arange(1, 7, dtype=np.float32).reshape(2, 3))
    for out in (t + 2.0, 2.0 + t, t - 2.0, 2.0 - t, t * 2.0, 2.0 * t, t / 2.0, 2.0 / t, t ** 2.0, 2.0 ** t, -t):
        assert isinstance(out, Tensor) and out.dtype == np.float32
    np.testing.assert_array_equal((2.0 - t).numpy(), 2.0 - t.numpy())
    np.testing.assert_array_equal((2.0 ** t).numpy(), 2.0 ** t.numpy())


@pytest.mark.parametrize("name", ["__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"])
def test_comparisons_give_boolean_tensors_outside_the_graph(name):
    x = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, -3.0]])
    t, u = minillm.tensor(x, requires_grad=True), minillm.tensor(x[::-1].copy())
    for other, ref in ((u, x[::-1]), (1.0, 1.0)):
        out = getattr(t, name)(other)
        assert isinstance(out, Tensor) and out.dtype == bool and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), getattr(operator, name)(x, ref))


def test_argmax_and_identity_hash():
    t = minillm.tensor(np.array([[0.5, 3.0, 2.0], [4.0, 1.0, -3.0]]))
    assert t.argmax().item() == 3
    np.testing.assert_array_equal(t.argmax(1).numpy(), [1, 0])
    np.testing.assert_array_equal(t.argmax(dim=0).numpy(), [1, 0, 0])
    same = minillm.tensor(t.numpy())
    assert hash(t) != hash(same) and len({t, same, t}) == 2  # keyed by identity, not by value
