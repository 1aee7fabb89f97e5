"""Array helpers that autograd and every backend share, with no backend state (the package's
``__init__`` re-exports them; ``reference.py`` and the backends import them from here)."""
import importlib

import numpy as np


def xp_of(array):
    """NumPy or CuPy, whichever owns ``array``."""
    return np if isinstance(array, (np.ndarray, np.generic)) else importlib.import_module("cupy")


def to_numpy(array):
    return np.asarray(array) if isinstance(array, (np.ndarray, np.generic)) else array.get()


def _owner(array):
    while array.base is not None and isinstance(array.base, np.ndarray):
        array = array.base
    return array


def back_to_back(arrays):
    """One read-only (ΣMᵢ, K) view of 2-D (Mᵢ, K) C-ordered NumPy arrays that lie one right after
    another in one buffer (views of the same array, each starting where the last ends), or
    None when they do not: the memory a copy by concatenation would produce, without the copy."""
    first = arrays[0]
    if not all(isinstance(a, np.ndarray) and a.ndim == 2 and a.flags.c_contiguous and a.dtype == first.dtype
               and a.shape[1] == first.shape[1] for a in arrays) or first.base is None:
        return None
    owner, address = _owner(first), first.__array_interface__["data"][0]
    for a in arrays:
        if a.base is None or _owner(a) is not owner or a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    rows, width = sum(a.shape[0] for a in arrays), first.shape[1]
    # the strides written out: a one-row block's row stride can be anything (NumPy ignores it)
    return np.lib.stride_tricks.as_strided(first, (rows, width), (width * first.itemsize, first.itemsize),
                                           writeable=False)


def round_to_bf16(array):
    """``array``'s values rounded to the nearest bfloat16 (ties to even; a nan stays a nan, made
    quiet; float64 is first rounded to float32), in ``array``'s dtype: the numbers that a bf16
    kernel reads, for NumPy and CuPy alike (``minillm.bf16.to_bf16`` is the same rounding to
    uint16 bits)."""
    xp = xp_of(array)
    bits = array.astype(xp.float32).view(xp.uint32)  # a copy, any layout
    nan = (bits & xp.uint32(0x7FFFFFFF)) > xp.uint32(0x7F800000)
    rounded = bits + (xp.uint32(0x7FFF) + ((bits >> xp.uint32(16)) & xp.uint32(1)))
    kept = xp.where(nan, bits | xp.uint32(0x00400000), rounded) & xp.uint32(0xFFFF0000)
    return kept.view(xp.float32).astype(array.dtype, copy=False)


def batched_operand(a, batch):
    """(3-D array, batch stride in elements) for a matmul operand broadcast to the leading
    ``batch`` dims: a 2-D operand is shared by every batch (stride 0), a full 3-D one is
    used as it is, anything else becomes a contiguous copy."""
    if a.ndim == 2:
        return a, 0
    if a.shape[:-2] == batch and a.ndim == 3:
        return a, a.strides[0] // a.itemsize
    xp = xp_of(a)
    flat = xp.ascontiguousarray(xp.broadcast_to(a, batch + a.shape[-2:])).reshape((-1,) + a.shape[-2:])
    return flat, flat.strides[0] // flat.itemsize


def gemm_operands(a, b, trans_a, trans_b):
    """Everything a strided batched GEMM kernel needs for ``op(a) @ op(b)``:
    (a3, batch stride of a, b3, batch stride of b, M, N, K, batch shape), where a3 and b3
    are (possibly transposed, broadcast) views or copies with 3 axes."""
    op_a = a.swapaxes(-1, -2) if trans_a else a
    op_b = b.swapaxes(-1, -2) if trans_b else b
    m, k = op_a.shape[-2:]
    n = op_b.shape[-1]
    batch = tuple(np.broadcast_shapes(op_a.shape[:-2], op_b.shape[:-2]))
    a3, sab = batched_operand(op_a, batch)
    b3, sbb = batched_operand(op_b, batch)
    return a3, sab, b3, sbb, m, n, k, batch
