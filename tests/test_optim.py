"""Optimizers against hand computation and against torch.optim over 20 steps; clipping
properties; schedulers; bad hyperparameters."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minillm
from minillm import nn, optim
from minillm.nn.utils import clip_grad_norm_, clip_grad_value_


def param(values, grad):
    p = nn.Parameter(np.asarray(values, np.float64))
    p.grad = minillm.tensor(np.asarray(grad, np.float64))
    return p


def test_gd_is_the_formula():
    p = param([1.0, -2.0], [0.5, 0.25])
    optim.GD([p], lr=0.1).step()
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 0.25])


def test_sgd_weight_decay_is_the_documents_update():
    p = param([1.0, -2.0], [0.5, 0.25])
    optim.SGD([p], lr=0.1, weight_decay=0.01).step()
    theta, grad = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    np.testing.assert_allclose(p.numpy(), theta - 0.1 * grad - 0.1 * 0.01 * theta)  # θ − η∇L − ηλθ


def test_adam_first_step_by_hand():
    p = param([1.0], [0.3])
    optim.Adam([p], lr=0.01).step()
    m, v = 0.1 * 0.3, 0.001 * 0.09
    expected = 1.0 - 0.01 * (m / 0.1) / (math.sqrt(v / 0.001) + 1e-8)
    np.testing.assert_allclose(p.numpy(), [expected], rtol=1e-12)


def test_adamw_decays_before_the_step():
    p = param([2.0], [0.0])
    optim.AdamW([p], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(p.numpy(), [2.0 * (1 - 0.1 * 0.5)])  # zero gradient: only the decay


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((6, 3))
    a, b = param(np.ones(3), grads[0]), param(np.ones(3), grads[0])
    opt_a = optim.AdamW([a], lr=0.05)
    for g in grads[:3]:
        a.grad = minillm.tensor(g)
        opt_a.step()
    b.data = a.data.copy()
    opt_b = optim.AdamW([b], lr=0.05)
    opt_b.load_state_dict(opt_a.state_dict())
    for g in grads[3:]:
        a.grad, b.grad = minillm.tensor(g), minillm.tensor(g)
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_hyperparameters():
    p = param([1.0], [1.0])
    with pytest.raises(ValueError, match="SGD: lr must be >= 0; got -0.1"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="clip_grad_norm_: max_norm must be > 0; got 0"):
        clip_grad_norm_([p], 0)
    with pytest.raises(ValueError, match="WarmupCosine: need 0 <= warmup <= total"):
        optim.WarmupCosine(optim.SGD([p], lr=0.1), warmup=10, total=5)


def test_warmup_cosine_shape():
    opt = optim.SGD([param([1.0], [1.0])], lr=1.0)
    schedule = optim.WarmupCosine(opt, warmup=4, total=12, min_lr=0.1)
    lrs = [opt.lr]
    for _ in range(14):
        schedule.step()
        lrs.append(opt.lr)
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(x >= y for x, y in zip(lrs[4:12], lrs[5:13]))
    assert lrs[-1] == pytest.approx(0.1)


def test_step_lr():
    opt = optim.SGD([param([1.0], [1.0])], lr=1.0)
    schedule = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        schedule.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]


@given(shapes=st.lists(st.sampled_from([(1,), (3,), (2, 5)]), min_size=1, max_size=4),
       max_norm=st.floats(0.01, 10), scale=st.floats(0.001, 100), seed=st.integers(0, 2 ** 16))
def test_clip_grad_norm_properties(shapes, max_norm, scale, seed):
    rng = np.random.default_rng(seed)
    params = [param(np.zeros(s), rng.standard_normal(s) * scale) for s in shapes]
    before = [p.grad.numpy().copy() for p in params]
    norm_before = math.sqrt(sum((g ** 2).sum() for g in before))
    returned = clip_grad_norm_(params, max_norm).item()
    after = [p.grad.numpy() for p in params]
    norm_after = math.sqrt(sum((g ** 2).sum() for g in after))
    assert returned == pytest.approx(norm_before, rel=1e-6)
    assert norm_after <= max_norm * (1 + 1e-6)
    if norm_before <= max_norm:
        for g0, g1 in zip(before, after):
            np.testing.assert_array_equal(g0, g1)
    else:  # one common factor: every gradient keeps its direction
        factor = norm_after / norm_before
        for g0, g1 in zip(before, after):
            np.testing.assert_allclose(g1, g0 * factor, rtol=1e-9)


def test_clip_nonfinite_and_value():
    p = param([1.0, 2.0], [np.inf, 1.0])
    with pytest.raises(RuntimeError, match="total norm of the gradients is inf"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    q = param([0.0, 0.0, 0.0], [-5.0, 0.5, 3.0])
    clip_grad_value_([q], 1.0)
    np.testing.assert_array_equal(q.grad.numpy(), [-1.0, 0.5, 1.0])


def two_leaves_fed_by_one_add(scale=1.0):
    """a, b of shape (3,) with (a + b).sum() * scale differentiated: both gradients are
    `scale` everywhere, and `add` hands both parents the same upstream array."""
    a, b = nn.Parameter(np.zeros(3, np.float32)), nn.Parameter(np.zeros(3, np.float32))
    ((a + b).sum() * scale).backward()
    return a, b


def test_clipping_two_leaves_fed_by_one_add_acts_once_on_each():
    a, b = two_leaves_fed_by_one_add()
    norm = clip_grad_norm_([a, b], 0.1).item()
    assert norm == pytest.approx(math.sqrt(6))
    expected = 0.1 / (math.sqrt(6) + 1e-6)  # 0.0408…, not 0.0408² · √6 as when a.grad is b.grad
    for p in (a, b):
        np.testing.assert_allclose(p.grad.numpy(), np.full(3, expected), rtol=1e-6)

    a, b = two_leaves_fed_by_one_add(scale=2.0)
    clip_grad_value_([a], 0.5)
    np.testing.assert_array_equal(a.grad.numpy(), np.full(3, 0.5))
    np.testing.assert_array_equal(b.grad.numpy(), np.full(3, 2.0))  # untouched: not in the list


def test_grad_scaler_unscales_two_leaves_fed_by_one_add_once_each():
    from minillm.amp import GradScaler
    a, b = nn.Parameter(np.zeros(3, np.float32)), nn.Parameter(np.zeros(3, np.float32))
    scaler = GradScaler(init_scale=1024.0)
    scaler.scale((a + b).sum()).backward()
    scaler.unscale_(optim.SGD([a, b], lr=0.1))
    for p in (a, b):
        np.testing.assert_array_equal(p.grad.numpy(), np.ones(3))  # 1024 / 1024, not / 1024²
