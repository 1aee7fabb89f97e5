"""One suite for every backend: each primitive against a float64 NumPy reference on drawn
shapes (1, primes, sizes that are not multiples of any tile or block), forward and
backward; a float64 gradcheck of a transformer block; a few training steps that must give
the same losses as the numpy backend. Backends that cannot run here are reported, not
silently skipped: see test_status_explains_every_unavailable_backend."""
import math

import numpy as np
import pytest
from hypothesis import assume, example, given, strategies as st

import minillm
from minillm import backends, functional as F, nn
from minillm.backends.reference import Backend, backend as reference

from strategies import broadcast_matmul_shapes

AVAILABLE = backends.available()
TOL = 1e-5   # ‖out − ref‖ / ‖ref‖ for float32 against the float64 reference ...
ATOL = 1e-5  # ... plus this RMS absolute error (inputs are N(0, 1), so it is 1e-5 of their
             # scale), for outputs that are zero in exact arithmetic — dq when every query
             # sees one key — where only float32 cancellation of O(√D) terms is left

awkward = st.sampled_from([1, 2, 3, 5, 7, 13, 17, 31, 64, 67])


def close(out, ref):
    out = backends.to_numpy(out).astype(np.float64)
    error = np.linalg.norm(out - ref)
    return error <= TOL * np.linalg.norm(ref) + ATOL * np.sqrt(ref.size)


def on(backend, *arrays):
    """float32 copies of ``arrays`` in the backend's array module."""
    return [backend.xp.asarray(a.astype(np.float32)) for a in arrays]


def draw_array(data, shape, scale=1.0, offset=0.0):
    """float64 values that float32 represents exactly, so the reference and the backend
    see the same inputs and only the backend's arithmetic is measured."""
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    values = np.random.default_rng(seed).standard_normal(shape) * scale + offset
    return values.astype(np.float32).astype(np.float64)


def test_status_explains_every_unavailable_backend():
    report = backends.status()
    assert report["numpy"] == "ok" and report["numba"] == "ok"
    for name, state in report.items():
        assert state == "ok" or len(state) > 10, f"{name}: status gives no reason ({state!r})"
        print(f"{name}: {state}")


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_matmul(name, data):
    backend = backends.get(name)
    m, k, n = data.draw(awkward), data.draw(awkward), data.draw(awkward)
    trans_a, trans_b = data.draw(st.booleans()), data.draw(st.booleans())
    batch_a, batch_b = data.draw(st.sampled_from([((), ()), ((3,), (3,)), ((2, 1), (5,)), ((), (4,))]))
    a = draw_array(data, batch_a + ((k, m) if trans_a else (m, k)))
    b = draw_array(data, batch_b + ((n, k) if trans_b else (k, n)))
    ref = reference.matmul(a, b, trans_a, trans_b)
    out = backend.matmul(*on(backend, a, b), trans_a=trans_a, trans_b=trans_b)
    assert out.shape == ref.shape
    assert close(out, ref)


def summed_to(g, shape):
    """The float64 reference's unbroadcast: ``g`` summed over the axes broadcasting added
    or stretched, back to ``shape``."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    return g.sum(axis=tuple(i for i, size in enumerate(shape) if size == 1), keepdims=True)


@pytest.mark.parametrize("name", AVAILABLE)
@example(shapes=((3, 1, 17, 33), (4, 33, 9)), seed=0)  # the report: read-only views reached Numba's GEMM
@example(shapes=((1, 5, 7), (2, 3, 7, 4)), seed=1)
@example(shapes=((7,), (2, 7, 3)), seed=2)
@example(shapes=((2, 3, 17, 33), (2, 3, 33, 9)), seed=3)
@example(shapes=((2, 3, 5), (5,)), seed=4)  # a batch times a vector: ops.matmul's folded (ΣM, K) product
@given(shapes=broadcast_matmul_shapes(), seed=st.integers(0, 2 ** 32 - 1))
def test_broadcasting_batched_matmul_forward_and_gradients(name, shapes, seed):
    """``a @ b`` through autograd with batch axes that broadcast on either side (and 1-D
    operands), forward and both gradients, in float32 against float64 NumPy within TOL
    relative + ATOL RMS (see close): the backward hands the kernels the upstream gradient,
    and the broadcast operands, as read-only views."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(shape).astype(np.float32).astype(np.float64) for shape in shapes)
    a2, b2 = a[None] if a.ndim == 1 else a, b[:, None] if b.ndim == 1 else b
    full = np.matmul(a2, b2)  # (..., M, N), before the vectors' axes are dropped
    ref = np.matmul(a, b)
    g = rng.standard_normal(ref.shape).astype(np.float32).astype(np.float64)
    g2 = g.reshape(full.shape)
    ref_ga = summed_to(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
    ref_gb = summed_to(a2.swapaxes(-1, -2) @ g2, b2.shape).reshape(b.shape)
    with minillm.use_backend(name):
        ta, tb = (minillm.tensor(x.astype(np.float32), requires_grad=True) for x in (a, b))
        out = ta @ tb
        out.backward(g.astype(np.float32))
    assert out.shape == ref.shape and close(out.data, ref)
    for label, t, expected in (("grad a", ta, ref_ga), ("grad b", tb, ref_gb)):
        assert t.grad.shape == expected.shape and close(t.grad.data, expected), label


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_linear_forward_adds_the_bias_once(name, data):
    """x wᵀ + b with the bias added by the GEMM's tile stores (C): rows ≤ 4 take the few-rows
    path, K = 600 spans two or three k-blocks (KC 512 or 256; the bias must be added in the
    first only), and widths that are not multiples of the 16-column tile end in a partial tile."""
    backend = backends.get(name)
    m, n = data.draw(awkward), data.draw(awkward)
    k = data.draw(st.one_of(awkward, st.just(600)))
    x, w, b = draw_array(data, (m, k)), draw_array(data, (n, k)), draw_array(data, (n,))
    assert close(backend.linear_forward(*on(backend, x, w, b)), x @ w.T + b)
    assert close(backend.linear_forward(*on(backend, x, w), None), x @ w.T)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_linear_backward_gives_the_three_gradients(name, data):
    """g w, gᵀ x and Σ_rows g in one call, each only when asked for, against float64; 600
    rows make the weight gradient's inner dimension span two k-blocks (three with AVX2's KC)."""
    backend = backends.get(name)
    rows = data.draw(st.one_of(awkward, st.just(600)))
    n_in, n_out = data.draw(awkward), data.draw(awkward)
    g, x, w = draw_array(data, (rows, n_out)), draw_array(data, (rows, n_in)), draw_array(data, (n_out, n_in))
    need = data.draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    got = backend.linear_backward(*on(backend, g, x, w), *need)
    for label, wanted, out, ref in zip(("gx", "gw", "gb"), need, got, (g @ w, g.T @ x, g.sum(axis=0))):
        if wanted:
            assert out.shape == ref.shape and close(out, ref), label
        else:
            assert out is None, label


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_scatter_add_rows_adds_repeated_indices(name, data):
    """An embedding's backward: rows of values added into a table at drawn indices, many of
    them repeated (3 table rows for up to 67 tokens), against np.add.at in float64."""
    backend = backends.get(name)
    rows, width, count = data.draw(st.sampled_from([1, 3, 66])), data.draw(awkward), data.draw(awkward)
    index = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1))).integers(0, rows, count)
    table, values = draw_array(data, (rows, width)), draw_array(data, (count, width))
    expected = table.copy()
    np.add.at(expected, index, values)
    target, = on(backend, table)
    got = backend.scatter_add_rows(target, backend.xp.asarray(index), *on(backend, values))
    assert close(got, expected)
    assert close(target, expected)  # in place


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_attention_forward_and_backward(name, data):
    backend = backends.get(name)
    n, d = data.draw(st.sampled_from([1, 3, 4])), data.draw(st.sampled_from([1, 8, 13, 16, 32, 64]))
    causal = data.draw(st.booleans())
    lengths = st.one_of(awkward, st.just(300))  # 300: several query tiles and key blocks of every kernel
    t_query = data.draw(lengths)
    t_key = t_query + data.draw(st.sampled_from([0, 0, 1, 6])) if causal else data.draw(lengths)
    q, k, v, dout = (draw_array(data, (n, t, d)) for t in (t_query, t_key, t_key, t_query))
    scale = 1 / math.sqrt(d)
    ref_out, ref_lse = reference.attention_forward(q, k, v, causal, scale)
    ref_grads = reference.attention_backward(q, k, v, ref_out, ref_lse, dout, causal, scale)

    args = on(backend, q, k, v)
    out, lse = backend.attention_forward(*args, causal, scale)
    assert close(out, ref_out)
    assert close(lse, ref_lse)
    grads = backend.attention_backward(*args, out, lse, *on(backend, dout), causal, scale)
    for label, g, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert g.shape == ref.shape, label
        assert close(g, ref), label


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_attention_between_projections_with_grouped_heads(name, data):
    """Attention read from (B, T, heads·D) and (B, T, kv_heads·D) projections where they lie,
    written as (B, T, heads·D): against the float64 reference on the heads cut out by hand,
    kv_heads dividing heads (1 = multi-query, heads = ordinary)."""
    backend = backends.get(name)
    b, kv_heads, groups = (data.draw(st.sampled_from(options)) for options in ([1, 2, 3], [1, 2, 3], [1, 2, 4]))
    heads, d = kv_heads * groups, data.draw(st.sampled_from([1, 8, 13, 32, 64]))
    t, causal = data.draw(awkward), data.draw(st.booleans())
    q, dy = draw_array(data, (b, t, heads * d)), draw_array(data, (b, t, heads * d))
    k, v = draw_array(data, (b, t, kv_heads * d)), draw_array(data, (b, t, kv_heads * d))

    def heads_of(x, n):  # (B, T, n·D) -> (B·n, T, D)
        return x.reshape(b, t, n, d).transpose(0, 2, 1, 3).reshape(b * n, t, d)

    def merged(x, n):    # (B·n, T, D) -> (B, T, n·D)
        return x.reshape(b, n, t, d).transpose(0, 2, 1, 3).reshape(b, t, n * d)

    scale = 1 / math.sqrt(d)
    split = (heads_of(q, heads), heads_of(k, kv_heads), heads_of(v, kv_heads))
    ref_out, ref_lse = reference.attention_forward(*split, causal, scale)
    ref_grads = reference.attention_backward(*split, ref_out, ref_lse, heads_of(dy, heads), causal, scale)

    qb, kb, vb, dyb = on(backend, q, k, v, dy)
    y, lse = backend.attention_heads_forward(qb, kb, vb, heads, kv_heads, causal, scale)
    assert y.shape == (b, t, heads * d)
    assert close(y, merged(ref_out, heads))
    assert close(lse, ref_lse)
    grads = backend.attention_heads_backward(qb, kb, vb, y, lse, dyb, heads, kv_heads, causal, scale)
    for label, got, ref, n in zip(("dq", "dk", "dv"), grads, ref_grads, (heads, kv_heads, kv_heads)):
        assert close(got, merged(ref, n)), label


