"""Ops that move values without computing new ones: reshape, permute (and transpose),
indexing, cat (and stack, split), and dtype casts. Each backward puts the gradient back
where its values came from."""
import numpy as np

from .. import backends
from ..backends import xp_of
from ..backends.arrays import back_to_back
from ..tensor import Tensor
from .core import normalize_axes, op, result


@op
def reshape(a, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} "
                         f"({a.size} elements) into {shape}") from None
    return result(out, (a,), lambda g: (g.reshape(a.shape),), "reshape")


@op
def permute(a, *dims):
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {a.ndim} axes of {a.shape}")
    inverse = np.argsort([d % a.ndim for d in dims])
    return result(a.data.transpose(dims), (a,), lambda g: (g.transpose(inverse),), "permute")


def transpose(a, dim0, dim1):
    d0, d1 = normalize_axes("transpose", dim0, a.ndim)[0], normalize_axes("transpose", dim1, a.ndim)[0]
    dims = list(range(a.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(a, dims)


@op
def getitem(a, index):
    """Basic slicing and integer-array indexing; the backward scatter-adds, so an index
    that repeats (the same token twice) gets the sum of its gradients."""
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        out = a.data[index]
    except IndexError as exc:
        raise IndexError(f"index: {exc} (tensor shape {a.shape})") from None

    basic = all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))
                for i in (index if isinstance(index, tuple) else (index,)))

    def backward(g):
        full = xp_of(g).zeros(a.shape, dtype=g.dtype)
        if basic:  # slices and integers select each element at most once: a plain store
            full[index] = g
            return (full,)
        return (backends.scatter_add(full, index, g),)

    return result(out, (a,), backward, "getitem")


@op
def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    axis = normalize_axes("cat", dim, tensors[0].ndim)[0]
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
                s != r for i, (s, r) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis):
            raise ValueError(f"cat: shapes {tensors[0].shape} and {t.shape} differ outside dim {dim}")
    out = xp_of(tensors[0].data).concatenate([t.data for t in tensors], axis=axis)
    edges = np.cumsum([0] + [t.shape[axis] for t in tensors])

    def backward(g):
        return [g[(slice(None),) * axis + (slice(lo, hi),)] for lo, hi in zip(edges[:-1], edges[1:])]

    return result(out, tensors, backward, "cat")


@op
def row_blocks(tensors):
    """``cat(tensors, dim=0)`` of 2-D (Mᵢ, K) blocks, for reading only: a view of their memory
    instead of a copy when they already lie back to back in one buffer (``nn.packing.pack``
    puts a layer's weights there), else the copy. For weights that one GEMM reads as one
    matrix (Llama's q | k | v and gate | up); the gradient splits back into the blocks, as
    cat's does. The result shares memory with the blocks: write into neither."""
    tensors = list(tensors)
    joined = back_to_back([t.data for t in tensors]) if tensors else None
    if joined is None:
        return cat(tensors, dim=0)
    edges = np.cumsum([0] + [t.shape[0] for t in tensors])
    # the blocks' gradients are disjoint row ranges of one array: as cat's, nothing writes one into another
    return result(joined, tensors, lambda g: [g[lo:hi] for lo, hi in zip(edges[:-1], edges[1:])], "row_blocks")


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need the same shape; got {sorted(shapes)}")
    axis = dim % (tensors[0].ndim + 1)
    return cat([reshape(t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors], dim=axis)


def split(a, split_size_or_sections, dim=0):
    """torch.split: pieces of ``split_size`` along ``dim`` (the last may be shorter), or
    pieces of the listed sizes."""
    axis = normalize_axes("split", dim, a.ndim)[0]
    length = a.shape[axis]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [min(step, length - start) for start in range(0, length, step)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != length:
            raise ValueError(f"split: section sizes {sizes} sum to {sum(sizes)}, "
                             f"but dim {dim} has length {length}")
    edges = np.cumsum([0] + sizes)
    return [getitem(a, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(edges[:-1], edges[1:])]


@op
def cast(a, dtype):
    dtype = np.dtype(dtype)
    return result(a.data.astype(dtype), (a,), lambda g: (g.astype(a.dtype),), "cast")
