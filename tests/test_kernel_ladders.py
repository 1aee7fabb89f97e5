"""The C kernel families kept as ladders of numbered versions (kernels/c/<family>/: layer norm,
cross-entropy, GELU, Adam, gradient clipping): every version against a float64 reference on
drawn awkward shapes, forward and backward, and the backend's function against the last rung,
bit for bit."""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from minillm import backends
from minillm.backends.reference import backend as reference

pytestmark = pytest.mark.skipif("c" not in backends.available(),
                                reason=f"c backend unavailable: {backends.status().get('c')}")
c = pytest.importorskip("minillm.backends.c") if "c" in backends.available() else None

# 1, primes, and widths on either side of a 16-float (AVX-512) or 8-float vector; 97 × 769 values
# cross the size from which layer norm's and GELU's forward share the work out over threads
ROWS = st.sampled_from([1, 2, 3, 7, 13, 31, 97])
WIDTHS = st.sampled_from([1, 3, 17, 31, 33, 65, 769])
SEEDS = st.integers(0, 2 ** 16)


def versions(family):
    return c.LADDERS[family] if c else ()


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def assert_close(out, ref, tol, what, scale=None):
    """‖out − ref‖ ≤ tol·scale + tol over the whole array, scale = ‖ref‖ unless the terms that
    make ref are larger (then their norm): one wrong element of a 769-wide row moves the norm by
    about 1/√769 ≈ 4% of it, far above any tolerance used here."""
    error = np.linalg.norm(np.asarray(out, np.float64) - ref)
    scale = np.linalg.norm(ref) if scale is None else scale
    bound = tol * scale + tol
    print(f"{what}: error {error:.2e}, {error / bound:.1%} of the bound")
    assert error <= bound, f"{what}: ‖out − ref‖ = {error:.3g}, scale {scale:.3g}, tolerance {tol}"


# Layer norm. Each output is a few float32 operations on float32 inputs (2⁻²⁴ ≈ 6e-8 a rounding),
# some of them sums over a row (the backward's two means) or over the rows (dw, db) of at most
# 769 terms, whose error grows like √n·2⁻²⁴ ≈ 2e-6 (n·2⁻²⁴ at worst) of the sum of the terms'
# magnitudes. Where terms cancel, that sum is the scale, not the result: y = (x − μ)·rstd·w + b
# with rows offset by 100 standard deviations (μ is stored rounded to float, 100·2⁻²⁴ of x − μ's
# size), dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (exactly 0 for one column, where rstd = 1/√eps),
# dw = Σ dy·x̂. 1e-6 of the scale (16 roundings) covers these. The statistics have no such
# excuse: rstd must be within 1e-6 of itself at any offset, which a variance summed in float in
# one pass (Σx²/D − μ²: about 1e-2 off at offset 100) fails. The backward is checked against the float64
# formula at the mean and rstd the kernel was given.
@pytest.mark.parametrize("version", versions("layernorm"))
@given(rows=ROWS, d=WIDTHS, offset=st.sampled_from([0.0, 3.0, 100.0]), seed=SEEDS)
@example(rows=97, d=769, offset=100.0, seed=0)
def test_layernorm_versions(version, rows, d, offset, seed):
    rng = np.random.default_rng(seed)
    x = (offset + rng.standard_normal((rows, d))).astype(np.float32)
    w, b = (rng.standard_normal(d).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((rows, d)).astype(np.float32)
    y, mean, rstd = c.numbered("layernorm_forward", version, x, w, b, 1e-5)
    ref_y, ref_mean, ref_rstd = reference.layernorm_forward(*f64(x, w, b), 1e-5)
    assert_close(mean, ref_mean, 2e-7, "mean")  # a sum in double, rounded once to float
    assert_close(rstd, ref_rstd, 1e-6, "rstd")
    terms = np.abs(x) * ref_rstd[:, None] * np.abs(w)
    assert_close(y, ref_y, 1e-6, "y", scale=np.linalg.norm(terms) + np.linalg.norm(b))
    dx, dw, db = c.numbered("layernorm_backward", version, dy, x, w, mean, rstd)
    x64, dy64, mean64, rstd64 = f64(x, dy, mean, rstd)
    ref_dx, ref_dw, ref_db = reference.layernorm_backward(dy64, x64, w.astype(np.float64), mean64, rstd64)
    xhat = (x64 - mean64[:, None]) * rstd64[:, None]
    assert_close(dx, ref_dx, 1e-6, "dx", scale=np.linalg.norm(rstd64[:, None] * dy * w))
    assert_close(dw, ref_dw, 1e-6, "dw", scale=np.linalg.norm(np.abs(dy64 * xhat).sum(axis=0)))
    assert_close(db, ref_db, 1e-6, "db", scale=np.linalg.norm(np.abs(dy64).sum(axis=0)))


# Cross-entropy. lse = max + log Σ e^(z − max): exp_poly is within 2 ulp, the float32 sum of
# at most 769 positive terms within √769·2⁻²⁴ ≈ 2e-6 of itself (its log: that much absolutely),
# so lse is within a few ulp of |lse|. loss = lse − z_t inherits that as an absolute error (the
# scale: |lse| + |z_t|), and each probability e^(z − lse) as a relative one, |lse| times a few
# ulp (the scale: ‖dlogits‖·(1 + max |lse|)). 1e-6 of the scale: 16 roundings.
@pytest.mark.parametrize("version", versions("cross_entropy"))
@given(rows=ROWS, classes=WIDTHS, scale=st.sampled_from([0.1, 1.0, 10.0]), ignored=st.floats(0, 1), seed=SEEDS)
def test_cross_entropy_versions(version, rows, classes, scale, ignored, seed):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((rows, classes))).astype(np.float32)
    target = rng.integers(0, classes, rows)
    target[rng.random(rows) < ignored] = -100  # ignore_index: loss 0, gradient 0
    dloss = rng.standard_normal(rows).astype(np.float32)
    loss, lse = c.numbered("cross_entropy_forward", version, logits, target, -100)
    ref_loss, ref_lse = reference.cross_entropy_forward(logits.astype(np.float64), target, -100)
    assert_close(lse, ref_lse, 1e-6, "lse")
    picked = logits[np.arange(rows), np.where(target == -100, 0, target)]
    assert_close(loss, ref_loss, 1e-6, "loss", scale=np.linalg.norm(np.abs(ref_lse) + np.abs(picked)))
    assert np.all(loss[target == -100] == 0)
    dlogits = c.numbered("cross_entropy_backward", version, logits, target, lse, dloss, -100)
    ref = reference.cross_entropy_backward(logits.astype(np.float64), target, ref_lse, dloss.astype(np.float64), -100)
    assert_close(dlogits, ref, 1e-6, "dlogits", scale=np.linalg.norm(ref) * (1 + np.abs(ref_lse).max()))
    assert np.all(dlogits[target == -100] == 0)