def turned_by_hand(x, d, cos, sin):
    """RoPE in float64: x (B, T, n·D), pair (i, i + D/2) of each head at position t turned by
    the angle whose cosine and sine are cos[t, i], sin[t, i]."""
    b, t = x.shape[:2]
    pairs = x.reshape(b, t, -1, 2, d // 2)
    c_, s_ = cos[None, :, None].astype(np.float64), sin[None, :, None].astype(np.float64)
    x1, x2 = pairs[..., 0, :], pairs[..., 1, :]
    return np.stack([x1 * c_ - x2 * s_, x2 * c_ + x1 * s_], axis=-2).reshape(x.shape)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_turning_the_q_and_k_heads_of_a_projection(name, data):
    """turn_qk: a copy of a (B, T, (H + 2·H_kv)·D) projection with q's and k's heads turned by
    RoPE and v's left alone, the input untouched; turn_qk_back turns a gradient by −θ in place."""
    backend = backends.get(name)
    b, t, kv_heads = data.draw(st.sampled_from([1, 2, 3])), data.draw(awkward), data.draw(st.sampled_from([1, 2]))
    heads, d = kv_heads * data.draw(st.sampled_from([1, 2, 3])), data.draw(st.sampled_from([2, 8, 14, 64]))
    qkv = draw_array(data, (b, t, (heads + 2 * kv_heads) * d))
    angles = np.arange(t)[:, None] * draw_array(data, (1, d // 2), scale=2.0)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    turned_cols = (heads + kv_heads) * d
    ref = qkv.copy()
    ref[..., :turned_cols] = turned_by_hand(qkv[..., :turned_cols], d, cos, sin)
    ref_back = qkv.copy()
    ref_back[..., :turned_cols] = turned_by_hand(qkv[..., :turned_cols], d, cos, -sin)

    qkv_b, cos_b, sin_b = on(backend, qkv, cos, sin)
    got = backend.turn_qk(qkv_b, heads, kv_heads, (cos_b, sin_b))
    assert close(got, ref)
    assert close(qkv_b, qkv)  # the input is left as it was
    grad = backend.xp.array(qkv_b)
    assert backend.turn_qk_back(grad, heads, kv_heads, (cos_b, sin_b)) is grad
    assert close(grad, ref_back)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_attention_from_one_qkv_projection(name, data):
    """Self-attention read straight from a (B, T, (H + 2·H_kv)·D) projection and written as
    (B, T, H·D), against the float64 attention of the heads cut out by hand (each key/value
    head repeated for its group of query heads); nanoGPT's (B, T, 3C) when H_kv = H; widths
    either side of the C kernel's in-place limit for A (3C = 387 and 1,536 floats per row).
    With RoPE's tables (Llama; D even), q and k are turned by hand first and the gradients of
    q and k turned back, as the C kernel (v4) does inside."""
    backend = backends.get(name)
    b, kv_heads = data.draw(st.sampled_from([1, 2, 3])), data.draw(st.sampled_from([1, 2, 3]))
    heads = kv_heads * data.draw(st.sampled_from([1, 1, 2, 3]))
    d = data.draw(st.sampled_from([1, 8, 13, 32, 43, 128]))
    t = data.draw(st.one_of(awkward, st.just(300)))
    causal = data.draw(st.booleans())
    c, c_kv = heads * d, kv_heads * d
    qkv, dy = draw_array(data, (b, t, c + 2 * c_kv)), draw_array(data, (b, t, c))

    def heads_of(x, n):  # (B, T, n·D) -> (B·n, T, D)
        return x.reshape(b, t, n, d).transpose(0, 2, 1, 3).reshape(b * n, t, d)

    def merged(x, n):    # (B·n, T, D) -> (B, T, n·D)
        return x.reshape(b, n, t, d).transpose(0, 2, 1, 3).reshape(b, t, n * d)

    def repeated(x):     # each key/value head once for every query head of its group
        return np.repeat(x.reshape(b, kv_heads, t, d), heads // kv_heads, axis=1).reshape(b * heads, t, d)

    def summed(x):       # the gradient of repeated: the group's copies added
        return x.reshape(b, kv_heads, heads // kv_heads, t, d).sum(axis=2).reshape(b * kv_heads, t, d)

    options = {} if kv_heads == heads and data.draw(st.booleans()) else {"kv_heads": kv_heads}
    turn = lambda x, sign: x  # noqa: E731
    if d % 2 == 0 and data.draw(st.booleans()):  # RoPE: pair (i, i + D/2) of position p turns by p·f_i
        angles = np.arange(t)[:, None] * draw_array(data, (1, d // 2), scale=2.0)
        cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

        def turn(x, sign):
            return turned_by_hand(x, d, cos, sign * sin)
        options["rotary"] = tuple(on(backend, cos, sin))

    q = heads_of(turn(qkv[..., :c], 1), heads)
    k, v = (repeated(heads_of(part, kv_heads)) for part in (turn(qkv[..., c:c + c_kv], 1), qkv[..., c + c_kv:]))
    scale = 1 / math.sqrt(d)
    ref_out, ref_lse = reference.attention_forward(q, k, v, causal, scale)
    ref_dq, ref_dk, ref_dv = reference.attention_backward(q, k, v, ref_out, ref_lse, heads_of(dy, heads), causal, scale)
    ref_dqkv = np.concatenate([turn(merged(ref_dq, heads), -1), turn(merged(summed(ref_dk), kv_heads), -1),
                               merged(summed(ref_dv), kv_heads)], axis=-1)

    qkv_b, dy_b = on(backend, qkv, dy)
    y, lse = backend.attention_qkv_forward(qkv_b, heads, causal, scale, **options)
    assert y.shape == (b, t, c)
    assert close(y, merged(ref_out, heads))
    assert close(lse, ref_lse)
    dqkv = backend.attention_qkv_backward(qkv_b, y, lse, dy_b, heads, causal, scale, **options)
    assert dqkv.shape == qkv.shape
    assert close(dqkv, ref_dqkv)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_layernorm_forward_and_backward(name, data):
    backend = backends.get(name)
    rows = data.draw(awkward)
    width = data.draw(st.one_of(awkward.filter(lambda w: w > 1), st.sampled_from([1031, 4099])))
    x = draw_array(data, (rows, width), scale=3.0, offset=data.draw(st.sampled_from([0.0, 5.0])))
    # a row with (almost) no spread has rstd → 1/√eps, which amplifies float32 rounding
    # a thousandfold in any implementation: that is conditioning, not a kernel bug
    assume(x.std(axis=1).min() > 0.3)
    w, b, dy = draw_array(data, (width,)), draw_array(data, (width,)), draw_array(data, (rows, width))
    ref_y, ref_mean, ref_rstd = reference.layernorm_forward(x, w, b, 1e-5)
    ref_grads = reference.layernorm_backward(dy, x, w, ref_mean, ref_rstd)

    xs, ws, bs, dys = on(backend, x, w, b, dy)
    y, mean, rstd = backend.layernorm_forward(xs, ws, bs, 1e-5)
    for label, got, ref in (("y", y, ref_y), ("mean", mean, ref_mean), ("rstd", rstd, ref_rstd)):
        assert close(got, ref), label
    grads = backend.layernorm_backward(dys, xs, ws, mean, rstd)
    for label, got, ref in zip(("dx", "dw", "db"), grads, ref_grads):
        assert close(got, ref), label


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_cross_entropy_forward_and_backward(name, data):
    backend = backends.get(name)
    rows, classes = data.draw(awkward), data.draw(st.sampled_from([1, 2, 7, 96, 257]))
    logits = draw_array(data, (rows, classes), scale=4.0)
    target = np.random.default_rng(rows).integers(0, classes, rows)
    target[::3] = -100  # ignored rows: no loss, no gradient
    dloss = draw_array(data, (rows,))
    ref_loss, ref_lse = reference.cross_entropy_forward(logits, target, -100)
    ref_grad = reference.cross_entropy_backward(logits, target, ref_lse, dloss, -100)

    xs, dls = on(backend, logits, dloss)
    ts = backend.xp.asarray(target)
    loss, lse = backend.cross_entropy_forward(xs, ts, -100)
    assert close(loss, ref_loss) and close(lse, ref_lse)
    assert close(backend.cross_entropy_backward(xs, ts, lse, dls, -100), ref_grad)


# ---- one entry per primitive: drawn inputs that the backend suite and the read-only suite share --
class Drawn:
    """What a DRAWN entry draws from: hypothesis here, fixed values in the read-only suite."""

    def __init__(self, data):
        self.data = data

    def size(self, options=(1, 2, 3, 5, 7, 13, 17, 31, 64, 67)):
        return self.data.draw(st.sampled_from(options))

    def array(self, shape, scale=1.0, offset=0.0):
        return draw_array(self.data, shape, scale, offset)


class Fixed(Drawn):
    """Draws the last (largest) option and seeded normal values: the read-only suite's inputs."""

    def __init__(self, rng):
        self.rng = rng

    def size(self, options=(13,)):
        return options[-1]

    def array(self, shape, scale=1.0, offset=0.0):
        return self.rng.standard_normal(shape) * scale + offset


def elementwise(d):
    return (d.size(), d.size())


def llama_rows(d):
    """(rows, width) for RMSNorm and SwiGLU: a head's width (64), primes, one past 1024."""
    return (d.size((1, 2, 3, 5, 7, 13, 31)), d.size((2, 6, 64, 130, 1031)))


def rope_args(d):
    """x (B, H, T, d) and its angle tables cos, sin (T, d/2)."""
    t, half = d.size((1, 7, 13)), d.size((1, 3, 32, 65))
    return d.array((d.size((1, 2)), d.size((1, 3)), t, 2 * half)), d.array((t, half)), d.array((t, half))


# DRAWN[primitive](d) -> the arguments of one call: float64 arrays (a backend gets them as
# float32, the reference as they are), and Python values. Every backend's answer is compared
# with the float64 reference (test_drawn_primitive) and with the arrays handed over read-only
# (test_read_only_inputs). A primitive with its own test below is named in BY_HAND instead.
DRAWN = {
    "gelu_forward": lambda d: (d.array(elementwise(d), scale=3.0),),
    "gelu_backward": lambda d: (d.array(shape := elementwise(d), scale=3.0), d.array(shape)),
    "relu_forward": lambda d: (d.array(elementwise(d)),),
    "relu_backward": lambda d: (d.array(shape := elementwise(d)), d.array(shape)),
    # bf16 autocast's Linear products: the reference rounds x, w (and g) to bf16 and multiplies in
    # float64; a backend rounds the same float32 values and sums in float32 (c: in the packing)
    "linear_forward_bf16": lambda d: (d.array((d.size(), (k := d.size()))), d.array(((n := d.size()), k)),
                                      d.array((n,))),
    "linear_backward_bf16": lambda d: (d.array(((rows := d.size()), (n := d.size()))), d.array((rows, (k := d.size()))),
                                       d.array((n, k))),
    # Llama's blocks (tests/test_llama_kernels.py: strided heads, the halves of one array, in place)
    "rmsnorm_forward": lambda d: (d.array(shape := llama_rows(d), scale=3.0), d.array(shape[1:]), 1e-5),
    "rmsnorm_backward": lambda d: (d.array(shape := llama_rows(d)), d.array(shape, scale=3.0), d.array(shape[1:]),
                                   d.array(shape[:1], scale=0.2, offset=1.0)),
    "rope_forward": rope_args,
    "swiglu_forward": lambda d: (d.array(shape := llama_rows(d), scale=4.0), d.array(shape)),
    "swiglu_backward": lambda d: (d.array(shape := llama_rows(d), scale=4.0), d.array(shape), d.array(shape)),
}
BY_HAND = {  # primitive -> the test that draws its inputs (in-place updates, several outputs, options)
    "matmul": "test_matmul", "linear_forward": "test_linear_forward_adds_the_bias_once",
    "linear_backward": "test_linear_backward_gives_the_three_gradients",
    "scatter_add_rows": "test_scatter_add_rows_adds_repeated_indices",
    "attention_forward": "test_attention_forward_and_backward", "attention_backward": "test_attention_forward_and_backward",
    "attention_heads_forward": "test_attention_between_projections_with_grouped_heads",
    "attention_heads_backward": "test_attention_between_projections_with_grouped_heads",
    "attention_qkv_forward": "test_attention_from_one_qkv_projection",
    "attention_qkv_backward": "test_attention_from_one_qkv_projection",
    "turn_qk": "test_turning_the_q_and_k_heads_of_a_projection",
    "turn_qk_back": "test_turning_the_q_and_k_heads_of_a_projection",
    "layernorm_forward": "test_layernorm_forward_and_backward", "layernorm_backward": "test_layernorm_forward_and_backward",
    "cross_entropy_forward": "test_cross_entropy_forward_and_backward",
    "cross_entropy_backward": "test_cross_entropy_forward_and_backward", "add": "test_add",
    "sum_of_squares_many": "test_sum_of_squares_and_scale_over_many_tensors",
    "scale_many": "test_sum_of_squares_and_scale_over_many_tensors",
    "matmul_int8": "test_read_only_inputs", "linear_int8": "test_linear_int8_against_the_dequantised_weights",
    "adam_update": "test_adam_update", "adam_update_many": "test_adam_update_many",
}


def test_every_primitive_has_a_test():
    """A primitive added to reference.Backend without an entry in DRAWN (or a test named in
    BY_HAND) fails here, not silently untested."""
    missing = [p for p in backends.PRIMITIVES if p not in DRAWN and p not in BY_HAND]
    assert not missing, f"no DRAWN entry for {missing}: add one (tests/test_backends.py)"
    assert not set(DRAWN) & set(BY_HAND), "a primitive is both drawn and tested by hand"
    assert all(callable(globals().get(test)) for test in BY_HAND.values())


def as_results(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("primitive", DRAWN)
@given(data=st.data())
def test_drawn_primitive(primitive, name, data):
    """Each DRAWN primitive on every backend, float32, against the float64 reference within
    TOL relative + ATOL RMS (see close), on awkward sizes (1, primes, not multiples of 16)."""
    backend = backends.get(name)
    args = DRAWN[primitive](Drawn(data))
    given_args = [on(backend, a)[0] if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args]
    got, ref = as_results(getattr(backend, primitive)(*given_args)), as_results(getattr(reference, primitive)(*args))
    for i, (out, expected) in enumerate(zip(got, ref)):
        assert out.shape == expected.shape and close(out, expected), f"{primitive} output {i}"


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), cols=st.sampled_from([1, 7, 67, 128, 4099]), transposed=st.booleans())
def test_add(name, data, cols, transposed):
    """The residual stream's add, on arrays small enough for NumPy and large enough for the
    C kernel's threads (67 × 4099 values), and on a transposed view (not contiguous)."""
    backend = backends.get(name)
    shape = (data.draw(awkward), cols)
    a, b = draw_array(data, shape), draw_array(data, shape[::-1] if transposed else shape)
    a_b, b_b = on(backend, a, b)
    if transposed:
        b, b_b = b.T, b_b.T
    assert close(backend.add(a_b, b_b), a + b)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), count=st.integers(1, 5), factor=st.floats(0.01, 2.0))
def test_sum_of_squares_and_scale_over_many_tensors(name, data, count, factor):
    """Gradient clipping's two passes over a model's gradients: tensors of awkward sizes
    (1 value up to 67 × 4099, more than the threads' ranges can split evenly)."""
    backend = backends.get(name)
    shapes = [(data.draw(awkward), data.draw(st.sampled_from([1, 7, 67, 4099]))) for _ in range(count)]
    arrays = [draw_array(data, shape) for shape in shapes]
    on_backend = on(backend, *arrays)
    expected = sum(float((a * a).sum()) for a in arrays)
    assert abs(backend.sum_of_squares_many(on_backend) - expected) <= 1e-5 * expected
    backend.scale_many(on_backend, factor)
    for got, a in zip(on_backend, arrays):
        assert close(got, a * np.float64(np.float32(factor)))


def implementing(primitive):
    """The available backends with a kernel of their own for ``primitive`` (the others
    answer with the reference, which this suite would only compare with itself)."""
    return [name for name in AVAILABLE if getattr(type(backends.get(name)), primitive) is not getattr(Backend, primitive)]


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), t_query=st.integers(1, 4), t_key=awkward, d=awkward, causal=st.booleans())
def test_attention_of_a_few_queries_against_a_cache_view(name, data, t_query, t_key, d, causal):
    """Generation with the KV cache: Tq ≤ 4 new queries against keys and values that are the
    first Tk positions of a larger preallocated buffer (a strided view, as KVCache hands
    them over), forward against float64."""
    assume(t_query <= t_key)
    backend = backends.get(name)
    n, spare = data.draw(st.sampled_from([1, 3, 8])), data.draw(st.integers(0, 40))
    q = draw_array(data, (n, t_query, d))
    k_buffer, v_buffer = draw_array(data, (n, t_key + spare, d)), draw_array(data, (n, t_key + spare, d))
    k, v = k_buffer[:, :t_key], v_buffer[:, :t_key]
    out, lse = reference.attention_forward(q, k, v, causal, 1 / math.sqrt(d))
    qs, ks, vs = on(backend, q, k_buffer, v_buffer)
    got_out, got_lse = backend.attention_forward(qs, ks[:, :t_key], vs[:, :t_key], causal, 1 / math.sqrt(d))
    assert close(got_out, out) and close(got_lse, lse)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), n_kv=st.sampled_from([1, 2, 3]), groups=st.integers(1, 4), t_query=awkward,
       extra_keys=st.sampled_from([0, 0, 1, 6]), d=st.sampled_from([1, 7, 13, 64]), causal=st.booleans())
