"""Llama's blocks for the C backend: RMSNorm (kernels/c/rmsnorm.c), rotary embeddings (rope.c)
and SwiGLU's gate (swiglu.c), whose comments give the arithmetic.

``LlamaKernels`` holds the overrides as methods and is mixed into ``CBackend`` (before
``Backend``, so ``super()`` is the reference). This module is imported by the package that
loads the library, so it does not import the library back: ``CBackend`` hands it over as the
class attributes ``_lib``, ``_ffi`` and ``_pointer``.

RoPE and SwiGLU read (and write) through strides: the heads of a (B, T, H·d) projection
where they lie, the gate and up halves of one (N, 2H) GEMM output, the gradient's halves
into one array, so the ops around them copy nothing.
"""
import numpy as np

from ..reference import float32_kernel


def _c(array):
    return np.ascontiguousarray(array)


def _heads4(x):
    """x as (B, H, T, d), its leading axes folded (a view where they allow)."""
    return x if x.ndim == 4 else x.reshape((-1, 1) + x.shape[-2:])


def _writable_rows(a):
    return a.dtype == np.float32 and a.strides[-1] == 4 and a.flags.writeable


def _rows(a):
    """a as (rows, cols) with contiguous rows at any distance (a half of a wider array's rows)."""
    a2 = a.reshape(-1, a.shape[-1])
    return a2 if a2.strides[-1] == 4 else _c(a2)


class LlamaKernels:
    """rmsnorm_forward/backward, rope_forward, swiglu_forward/backward through the C kernels;
    other dtypes, and calls the kernels do not address, take the reference."""

    _lib = _ffi = _pointer = None  # the loaded library: set by CBackend

    def _strided(self, a):
        """A float pointer to a's first element, whatever its strides."""
        return self._ffi.cast("float *", a.ctypes.data)

    def _float_strides(self, a):
        return self._ffi.new("long long[3]", [s // 4 for s in a.strides[:3]])

    @float32_kernel(0, 1)
    def rmsnorm_forward(self, x, w, eps):
        x, w = _c(x), _c(w)
        rows, d = x.shape
        y, rstd = np.empty_like(x), np.empty(rows, np.float32)
        self._lib.rmsnorm_forward(*map(self._pointer, (x, w, y, rstd)), rows, d, float(eps))
        return y, rstd

    @float32_kernel(0, 1, 2, 3)
    def rmsnorm_backward(self, dy, x, w, rstd):
        dy, x, w, rstd = _c(dy), _c(x), _c(w), _c(rstd)
        rows, d = x.shape
        dx, dw = np.empty_like(x), np.empty(d, np.float32)
        self._lib.rmsnorm_backward(*map(self._pointer, (dy, x, w, rstd, dx, dw)), rows, d)
        return dx, dw

    @float32_kernel(0, 1, 2)
    def rope_forward(self, x, cos, sin, out=None):
        """The kernel reads x and writes out each through its own (B, H, T, d) strides: the
        heads of a (B, T, H·d) projection where they lie, and ``out`` in any order (the
        backward writes the gradient in the projection's); other ranks fold to (N, 1, T, d)."""
        if x.ndim < 2 or not x.size:
            return super().rope_forward(x, cos, sin, out)
        if out is not None and not (out.ndim == 4 and x.ndim == 4 and _writable_rows(out)):
            return super().rope_forward(x, cos, sin, out)  # an out that would need a copy to be addressed
        x4 = _heads4(x)
        if x4.strides[-1] != 4:
            x4 = _c(x4)
        cos, sin = _c(cos), _c(sin)
        out4 = np.empty(x4.shape, np.float32) if out is None else out
        self._lib.rope_forward(self._strided(x4), self._pointer(cos), self._pointer(sin), self._strided(out4),
                               *x4.shape, self._float_strides(x4), self._float_strides(out4))
        return out4.reshape(x.shape) if out is None else out

    @float32_kernel(0, 1)
    def swiglu_forward(self, a, b):
        """a and b are read with their own row strides: the halves of one (N, 2H) array as they lie."""
        if a.ndim == 0 or not a.size or a.shape != b.shape:
            return super().swiglu_forward(a, b)
        a2, b2 = _rows(a), _rows(b)
        y = np.empty(a2.shape, np.float32)
        self._lib.swiglu_forward(self._strided(a2), self._strided(b2), self._pointer(y), *a2.shape,
                                 a2.strides[0] // 4, b2.strides[0] // 4)
        return y.reshape(a.shape)

    @float32_kernel(0, 1, 2)
    def swiglu_backward(self, a, b, dy, da=None, db=None):
        """Into ``da``, ``db`` when given (2-D, the same row stride: the halves of one gradient
        array), else into two new arrays."""
        if a.ndim == 0 or not a.size or a.shape != b.shape:
            return super().swiglu_backward(a, b, dy, da, db)
        if da is not None and not (da.ndim == db.ndim == 2 and da.strides == db.strides and _writable_rows(da)
                                   and _writable_rows(db) and da.shape == db.shape == a.reshape(-1, a.shape[-1]).shape):
            return super().swiglu_backward(a, b, dy, da, db)
        a2, b2 = _rows(a), _rows(b)
        dy2 = _c(dy).reshape(a2.shape)
        if da is None:
            grads = np.empty((2,) + a2.shape, np.float32)  # two contiguous arrays, one row stride
            da2, db2 = grads[0], grads[1]
        else:
            da2, db2 = da, db
        self._lib.swiglu_backward(self._strided(a2), self._strided(b2), self._pointer(dy2), self._strided(da2),
                                  self._strided(db2), *a2.shape, a2.strides[0] // 4, b2.strides[0] // 4,
                                  da2.strides[0] // 4)
        return (da2.reshape(a.shape), db2.reshape(b.shape)) if da is None else (da, db)
