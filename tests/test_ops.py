"""Every op in the registry: forward against NumPy in float64, and backward against
central differences (gradcheck) on hypothesis-drawn shapes and values."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import minillm
from minillm import ops
from strategies import (away_from_zero, broadcastable_pairs, distinct, matmul_shapes, positive,
                        shapes, sides, values)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _erf(x):
    return np.vectorize(math.erf)(x)


def _binary(fn, ref, right=values):
    @st.composite
    def case(draw):
        sa, sb = draw(broadcastable_pairs())
        return fn, ref, [draw(values(sa)), draw(right(sb))]
    return case()


def _unary(fn, ref, domain=values, min_dims=0):
    @st.composite
    def case(draw):
        return fn, ref, [draw(domain(draw(shapes(min_dims))))]
    return case()


@st.composite
def _reduction(draw, fn, ref, domain=values):
    shape = draw(shapes(1))
    dim = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    keepdim = draw(st.booleans())
    return (lambda x: fn(x, dim, keepdim)), (lambda x: ref(x, dim, keepdim)), [draw(domain(shape))]


@st.composite
def _var_case(draw):
    shape = draw(shapes(1).filter(lambda s: max(s) > 1))
    dim = int(np.argmax(shape))
    keepdim = draw(st.booleans())
    return (lambda x: x.var(dim, keepdim)), (lambda x: x.var(axis=dim, ddof=1, keepdims=keepdim)), \
        [draw(values(shape))]


@st.composite
def _matmul_case(draw):
    sa, sb = draw(matmul_shapes())
    return (lambda a, b: a @ b), np.matmul, [draw(values(sa)), draw(values(sb))]


@st.composite
def _linear_case(draw):
    lead = draw(st.lists(st.sampled_from([1, 2, 3, 5]), max_size=2))
    k, n = draw(st.sampled_from([1, 2, 7])), draw(st.sampled_from([1, 3, 8]))
    inputs = [draw(values(tuple(lead) + (k,))), draw(values((n, k)))]
    if draw(st.booleans()):
        inputs.append(draw(values((n,))))
    return (lambda *t: ops.linear(*t)), (lambda x, w, b=0.0: x @ w.T + b), inputs


@st.composite
def _reshape_case(draw):
    shape = draw(shapes(1))
    target = (-1,) + shape[:1] if draw(st.booleans()) else (int(np.prod(shape)),)
    return (lambda x: x.reshape(target)), (lambda x: x.reshape(target)), [draw(values(shape))]


@st.composite
def _permute_case(draw):
    shape = draw(shapes(1))
    dims = tuple(draw(st.permutations(list(range(len(shape))))))
    return (lambda x: x.permute(dims)), (lambda x: x.transpose(dims)), [draw(values(shape))]


@st.composite
def _getitem_case(draw):
    shape = draw(shapes(2, 3))
    kind = draw(st.sampled_from(["slice", "gather", "mixed"]))
    if kind == "slice":
        index = (slice(draw(st.integers(0, shape[0] - 1)), None), slice(None, None, -1))
    elif kind == "gather":  # repeated rows: the backward must add, not overwrite
        index = np.asarray(draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    else:
        rows = np.asarray(draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=4)))
        cols = np.asarray(draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(rows), max_size=len(rows))))
        index = (rows, cols)
    return (lambda x: x[index]), (lambda x: x[index]), [draw(values(shape))]


@st.composite
def _cat_case(draw):
    shape = draw(shapes(1))
    axis = draw(st.integers(0, len(shape) - 1))
    count = draw(st.integers(1, 3))
    arrays = []
    for _ in range(count):
        s = list(shape)
        s[axis] = draw(sides)
        arrays.append(draw(values(tuple(s))))
    return (lambda *xs: minillm.cat(xs, dim=axis)), (lambda *xs: np.concatenate(xs, axis=axis)), arrays


@st.composite
def _softmax_case(draw, fn, ref):
    shape = draw(shapes(1))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return (lambda x: fn(x, dim)), (lambda x: ref(x, dim)), [draw(values(shape, -5, 5))]


@st.composite
def _where_case(draw):
    sa, sb = draw(broadcastable_pairs())
    cond = draw(st.lists(st.booleans(), min_size=int(np.prod(sa, dtype=int)),
                         max_size=int(np.prod(sa, dtype=int)))).copy()
    cond = np.asarray(cond, bool).reshape(sa)
    return (lambda a, b: minillm.where(cond, a, b)), (lambda a, b: np.where(cond, a, b)), \
        [draw(values(sa)), draw(values(sb))]


@st.composite
def _clip_case(draw):
    shape = draw(shapes())
    x = draw(distinct(shape, gap=0.1))
    lo, hi = -0.42, 0.37
    # not differentiable at lo and hi: a value there (the grid's offset is drawn, and a shrunk
    # draw once put a value exactly on hi) would have finite differences straddle the kink
    assume(np.all(np.abs(x - lo) > 1e-3) and np.all(np.abs(x - hi) > 1e-3))
    return (lambda x: x.clip(lo, hi)), (lambda x: np.clip(x, lo, hi)), [x]


@st.composite
def _dropout_case(draw):
    shape = draw(shapes(1))
    p = draw(st.sampled_from([0.1, 0.5]))

    def fn(x):
        minillm.manual_seed(7)  # the same mask on every finite-difference call
        return ops.dropout(x, p)

    def ref(x):
        minillm.manual_seed(7)
        keep = minillm.rng.generator().random(x.shape) >= p
        return x * keep / (1 - p)

    return fn, ref, [draw(values(shape))]


@st.composite
def _layer_norm_case(draw):
    lead = tuple(draw(st.lists(sides, min_size=1, max_size=3)))  # (N,), (B, T), (B, T, H): rows folded inside
    width = draw(sides.filter(lambda d: d > 1))
    x = draw(values(lead + (width,)))

    def ref(x, w, b):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b

    return (lambda x, w, b: ops.layer_norm_rows(x, w, b, 1e-5)), ref, \
        [x, draw(values((width,))), draw(values((width,)))]


@st.composite
def _attention_case(draw):
    n, d = draw(sides), draw(sides)
    tq = draw(sides)
    causal = draw(st.booleans())
    tk = draw(sides.filter(lambda t: t >= tq)) if causal else draw(sides)
    scale = 1 / math.sqrt(d)

    def ref(q, k, v):
        s = q @ k.swapaxes(-1, -2) * scale
        if causal:
            s = np.where(np.arange(tk)[None] <= np.arange(tq)[:, None] + tk - tq, s, -np.inf)
        return _softmax(s, -1) @ v

    return (lambda q, k, v: ops.attention(q, k, v, causal, scale)), ref, \
        [draw(values((n, tq, d))), draw(values((n, tk, d))), draw(values((n, tk, d)))]


@st.composite
def _attention_qkv_case(draw):
    """nanoGPT's (B, T, 3C); or Llama's: grouped key/value heads, q and k turned by RoPE first."""
    b, t, d = draw(sides), draw(sides), draw(sides)
    kv_heads = draw(st.sampled_from([1, 2, 3]))
    llama = draw(st.booleans())
    heads = kv_heads * (draw(st.sampled_from([1, 2])) if llama else 1)
    d += d % 2 if llama else 0  # RoPE turns pairs
    causal = draw(st.booleans())
    angles = draw(values((t, d // 2))) if llama else None
    c, c_kv = heads * d, kv_heads * d

    def turned(x, n):  # (B, T, n·d) heads turned by RoPE: (x₁, x₂) → (x₁c − x₂s, x₂c + x₁s)
        h = x.reshape(b, t, n, d)
        x1, x2 = h[..., :d // 2], h[..., d // 2:]
        cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(b, t, n * d)

    def ref(qkv):
        q, k, v = qkv[..., :c], qkv[..., c:c + c_kv], qkv[..., c + c_kv:]
        if llama:
            q, k = turned(q, heads), turned(k, kv_heads)
        q = q.reshape(b, t, heads, d).swapaxes(1, 2)
        k, v = (np.repeat(x.reshape(b, t, kv_heads, d).swapaxes(1, 2), heads // kv_heads, axis=1) for x in (k, v))
        s = q @ k.swapaxes(-1, -2) / math.sqrt(d)
        if causal:
            s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        return (_softmax(s, -1) @ v).swapaxes(1, 2).reshape(b, t, c)

    options = dict(kv_heads=kv_heads, rotary=(np.cos(angles), np.sin(angles))) if llama else {}
    return (lambda qkv: ops.attention_qkv(qkv, heads, causal, 1 / math.sqrt(d), **options)), ref, \
        [draw(values((b, t, c + 2 * c_kv)))]


@st.composite
def _row_blocks_case(draw):
    """Blocks drawn apart (the copy) or as views of one array (the view): the same function."""
    width, rows = draw(sides), draw(st.lists(sides, min_size=1, max_size=3))
    joined = draw(values((sum(rows), width)))
    edges = np.cumsum([0] + rows)
    blocks = [joined[lo:hi] if draw(st.booleans()) else joined[lo:hi].copy() for lo, hi in zip(edges[:-1], edges[1:])]
    return (lambda *xs: ops.row_blocks(xs)), (lambda *xs: np.concatenate(xs, axis=0)), blocks


@st.composite
def _attention_heads_case(draw):
    b, t, d, causal = draw(sides), draw(sides), draw(sides), draw(st.booleans())
    kv_heads, groups = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2, 3]))
    heads = kv_heads * groups

    def ref(q, k, v):
        qh = q.reshape(b, t, heads, d).swapaxes(1, 2)
        kh, vh = (np.repeat(x.reshape(b, t, kv_heads, d).swapaxes(1, 2), groups, axis=1) for x in (k, v))
        s = qh @ kh.swapaxes(-1, -2) / math.sqrt(d)
        if causal:
            s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        return (_softmax(s, -1) @ vh).swapaxes(1, 2).reshape(b, t, heads * d)

    return (lambda q, k, v: ops.attention_heads(q, k, v, heads, kv_heads, causal, 1 / math.sqrt(d))), ref, \
        [draw(values((b, t, heads * d))), draw(values((b, t, kv_heads * d))), draw(values((b, t, kv_heads * d)))]


@st.composite
def _bce_logits_case(draw):
    shape = draw(shapes())
    x = draw(values(shape, -6, 6))
    y = draw(values(shape, 0, 1))
    return ops.bce_with_logits, (lambda x, y: np.logaddexp(0, x) - x * y), [x, y]


@st.composite
def _cross_entropy_case(draw):
    rows, classes = draw(sides), draw(sides)
    target = np.asarray(draw(st.lists(st.sampled_from(list(range(classes)) + [-100]),
                                      min_size=rows, max_size=rows)))

    def ref(z):
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        return np.where(target == -100, 0, lse - z[np.arange(rows), np.maximum(target, 0)])

    return (lambda z: ops.cross_entropy_rows(z, target, -100)), ref, [draw(values((rows, classes), -6, 6))]


@st.composite
def _rms_norm_case(draw):
    lead = tuple(draw(st.lists(sides, min_size=1, max_size=3)))
    width = draw(sides)

    def ref(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w

    return (lambda x, w: ops.rms_norm_rows(x, w, 1e-6)), ref, [draw(values(lead + (width,))), draw(values((width,)))]


@st.composite
def _rope_case(draw):
    shape = tuple(draw(st.lists(sides, min_size=0, max_size=2))) + (draw(sides), 2 * draw(sides))
    half = shape[-1] // 2
    angles = draw(values((shape[-2], half), -4, 4))
    cos, sin = np.cos(angles), np.sin(angles)

    def ref(x):  # x·cos + rotate_half(x)·sin with the tables written twice (Hugging Face's layout)
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * np.concatenate([cos, cos], -1) + rotated * np.concatenate([sin, sin], -1)

    return (lambda x: ops.rope(x, cos, sin)), ref, [draw(values(shape))]


@st.composite
def _swiglu_case(draw):
    shape = draw(shapes(1))
    if draw(st.booleans()):  # gate | up side by side in one input
        shape = shape[:-1] + (2 * shape[-1],)
        half = shape[-1] // 2
        return ops.swiglu, (lambda h: h[..., :half] / (1 + np.exp(-h[..., :half])) * h[..., half:]), \
            [draw(values(shape))]
    return ops.swiglu, (lambda a, b: a / (1 + np.exp(-a)) * b), [draw(values(shape)), draw(values(shape))]


def _reduce_ref(name):
    def ref(x, dim, keepdim):
        return getattr(np, name)(x, axis=dim, keepdims=keepdim)
    return ref


CASES = {
    "add": _binary(lambda a, b: a + b, np.add),
    "sub": _binary(lambda a, b: a - b, np.subtract),
    "mul": _binary(lambda a, b: a * b, np.multiply),
    "div": _binary(lambda a, b: a / b, np.divide, right=away_from_zero),
    "neg": _unary(lambda a: -a, np.negative),
    "power": st.one_of(
        _unary(lambda a: a ** 3, lambda a: a ** 3),
        _unary(lambda a: a ** -0.5, lambda a: a ** -0.5, domain=positive),
        _binary(lambda a, b: a ** b, np.power, right=values).map(
            lambda c: (c[0], c[1], [np.abs(c[2][0]) + 0.5, c[2][1]]))),
    "matmul": _matmul_case(),
    "linear": _linear_case(),
    "sum_over": _reduction(ops.sum_over, _reduce_ref("sum")),
    "mean": _reduction(ops.mean, _reduce_ref("mean")),
    "amax": _reduction(ops.amax, _reduce_ref("max"), domain=distinct),
    "amin": _reduction(ops.amin, _reduce_ref("min"), domain=distinct),
    "var": _var_case(),
    "reshape": _reshape_case(),
    "permute": _permute_case(),
    "getitem": _getitem_case(),
    "cat": _cat_case(),
    "row_blocks": _row_blocks_case(),
    "cast": _unary(lambda a: a.to(np.float64) * 2, lambda a: a * 2),
    "exp": _unary(ops.exp, np.exp),
    "log": _unary(ops.log, np.log, domain=positive),
    "sqrt": _unary(ops.sqrt, np.sqrt, domain=positive),
    "tanh": _unary(ops.tanh, np.tanh),
    "absolute": _unary(ops.absolute, np.abs, domain=away_from_zero),
    "relu": _unary(ops.relu, lambda x: np.maximum(x, 0), domain=away_from_zero),
    "sigmoid": _unary(ops.sigmoid, lambda x: 1 / (1 + np.exp(-x)), domain=lambda s: values(s, -8, 8)),
    "gelu_exact": _unary(ops.gelu_exact, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "gelu_tanh": _unary(ops.gelu_tanh,
                        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "clip": _clip_case(),
    "softmax": _softmax_case(ops.softmax, _softmax),
    "log_softmax": _softmax_case(ops.log_softmax, lambda x, d: np.log(_softmax(x, d))),
    "where": _where_case(),
    "dropout": _dropout_case(),
    "layer_norm_rows": _layer_norm_case(),
    "attention": _attention_case(),
    "attention_qkv": _attention_qkv_case(),
    "attention_heads": _attention_heads_case(),
    "bce_with_logits": _bce_logits_case(),
    "cross_entropy_rows": _cross_entropy_case(),
    "rms_norm_rows": _rms_norm_case(),
    "rope": _rope_case(),
    "swiglu": _swiglu_case(),
}


def test_every_registered_op_has_a_property_test():
    missing = sorted(set(ops.OPS) - set(CASES))
    assert not missing, f"ops without a gradcheck property test: {missing}"
    stale = sorted(set(CASES) - set(ops.OPS))
    assert not stale, f"test cases for ops that no longer exist: {stale}"


def test_an_op_is_one_name_key_function_and_attribute():
    """OPS["x"] is the function named x, reached as ops.x, and the node it records is "x"."""
    for name, fn in ops.OPS.items():
        assert fn.__name__ == name and getattr(ops, name) is fn, name
    x = minillm.tensor(np.array([[0.5, -1.5, 2.0]]), requires_grad=True)
    assert ops.sum_over(x)._op == "sum_over" and ops.amax(x)._op == "amax" and (x ** 2)._op == "power"
    assert ops.gelu(x)._op == "gelu_exact" and ops.gelu(x, "tanh")._op == "gelu_tanh"


def test_op_registers_under_the_function_name_only():
    with pytest.raises(TypeError, match="write @op without a name"):
        ops.op("rms_norm")
    with pytest.raises(ValueError, match="'add' is registered twice"):
        ops.op(ops.add)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_op_forward_and_gradient(name, data):
    fn, ref, arrays = data.draw(CASES[name])
    inputs = [minillm.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    np.testing.assert_allclose(out.numpy(), ref(*arrays), rtol=1e-10, atol=1e-12,
                               err_msg=f"{name} forward differs from NumPy")
    assert out.dtype == np.float64, f"{name} did not stay float64 end to end"
    assert minillm.gradcheck(fn, *inputs, verbose=False)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_leaf_gradients_own_their_memory(name, data):
    """Ops like add, reshape, permute and cat hand the upstream gradient (or views of it) to
    their parents unchanged; a leaf must still get an array of its own, so that in-place work
    on one `.grad` (clipping, unscaling) reaches no other gradient and not the seed."""
    fn, _, arrays = data.draw(CASES[name])
    inputs = [minillm.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    seed = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(minillm.tensor(seed))
    grads = [x.grad.data for x in inputs if x.grad is not None]
    for i, g in enumerate(grads):
        assert not np.shares_memory(g, seed), f"{name}: a leaf's gradient is the seed array"
        for other in grads[i + 1:]:
            assert not np.shares_memory(g, other), f"{name}: two leaves' gradients share memory"


@given(rows=st.integers(1, 9), index=st.lists(st.integers(-9, 8), min_size=1, max_size=40),
       width=st.sampled_from([(), (1,), (5,)]))
def test_scatter_add_matches_numpy_add_at(rows, index, width):
    """The embedding backward's sorted scatter-add against np.add.at: repeated and negative
    indices (-1 and rows-1 name the same row) must add up, never overwrite."""
    index = np.asarray([i % rows - (rows if i < 0 else 0) for i in index])
    values = np.random.default_rng(len(index)).standard_normal(index.shape + width)
    expected = np.zeros((rows,) + width)
    np.add.at(expected, index, values)
    got = minillm.backends.scatter_add(np.zeros((rows,) + width), index, values)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
