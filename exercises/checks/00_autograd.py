"""Checks for chapter 00: Value's new operations against their derivatives, and the
hand-derived gradients against minillm's backward(), all in float64."""
import math

import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import functional as F
from minillm.exercise import Wrong, arrays, exercise, expect_close, sides

TOL = 1e-9  # float64: anything above rounding error is a mistake


def value_of(out, learner, what):
    if not isinstance(out, learner.Value):
        raise Wrong(f"{what}: expected a Value, got {type(out).__name__}")
    return out


@exercise("Value.exp", x=st.floats(-3, 3))
def check_exp(learner, x):
    a = learner.Value(x)
    out = value_of(a.exp(), learner, "Value(x).exp()")
    expect_close(out.data, math.exp(x), TOL, "Value(x).exp().data")
    y = out * a                         # a is used twice: by exp and by the product
    y.backward()
    expect_close(a.grad, math.exp(x) * (x + 1), TOL, "d(e^x · x)/dx, the gradient both uses of x add up to")


@exercise("Value.__pow__", x=st.floats(0.5, 3), n=st.sampled_from([2, 3, -1, -2, 0.5, 1.5]))
def check_pow(learner, x, n):
    a = learner.Value(x)
    out = value_of(a ** n, learner, f"Value(x) ** {n}")
    expect_close(out.data, x ** n, TOL, f"(Value(x) ** {n}).data")
    y = out * a + a                     # three uses of a
    y.backward()
    expect_close(a.grad, (n + 1) * x ** n + 1, TOL, f"d(x^{n} · x + x)/dx")


@st.composite
def logits_and_labels(draw):
    n, c = draw(sides()), draw(sides())
    return draw(arrays((n, c), -5, 5)), np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))


@exercise("softmax_cross_entropy", batch=logits_and_labels())
def check_softmax_cross_entropy(learner, batch):
    logits, labels = batch
    z = minillm.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, labels)
    loss.backward()
    answer = learner.softmax_cross_entropy(logits.copy(), labels.copy())
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong(f"expected a pair (loss, grad), got {type(answer).__name__}")
    expect_close(answer[0], loss.item(), TOL, "the loss")
    expect_close(answer[1], z.grad.numpy(), TOL, "∂loss/∂logits")


@st.composite
def layer_norm_inputs(draw):
    n, d = draw(sides()), draw(sides())
    return draw(arrays((n, d), -3, 3)), draw(arrays((d,), 0.5, 2)), draw(arrays((n, d)))


@exercise("layer_norm_backward", inputs=layer_norm_inputs(), eps=st.sampled_from([1e-5, 1e-3]))
def check_layer_norm_backward(learner, inputs, eps):
    x, gamma, grad_y = inputs
    tensors = [minillm.tensor(a, requires_grad=True) for a in (x, gamma, np.zeros_like(gamma))]
    y = F.layer_norm(tensors[0], x.shape[1], tensors[1], tensors[2], eps=eps)
    (y * minillm.tensor(grad_y)).sum().backward()   # L = Σ y ⊙ grad_y, so ∂L/∂y = grad_y
    answer = learner.layer_norm_backward(x.copy(), gamma.copy(), grad_y.copy(), eps)
    if not isinstance(answer, tuple) or len(answer) != 3:
        raise Wrong(f"expected a triple (dx, dgamma, dbeta), got {type(answer).__name__}")
    for got, t, name in zip(answer, tensors, ("dx", "dgamma", "dbeta")):
        expect_close(got, t.grad.numpy(), 1e-7, name)   # r = 1/√eps can reach 1000: a little rounding headroom