def test_grouped_query_attention_forward_and_backward(name, data, n_kv, groups, t_query, extra_keys, d, causal):
    """k and v with n_kv heads for q's n_kv·groups (query head n reads key/value head
    n // groups): forward and backward against float64, with no repeated copies in the C and
    Numba kernels. Tk > Tq (extra_keys) covers the queries of a decoder after a prefix."""
    backend = backends.get(name)
    batch = data.draw(st.sampled_from([1, 2]))
    n, t_key = batch * n_kv * groups, t_query + extra_keys
    q, dout = draw_array(data, (n, t_query, d)), draw_array(data, (n, t_query, d))
    k, v = draw_array(data, (batch * n_kv, t_key, d)), draw_array(data, (batch * n_kv, t_key, d))
    scale = 1 / math.sqrt(d)
    ref_out, ref_lse = reference.attention_forward(q, k, v, causal, scale)
    ref_grads = reference.attention_backward(q, k, v, ref_out, ref_lse, dout, causal, scale)
    out, lse = backend.attention_forward(*on(backend, q, k, v), causal, scale)
    assert close(out, ref_out) and close(lse, ref_lse)
    grads = backend.attention_backward(*on(backend, q, k, v), out, lse, *on(backend, dout), causal, scale)
    for label, g, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert g.shape == ref.shape, label
        assert close(g, ref), label


