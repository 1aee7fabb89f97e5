"""bf16: the conversions (NumPy's and the C helper's) against a float64 reference and known
values, and every numbered bf16 GEMM version (kernels/c/matmul_bf16.c) against float64 A·B
of the bf16 inputs.

Tolerance of the GEMM: the products of two bf16 values are exact in float32 (8-bit
significands), so the only error is float32 summation of K terms. Summed in any order, each
element is within γ_K · Σ_k |A[i,k]·B[k,j]| of the exact sum, γ_K ≈ K·2⁻²⁴; the test allows
(K + 2)·2⁻²⁴ · (|A|·|B|)[i, j], element by element."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm import backends
from minillm.bf16 import from_bf16, to_bf16

c = pytest.importorskip("minillm.backends.c") if "c" in backends.available() else None
needs_c = pytest.mark.skipif(c is None, reason=f"c backend unavailable: {backends.status().get('c')}")


def reference_bf16(x):
    """Round-to-nearest-even to 8 significant bits by float64 arithmetic (no bit tricks):
    the nearest multiple of the bf16 spacing at x's binade, ties to the even multiple."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for idx, v in np.ndenumerate(x):
        if not np.isfinite(v) or v == 0:
            out[idx] = v
            continue
        exponent = max(np.floor(np.log2(abs(v))), -126)   # subnormals share the smallest spacing
        spacing = 2.0 ** (exponent - 7)
        q = v / spacing
        r = np.round(q)   # NumPy rounds halves to even
        out[idx] = r * spacing
        if abs(out[idx]) >= 2.0 ** 128:
            out[idx] = np.copysign(np.inf, v)
    return out


KNOWN = [  # float32 value, bf16 bits
    (1.0, 0x3F80), (-2.0, 0xC000), (0.0, 0x0000), (-0.0, 0x8000),
    (1 + 2 ** -8, 0x3F80),            # halfway between 1 and 1 + 2⁻⁷: tie, to even (1)
    (1 + 3 * 2 ** -8, 0x3F82),        # halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: tie, to even (up)
    (1 + 2 ** -8 + 2 ** -20, 0x3F81),  # just above halfway: up
    (1 + 2 ** -8 - 2 ** -20, 0x3F80),  # just below: down
    (np.inf, 0x7F80), (-np.inf, 0xFF80),
    (3.4e38, 0x7F80),                 # above the largest bf16 (≈ 3.39e38) by more than half a step: inf
    (np.pi, 0x4049), (1e-40, 0x0001),  # a subnormal keeps its top bits
]


@pytest.mark.parametrize("value, bits", KNOWN)
def test_known_values(value, bits):
    assert int(to_bf16(np.float32(value))) == bits
    if c is not None:
        assert int(c.to_bf16_c(np.array([value], np.float32))[0]) == bits


def test_nan_stays_nan():
    x = np.array([np.nan, -np.nan, np.float32(np.nan)], np.float32)
    x[2:].view(np.uint32)[:] = 0x7F800001  # a signalling nan whose payload rounding would turn into inf
    for convert in [to_bf16] + ([c.to_bf16_c] if c is not None else []):
        out = from_bf16(convert(x))
        assert np.isnan(out).all()
        assert (np.signbit(out) == np.signbit(x)).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=64))
def test_conversion_against_float64_reference(values):
    x = np.array(values, np.float32)
    got = from_bf16(to_bf16(x)).astype(np.float64)
    np.testing.assert_array_equal(got, reference_bf16(x))
    if c is not None:
        np.testing.assert_array_equal(c.to_bf16_c(x), to_bf16(x))


def test_round_trip_is_exact_on_bf16_values():
    every = np.arange(1 << 16, dtype=np.uint16)
    finite = every[np.isfinite(from_bf16(every))]
    np.testing.assert_array_equal(to_bf16(from_bf16(finite)), finite)


# 1, primes, and sizes beside the multiples of 16 (a vector), 32 (v3's tile width), 12 (its rows)
# and 512 (its KC, in values of k); odd K leaves a pair half empty
sizes = st.sampled_from([1, 2, 3, 5, 7, 11, 12, 13, 15, 16, 17, 31, 32, 33, 47, 63, 97, 131, 241, 257, 511, 513, 521])


@needs_c
@pytest.mark.parametrize("version", [1, 2, 3, 4])
@settings(max_examples=40, deadline=None)
@given(m=sizes, n=sizes, k=sizes)
def test_gemm_versions_against_float64(version, m, n, k):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = to_bf16(rng.standard_normal((m, k))), to_bf16(rng.standard_normal((k, n)))
    a64, b64 = from_bf16(a).astype(np.float64), from_bf16(b).astype(np.float64)
    out = c.matmul_bf16(a, b, version)
    assert out.dtype == np.float32 and out.shape == (m, n)
    bound = (k + 2) * 2.0 ** -24 * (np.abs(a64) @ np.abs(b64))
    assert (np.abs(out - a64 @ b64) <= bound).all()


