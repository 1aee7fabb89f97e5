"""The C kernels beyond the shared backend suite: every numbered matmul and attention version
against a float64 reference on awkward shapes, the build flags, and the sanitizer build."""
import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minillm import backends
from minillm.backends.reference import backend as reference

pytestmark = pytest.mark.skipif("c" not in backends.available(),
                                reason=f"c backend unavailable: {backends.status().get('c')}")
c = pytest.importorskip("minillm.backends.c") if "c" in backends.available() else None

# 1, primes, and sizes that straddle the register tiles (6×16 AVX2, 12×32 AVX-512), MC (120/240)
# and KC (256 AVX2, 512 AVX-512)
sizes = st.sampled_from([1, 2, 5, 7, 13, 17, 33, 63, 65, 97, 131, 241, 257, 385, 521])


@pytest.mark.parametrize("version", c.NUMBERED if c else [])
@given(m=sizes, n=sizes, k=sizes)
def test_numbered_matmul_versions(version, m, n, k):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    out = c.matmul_numbered(version, a, b)
    assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


@pytest.mark.parametrize("threads", [1, 2, 3])
@given(m=sizes, n=sizes, k=sizes, trans_a=st.booleans(), trans_b=st.booleans(), with_bias=st.booleans())
def test_matmul_on_any_number_of_threads(threads, m, n, k, trans_a, trans_b, with_bias):
    """Products with many rows give each thread its own rows of C (v8), with few rows a thread
    and a wide C its own columns, the rest share the blocks out (v6); either way, the same
    product and the bias added once. A row or column split off by one sliver, a share that
    skips the last rows, or a bias not moved with its columns, fails it."""
    rng = np.random.default_rng(m * 7919 + n * 31 + k + threads)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    out = c._matmul_2d(a, b, trans_a, trans_b, threads, bias)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64) + (0.0 if bias is None else bias)
    assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("k", [7, 521])
def test_matmul_wider_than_a_panel(threads, k):
    """C wider than a panel of B: 512 columns under v8 (256 on AVX2), 4096 under v4–v7, whose
    v7 clears each block of C just before its tiles, one panel's columns of a row at a time.
    Clearing the whole row, or clearing again at the second k-block, fails it."""
    rng = np.random.default_rng(k + threads)
    a = rng.standard_normal((151, k)).astype(np.float32)  # 151 rows: own rows (v7, v8) on 2 and 3 threads
    b = rng.standard_normal((4096 + 33, k)).astype(np.float32)
    bias = rng.standard_normal(4096 + 33).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64).T
    out = c._matmul_2d(a, b, False, True, threads, bias)
    assert np.linalg.norm(out - (ref + bias)) <= 1e-5 * np.linalg.norm(ref + bias) + 1e-6
    if threads == 2:  # the numbered versions take all the cores
        for version in ("matmul_v7_own_rows", "matmul_v8_sliver_in_l1"):
            out = c.matmul_numbered(version, a, np.ascontiguousarray(b.T))
            assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6, version


@pytest.mark.parametrize("threads", [1, 2, 3])
@given(rows=sizes, n_in=sizes, n_out=sizes)
def test_linear_backward_on_any_number_of_threads(threads, rows, n_in, n_out):
    """With MIN_ROWS_PER_THREAD rows a thread, each thread takes its own rows and the partial
    weight gradients are summed (any number of threads); with fewer, two threads take one
    product each and one or three run them one after the other: the same three gradients.
    A thread's partial left out of the sum, or a row split that skips a row, fails it."""
    rng = np.random.default_rng(rows * 7919 + n_in * 31 + n_out)
    g, x, w = (rng.standard_normal(s).astype(np.float32) for s in ((rows, n_out), (rows, n_in), (n_out, n_in)))
    gx, gw, gb = c.backend.linear_backward(g, x, w, threads=threads)
    g64 = g.astype(np.float64)
    for out, ref in ((gx, g64 @ w), (gw, g64.T @ x), (gb, g64.sum(0))):
        assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