def test_grouped_query_reference_is_attention_with_repeated_heads():
    """The float64 reference against the definition: every key/value head copied for each
    query head of its group, dK and dV summed back over the group."""
    rng = np.random.default_rng(0)
    n_kv, groups, t, d = 3, 4, 11, 5
    q, dout = rng.standard_normal((2, n_kv * groups, t, d)), rng.standard_normal((2, n_kv * groups, t, d))
    k, v = rng.standard_normal((2, n_kv, t, d)), rng.standard_normal((2, n_kv, t, d))
    fold = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
    repeat = lambda a: fold(np.repeat(a, groups, axis=1))  # noqa: E731
    out, lse = reference.attention_forward(fold(q), fold(k), fold(v), True, 0.3)
    rep_out, rep_lse = reference.attention_forward(fold(q), repeat(k), repeat(v), True, 0.3)
    np.testing.assert_allclose(out, rep_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, rep_lse, rtol=1e-12, atol=1e-12)
    dq, dk, dv = reference.attention_backward(fold(q), fold(k), fold(v), out, lse, fold(dout), True, 0.3)
    rq, rk, rv = reference.attention_backward(fold(q), repeat(k), repeat(v), out, lse, fold(dout), True, 0.3)
    np.testing.assert_allclose(dq, rq, rtol=1e-12, atol=1e-12)
    for got, copies in ((dk, rk), (dv, rv)):
        np.testing.assert_allclose(got, copies.reshape(2 * n_kv, groups, t, d).sum(axis=1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", AVAILABLE)
def test_attention_heads_that_do_not_divide_are_a_clear_error(name):
    backend = backends.get(name)
    q, k = on(backend, np.ones((6, 3, 4)), np.ones((4, 3, 4)))
    with pytest.raises(ValueError, match="attention: 6 query heads cannot share 4 key/value heads evenly"):
        backend.attention_forward(q, k, k, True, 0.5)
    with pytest.raises(ValueError, match="scaled_dot_product_attention: .*k's heads \\(axis -3\\) must divide q's"):
        F.scaled_dot_product_attention(minillm.tensor(np.ones((1, 6, 3, 4))), minillm.tensor(np.ones((1, 4, 3, 4))),
                                       minillm.tensor(np.ones((1, 4, 3, 4))), enable_gqa=True)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), t_query=st.integers(1, 4), t_key=awkward, d=awkward, n_kv=st.sampled_from([1, 2, 3]),
       groups=st.integers(1, 4), causal=st.booleans())
