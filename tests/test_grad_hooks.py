"""register_post_accumulate_grad_hook: a leaf's hook fires once per backward, after every
contribution to its gradient has been added, and the leaves finish in reverse order of use
(what lets data parallel start reducing early layers' neighbours while backward runs)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import nn


@settings(max_examples=25, deadline=None)
@given(uses=st.integers(1, 4), rows=st.integers(1, 7))
def test_the_hook_sees_the_whole_gradient_once(uses, rows):
    layer = nn.Linear(3, 2)
    seen = []
    layer.weight.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    x = minillm.Tensor(np.random.default_rng(rows).standard_normal((rows, 3)).astype(np.float32))
    total = layer(x).sum()
    for _ in range(uses - 1):
        total = total + layer(x).sum()
    total.backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], uses * np.tile(x.numpy().sum(0), (2, 1)), rtol=1e-5)
    np.testing.assert_array_equal(seen[0], layer.weight.grad.numpy())


def test_leaves_finish_in_reverse_order_of_use_and_a_removed_hook_is_silent():
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    order = []
    handles = [p.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
               for name, p in (("first", first.weight), ("second", second.weight))]
    x = minillm.Tensor(np.ones((2, 4), np.float32))
    second(first(x)).sum().backward()
    assert order == ["second", "first"]
    handles[1].remove()
    order.clear()
    second(first(x)).sum().backward()
    assert order == ["first"]


def test_only_a_leaf_that_requires_grad_takes_the_hook():
    w = minillm.Tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="only a leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="only a leaf"):
        minillm.Tensor(np.ones(3, np.float32)).register_post_accumulate_grad_hook(print)