def test_adam_keeps_no_stale_pointers():
    """adam_update_many keeps the C pointer arrays of parameters and moments between calls:
    moments replaced by new arrays (the parameters the same: the cache's key), a replaced
    parameter, or another list of tensors in between, must be what is updated."""
    rng = np.random.default_rng(0)
    def arrays(n):
        return [rng.standard_normal(s).astype(np.float32) for s in ((3, 5), (7,))[:n]]
    ps, ms, vs = arrays(2), [np.zeros((3, 5), np.float32), np.zeros(7, np.float32)], \
        [np.zeros((3, 5), np.float32), np.zeros(7, np.float32)]
    for step in (1, 2, 3, 4):
        if step == 3:  # the optimizer's state loaded from a checkpoint: new moment arrays
            ms[0], vs[0] = np.full((3, 5), 0.1, np.float32), np.full((3, 5), 0.2, np.float32)
        if step == 4:  # the model's: a new parameter array
            ps[0] = rng.standard_normal((3, 5)).astype(np.float32)
        gs = arrays(2)
        expected = [[a.astype(np.float64) for a in group] for group in (ps, gs, ms, vs)]
        for p, g, m, v in zip(*expected):
            reference.adam_update(p, g, m, v, 1e-2, 0.9, 0.99, 1e-8, 0.1, True, step)
        c.backend.adam_update_many(ps, gs, ms, vs, 1e-2, 0.9, 0.99, 1e-8, 0.1, True, step)
        for got, want in zip(ps + ms + vs, expected[0] + expected[2] + expected[3]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    other = arrays(1)  # a second optimizer's list between two calls of the first
    c.backend.adam_update_many(other, arrays(1), [np.zeros((3, 5), np.float32)], [np.zeros((3, 5), np.float32)],
                       1e-2, 0.9, 0.99, 1e-8, 0.0, True, 1)
    before = [p.copy() for p in ps]
    c.backend.adam_update_many(ps, arrays(2), ms, vs, 1e-2, 0.9, 0.99, 1e-8, 0.1, True, 5)
    assert all(not np.array_equal(a, b) for a, b in zip(ps, before))


def test_embedding_backward_refuses_indices_outside_the_table():
    """The C loop writes where the index points: an index past the table is an error, not a write."""
    table, values = np.zeros((3, 4), np.float32), np.ones((2, 4), np.float32)
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(IndexError, match=r"scatter_add_rows: indices must lie in \[0, 3\)"):
            c.backend.scatter_add_rows(table, np.asarray(bad), values)
    assert not table.any()


def test_strided_and_batched_operands_need_no_copies():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 70, 50)).astype(np.float32)
    b = rng.standard_normal((50, 90)).astype(np.float32)
    np.testing.assert_allclose(c.backend.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(c.backend.matmul(a, a, trans_b=True), a @ a.swapaxes(1, 2), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(c.backend.matmul(a, a, trans_a=True), a.swapaxes(1, 2) @ a, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(c.backend.matmul(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32)), np.zeros((4, 3)))


@pytest.mark.parametrize("version", c.ATTENTION_VERSIONS if c else [])
@given(n_kv=st.sampled_from([1, 2, 3]), groups=st.integers(1, 4), t=st.sampled_from([1, 2, 7, 65, 300]),
       extra_keys=st.sampled_from([0, 5]), d=st.sampled_from([1, 13, 64]), causal=st.booleans(),
       spare=st.sampled_from([0, 3]))
def test_numbered_attention_versions(version, n_kv, groups, t, extra_keys, d, causal, spare):
    """Every version of kernels/c/attention/ against float64: grouped-query heads (each key/value
    head read by `groups` query heads), more keys than queries, and keys and values that are
    the first Tk positions of a larger buffer (a KV cache, read where it lies)."""
    rng = np.random.default_rng(t * 31 + d + 7 * groups + n_kv)
    t_key, scale = t + extra_keys, d ** -0.5
    q, dout = (rng.standard_normal((n_kv * groups, t, d)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((n_kv, t_key + spare, d)).astype(np.float32)[:, :t_key] for _ in range(2))
    ref_out, ref_lse = reference.attention_forward(*(a.astype(np.float64) for a in (q, k, v)), causal, scale)
    ref_grads = reference.attention_backward(*(a.astype(np.float64) for a in (q, k, v, ref_out)), ref_lse,
                                             dout.astype(np.float64), causal, scale)
    out, lse = c.backend.attention_forward(q, k, v, causal, scale, version=version)
    grads = c.backend.attention_backward(q, k, v, out, lse, dout, causal, scale, version=version)
    for label, got, ref in zip(("out", "lse", "dq", "dk", "dv"), (out, lse) + grads, (ref_out, ref_lse) + ref_grads):
        assert got.shape == ref.shape, label
        assert np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-5 * np.sqrt(ref.size), label


def _turned_rows(x, cos, sin, positions, sign):
    """RoPE in float64 on (N, T, d) rows: row t's pair (i, i + d/2) turned by sign · the angle of
    position positions[t] (cos, sin: one row of the tables per position)."""
    half = x.shape[-1] // 2
    c_, s_ = cos[positions].astype(np.float64), sign * sin[positions].astype(np.float64)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c_ - x2 * s_, x2 * c_ + x1 * s_], axis=-1)


@given(n_kv=st.sampled_from([1, 2]), groups=st.integers(1, 3), t=st.sampled_from([1, 2, 4, 5, 65, 130]),
       extra_keys=st.sampled_from([0, 5]), d=st.sampled_from([2, 14, 64]), causal=st.booleans())
def test_v4_turns_queries_and_keys_by_their_positions(n_kv, groups, t, extra_keys, d, causal):
    """v4_rotary with RoPE's tables, called as the library is, against float64: keys turned by
    positions 0 … Tk − 1 and queries by the last Tq of them (Tk > Tq here too, which no Python
    path reaches yet), attention, then dQ and dK turned back by −θ."""
    from minillm.backends.c.attention import _heads_where_they_lie, _problem
    rng = np.random.default_rng(t * 131 + d * 7 + groups + 3 * n_kv + extra_keys)
    t_key, scale = t + extra_keys, d ** -0.5
    q, dout = (rng.standard_normal((n_kv * groups, t, d)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((n_kv, t_key, d)).astype(np.float32) for _ in range(2))
    angles = np.arange(t_key)[:, None] * rng.uniform(0.0, 2.0, d // 2)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    q_at, k_at = np.arange(t_key - t, t_key), np.arange(t_key)
    q64, k64 = _turned_rows(q.astype(np.float64), cos, sin, q_at, 1), _turned_rows(k.astype(np.float64), cos, sin, k_at, 1)
    ref_out, ref_lse = reference.attention_forward(q64, k64, v.astype(np.float64), causal, scale)
    dq, dk, ref_dv = reference.attention_backward(q64, k64, v.astype(np.float64), ref_out, ref_lse,
                                                  dout.astype(np.float64), causal, scale)
    ref_dq, ref_dk = _turned_rows(dq, cos, sin, q_at, -1), _turned_rows(dk, cos, sin, k_at, -1)

    out, lse = np.empty_like(q), np.empty(q.shape[:2], np.float32)
    problem = _problem(q, k, causal, scale, *(_heads_where_they_lie(a) for a in (q, k, out)))
    problem.rope_cos, problem.rope_sin = c.pointer(cos), c.pointer(sin)
    c.lib.attention_v4_rotary_forward(problem, *map(c.pointer, (q, k, v, out, lse)))
    grads = [np.empty_like(a) for a in (q, k, v)]
    c.lib.attention_v4_rotary_backward(problem, *map(c.pointer, (q, k, v, out, lse, dout, *grads)))
    for label, got, ref in zip(("out", "lse", "dq", "dk", "dv"), [out, lse] + grads,
                               (ref_out, ref_lse, ref_dq, ref_dk, ref_dv)):
        assert np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-5 * np.sqrt(ref.size), label


def test_unknown_attention_version_is_a_clear_error():
    q = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="attention: unknown version 'v9'; versions: v1_naive, v2_rows, v3_tiles"):
        c.backend.attention_forward(q, q, q, True, 0.5, version="v9")


def test_unknown_version_is_a_clear_error():
    with pytest.raises(ValueError, match="matmul_numbered: unknown version 'v9'; versions: matmul_v1_naive"):
        c.matmul_numbered("v9", np.ones((2, 2)), np.ones((2, 2)))


def test_the_loaded_kernels_are_built_from_these_sources():
    """The extension carries a digest of kernels/c; an editable checkout whose kernels changed
    since the build (or whose rebuild failed and left the old library) is told apart."""
    from types import SimpleNamespace

    from minillm.backends.c import build, library
    assert library._ffi_string(library._module, "minillm_source_digest") == build.source_digest()
    assert not library._stale(library._module)
    older = SimpleNamespace(lib=SimpleNamespace(), ffi=c.ffi)  # a library from before the digest existed
    assert library._stale(older)


def test_build_flags_are_reported():
    if os.environ.get("MINILLM_C_SANITIZE") == "1":
        assert "-fsanitize=address,undefined" in c.build_flags  # the sanitizer run really is sanitized
    else:
        assert c.build_flags.startswith("-O3")
    print(f"c backend built with: {c.build_flags}")


@pytest.mark.parametrize("t", [1024, 1100])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_on_long_sequences(t, causal):
    """Sequences of 1024 tokens and more take taller query tiles (120 rows, v3_tiles.c's
    tile_rows) than the shared suite's lengths reach; both lengths leave a partial last tile. The
    output, log-sum-exp and the three gradients against the float64 reference."""
    rng = np.random.default_rng(t + causal)
    q, k, v, dout = (rng.standard_normal((2, t, 16)).astype(np.float32) for _ in range(4))
    scale = 0.25
    ref_out, ref_lse = reference.attention_forward(*(a.astype(np.float64) for a in (q, k, v)), causal, scale)
    ref_grads = reference.attention_backward(*(a.astype(np.float64) for a in (q, k, v, ref_out)), ref_lse,
                                             dout.astype(np.float64), causal, scale)
    out, lse = c.backend.attention_forward(q, k, v, causal, scale)
    grads = c.backend.attention_backward(q, k, v, out, lse, dout, causal, scale)
    for got, ref in ((out, ref_out), (lse, ref_lse)) + tuple(zip(grads, ref_grads)):
        assert np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


# ---- int8 weights, float32 activations (linear_int8.c) ----------------------------------------
# how far each version may round an activation, as a fraction of its row's largest: v1 and v2
# keep floats, v3 carries one int8 digit (half a step of max|x| / 127), v4 and v5 two (max|x| / 64516)
INT8_ACTIVATION_STEP = {"linear_int8_v1_scalar": 0.0, "linear_int8_v2_widened": 0.0,
                        "linear_int8_v3_vnni": 1 / 254, "linear_int8_v4_two_digits": 1 / 64516,
                        "linear_int8_v5_row_order": 1 / 64516}


def int8_layer(rng, m, n, k):
    q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    s = (rng.random(n) * 0.05 + 1e-3).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    return x, q, s, rng.standard_normal(n).astype(np.float32)


def int8_error_bound(x, w, step):
    """What rounding each activation by up to ``step`` · max|x| of its row does through Σ|w|,
    plus float32 rounding of the sum (as in test_backends)."""
    ax, aw = np.abs(x), np.abs(w)
    return step * ax.max(axis=1, keepdims=True) * aw.sum(axis=1)[None, :] + 1e-5 * (ax @ aw.T) + 1e-6


def test_every_linear_int8_version_is_tested():
    assert set(INT8_ACTIVATION_STEP) == set(c.LINEAR_INT8)


@pytest.mark.parametrize("version", c.LINEAR_INT8 if c else [])
@pytest.mark.parametrize("threads", [1, 0])
@given(m=st.sampled_from([1, 2, 3, 4, 5, 9]), n=sizes, k=sizes, with_bias=st.booleans())
def test_numbered_linear_int8_versions(version, threads, m, n, k, with_bias):
    """Each version against x · (s ⊙ W)ᵀ + b in float64: widths of 1, primes and sizes that are
    not multiples of the 16-value vectors or the 64-byte VNNI steps; 521 × 521 weights (265 KB)
    are split across the threads. Under the sanitizer build (no -march) v3 and v4 take their
    portable loops: the same bound holds."""
    x, q, s, b = int8_layer(np.random.default_rng(m * 7919 + n * 31 + k), m, n, k)
    w = q.astype(np.float64) * s[:, None]
    ref = x.astype(np.float64) @ w.T + (b if with_bias else 0)
    out = c.linear_int8_numbered(version, x, q, s, b if with_bias else None, threads)
    assert out.shape == (m, n)
    assert np.all(np.abs(out - ref) <= int8_error_bound(x.astype(np.float64), w, INT8_ACTIVATION_STEP[version]))


@pytest.mark.parametrize("version", c.LINEAR_INT8 if c else [])
def test_linear_int8_is_the_same_on_any_number_of_threads(version):
    """Each output row is computed whole by one thread, in the same order: bit for bit the same."""
    x, q, s, b = int8_layer(np.random.default_rng(5), 3, 1031, 768)
    one = c.linear_int8_numbered(version, x, q, s, b, threads=1)
    for threads in (2, 3, 0):
        np.testing.assert_array_equal(c.linear_int8_numbered(version, x, q, s, b, threads=threads), one)


def test_two_digits_keep_a_row_with_outliers_where_one_digit_does_not():
    """A row with three channels 40–60× the others (as layer norms' outputs in trained
    transformers have): with one int8 digit every small activation rounds to a step of
    max|x| / 127, and the layer errs by more than its int8 weights do; with two digits (v4,
    the backend's) the activations' share of the error is negligible."""
    from minillm.compress import quantize_symmetric
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 768)).astype(np.float32)
    x[0, [5, 138, 447]] = [60.0, -50.0, 40.0]
    weight = (rng.standard_normal((2304, 768)) * 0.02).astype(np.float32)
    q, s = quantize_symmetric(weight)
    exact = x.astype(np.float64) @ weight.T.astype(np.float64)
    dequantised = x.astype(np.float64) @ (q.astype(np.float64) * s[:, None]).T

    def error(y, ref):
        return np.linalg.norm(y - ref) / np.linalg.norm(ref)
    weights_alone = error(dequantised, exact)
    one, two = (c.linear_int8_numbered(v, x, q, s) for v in ("linear_int8_v3_vnni", "linear_int8_v4_two_digits"))
    print(f"relative error: int8 weights alone {weights_alone:.2e}, + one digit {error(one, exact):.2e}, "
          f"+ two digits {error(two, exact):.2e}")
    assert error(one, dequantised) > weights_alone
    assert error(two, dequantised) < 0.05 * weights_alone


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 9])
def test_v5_and_the_backends_kernel_give_v4s_results_bit_for_bit(m):
    """v5 reads the weights in another order and splits each sum in two, but the sums are
    integers, exact in any order: v4's results to the bit, and so the backend's linear_int8
    (v5 for one or two rows, v4 for more) whatever the number of rows. A build without
    AVX512-VNNI (the sanitizer's) runs v2 instead: its results to the bit."""
    x, q, s, b = int8_layer(np.random.default_rng(m), m, 517, 1000)  # 1000 = 15 steps of 64 and 40 bytes
    v4 = c.linear_int8_numbered("linear_int8_v4_two_digits", x, q, s, b)
    np.testing.assert_array_equal(c.linear_int8_numbered("linear_int8_v5_row_order", x, q, s, b), v4)
    production = v4 if c.lib.linear_int8_has_vnni() else c.linear_int8_numbered("linear_int8_v2_widened", x, q, s, b)
    np.testing.assert_array_equal(c.backend.linear_int8(x, q, s, b), production)


def test_linear_int8_shapes_and_versions_are_checked():
    x, q, s, b = int8_layer(np.random.default_rng(1), 2, 5, 7)
    with pytest.raises(ValueError, match=r"linear_int8: unknown version 'v9'; versions: linear_int8_v1_scalar"):
        c.linear_int8_numbered("v9", x, q, s)
    with pytest.raises(ValueError, match=r"linear_int8: x \(2, 6\), weight \(5, 7\).* do not fit"):
        c.backend.linear_int8(x[:, :6], q, s, b)
    with pytest.raises(ValueError, match=r"scale \(4,\)"):
        c.backend.linear_int8(x, q, s[:4], b)
    np.testing.assert_array_equal(c.backend.linear_int8(x[:, :0], q[:, :0], s, b), np.broadcast_to(b, (2, 5)))  # K = 0


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 100_003])
def test_stream_read_reads_every_value(threads, n):
    assert c.stream_read(np.ones(n, np.float32), threads) == n