# GELU. tanh_rational is within a few ulp of tanh, libm's tanhf within 1-2; y = 0.5·x·(1 + t)
# carries t's absolute error times |x|/2, and the derivative carries it times about |x|³·0.07
# (the x·(1 − t²)·(1 + 0.134·x²) term), where 1 − t² is small but not yet 0 (|x| ≈ 3–4). Errors
# are compared elementwise, scaled by those factors, against 1e-6: a few ulp with room.
@pytest.mark.parametrize("version", versions("gelu"))
@given(n=st.sampled_from([1, 3, 17, 31, 33, 65, 769, 40_000]), scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]),
       seed=SEEDS)
def test_gelu_versions(version, n, scale, seed):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(n)).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    x64, dy64 = f64(x, dy)
    y = c.numbered("gelu_forward", version, x)
    dx = c.numbered("gelu_backward", version, x, dy)
    y_error = np.abs(y - reference.gelu_forward(x64)) / (1 + np.abs(x64))
    dx_error = np.abs(dx - reference.gelu_backward(x64, dy64)) / ((1 + np.abs(x64)) ** 3 * (1 + np.abs(dy64)))
    print(f"y: {y_error.max():.2e}, dx: {dx_error.max():.2e} (scaled errors)")
    assert y_error.max() <= 1e-6 and dx_error.max() <= 1e-6


# Adam, on a list of tensors (v1–v3 one call each, v4 one call for all). Each element is a few
# float32 operations (a divide and a square root among them), so p, m and v are each within a
# few ulp of the float64 step: 1e-6 of the norm, plus 1e-6 for elements near 0.
@pytest.mark.parametrize("version", versions("adam"))
@given(sizes=st.lists(st.sampled_from([1, 3, 17, 31, 769, 70_001]), min_size=1, max_size=5),
       lr=st.sampled_from([1e-3, 0.1]), weight_decay=st.sampled_from([0.0, 0.1]), decoupled=st.booleans(),
       step=st.sampled_from([1, 7, 1000]), seed=SEEDS)
