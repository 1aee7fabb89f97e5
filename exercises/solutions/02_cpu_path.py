"""Chapter 02 exercises, solved (see exercises/02_cpu_path.py for the tasks)."""
import numpy as np


def blocked_matmul(A, B, tile):
    (m, k), n = A.shape, B.shape[1]
    C = np.zeros((m, n), np.result_type(A, B))
    for i0 in range(0, m, tile):
        for k0 in range(0, k, tile):
            for j0 in range(0, n, tile):     # slicing past the end stops at the edge: the last block is smaller
                C[i0:i0 + tile, j0:j0 + tile] += A[i0:i0 + tile, k0:k0 + tile] @ B[k0:k0 + tile, j0:j0 + tile]
    return C


def peak_gflops(cores, ghz, fma_pipes, pipe_bits, bytes_per_number=4):
    lanes = pipe_bits // (8 * bytes_per_number)
    return float(cores * ghz * fma_pipes * lanes * 2)


def gemm_arithmetic_intensity(m, k, n, bytes_per_number=4):
    return 2 * m * k * n / ((m * k + k * n + m * n) * bytes_per_number)


def roofline_gflops(intensity, peak, bandwidth):
    return float(min(peak, intensity * bandwidth))
