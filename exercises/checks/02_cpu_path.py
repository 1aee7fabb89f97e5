"""Checks for chapter 02: the blocked product against NumPy's in float64 on awkward
shapes, and the machine's numbers against cases worked out by hand."""
from hypothesis import strategies as st

from minillm.exercise import arrays, exercise, expect_close

awkward = st.sampled_from([1, 2, 3, 5, 7, 13, 17])   # 1, primes: never a multiple of the tile


@st.composite
def operands(draw):
    m, k, n = draw(awkward), draw(awkward), draw(awkward)
    return draw(arrays((m, k))), draw(arrays((k, n)))


@exercise("blocked_matmul", ab=operands(), tile=st.sampled_from([1, 2, 3, 4, 8, 32]))
def check_blocked_matmul(learner, ab, tile):
    A, B = ab
    expect_close(learner.blocked_matmul(A.copy(), B.copy(), tile), A @ B, 1e-10, f"blocked_matmul(A, B, {tile})")


# (arguments, GFLOP/s) worked out by hand: cores × GHz × pipes × lanes × 2
PEAKS = [((16, 3.0, 2, 256), 16 * 3.0 * 2 * 8 * 2),      # Zen 4: two 256-bit pipes, 8 float32 lanes each
         ((2, 2.0, 2, 512), 2 * 2.0 * 2 * 16 * 2),       # a Xeon with AVX-512: two 512-bit pipes
         ((8, 3.0, 2, 128), 8 * 3.0 * 2 * 4 * 2),        # Zen 1: two 128-bit pipes
         ((4, 3.5, 2, 256, 8), 4 * 3.5 * 2 * 4 * 2),     # float64 on AVX2: half the lanes
         ((1, 1.0, 1, 32), 2.0)]                         # one scalar FMA a cycle at 1 GHz: 2 GFLOP/s


@exercise("peak_gflops")
def check_peak_gflops(learner):
    for args, expected in PEAKS:
        expect_close(learner.peak_gflops(*args), expected, 1e-12, f"peak_gflops{args}")


@exercise("gemm_arithmetic_intensity", mkn=st.tuples(*[st.integers(1, 4096)] * 3), size=st.sampled_from([2, 4, 8]))
def check_gemm_arithmetic_intensity(learner, mkn, size):
    expect_close(learner.gemm_arithmetic_intensity(1024, 1024, 1024), 1024 / 6, 1e-12,
                 "gemm_arithmetic_intensity(1024, 1024, 1024), float32: 2·1024³ / (3·1024²·4)")
    expect_close(learner.gemm_arithmetic_intensity(4096, 4096, 1), 2 * 4096 ** 2 / ((4096 ** 2 + 2 * 4096) * 4),
                 1e-12, "gemm_arithmetic_intensity(4096, 4096, 1): a matrix times a vector, about 0.5")
    m, k, n = mkn
    expect_close(learner.gemm_arithmetic_intensity(m, k, n, size), 2 * m * k * n / ((m * k + k * n + m * n) * size),
                 1e-12, f"gemm_arithmetic_intensity({m}, {k}, {n}, {size})")


@exercise("roofline_gflops", intensity=st.floats(0.01, 1000), peak=st.floats(1, 5000), bandwidth=st.floats(1, 500))
def check_roofline_gflops(learner, intensity, peak, bandwidth):
    expect_close(learner.roofline_gflops(0.5, 1000.0, 20.0), 10.0, 1e-12,
                 "roofline_gflops(0.5, 1000, 20): a matrix-vector product is memory-bound")
    expect_close(learner.roofline_gflops(170.0, 1000.0, 20.0), 1000.0, 1e-12,
                 "roofline_gflops(170, 1000, 20): a large GEMM is compute-bound")
    expect_close(learner.roofline_gflops(intensity, peak, bandwidth), min(peak, intensity * bandwidth), 1e-12,
                 f"roofline_gflops({intensity:.4g}, {peak:.4g}, {bandwidth:.4g})")