def test_adam_versions(version, sizes, lr, weight_decay, decoupled, step, seed):
    rng = np.random.default_rng(seed)
    ps, gs, ms = ([rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3))
    vs = [np.abs(rng.standard_normal(n)).astype(np.float32) for n in sizes]
    expected = [f64(*arrays) for arrays in zip(ps, gs, ms, vs)]
    for p, g, m, v in expected:
        reference.adam_update(p, g, m, v, lr, 0.9, 0.95, 1e-8, weight_decay, decoupled, step)
    c.numbered("adam_update", version, ps, gs, ms, vs, lr, 0.9, 0.95, 1e-8, weight_decay, decoupled, step)
    for got, (p, _, m, v) in zip(zip(ps, ms, vs), expected):
        for out, ref, what in zip(got, (p, m, v), ("p", "m", "v")):
            assert_close(out, ref, 1e-6, what)


# Gradient clipping. The squares are summed in double, each exact (a float's square has 48 bits),
# so the sum of n positive terms is within about √n·2⁻⁵³ of itself (n·2⁻⁵³ at worst): 1e-13 for
# the 350 K values drawn at most, inside 1e-11, while one value left out moves it by about 1/n.
# x·factor in float is the exact product rounded once, as float64's product rounded to float32
# is: equal bits.
@pytest.mark.parametrize("version", versions("grad_norm"))
@given(sizes=st.lists(st.sampled_from([1, 3, 17, 31, 769, 70_001]), min_size=1, max_size=5), seed=SEEDS)
def test_grad_norm_versions(version, sizes, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    expected = sum(float(np.sum(np.square(a.astype(np.float64)))) for a in arrays)
    total = c.numbered("sum_of_squares_many", version, arrays)
    print(f"Σ x²: relative error {abs(total - expected) / expected:.1e}")
    assert abs(total - expected) <= 1e-11 * expected
    scaled = [(a.astype(np.float64) * np.float32(0.37)).astype(np.float32) for a in arrays]
    c.numbered("scale_many", version, arrays, 0.37)
    for out, ref in zip(arrays, scaled):
        np.testing.assert_array_equal(out, ref)


def test_the_backend_runs_the_last_rung():
    """Each family's backend function is its last numbered version: the same bits."""
    backend = backends.get("c")
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 97, 769)).astype(np.float32)
    w, b = rng.standard_normal((2, 769)).astype(np.float32)
    last = {family: names[-1] for family, names in c.LADDERS.items()}
    forward = backend.layernorm_forward(x, w, b, 1e-5)
    for ours, theirs in zip(forward, c.numbered("layernorm_forward", last["layernorm"], x, w, b, 1e-5)):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(backend.layernorm_backward(dy, x, w, *forward[1:]),
                            c.numbered("layernorm_backward", last["layernorm"], dy, x, w, *forward[1:])):
        np.testing.assert_array_equal(ours, theirs)
    target = rng.integers(0, 769, 97)
    loss, lse = backend.cross_entropy_forward(x, target, -100)
    for ours, theirs in zip((loss, lse), c.numbered("cross_entropy_forward", last["cross_entropy"], x, target, -100)):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(backend.cross_entropy_backward(x, target, lse, dy[:, 0], -100),
                                  c.numbered("cross_entropy_backward", last["cross_entropy"], x, target, lse,
                                             dy[:, 0], -100))
    np.testing.assert_array_equal(backend.gelu_forward(x), c.numbered("gelu_forward", last["gelu"], x))
    np.testing.assert_array_equal(backend.gelu_backward(x, dy), c.numbered("gelu_backward", last["gelu"], x, dy))
    states = [[a.copy() for a in (x, dy, x * 0.1, np.abs(dy))] for _ in range(2)]
    backend.adam_update_many(*([a] for a in states[0]), 1e-3, 0.9, 0.95, 1e-8, 0.1, True, 3)
    c.numbered("adam_update", last["adam"], *([a] for a in states[1]), 1e-3, 0.9, 0.95, 1e-8, 0.1, True, 3)
    for ours, theirs in zip(*states):
        np.testing.assert_array_equal(ours, theirs)
    grads = [x, dy[0], w]
    assert backend.sum_of_squares_many(grads) == c.numbered("sum_of_squares_many", last["grad_norm"], grads)


def test_unknown_op_or_version_is_named():
    with pytest.raises(ValueError, match="numbered layernorm_forward: unknown version 'v9'; versions: v1_two_pass"):
        c.numbered("layernorm_forward", "v9", np.ones((2, 2)), np.ones(2), np.ones(2), 1e-5)
    with pytest.raises(ValueError, match="numbered: unknown op 'softmax'; ops: layernorm_forward"):
        c.numbered("softmax", "v1", np.ones((2, 2)))
    with pytest.raises(ValueError, match="numbered adam_update: the parameters and moments must be writable"):
        c.numbered("adam_update", "v2_fused", [np.ones(3)], [np.ones(3)], [np.ones(3)], [np.ones(3)],
                   1e-3, 0.9, 0.95, 1e-8, 0.0, True, 1)