@needs_c
@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_gemm_empty_and_zero_depth(version):
    for m, k, n in [(0, 3, 4), (3, 0, 4), (3, 4, 0)]:
        out = c.matmul_bf16(np.zeros((m, k), np.uint16), np.zeros((k, n), np.uint16), version)
        assert out.shape == (m, n) and not out.any()


@needs_c
def test_gemm_rejects_wrong_inputs():
    a, b = to_bf16(np.ones((3, 4))), to_bf16(np.ones((4, 5)))
    with pytest.raises(TypeError, match="uint16"):
        c.matmul_bf16(a.astype(np.float32), b)
    with pytest.raises(TypeError, match="uint16"):
        c.matmul_bf16(a, b.astype(np.int16))
    with pytest.raises(ValueError, match="inner dimensions"):
        c.matmul_bf16(a, to_bf16(np.ones((3, 5))))
    with pytest.raises(ValueError, match="2-D"):
        c.matmul_bf16(a[None], b)
    with pytest.raises(ValueError, match="version"):
        c.matmul_bf16(a, b, version=5)


@needs_c
def test_numbered_versions_are_read_from_the_library():
    """v1–v4 listed from the library's names (v4: float32 operands, rounded as they are packed)."""
    assert c.MATMUL_BF16 == {1: "matmul_bf16_v1_scalar", 2: "matmul_bf16_v2_dpbf16", 3: "matmul_bf16_v3_tiled",
                             4: "matmul_bf16_v4_from_float"}


@needs_c
def test_gemm_reads_views():
    """Transposed and sliced uint16 views are made contiguous, not misread."""
    rng = np.random.default_rng(3)
    a, b = to_bf16(rng.standard_normal((40, 33))).T, to_bf16(rng.standard_normal((80, 17)))[::2]
    ref = from_bf16(a).astype(np.float64) @ from_bf16(b).astype(np.float64)
    np.testing.assert_allclose(c.matmul_bf16(a, b, 3), ref, rtol=1e-4, atol=1e-4)


def test_round_to_bf16_rounds_as_to_bf16_and_keeps_the_dtype():
    """backends.arrays.round_to_bf16 (the reference's rounding, for NumPy and CuPy arrays) gives
    to_bf16's values bit for bit: ties to even, nan kept and quiet, overflow to inf, any layout."""
    from minillm.backends.arrays import round_to_bf16
    special = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -0.0, np.inf, -np.inf, np.nan, -np.nan, 3.4e38, 1e-40, -2.5],
                       np.float32)
    x = np.concatenate([special, np.random.default_rng(0).standard_normal(997).astype(np.float32)])
    expected = from_bf16(to_bf16(x))
    got = round_to_bf16(x)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    got64 = round_to_bf16(x.astype(np.float64))
    assert got64.dtype == np.float64 and np.array_equal(got64, expected.astype(np.float64), equal_nan=True)
    square = x[:1000].reshape(40, 25).T  # a transposed view
    assert np.array_equal(round_to_bf16(square), from_bf16(to_bf16(square)), equal_nan=True)
    assert round_to_bf16(np.array(1 + 2 ** -8, np.float32)).shape == ()  # a 0-d array stays 0-d


@needs_c
@settings(max_examples=30, deadline=None)
@given(rows=st.sampled_from([1, 7, 95, 96, 97, 131, 300, 769]), n_in=sizes, n_out=sizes,
       need=st.sampled_from([(True, True, True), (True, False, False), (False, True, True), (True, True, False)]))
def test_linear_backward_bf16_against_float64(rows, n_in, n_out, need):
    """dx = g·W and dW = gᵀ·x on bf16-rounded g, x, W (db = Σ_rows g on float32 g), whichever way
    linear.c shares the rows between the cores (from 96 rows on two cores: each its own rows and
    a partial dW, then the partials summed), within the GEMM's bound; K is the summed length
    (n_out for dx, rows for dW; the partials' sum adds one more rounding)."""
    rng = np.random.default_rng(rows * 7919 + n_in * 31 + n_out)
    g, x, w = (rng.standard_normal(s).astype(np.float32) for s in ((rows, n_out), (rows, n_in), (n_out, n_in)))
    g64, x64, w64 = (from_bf16(to_bf16(a)).astype(np.float64) for a in (g, x, w))
    gx, gw, gb = backends.get("c").linear_backward_bf16(g, x, w, *need)
    if need[0]:
        bound = (n_out + 2) * 2.0 ** -24 * (np.abs(g64) @ np.abs(w64))
        assert gx.shape == (rows, n_in) and (np.abs(gx - g64 @ w64) <= bound).all()
    if need[1]:
        bound = (rows + 3) * 2.0 ** -24 * (np.abs(g64).T @ np.abs(x64))
        assert gw.shape == (n_out, n_in) and (np.abs(gw - g64.T @ x64) <= bound).all()
    if need[2]:
        exact = g.astype(np.float64).sum(axis=0)
        assert (np.abs(gb - exact) <= (rows + 2) * 2.0 ** -24 * np.abs(g.astype(np.float64)).sum(axis=0)).all()
    assert [a is None for a in (gx, gw, gb)] == [not n for n in need]
