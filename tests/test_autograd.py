"""The engine's contract: accumulation, shared uses, float64 end to end, and the
'done when' gradients of issue 2 agreeing with finite differences to 1e-6 relative."""
import weakref

import numpy as np
import pytest
from hypothesis import given

import minillm
from minillm import functional as F, ops
from strategies import away_from_zero


def numeric_grad(f, x, eps=1e-6):
    """Central differences of a scalar NumPy function, element by element."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = f(x)
        x[i] = saved - eps
        minus = f(x)
        x[i] = saved
        g[i] = (plus - minus) / (2 * eps)
    return g


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@given(away_from_zero((4, 3)))  # near 0 the finite difference itself is only rounding
def test_x_times_x_gets_the_sum_of_both_uses(x):
    t = minillm.tensor(x, requires_grad=True)
    (t * t).sum().backward()
    err = relative_error(t.grad.numpy(), numeric_grad(lambda v: (v * v).sum(), x.copy()))
    print(f"x*x grad relative error {err:.1e}")
    assert err <= 1e-6
    np.testing.assert_allclose(t.grad.numpy(), 2 * x, rtol=1e-15)


def test_broadcast_3x1_plus_1x4():
    rng = np.random.default_rng(1)
    a, b, w = rng.standard_normal((3, 1)), rng.standard_normal((1, 4)), rng.standard_normal((3, 4))
    ta, tb = minillm.tensor(a, requires_grad=True), minillm.tensor(b, requires_grad=True)
    ((ta + tb) * minillm.tensor(w)).sum().backward()
    assert ta.grad.shape == (3, 1) and tb.grad.shape == (1, 4)
    assert relative_error(ta.grad.numpy(), numeric_grad(lambda v: ((v + b) * w).sum(), a.copy())) <= 1e-6
    assert relative_error(tb.grad.numpy(), numeric_grad(lambda v: ((a + v) * w).sum(), b.copy())) <= 1e-6


def test_batched_matmul_with_broadcast_batch_dims():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 1, 3, 5)), rng.standard_normal((4, 5, 2))
    w = rng.standard_normal((2, 4, 3, 2))
    ta, tb = minillm.tensor(a, requires_grad=True), minillm.tensor(b, requires_grad=True)
    ((ta @ tb) * minillm.tensor(w)).sum().backward()
    assert relative_error(ta.grad.numpy(), numeric_grad(lambda v: ((v @ b) * w).sum(), a.copy())) <= 1e-6
    assert relative_error(tb.grad.numpy(), numeric_grad(lambda v: ((a @ v) * w).sum(), b.copy())) <= 1e-6


def test_cross_entropy_gradient_and_value():
    rng = np.random.default_rng(3)
    logits, target = rng.standard_normal((7, 5)) * 3, np.array([0, 4, 2, -100, 1, 1, 3])

    def reference(z):
        keep = target != -100
        z = z[keep]
        logp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        return -logp[np.arange(len(z)), target[keep]].mean()

    t = minillm.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(t, target)
    assert abs(loss.item() - reference(logits)) <= 1e-12
    loss.backward()
    assert relative_error(t.grad.numpy(), numeric_grad(reference, logits.copy())) <= 1e-6
    assert np.all(t.grad.numpy()[3] == 0), "an ignored target must get no gradient"


def test_softmax_family_is_stable_at_huge_logits():
    logits = minillm.tensor(np.array([[1e4, 0.0, -1e4], [3e4, 3e4, 0.0]], np.float32), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad.numpy()).all()
    np.testing.assert_allclose(loss.item(), (1e4 + np.log(2)) / 2, rtol=1e-6)
    assert np.isfinite(F.softmax(logits, -1).numpy()).all()
    assert np.isfinite(F.binary_cross_entropy_with_logits(logits, np.ones((2, 3), np.float32)).item())


def test_gradients_accumulate_across_backward_calls():
    x = minillm.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_backward_frees_the_graph_unless_asked_to_keep_it():
    """PyTorch's default: after backward the intermediate tensors (and the arrays their ops
    kept) are let go of; a second backward through the same graph is refused with a message
    that names the way out, and retain_graph=True makes it work (the gradients add up)."""
    rng = np.random.default_rng(0)
    x = minillm.tensor(rng.standard_normal(5), requires_grad=True, dtype=np.float64)
    expected = 2 * np.exp(2 * x.data)                       # d/dx Σ exp(2x)
    for retain in (False, True):
        x.grad = None
        h = x * 2.0
        loss = h.exp().sum()
        alive = weakref.ref(h)
        del h
        loss.backward(retain_graph=retain)
        np.testing.assert_allclose(x.grad.data, expected, rtol=1e-12)
        assert (alive() is not None) == retain
        if retain:
            loss.backward()
            np.testing.assert_allclose(x.grad.data, 2 * expected, rtol=1e-12)
        else:
            with pytest.raises(RuntimeError, match="retain_graph=True"):
                loss.backward()


def test_float32_is_default_and_float64_stays_float64():
    assert minillm.tensor([1.0, 2.0]).dtype == np.float32
    assert minillm.randn(2, 3).dtype == np.float32
    x = minillm.tensor(np.ones(3), requires_grad=True)
    y = (F.gelu(x) * 2 + 1).exp().sum()
    y.backward()
    assert y.dtype == np.float64 and x.grad.dtype == np.float64
    assert (minillm.tensor([1.0]) * 2.0).dtype == np.float32


def test_no_grad_records_nothing():
    x = minillm.tensor([1.0], requires_grad=True)
    with minillm.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf


def test_detach_cuts_the_graph():
    x = minillm.tensor([2.0], requires_grad=True)
    y = x.detach() * x
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0])


def test_split_and_stack_route_gradients():
    x = minillm.tensor(np.arange(10.0), requires_grad=True)
    parts = minillm.split(x, 4)
    assert [p.shape for p in parts] == [(4,), (4,), (2,)]
    stacked = minillm.stack([parts[0], parts[1] * 2], dim=1)
    assert stacked.shape == (4, 2)
    stacked.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 1, 1, 2, 2, 2, 2, 0, 0])


def test_long_chain_does_not_hit_the_recursion_limit():
    x = minillm.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 5000], rtol=1e-4)


def test_gradcheck_catches_a_wrong_backward():
    """Plant a backward that is off by a factor of two and watch gradcheck name it."""
    def wrong_square(a):
        return ops.result(a.data ** 2, (a,), lambda g: (g * a.data,), "wrong_square")  # should be 2·a·g

    x = minillm.tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    with pytest.raises(AssertionError, match=r"input 0 .* analytic gradient .* vs numeric"):
        minillm.gradcheck(wrong_square, x)


def test_gradcheck_passes_a_correct_backward_and_prints(capsys):
    x = minillm.tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    assert minillm.gradcheck(lambda a: a ** 2, x)
    assert "max abs error" in capsys.readouterr().out


def test_gradcheck_samples_large_inputs():
    x = minillm.tensor(np.random.default_rng(0).standard_normal((40, 40)), requires_grad=True)
    assert minillm.gradcheck(lambda a: a.tanh(), x, max_elements=50, verbose=False)


def test_truth_value_of_a_tensor_is_numpys():
    assert bool(minillm.tensor([2.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(minillm.tensor([1.0, 2.0]) == minillm.tensor([1.0, 3.0]))
