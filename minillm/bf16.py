"""bfloat16 as uint16 arrays: the top 16 bits of a float32 (same sign and exponent, 7 mantissa
bits), which is what the bf16 GEMM (kernels/c/matmul_bf16.c) reads.

``to_bf16`` rounds to nearest, ties to even, the way the C helper ``bf16_from_float`` does: add
0x7FFF plus the lowest kept bit, then keep the top half. A nan stays a nan (made quiet, sign
kept); a float beyond the largest bf16 rounds to inf. ``from_bf16`` is exact: the 16 bits
become the top half of a float32."""
import numpy as np


def to_bf16(x):
    """float array → uint16 array of bf16 bits, round to nearest even (float64 input is first
    rounded to float32)."""
    bits = np.array(x, dtype=np.float32, order="C").view(np.uint32)  # a copy; keeps a 0-d shape
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    quiet_nan = (bits >> np.uint32(16)) | np.uint32(0x0040)
    return np.asarray(np.where(nan, quiet_nan, rounded >> np.uint32(16)), dtype=np.uint16)


def from_bf16(u):
    """uint16 array of bf16 bits → float32 array (exact)."""
    u = np.asarray(u)
    if u.dtype != np.uint16:
        raise TypeError(f"from_bf16: expected uint16 bf16 bits, got {u.dtype}")
    return (u.astype(np.uint32) << np.uint32(16)).view(np.float32)
