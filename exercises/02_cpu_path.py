"""Chapter 02 exercises: one matrix product and the machine's limits (read
lessons/02_cpu_path.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 2

The checks compare with NumPy's product in float64 on awkward shapes (1, primes, sizes
that are no multiple of the tile) and with numbers worked out by hand.
"""
import numpy as np  # noqa: F401  (yours to use)


def blocked_matmul(A, B, tile):
    """C = A @ B computed one tile at a time, as the cache-blocked kernel (v3) does.

    A: (M, K), B: (K, N) float arrays; tile: the block side, an int ≥ 1.
    Loop over blocks of rows of C (i0 = 0, tile, 2·tile, …), blocks of the shared
    dimension (k0) and blocks of columns (j0), and add each product of an A block and a B
    block into its C block: C[i0:i1, j0:j1] += A[i0:i1, k0:k1] @ B[k0:k1, j0:j1]. The last
    block of each loop may be smaller than `tile` (M, K, N need not be multiples of it).
    Return C, (M, N). Calling A @ B on the whole matrices defeats the purpose.
    """
    raise NotImplementedError


def peak_gflops(cores, ghz, fma_pipes, pipe_bits, bytes_per_number=4):
    """A CPU's arithmetic ceiling in GFLOP/s.

    Each core starts `fma_pipes` fused multiply-adds per cycle, each on a vector of
    pipe_bits / (8 · bytes_per_number) numbers (lanes), and one FMA is 2 floating-point
    operations; the clock runs at `ghz` GHz. Return the peak for all `cores` as a float.
    (A Zen 4 core: two 256-bit pipes, float32: 2 · 8 FMAs = 32 flops per cycle.)
    """
    raise NotImplementedError


def gemm_arithmetic_intensity(m, k, n, bytes_per_number=4):
    """Flops per byte of memory traffic of C = A @ B, A (m, k), B (k, n).

    The product does 2·m·k·n flops. Count the traffic as each matrix moving once between
    memory and the chip: A and B read, C written, each number `bytes_per_number` bytes.
    Return flops / bytes as a float.
    """
    raise NotImplementedError


def roofline_gflops(intensity, peak, bandwidth):
    """The roofline model: the GFLOP/s a kernel can reach.

    intensity: flops per byte; peak: the arithmetic ceiling in GFLOP/s; bandwidth: memory
    bandwidth in GB/s. Memory can deliver at most bandwidth · intensity GFLOP/s of work,
    and the cores at most `peak`: return the smaller, a float.
    """
    raise NotImplementedError
