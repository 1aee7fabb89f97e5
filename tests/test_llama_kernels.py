"""Llama's fused primitives (RMSNorm, RoPE, SwiGLU's gate) on every backend against the float64
reference beyond their DRAWN entries in test_backends.py (which compare each primitive, on
drawn awkward shapes, forward and backward): heads read through a transpose and turned back,
other ranks, the halves of one array read and written in place, outputs in any memory order,
float64 in float64 out; a float64 gradcheck of each op; the modules' gradients against the composite they replace; large inputs stay finite; bad shapes
get errors that name the op. The backend is the last parameter of each test, so its id ends
in ``c]`` and the Makefile's sanitize target (ASan + UBSan) runs the C cases."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import backends, functional as F, ops
from minillm.backends.reference import backend as reference
from minillm.nn.llama_blocks import RMSNorm, SwiGLU, apply_rope, rope_tables, rotate_half

AVAILABLE = backends.available()
HOST = [name for name in AVAILABLE if backends.get(name).xp is np]  # float64 runs where the arrays are NumPy's
TOL, ATOL = 1e-5, 1e-5  # ‖out − ref‖ ≤ TOL·‖ref‖ + ATOL·√size for float32 against float64 (as test_backends)

rows_ = st.sampled_from([1, 2, 3, 5, 7, 13, 31])
widths = st.sampled_from([2, 6, 64, 130, 1031])
lengths = st.sampled_from([1, 7, 13])
head_dims = st.sampled_from([2, 6, 64, 130])


def close(out, ref, label=""):
    out = backends.to_numpy(out).astype(np.float64)
    error = np.linalg.norm(out - ref)
    bound = TOL * np.linalg.norm(ref) + ATOL * np.sqrt(ref.size)
    assert error <= bound, f"{label}: error {error:.2e} > {bound:.2e}"


def drawn(data, shape, scale=1.0):
    """float64 values that float32 holds exactly: the backend and the reference see one input."""
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


def on(backend, *arrays, dtype=np.float32):
    return [backend.xp.asarray(a.astype(dtype)) for a in arrays]


def _rope_input(data, backend, dtype=np.float32):
    """x (B, H, T, d), sometimes the transposed view of a (B, T, H, d) projection (the heads
    where attention's projection leaves them), and angle tables (T, d/2)."""
    b, h, t, d = data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 3])), data.draw(lengths), \
        data.draw(head_dims)
    transposed = data.draw(st.booleans())
    x = drawn(data, (b, t, h, d) if transposed else (b, h, t, d))
    angles = drawn(data, (t, d // 2), 3.0)
    x_backend = on(backend, x, dtype=dtype)[0]
    if transposed:
        x, x_backend = x.transpose(0, 2, 1, 3), x_backend.transpose(0, 2, 1, 3)
    return x, x_backend, np.cos(angles), np.sin(angles)


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_rope_forward_and_its_inverse(data, name):
    backend = backends.get(name)
    x, xs, cos, sin = _rope_input(data, backend)
    cs, ss = on(backend, cos, sin)
    ref = reference.rope_forward(x, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(ref, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-10)  # a rotation
    out = backend.rope_forward(xs, cs, ss)
    assert out.shape == x.shape
    close(out, ref, "rotated")
    close(backend.rope_forward(out, cs, -ss), x, "turned back")  # the backward: rotation by −θ


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data(), lead=st.sampled_from([(), (3,), (2, 1, 2)]))
def test_rope_on_other_ranks(data, lead, name):
    """(T, d), (N, T, d) and 5-D inputs: the kernels fold the leading axes."""
    backend = backends.get(name)
    t, d = data.draw(lengths), data.draw(head_dims)
    x, angles = drawn(data, lead + (t, d)), drawn(data, (t, d // 2), 3.0)
    xs, cs, ss = on(backend, x, np.cos(angles), np.sin(angles))
    close(backend.rope_forward(xs, cs, ss), reference.rope_forward(x, np.cos(angles), np.sin(angles)))


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_swiglu_on_the_halves_of_one_array(data, name):
    """gate | up side by side (one GEMM made both): read where they lie, the gradient's halves
    written into one array."""
    backend = backends.get(name)
    rows, cols = data.draw(rows_), data.draw(widths)
    h, dy = drawn(data, (rows, 2 * cols), 4.0), drawn(data, (rows, cols))
    hs, dys = on(backend, h, dy)
    close(backend.swiglu_forward(hs[:, :cols], hs[:, cols:]), reference.swiglu_forward(h[:, :cols], h[:, cols:]))
    grad = backend.xp.full(hs.shape, np.nan, np.float32)
    backend.swiglu_backward(hs[:, :cols], hs[:, cols:], dys, grad[:, :cols], grad[:, cols:])
    close(grad, np.concatenate(reference.swiglu_backward(h[:, :cols], h[:, cols:], dy), axis=1), "packed gradient")


@pytest.mark.parametrize("name", AVAILABLE)
@given(data=st.data())
def test_rope_writes_into_any_order(data, name):
    """The backward's gradient goes into an array in x's memory order (a (B, T, H, d) layout
    seen as (B, H, T, d)): every element written, none outside."""
    backend = backends.get(name)
    x, xs, cos, sin = _rope_input(data, backend)
    b, h, t, d = x.shape
    out = backend.xp.full((b, t, h, d), np.nan, np.float32).transpose(0, 2, 1, 3)
    got = backend.rope_forward(xs, *on(backend, cos, sin), out)
    assert got is out
    close(out, reference.rope_forward(x, cos, sin))


@pytest.mark.parametrize("name", AVAILABLE)
def test_large_inputs_stay_finite(name):
    """silu(±100) and beyond: σ from e^−|a| only, so no overflow into inf or NaN."""
    backend = backends.get(name)
    a = np.array([-1e4, -100.0, -88.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 88.0, 100.0, 1e4] * 3).reshape(3, 11)
    b = np.ones_like(a)
    as_, bs = on(backend, a, b)
    y = backends.to_numpy(backend.swiglu_forward(as_, bs))
    da, db = (backends.to_numpy(g) for g in backend.swiglu_backward(as_, bs, bs))
    assert np.isfinite(y).all() and np.isfinite(da).all() and np.isfinite(db).all()
    close(y, reference.swiglu_forward(a, b), "silu")
    x = np.full((2, 7), 1e18)  # mean(x²) = 1e36 fits float32; rstd stays finite
    y, rstd = backend.rmsnorm_forward(*on(backend, x, np.ones(7)), 1e-5)
    assert np.isfinite(backends.to_numpy(y)).all()
    close(y, np.ones((2, 7)), "rmsnorm of 1e18")


@pytest.mark.parametrize("name", HOST)
@given(data=st.data())
def test_float64_in_float64_out(data, name):
    """float64 inputs give the reference's float64 results (gradcheck runs on them)."""
    backend = backends.get(name)
    rows, d = data.draw(rows_), data.draw(widths)
    x, w, dy = drawn(data, (rows, d)), drawn(data, (d,)), drawn(data, (rows, d))
    y, rstd = backend.rmsnorm_forward(x, w, 1e-6)
    ref_y, ref_rstd = reference.rmsnorm_forward(x, w, 1e-6)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-14)
    for got, ref in zip(backend.rmsnorm_backward(dy, x, w, rstd), reference.rmsnorm_backward(dy, x, w, ref_rstd)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    for got, ref in zip(backend.swiglu_backward(x, dy, dy), reference.swiglu_backward(x, dy, dy)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", HOST)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_ops_gradcheck_in_float64(data, name):
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    rows, d, t = data.draw(st.sampled_from([1, 3, 7])), data.draw(st.sampled_from([2, 6])), data.draw(lengths)
    leaf = lambda *shape: minillm.tensor(rng.standard_normal(shape), requires_grad=True)  # noqa: E731
    angles = rng.standard_normal((t, d // 2))
    with minillm.use_backend(name):
        assert minillm.gradcheck(lambda x, w: ops.rms_norm_rows(x, w, 1e-6), leaf(2, rows, d), leaf(d),
                                 verbose=False)
        assert minillm.gradcheck(lambda x: ops.rope(x, np.cos(angles), np.sin(angles)), leaf(2, t, d), verbose=False)
        assert minillm.gradcheck(ops.swiglu, leaf(rows, d), leaf(rows, d), verbose=False)
        assert minillm.gradcheck(ops.swiglu, leaf(2, rows, 2 * d), verbose=False)  # gate | up in one


def _composite_rms_norm(x, w, eps):
    return x * ((x * x).mean(-1, keepdim=True) + eps) ** -0.5 * w


def _composite_rope(x, cos, sin):
    return x * ops.as_tensor(cos, x) + rotate_half(x) * ops.as_tensor(sin, x)


def _module_gradients(name, fused, x, weights, head_dim):
    """Output and gradients of RMSNorm → RoPE on its heads → SwiGLU, fused or composite, on
    backend ``name`` in float32."""
    with minillm.use_backend(name):
        minillm.manual_seed(0)
        norm, mlp = RMSNorm(x.shape[-1], 1e-5), SwiGLU(x.shape[-1], 10)
        for module, key in ((norm, "norm"), (mlp, "mlp")):
            for pname, p in module.named_parameters():
                p.data = backends.asarray(weights[f"{key}.{pname}"])
        xt = minillm.tensor(backends.asarray(x), requires_grad=True)
        b, t, c = x.shape
        cos, sin = rope_tables(head_dim, t)
        if fused:
            h = norm(xt)
            heads = apply_rope(h.reshape(b, t, c // head_dim, head_dim).transpose(1, 2), cos, sin)
        else:
            h = _composite_rms_norm(xt, norm.weight, 1e-5)
            heads = _composite_rope(h.reshape(b, t, c // head_dim, head_dim).transpose(1, 2), cos, sin)
        h = heads.transpose(1, 2).reshape(b, t, c)
        if fused:  # the module: gate_proj and up_proj as one GEMM, the packed swiglu
            y = mlp(h)
        else:
            gate, up = mlp.gate_proj(h), mlp.up_proj(h)
            y = mlp.down_proj(gate * gate.sigmoid() * up)
        (y * y).sum().backward()
        grads = {"y": y.data, "x": xt.grad.data, "norm.weight": norm.weight.grad.data,
                 **{f"mlp.{n}": p.grad.data for n, p in mlp.named_parameters()}}
        return {k: backends.to_numpy(g).astype(np.float64) for k, g in grads.items()}


@pytest.mark.parametrize("name", AVAILABLE)
def test_modules_give_the_composites_gradients(name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 12)).astype(np.float32)
    weights = {"norm.weight": rng.standard_normal(12).astype(np.float32)}
    weights.update({f"mlp.{n}.weight": (rng.standard_normal(s) / 4).astype(np.float32)
                    for n, s in (("gate_proj", (10, 12)), ("up_proj", (10, 12)), ("down_proj", (12, 10)))})
    fused, composite = _module_gradients(name, True, x, weights, 6), _module_gradients(name, False, x, weights, 6)
    for label, ref in composite.items():
        error = np.linalg.norm(fused[label] - ref) / np.linalg.norm(ref)
        print(f"{name} {label}: relative error {error:.1e}")
        assert error < 1e-5, f"{name}: {label} off by {error:.1e} (relative; float32 allows 1e-5)"


def test_functional_rms_norm_and_silu():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 2, 5)), rng.standard_normal((2, 5))
    expected = x / np.sqrt((x ** 2).mean(axis=(-2, -1), keepdims=True) + np.finfo(np.float64).eps) * w
    np.testing.assert_allclose(F.rms_norm(minillm.tensor(x), (2, 5), minillm.tensor(w)).numpy(), expected,
                               rtol=1e-12)
    np.testing.assert_allclose(F.silu(minillm.tensor(x)).numpy(), x / (1 + np.exp(-x)), rtol=1e-12)


def test_bad_shapes_are_named():
    x = minillm.tensor(np.ones((2, 3, 6), np.float32))
    cos, sin = rope_tables(6, 3)
    with pytest.raises(ValueError, match=r"apply_rope: expected x \(\.\.\., T, d\)"):
        apply_rope(x, cos[:2], sin[:2])
    with pytest.raises(ValueError, match="apply_rope: the tables' two halves differ"):
        apply_rope(x, np.ones((3, 6)), np.arange(18.0).reshape(3, 6))
    with pytest.raises(ValueError, match="rope: expected x"):
        ops.rope(minillm.tensor(np.ones((3, 5))), np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="swiglu: a .* and b .* must match"):
        ops.swiglu(x, minillm.tensor(np.ones((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"rms_norm: weight \(5,\) does not fit"):
        ops.rms_norm_rows(x, minillm.tensor(np.ones(5, np.float32)), 1e-5)
    with pytest.raises(ValueError, match="rms_norm: input shape"):
        F.rms_norm(x, 5)


@pytest.mark.parametrize("name", AVAILABLE)
@settings(max_examples=15, deadline=None)
@given(b=st.sampled_from([1, 2]), t=st.sampled_from([1, 7, 13]), heads=st.sampled_from([1, 2, 3]),
       d=st.sampled_from([2, 6, 64]))
def test_rope_on_a_projection_turns_each_head_where_it_lies(name, b, t, heads, d):
    """ops.rope(x, cos, sin, heads=H) on (B, T, H·d) equals the rotation of the (B, H, T, d)
    heads, in the projection's layout, and its gradient is the rotation back (float64
    gradcheck on the reference; the kernels in float32 against it)."""
    rng = np.random.default_rng(b * 100 + t * 10 + heads + d)
    x = rng.standard_normal((b, t, heads * d))
    cos2, sin2 = rope_tables(d, t, dtype=np.float64)
    cos, sin = cos2[:, :d // 2].copy(), sin2[:, :d // 2].copy()
    heads_view = x.reshape(b, t, heads, d).transpose(0, 2, 1, 3)
    expected = reference.rope_forward(heads_view, cos, sin).transpose(0, 2, 1, 3).reshape(b, t, heads * d)
    with backends.use_backend(name):
        got = ops.rope(minillm.tensor(x.astype(np.float32)), cos.astype(np.float32), sin.astype(np.float32),
                       heads=heads)
        assert got.shape == (b, t, heads * d)
        np.testing.assert_allclose(backends.to_numpy(got.data), expected, rtol=1e-5, atol=1e-5)
    assert minillm.gradcheck(lambda v: ops.rope(v, cos, sin, heads=heads), minillm.tensor(x, requires_grad=True),
                             verbose=False)
    with pytest.raises(ValueError, match="rope: expected x"):
        ops.rope(minillm.tensor(x), cos, sin, heads=heads * d + 1)


@pytest.mark.parametrize("name", AVAILABLE)
def test_swiglu_of_zero_dimensional_tensors(name):
    """silu(a)·b of two scalars (0-d tensors) and its gradient: the kernels' (rows, cols) view
    has no rows to take, so the reference answers, on every backend."""
    with backends.use_backend(name):
        a, b = (minillm.tensor(np.float32(v), requires_grad=True) for v in (0.5, -2.0))
        y = ops.swiglu(a, b)
        y.backward()
        s = 1 / (1 + np.exp(-0.5))
        np.testing.assert_allclose(float(y.item()), 0.5 * s * -2.0, rtol=1e-6)
        np.testing.assert_allclose(float(a.grad.item()), -2.0 * s * (1 + 0.5 * (1 - s)), rtol=1e-6)
        np.testing.assert_allclose(float(b.grad.item()), 0.5 * s, rtol=1e-6)


@pytest.mark.parametrize("name", AVAILABLE)
def test_rotary_attention_from_a_projection_in_any_memory_order(name):
    """ops.attention_qkv with grouped heads and RoPE gives the same output and gradient for a
    projection stored transposed (not C-ordered) as for its C-ordered copy: the rotated copy and
    the in-place turn of the gradient must not land in a temporary. Both equal the reference's
    float64 result within float32 rounding."""
    rng = np.random.default_rng(0)
    b, t, heads, kv_heads, d = 2, 5, 4, 2, 6
    stored = rng.standard_normal((b, (heads + 2 * kv_heads) * d, t))
    angles = rng.standard_normal((t, d // 2))
    rotary = (np.cos(angles), np.sin(angles))
    dy = rng.standard_normal((b, t, heads * d))

    def run(data, dtype):
        x = minillm.tensor(data.astype(dtype), requires_grad=True)
        y = ops.attention_qkv(x, heads, True, d ** -0.5, kv_heads=kv_heads, rotary=rotary)
        y.backward(minillm.tensor(dy.astype(dtype)))
        return backends.to_numpy(y.data), backends.to_numpy(x.grad.data)

    with backends.use_backend(name):
        results = [run(data, np.float32) for data in (stored.transpose(0, 2, 1),
                                                      np.ascontiguousarray(stored.transpose(0, 2, 1)))]
    with backends.use_backend("numpy"):
        exact = run(stored.transpose(0, 2, 1), np.float64)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], exact[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[0][1], exact[1], rtol=1e-4, atol=1e-5)
