"""Chapter 00 exercises: backpropagation by hand (read lessons/00_autograd.py first).

Fill in every function or method that raises NotImplementedError, then grade your work:

    minillm exercise 0

NumPy and `math` only: the checks compare your answers with minillm's own `backward()`
on freshly drawn inputs, so calling the library would only compare it with itself.
"""
import math

import numpy as np  # noqa: F401  (yours to use)


class Value:
    """The lesson's scalar engine: a number, the values it was computed from, and how to
    pass a gradient back to them. `+`, `*`, `tanh` and `backward` are done; `exp` and
    `**` are yours."""

    def __init__(self, data, parents=(), op=""):
        self.data, self.grad = float(data), 0.0
        self.parents, self.op = parents, op
        self._backward = lambda: None   # adds this node's grad into its parents' grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = backward
        return out

    __radd__ = __add__
    __rmul__ = __mul__

    def backward(self):
        order, seen = [], set()

        def visit(node):
            if node not in seen:
                seen.add(node)
                for parent in node.parents:
                    visit(parent)
                order.append(node)
        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()

    def exp(self):
        """Return a new Value holding e^self.data, with self as its only parent, and an
        `_backward` that adds d(e^a)/da · out.grad = e^a · out.grad into self.grad (add,
        never assign: a value used twice gets a gradient from each use)."""
        raise NotImplementedError

    def __pow__(self, n):
        """`self ** n` for a plain number n (int or float, not a Value). Return a new Value
        holding self.data ** n whose `_backward` adds n · self.data ** (n − 1) · out.grad
        into self.grad."""
        raise NotImplementedError


def softmax_cross_entropy(logits, labels):
    """The mean cross-entropy of N rows of logits, and its gradient, by the formula p − y.

    logits: (N, C) floats; labels: (N,) ints in [0, C).
    Return (loss, grad): loss is the float −(1/N) Σ_n log softmax(logits[n])[labels[n]];
    grad is the (N, C) array ∂loss/∂logits = (p − onehot(labels)) / N, p = softmax by rows.
    Subtract each row's maximum before exp so large logits do not overflow.
    """
    raise NotImplementedError


def layer_norm_backward(x, gamma, grad_y, eps=1e-5):
    """The gradients of layer norm over the last axis, derived by hand.

    x: (N, D) rows; gamma: (D,) the scale; grad_y: (N, D), ∂L/∂y for
    y = γ ⊙ x̂ + β with x̂ = (x − μ) · r, μ the row's mean, r = 1 / √(row variance + eps)
    (the variance divides by D).
    Return (dx, dgamma, dbeta) of shapes (N, D), (D,), (D,):
      dbeta = Σ_rows grad_y,  dgamma = Σ_rows grad_y ⊙ x̂,
      dx = r · (g − mean(g) − x̂ · mean(g ⊙ x̂)) with g = grad_y ⊙ γ, means over each row.
    """
    raise NotImplementedError