def test_grouped_query_attention_against_a_cache_view(name, data, t_query, t_key, d, n_kv, groups, causal):
    """Generation from a KVCache of n_kv heads: Tq ≤ 4 queries of n_kv·groups heads against
    the first Tk positions of a larger buffer of n_kv heads, forward against float64."""
    assume(t_query <= t_key)
    backend = backends.get(name)
    spare = data.draw(st.integers(0, 40))
    q = draw_array(data, (n_kv * groups, t_query, d))
    k_buffer, v_buffer = (draw_array(data, (n_kv, t_key + spare, d)) for _ in "kv")
    out, lse = reference.attention_forward(q, k_buffer[:, :t_key], v_buffer[:, :t_key], causal, 1 / math.sqrt(d))
    qs, ks, vs = on(backend, q, k_buffer, v_buffer)
    got_out, got_lse = backend.attention_forward(qs, ks[:, :t_key], vs[:, :t_key], causal, 1 / math.sqrt(d))
    assert close(got_out, out) and close(got_lse, lse)


def int8_error_bound(x, w, step):
    """How far x · wᵀ computed in float32 may be from float64 when each activation may also be
    rounded by up to ``step`` · max|x| of its row (0: kept as it is): that rounding, through
    Σ|w|, plus float32 rounding of the sum."""
    ax, aw = np.abs(x), np.abs(w)
    return step * ax.max(axis=1, keepdims=True) * aw.sum(axis=1)[None, :] + 1e-5 * (ax @ aw.T) + 1e-6


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), m=st.sampled_from([1, 2, 3, 4, 5, 17, 257]), with_bias=st.booleans())
def test_linear_int8_against_the_dequantised_weights(name, data, m, with_bias):
    """int8 weights with a float32 scale per output row, float32 activations (weight-only int8):
    against x · (s ⊙ W)ᵀ + b in float64, on widths that are 1, primes and not multiples of 16 or
    64; a few rows (decoding), 17, and 257 (more than the kernel's rows: the c backend's GEMM road).
    A backend may carry the activations as 16 bits (c: two int8 digits), within 1 / 64516 of
    each row's largest."""
    backend = backends.get(name)
    n, k = data.draw(awkward), data.draw(st.one_of(awkward, st.sampled_from([63, 129, 768])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    q, s = rng.integers(-127, 128, (n, k)).astype(np.int8), (rng.random(n) * 0.05 + 1e-3).astype(np.float32)
    x, b = draw_array(data, (m, k)), draw_array(data, (n,))
    w = q.astype(np.float64) * s[:, None].astype(np.float64)
    ref = x @ w.T + (b if with_bias else 0)
    xs, bs = on(backend, x, b)
    got = backend.linear_int8(xs, backend.xp.asarray(q), backend.xp.asarray(s), bs if with_bias else None)
    error = np.abs(backends.to_numpy(got).astype(np.float64) - ref)
    assert got.shape == (m, n) and np.all(error <= int8_error_bound(x, w, 1 / 64516))


@pytest.mark.parametrize("name", implementing("adam_update"))
@given(data=st.data())
def test_adam_update(name, data):
    """Three fused Adam(W) steps in float32 against the formula in float64."""
    backend = backends.get(name)
    size = data.draw(st.sampled_from([1, 7, 67, 1031, 70001]))  # 70001: past the C kernel's threading cut-off
    decoupled, weight_decay = data.draw(st.booleans()), data.draw(st.sampled_from([0.0, 0.1]))
    p, m = draw_array(data, (size,)), np.zeros(size)
    v = np.zeros(size)
    ps, ms, vs = on(backend, p, m, v)
    for step in (1, 2, 3):
        g = draw_array(data, (size,))
        reference.adam_update(p, g, m, v, 1e-2, 0.9, 0.95, 1e-8, weight_decay, decoupled, step)
        backend.adam_update(ps, *on(backend, g), ms, vs, 1e-2, 0.9, 0.95, 1e-8, weight_decay, decoupled, step)
    for label, got, ref in (("p", ps, p), ("m", ms, m), ("v", vs, v)):
        assert close(got, ref), label


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_adam_update_many(name, data):
    """All tensors in one call — ranges cut across tensor boundaries by thread — equal the
    formula per tensor in float64; a strided tensor takes the one-at-a-time road."""
    backend = backends.get(name)
    sizes = data.draw(st.lists(st.sampled_from([1, 7, 67, 1031, 70001]), min_size=1, max_size=5))
    strided = data.draw(st.booleans())
    refs = [[draw_array(data, (n,)), np.zeros(n), np.zeros(n)] for n in sizes]
    ours = [on(backend, *r) for r in refs]
    if strided:  # the first parameter is every other value of a larger buffer
        ours[0][0] = np.repeat(ours[0][0], 2)[::2]
    for step in (1, 2):
        grads = [draw_array(data, (n,)) for n in sizes]
        for (p, m, v), g in zip(refs, grads):
            reference.adam_update(p, g, m, v, 1e-2, 0.9, 0.95, 1e-8, 0.1, True, step)
        backend.adam_update_many([o[0] for o in ours], [on(backend, g)[0] for g in grads], [o[1] for o in ours],
                                 [o[2] for o in ours], 1e-2, 0.9, 0.95, 1e-8, 0.1, True, step)
    for (p, m, v), (ps, ms, vs) in zip(refs, ours):
        assert close(ps, p) and close(ms, m) and close(vs, v)


# ---- read-only inputs: the ways a user's array arrives that a kernel may not write to -----
READ_ONLY = ("frozen", "broadcast", "memmap")
HOST_BACKENDS = [name for name in AVAILABLE if backends.get(name).xp is np]  # NumPy's read-only flag


class ReadOnly:
    """Makes a backend's inputs from float64 test values the ways a user's arrays arrive
    read-only: ``frozen`` (``writeable = False``), ``broadcast`` (``np.broadcast_to`` of the
    first entry along axis 0: zero stride, every entry that one) or ``memmap`` (a file mapped
    with mode 'r'). A call returns the input and the float64 (or integer) values it holds, for
    the reference. CuPy has neither flag nor map: there the broadcast view is the only form."""

    def __init__(self, backend, how, folder):
        self.xp, self.how, self.folder, self.made = backend.xp, how, folder, []

    def __call__(self, values, dtype=np.float32):
        array = values.astype(dtype)
        if self.how == "broadcast":
            out = self.xp.broadcast_to(self.xp.asarray(array[:1]), array.shape)
        elif self.xp is not np:
            out = self.xp.asarray(array)
        elif self.how == "frozen":
            out = array
            out.flags.writeable = False
        else:
            path = self.folder / f"input{len(self.made)}.bin"
            array.tofile(path)
            out = np.memmap(path, dtype, "r", shape=array.shape)
        held = backends.to_numpy(out)
        held = held.astype(np.float64) if held.dtype.kind == "f" else np.array(held)
        self.made.append((out, held.copy()))
        return out, held

    def untouched(self):
        return all(np.array_equal(backends.to_numpy(out), held) for out, held in self.made)


def read_only_matmul(backend, ro, rng):
    for shape_a, shape_b, trans_a, trans_b in (((17, 33), (33, 9), False, False), ((33, 17), (9, 33), True, True),
                                             ((3, 17, 33), (3, 33, 9), False, False),
                                             ((2, 3, 17, 33), (3, 9, 33), False, True)):
        (a, a64), (b, b64) = ro(rng.standard_normal(shape_a)), ro(rng.standard_normal(shape_b))
        yield (f"matmul {shape_a} {shape_b}", backend.matmul(a, b, trans_a, trans_b),
               reference.matmul(a64, b64, trans_a, trans_b))


def read_only_linear(backend, ro, rng):
    (x, x64), (w, w64), (b, b64), (g, g64) = (ro(rng.standard_normal(s)) for s in ((17, 33), (9, 33), (9,), (17, 9)))
    yield "linear_forward", backend.linear_forward(x, w, b), x64 @ w64.T + b64
    for label, got, ref in zip(("gx", "gw", "gb"), backend.linear_backward(g, x, w), (g64 @ w64, g64.T @ x64,
                                                                                      g64.sum(axis=0))):
        yield f"linear_backward {label}", got, ref


def read_only_attention(backend, ro, rng):
    scale = 8 ** -0.5
    for t_query in (13, 2):  # 2: the C backend's kernel for a few queries reads k and v where they lie
        (q, q64), (k, k64), (v, v64), (dout, dout64) = (ro(rng.standard_normal((3, t, 8)))
                                                        for t in (t_query, 13, 13, t_query))
        out, lse = backend.attention_forward(q, k, v, True, scale)
        ref_out, ref_lse = reference.attention_forward(q64, k64, v64, True, scale)
        yield f"attention_forward out (Tq {t_query})", out, ref_out
        yield f"attention_forward lse (Tq {t_query})", lse, ref_lse
        grads = backend.attention_backward(q, k, v, out, lse, dout, True, scale)
        ref_grads = reference.attention_backward(q64, k64, v64, ref_out, ref_lse, dout64, True, scale)
        for label, got, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
            yield f"attention_backward {label} (Tq {t_query})", got, ref


def read_only_attention_qkv(backend, ro, rng):
    (qkv, qkv64), (dy, dy64) = ro(rng.standard_normal((2, 13, 48))), ro(rng.standard_normal((2, 13, 16)))
    forward, backward = reference.attention_qkv_forward, reference.attention_qkv_backward
    y, lse = backend.attention_qkv_forward(qkv, 2, True, 0.25)
    ref_y, ref_lse = forward(qkv64, 2, True, 0.25)
    yield "attention_qkv_forward y", y, ref_y
    yield "attention_qkv_forward lse", lse, ref_lse
    yield ("attention_qkv_backward", backend.attention_qkv_backward(qkv, y, lse, dy, 2, True, 0.25),
           backward(qkv64, ref_y, ref_lse, dy64, 2, True, 0.25))
    (grouped, grouped64) = ro(rng.standard_normal((2, 13, 64)))  # 4 query heads of 8, 2 key/value heads
    y, lse = backend.attention_qkv_forward(grouped, 4, True, 0.25, kv_heads=2)
    ref_y, ref_lse = forward(grouped64, 4, True, 0.25, kv_heads=2)
    yield "attention_qkv_forward y, grouped", y, ref_y
    (dy, dy64) = ro(rng.standard_normal((2, 13, 32)))
    yield ("attention_qkv_backward, grouped", backend.attention_qkv_backward(grouped, y, lse, dy, 4, True, 0.25, 2),
           backward(grouped64, ref_y, ref_lse, dy64, 4, True, 0.25, 2))
    (cos, cos64), (sin, sin64) = ro(rng.standard_normal((13, 4))), ro(rng.standard_normal((13, 4)))  # RoPE's tables
    y, lse = backend.attention_qkv_forward(grouped, 4, True, 0.25, 2, (cos, sin))
    ref_y, ref_lse = forward(grouped64, 4, True, 0.25, 2, (cos64, sin64))
    yield "attention_qkv_forward y, turned", y, ref_y
    yield ("attention_qkv_backward, turned", backend.attention_qkv_backward(grouped, y, lse, dy, 4, True, 0.25, 2,
                                                                             (cos, sin)),
           backward(grouped64, ref_y, ref_lse, dy64, 4, True, 0.25, 2, (cos64, sin64)))


def read_only_layernorm(backend, ro, rng):
    (x, x64), (w, w64), (b, b64), (dy, dy64) = (ro(rng.standard_normal(s) * 3 + 1)
                                                for s in ((13, 31), (31,), (31,), (13, 31)))
    y, mean, rstd = backend.layernorm_forward(x, w, b, 1e-5)
    ref_y, ref_mean, ref_rstd = reference.layernorm_forward(x64, w64, b64, 1e-5)
    for label, got, ref in (("y", y, ref_y), ("mean", mean, ref_mean), ("rstd", rstd, ref_rstd)):
        yield f"layernorm_forward {label}", got, ref
    grads = backend.layernorm_backward(dy, x, w, mean, rstd)
    for label, got, ref in zip(("dx", "dw", "db"), grads, reference.layernorm_backward(dy64, x64, w64, ref_mean,
                                                                                       ref_rstd)):
        yield f"layernorm_backward {label}", got, ref


def read_only_cross_entropy(backend, ro, rng):
    target = rng.integers(0, 7, 13)
    target[1::3] = -100  # ignored rows (not the first: a broadcast target repeats it)
    (logits, logits64), (t, t64), (dloss, dloss64) = (ro(rng.standard_normal((13, 7)) * 4), ro(target, np.int64),
                                                      ro(rng.standard_normal(13)))
    loss, lse = backend.cross_entropy_forward(logits, t, -100)
    ref_loss, ref_lse = reference.cross_entropy_forward(logits64, t64, -100)
    yield "cross_entropy_forward loss", loss, ref_loss
    yield "cross_entropy_forward lse", lse, ref_lse
    yield ("cross_entropy_backward", backend.cross_entropy_backward(logits, t, lse, dloss, -100),
           reference.cross_entropy_backward(logits64, t64, ref_lse, dloss64, -100))


def read_only_add(backend, ro, rng):
    (a, a64), (b, b64) = ro(rng.standard_normal((7, 2053))), ro(rng.standard_normal((7, 2053)))  # past C's cut-off
    yield "add", backend.add(a, b), a64 + b64


def read_only_embedding_backward(backend, ro, rng):
    table = rng.standard_normal((5, 13))
    (index, index64), (values, values64) = ro(rng.integers(0, 5, 67), np.int64), ro(rng.standard_normal((67, 13)))
    expected = table.copy()
    np.add.at(expected, index64, values64)
    target, = on(backend, table)
    yield "scatter_add_rows", backend.scatter_add_rows(target, index, values), expected


def read_only_adam(backend, ro, rng):
    """The gradient arrives read-only; the parameter and moments are the optimizer's own."""
    refs = [[rng.standard_normal(size), np.zeros(size), np.zeros(size)] for size in (1031, 7)]
    (p, m, v), (p_many, m_many, v_many) = ours = [on(backend, *r) for r in refs]
    hyper = (1e-2, 0.9, 0.95, 1e-8, 0.1, True)
    for step in (1, 2):
        (g, _), (g_many, _) = grads = [ro(rng.standard_normal(r[0].size)) for r in refs]
        for (p64, m64, v64), (_, g64) in zip(refs, grads):
            reference.adam_update(p64, g64, m64, v64, *hyper, step)
        backend.adam_update(p, g, m, v, *hyper, step)
        backend.adam_update_many([p_many], [g_many], [m_many], [v_many], *hyper, step)
    for label, got, ref in zip(("adam_update", "adam_update_many"), ours, refs):
        for part, g, r in zip(("p", "m", "v"), got, ref):
            yield f"{label} {part}", g, r


def read_only_grad_norm(backend, ro, rng):
    arrays = [ro(rng.standard_normal(s)) for s in ((7, 67), (1031,))]
    yield ("sum_of_squares_many", np.asarray(backend.sum_of_squares_many([a for a, _ in arrays])),
           np.asarray(sum(float((a * a).sum()) for _, a in arrays)))


def read_only_matmul_int8(backend, ro, rng):
    (a, a64), (b, b64) = (ro(rng.integers(-128, 128, s), np.int8) for s in ((17, 33), (9, 33)))
    yield "matmul_int8", backend.matmul_int8(a, b), (a64.astype(np.int64) @ b64.astype(np.int64).T).astype(np.float64)


def read_only_linear_int8(backend, ro, rng):
    # integer activations whose row maximum is 127: one int8 digit each, so a kernel that
    # carries them as digits (c) is exact here and only the read-only handling is tested
    x = rng.integers(-127, 128, (3, 33))
    x[:, 0] = 127
    (q, q64), (x, x64) = ro(rng.integers(-127, 128, (9, 33)), np.int8), ro(x)
    (s, s64), (b, b64) = ro(rng.random(9) * 0.1), ro(rng.standard_normal(9))
    yield "linear_int8", backend.linear_int8(x, q, s, b), x64 @ (q64 * s64[:, None]).T + b64


def read_only_drawn(primitive):
    """A DRAWN entry's inputs, every array handed over read-only."""
    def case(backend, ro, rng):
        args = DRAWN[primitive](Fixed(rng))
        made = [ro(a) if isinstance(a, np.ndarray) else (a, a) for a in args]
        got = as_results(getattr(backend, primitive)(*(m[0] for m in made)))
        ref = as_results(getattr(reference, primitive)(*(m[1] for m in made)))
        for i, (out, expected) in enumerate(zip(got, ref)):
            yield f"{primitive} output {i}", out, expected
    return case


READ_ONLY_CASES = {fn.__name__.removeprefix("read_only_"): fn for fn in (
    read_only_matmul, read_only_linear, read_only_attention, read_only_attention_qkv, read_only_layernorm,
    read_only_cross_entropy, read_only_add, read_only_embedding_backward, read_only_adam,
    read_only_grad_norm, read_only_matmul_int8, read_only_linear_int8)}
READ_ONLY_CASES.update({primitive: read_only_drawn(primitive) for primitive in DRAWN})


@pytest.mark.parametrize("name", AVAILABLE)  # the backend last in the test's id, as the Makefile's -k expects
@pytest.mark.parametrize("how", READ_ONLY)
@pytest.mark.parametrize("case", READ_ONLY_CASES)
def test_read_only_inputs(case, how, name, tmp_path):
    """Every primitive takes its inputs read-only — frozen, a zero-stride broadcast view, a
    read-only memory map — and answers as the float64 reference does on the values they
    hold (within TOL and ATOL: see close), leaving them untouched."""
    backend = backends.get(name)
    ro = ReadOnly(backend, how, tmp_path)
    for label, got, ref in READ_ONLY_CASES[case](backend, ro, np.random.default_rng(0)):
        assert got.shape == ref.shape and close(got, ref), label
    assert ro.untouched()


@pytest.mark.parametrize("name", HOST_BACKENDS)
@pytest.mark.parametrize("how", READ_ONLY)
def test_read_only_outputs_are_refused(how, name, tmp_path):
    """The primitives that write in place — Adam's parameter and moments, clipping's rescale,
    an embedding's gradient table — raise a ValueError that names a read-only one before
    writing anything (a C kernel would write through the flag, and crash on a read-only map)."""
    backend = backends.get(name)
    ro = ReadOnly(backend, how, tmp_path)
    rng = np.random.default_rng(0)
    hyper = (1e-2, 0.9, 0.95, 1e-8, 0.1, True, 1)
    for frozen in ("p", "m", "v"):
        arrays = {part: on(backend, rng.standard_normal(1031))[0] for part in "pmv"}
        arrays[frozen] = ro(rng.standard_normal(1031))[0]
        before = {part: a.copy() for part, a in arrays.items()}
        g, = on(backend, rng.standard_normal(1031))
        for update in (lambda: backend.adam_update(arrays["p"], g, arrays["m"], arrays["v"], *hyper),
                       lambda: backend.adam_update_many([arrays["p"]], [g], [arrays["m"]], [arrays["v"]], *hyper)):
            with pytest.raises(ValueError, match="read-only"):
                update()
            for part, a in arrays.items():
                np.testing.assert_array_equal(a, before[part], err_msg=f"adam with {frozen} read-only changed {part}")
    writable, = on(backend, rng.standard_normal(1031))
    kept = writable.copy()
    with pytest.raises(ValueError, match="read-only"):
        backend.scale_many([writable, ro(rng.standard_normal(1031))[0]], 0.5)
    np.testing.assert_array_equal(writable, kept)
    index, values = np.arange(3), *on(backend, rng.standard_normal((3, 13)))
    with pytest.raises(ValueError, match="read-only"):
        backend.scatter_add_rows(ro(rng.standard_normal((5, 13)))[0], index, values)
    assert ro.untouched()


def transformer_block(x, p, n_head):
    """A pre-LN block written with functional ops: x + attn(ln(x)), then x + mlp(ln(x))."""
    b, t, c = x.shape
    h = F.layer_norm(x, c, p["ln1_w"], p["ln1_b"])
    q, k, v = minillm.split(F.linear(h, p["attn_w"], p["attn_b"]), c, dim=-1)
    heads = lambda z: z.reshape(b, t, n_head, c // n_head).transpose(1, 2)  # noqa: E731 (B, nh, T, hs)
    y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    x = x + F.linear(y.transpose(1, 2).reshape(b, t, c), p["proj_w"])
    h = F.layer_norm(x, c, p["ln2_w"], p["ln2_b"])
    return x + F.linear(F.gelu(F.linear(h, p["fc_w"]), approximate="tanh"), p["out_w"])


def block_params(c, dtype, rng):
    shapes = {"ln1_w": (c,), "ln1_b": (c,), "attn_w": (3 * c, c), "attn_b": (3 * c,), "proj_w": (c, c),
              "ln2_w": (c,), "ln2_b": (c,), "fc_w": (4 * c, c), "out_w": (c, 4 * c)}
    return {k: minillm.tensor((rng.standard_normal(s) * 0.3 + (k.startswith("ln") and k.endswith("w"))).astype(dtype),
                              requires_grad=True) for k, s in shapes.items()}


def test_gradcheck_of_a_transformer_block():
    """The reference: numpy's autograd of a whole block in float64 against finite differences."""
    rng = np.random.default_rng(0)
    params = block_params(6, np.float64, rng)
    x = minillm.tensor(rng.standard_normal((2, 5, 6)), requires_grad=True)
    names = list(params)
    fn = lambda x, *ps: transformer_block(x, dict(zip(names, ps)), n_head=2)  # noqa: E731
    assert minillm.gradcheck(fn, x, *params.values(), max_elements=40)


def block_gradients(name, dtype, seed_values):
    """Gradients of sum(block(x) * w_out) for every input, computed on backend ``name``."""
    with minillm.use_backend(name):
        tensors = {k: minillm.tensor(v.astype(dtype), requires_grad=True) for k, v in seed_values.items()}
        x, w_out = tensors.pop("x"), tensors.pop("w_out")
        (transformer_block(x, tensors, n_head=3) * w_out.detach()).sum().backward()
        return {k: backends.to_numpy(t.grad.data).astype(np.float64)
                for k, t in [("x", x), *tensors.items()]}


OTHER_BACKENDS = [name for name in AVAILABLE if name != "numpy"]


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_transformer_block_gradients_through_the_kernels(name):
    """Each backend's float32 kernels (they serve float64 by falling back to the reference,
    so a float64 gradcheck would test nothing of theirs) against the float64 reference
    gradients checked above, on awkward sizes: 3 heads of width 5, 7 positions."""
    rng = np.random.default_rng(1)
    values = {k: p.numpy() for k, p in block_params(15, np.float32, rng).items()}
    values["x"] = rng.standard_normal((2, 7, 15)).astype(np.float32)
    values["w_out"] = rng.standard_normal((2, 7, 15)).astype(np.float32)
    expected = block_gradients("numpy", np.float64, values)
    got = block_gradients(name, np.float32, values)
    for label, ref in expected.items():
        error = np.linalg.norm(got[label] - ref) / np.linalg.norm(ref)
        print(f"{name} d{label}: relative error {error:.1e}")
        assert error < 1e-4, f"{name}: gradient of {label} off by {error:.1e} (relative, float32 allows 1e-4)"


def attention_module_gradients(name, dtype, values, fused):
    """Output and gradients of sum(MultiHeadAttention(x) * w_out), causal, on backend ``name``;
    ``fused=False`` takes the three-projection road (record_weights turns the fused one off)."""
    with minillm.use_backend(name):
        heads, c = values["heads"], values["x"].shape[-1]
        attn = nn.MultiHeadAttention(c, heads)
        attn.record_weights = not fused
        for pname, p in attn.named_parameters():
            p.data = backends.asarray(values[pname].astype(dtype))
        x = minillm.tensor(values["x"].astype(dtype), requires_grad=True)
        y = attn(x, is_causal=True)
        (y * minillm.tensor(values["w_out"].astype(dtype))).sum().backward()
        grads = {"y": y.data, "x": x.grad.data, **{n: p.grad.data for n, p in attn.named_parameters()}}
        return {k: backends.to_numpy(g).astype(np.float64) for k, g in grads.items()}


@pytest.mark.parametrize("name", AVAILABLE)
def test_self_attention_in_one_projection(name):
    """MultiHeadAttention's fused road (q, k, v from one GEMM against the weights side by
    side, then ops.attention_qkv) on each backend in float32, against the three-projection
    road in float64 on numpy: output and every gradient, 3 heads of width 5, 7 positions,
    and 2 heads of 43 (3C = 258 floats a row, 86 between heads) over 67 positions."""
    rng = np.random.default_rng(2)
    for batch, t, heads, d in ((2, 7, 3, 5), (1, 67, 2, 43)):
        c = heads * d
        values = {"heads": heads, "x": rng.standard_normal((batch, t, c)), "w_out": rng.standard_normal((batch, t, c))}
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            values[f"{proj}.weight"] = rng.standard_normal((c, c)) / np.sqrt(c)
            values[f"{proj}.bias"] = rng.standard_normal(c) * 0.1
        values = {k: v.astype(np.float32).astype(np.float64) if isinstance(v, np.ndarray) else v
                  for k, v in values.items()}
        expected = attention_module_gradients("numpy", np.float64, values, fused=False)
        fused64 = attention_module_gradients("numpy", np.float64, values, fused=True)
        got = attention_module_gradients(name, np.float32, values, fused=True)
        for label, ref in expected.items():
            np.testing.assert_allclose(fused64[label], ref, rtol=1e-9, atol=1e-12, err_msg=f"float64 {label}")
            # relative 1e-4 (float32), plus an RMS floor for k_proj.bias: its gradient is zero in
            # exact arithmetic (a shift of every key moves a query's scores alike)
            error = np.linalg.norm(got[label] - ref)
            assert error <= 1e-4 * np.linalg.norm(ref) + ATOL * np.sqrt(ref.size), \
                f"{name}: {label} of the fused road off by {error:.1e} (‖ref‖ = {np.linalg.norm(ref):.1e})"


def train_losses(name, steps=5):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 11, size=(4, 9))
    with minillm.use_backend(name):
        minillm.manual_seed(3)
        emb = nn.Embedding(11, 16)
        params = block_params(16, np.float32, rng)
        head = nn.Linear(16, 11)
        weights = [emb.weight, head.weight, head.bias, *params.values()]
        losses = []
        for _ in range(steps):
            logits = head(transformer_block(emb(tokens[:, :-1]), params, n_head=4))
            loss = F.cross_entropy(logits, tokens[:, 1:].reshape(-1))
            for p in weights:
                p.grad = None
            loss.backward()
            with minillm.no_grad():
                for p in weights:
                    p.data -= 0.1 * p.grad.data
            losses.append(loss.item())
    return np.array(losses)


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_training_steps_match_numpy(name):
    expected, got = train_losses("numpy"), train_losses(name)
    print(f"{name}: losses {np.round(got, 5)} vs numpy {np.round(expected, 5)}")
    assert got[-1] < got[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_use_backend_restores_the_previous_one():
    before = backends.current().name
    with minillm.use_backend("numba") as inner:
        assert backends.current() is inner and inner.name == "numba"
    assert backends.current().name == before


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_the_gpt_model_trains_with_the_same_losses_as_numpy(name):
    from minillm.models import GPT, GPTConfig

    def losses(backend):
        with minillm.use_backend(backend):
            minillm.manual_seed(0)
            model = GPT(GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=2, n_embd=16))
            opt = minillm.optim.AdamW(model.parameters(), lr=1e-2)
            rng = np.random.default_rng(0)
            out = []
            for _ in range(4):
                idx = rng.integers(0, 17, (3, 13))
                _, loss = model(idx[:, :-1], idx[:, 1:])
                opt.zero_grad()
                loss.backward()
                opt.step()
                out.append(loss.item())
            return np.array(out)

    expected, got = losses("numpy"), losses(name)
    print(f"GPT on {name}: losses {np.round(got, 5)}")
    np.testing.assert_allclose(got, expected, rtol=1e-4)
