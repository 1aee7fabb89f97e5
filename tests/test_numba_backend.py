"""The Numba kernels beyond the shared backend suite: the numbered GEMM versions on awkward
shapes against a float64 reference, the generated micro-kernel kept in step with its
generator, the one compiled GEMM taking read-only and zero-stride operands, and SLP
vectorisation switched on only while our kernels compile."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minillm.backends import numba as numba_backend
from minillm.backends.numba import gemm as numba_gemm

# 1, primes, and sizes that straddle the 6×16 tile, MC (120) and KC (256)
sizes = st.sampled_from([1, 2, 5, 7, 13, 17, 63, 121, 257])


@pytest.mark.parametrize("version", numba_backend.NUMBERED)
@given(m=sizes, n=sizes, k=sizes)
def test_numbered_matmul_versions(version, m, n, k):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    out = numba_backend.matmul_numbered(version, a, b)
    assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6


def test_strided_operands_and_empty_k():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 70)).astype(np.float32)
    np.testing.assert_allclose(numba_backend.backend.matmul(a, a, trans_a=True), a.T @ a, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(numba_backend.backend.matmul(a, a, trans_b=True), a @ a.T, rtol=1e-4, atol=1e-4)
    empty = numba_backend.backend.matmul(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32))
    np.testing.assert_array_equal(empty, np.zeros((4, 3)))


def test_generated_micro_kernel_is_current(tmp_path):
    numba_gemm.write_micro_kernel(tmp_path / "kernel.py")
    shipped = (numba_gemm.__file__.rsplit("/", 1)[0] + "/micro_kernel.py")
    assert (tmp_path / "kernel.py").read_text() == open(shipped).read(), \
        "micro_kernel.py is stale: run python -c 'from minillm.backends.numba import gemm; " \
        "gemm.write_micro_kernel()'"


def test_slp_is_switched_on_only_while_compiling():
    from numba.core import config
    before = config.SLP_VECTORIZE
    numba_gemm.sgemm(np.ones((3, 2), np.float32), np.ones((2, 4), np.float32), np.empty((3, 4), np.float32))
    assert config.SLP_VECTORIZE == before
    assert len(numba_gemm._gemm.signatures) == 1  # strided and contiguous operands share one compile


@pytest.mark.parametrize("how", ["frozen", "broadcast"])
def test_one_compile_serves_read_only_operands(how):
    """The GEMM is compiled once and compiling is then disabled, so its signature must take
    what a user's arrays can be: read-only (frozen, a memory map) and zero-stride
    (np.broadcast_to, which the batch of a broadcasting matmul hands over)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((17, 33)).astype(np.float32), rng.standard_normal((33, 9)).astype(np.float32)
    if how == "frozen":
        a.flags.writeable = b.flags.writeable = False
    else:  # zero strides: between A's rows, between B's columns
        a, b = np.broadcast_to(a[:1], a.shape), np.broadcast_to(b[:, :1], b.shape)
    c = np.empty((17, 9), np.float32)
    numba_gemm.sgemm(a, b, c)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.linalg.norm(c - ref) <= 1e-5 * np.linalg.norm(ref) + 1e-6
    assert len(numba_gemm._gemm.signatures) == 1


@given(t=st.sampled_from([1, 7, 65, 300]), d=st.sampled_from([1, 13, 32]), causal=st.booleans())
def test_attention_v1_rows_agrees_with_the_tiles(t, d, causal):
    """v1 stays a correct kernel: it serves float64 and is timed against the tiles."""
    rng = np.random.default_rng(t * 31 + d)
    q, k, v, dout = (rng.standard_normal((2, t, d)).astype(np.float32) for _ in range(4))
    scale = np.float32(d ** -0.5)
    out, lse = numba_backend.backend.attention_forward(q, k, v, causal, scale)
    rows_out, rows_lse = numba_backend.backend.attention_forward(q, k, v, causal, scale, version="rows")
    np.testing.assert_allclose(rows_out, out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rows_lse, lse, rtol=1e-5, atol=1e-5)
    for got, ref in zip(numba_backend.backend.attention_backward(q, k, v, out, lse, dout, causal, scale, version="rows"),
                        numba_backend.backend.attention_backward(q, k, v, out, lse, dout, causal, scale)):
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
