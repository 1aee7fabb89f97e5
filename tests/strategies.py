"""Hypothesis strategies shared by the tests: shapes (with the awkward sizes 1 and primes),
broadcastable pairs, matmul-compatible shapes, and values kept where each op is
well-conditioned (domains shifted for log, sqrt and division)."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

sides = st.sampled_from([1, 2, 3, 5, 7])


def shapes(min_dims=0, max_dims=3):
    return st.lists(sides, min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def broadcastable_pairs(draw, min_dims=0, max_dims=3):
    """Two shapes that broadcast: each axis of the second is the first's, or 1, and the
    second may drop leading axes."""
    first = draw(shapes(min_dims, max_dims))
    second = tuple(draw(st.sampled_from([side, 1])) for side in first)
    second = second[draw(st.integers(0, len(second))):]
    return (first, second) if draw(st.booleans()) else (second, first)


@st.composite
def matmul_shapes(draw):
    """Operand shapes for matmul: 1-D vectors, matrices, and batches whose batch axes
    broadcast against each other."""
    m, k, n = draw(sides), draw(sides), draw(sides)
    kind = draw(st.sampled_from(["mm", "vm", "mv", "vv", "batched"]))
    if kind == "mm":
        return (m, k), (k, n)
    if kind == "vm":
        return (k,), (k, n)
    if kind == "mv":
        return (m, k), (k,)
    if kind == "vv":
        return (k,), (k,)
    batch_a, batch_b = draw(broadcastable_pairs(min_dims=1, max_dims=2))
    return batch_a + (m, k), batch_b + (k, n)


def values(shape, low=-2.0, high=2.0):
    """float64 arrays with elements in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, width=64))


def positive(shape):
    return values(shape, 0.5, 3.0)


@st.composite
def away_from_zero(draw, shape, low=0.5, high=2.0):
    magnitude = draw(values(shape, low, high))
    signs = draw(hnp.arrays(np.bool_, shape))
    return np.where(signs, magnitude, -magnitude)


@st.composite
def distinct(draw, shape, gap=0.05):
    """Values with no ties and no two closer than ``gap`` (max/min, relu and clip are not
    differentiable at ties or kinks; finite differences would straddle them)."""
    size = int(np.prod(shape, dtype=int))
    order = draw(st.permutations(list(range(size))))
    offset = draw(st.floats(-1, 1))
    return (np.asarray(order, np.float64) * gap * 3 + offset - size * gap * 1.5).reshape(shape) + gap / 2


# 1, primes, and sizes that are no multiple of any kernel's tile (6×16, 12×32, 128×128)
matrix_sides = st.sampled_from([1, 2, 5, 7, 13, 17, 33, 67])


@st.composite
def broadcast_matmul_shapes(draw, sides=matrix_sides):
    """Operand shapes for a batched matmul whose batch axes broadcast both ways: each operand
    keeps a tail of one batch shape (up to 3 axes) with any of its axes cut to 1, so either
    side, and different axes, may broadcast; either may instead be a 1-D vector (NumPy's
    rule: it gains an axis for the product and loses it after)."""
    m, k, n = draw(sides), draw(sides), draw(sides)
    batch = draw(st.lists(st.sampled_from([2, 3, 4]), min_size=1, max_size=3))

    def operand_batch():
        kept = batch[draw(st.integers(0, len(batch))):]
        return tuple(draw(st.sampled_from([size, 1])) for size in kept)

    a, b = operand_batch() + (m, k), operand_batch() + (k, n)
    vector = draw(st.sampled_from(["neither", "neither", "a", "b"]))
    return ((k,) if vector == "a" else a), ((k,) if vector == "b" else b)
