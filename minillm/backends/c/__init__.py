"""Backend ``c``: the hot primitives as C kernels (``kernels/c``) called through cffi.

The pieces: ``library.py`` loads the compiled kernels (installed, or built for this source and
this CPU; ``minillm info`` names the extensions it uses); ``CBackend`` here overrides the
primitives the kernels cover, its parts in ``attention.py``, ``int8.py``, ``bf16.py`` and
``llama.py``; the module-level functions below run the numbered versions of each kernel family
for the tests, benchmarks and lessons. The kernels are float32; other dtypes take the
reference (``float32_kernel``). The functions are declared once, where they are defined:
``build.py`` reads the ``MINILLM_API`` definitions of kernels/c for cffi, and the numbered
versions are listed from the library.
"""
import contextlib
import math
import weakref

import numpy as np

from ..arrays import gemm_operands
from ..reference import Backend, float32_kernel
from .attention import ATTENTION_VERSIONS, AttentionKernels
from .bf16 import LinearBf16
from .int8 import INT8_KERNEL_ROWS, LINEAR_INT8, Int8Kernels, linear_int8_numbered
from .library import _c, _numbered, build_flags, build_isa, ffi, lib, origin, pointer
from .llama import LlamaKernels

__all__ = ["backend", "CBackend", "ffi", "lib", "pointer", "build_flags", "build_isa", "origin",  # the library
           "NUMBERED", "matmul_numbered", "BLOCKING_FIELDS", "gemm_blocking", "blocking_for_caches",
           "forced_gemm_blocking", "ATTENTION_VERSIONS", "INT8_KERNEL_ROWS", "LINEAR_INT8", "linear_int8_numbered",
           "MATMUL_BF16", "matmul_bf16", "bf16_has_dpbf16", "bf16_kernel_name", "to_bf16_c", "stream_read",
           "LADDER_OPS", "LADDERS", "numbered", "ADD_IN_C_FROM"]


def _elementwise(kernel, *arrays):
    """``kernel(inputs…, out, n)`` on contiguous copies of same-shaped float32 ``arrays``, into a
    new array of their shape: the pattern of every elementwise kernel (GELU, ReLU, …)."""
    arrays = [_c(a) for a in arrays]
    out = np.empty_like(arrays[0])
    kernel(*map(pointer, arrays), pointer(out), out.size)
    return out


def _usable(a):
    return a.dtype == np.float32 and a.flags.c_contiguous


def _writable(a):
    """Usable as a kernel's in-place output: C would write through a read-only flag (and
    crash on a read-only memory map); the reference refuses it instead."""
    flags = a.flags  # (a new object on every access)
    return a.dtype == np.float32 and flags.c_contiguous and flags.writeable


def _pointers_and_sizes(arrays):
    return ffi.new("float *[]", [pointer(a) for a in arrays]), ffi.new("long long[]", [a.size for a in arrays])


def _matmul_2d(a, b, trans_a, trans_b, threads, bias=None):
    """Two contiguous matrices (every Linear layer's three products): the strides follow from
    the flags. The general road (views, broadcast batch shapes, np.prod) costs tens of
    microseconds of Python a call, and a step makes dozens of these calls. With ``bias`` the
    tiles add it to every row as they store (sgemm_bias), instead of a second pass."""
    m, k = a.shape[::-1] if trans_a else a.shape
    k_b, n = b.shape[::-1] if trans_b else b.shape
    if k != k_b:
        raise ValueError(f"matmul: inner dimensions differ: op(a) is {m}×{k}, op(b) is {k_b}×{n}")
    out = np.empty((m, n), np.float32)
    if out.size:
        sam, sak = (1, m) if trans_a else (k, 1)
        sbk, sbn = (1, k) if trans_b else (n, 1)
        lib.sgemm_bias(pointer(a), pointer(b), ffi.NULL if bias is None else pointer(bias), pointer(out), m, n, k,
                       sam, sak, sbk, sbn, threads)
    return out


ADD_IN_C_FROM = 8192  # values; below, the call and waking a thread cost more than NumPy's add


class _StatePointers:
    """The C pointer arrays for an optimizer's parameters and moments, which stay the same
    arrays from step to step: rebuilding them (a dtype and layout check and a pointer per
    array, some two hundred for the recipe's GPT) was a large part of the optimizer's time. Only the
    gradients, new arrays every step, are looked at each call. Weak references: a parameter
    that is replaced (load_state_dict) is a miss, and nothing here keeps an old one alive."""

    def __init__(self):
        self.entries = {}

    def get(self, ps, ms, vs):
        key = tuple(map(id, ps))
        entry = self.entries.get(key)
        arrays = (*ps, *ms, *vs)
        if (entry is not None and all(ref() is a for ref, a in zip(entry[0], arrays))
                and all(p.size == n for p, n in zip(ps, entry[2]))):  # (ndarray.resize keeps the object)
            return entry[1]
        if not all(map(_writable, arrays)):
            return None
        pointers = tuple(ffi.new("float *[]", [pointer(a) for a in group]) for group in (ps, ms, vs))
        sizes = ffi.new("long long[]", [p.size for p in ps])
        if len(self.entries) >= 8:  # a few optimizers (decayed and not, say), not every list ever seen
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = ([weakref.ref(a) for a in arrays], (*pointers, sizes), [p.size for p in ps])
        return self.entries[key][1]


class CBackend(LinearBf16, LlamaKernels, AttentionKernels, Int8Kernels, Backend):
    """The primitives the C kernels cover; the rest (and every non-float32 call) are the
    reference's. Each override: the guard (``float32_kernel``), contiguous copies where a
    kernel needs them, the outputs allocated here, one call into C. Its parts in files of their
    own: attention (``attention.py``), the int8 products (``int8.py``), a Linear layer's bf16
    products (``bf16.py``), Llama's blocks (``llama.py``)."""

    name = "c"
    _lib, _ffi, _pointer = lib, ffi, staticmethod(pointer)  # the library, for the mixins (llama.py)
    has_bf16_kernels = bool(lib.matmul_bf16_has_avx512bf16())  # False: bf16 products emulated (bf16.py)

    def __init__(self):
        self._state_pointers = _StatePointers()

    @float32_kernel(0, 1)
    def matmul(self, a, b, trans_a=False, trans_b=False, threads=0):
        if a.ndim == 2 and b.ndim == 2 and a.flags.c_contiguous and b.flags.c_contiguous:
            return _matmul_2d(a, b, trans_a, trans_b, threads)
        a3, sab, b3, sbb, m, n, k, batch = gemm_operands(a, b, trans_a, trans_b)
        batches = int(np.prod(batch, dtype=np.int64))
        out = np.empty((batches, m, n), np.float32)
        if out.size:
            sam, sak = (s // 4 for s in a3.strides[-2:])
            sbk, sbn = (s // 4 for s in b3.strides[-2:])
            lib.sgemm_strided(pointer(a3), pointer(b3), pointer(out), batches, m, n, k, sab, sam, sak, sbb, sbk,
                              sbn, threads)
        return out.reshape(batch + (m, n))

    def _bf16_product(self, a, b, m, n, k, strides_a, strides_b, bias=None):
        """C (m × n) = op(A) · op(B) (+ bias) by matmul_bf16.c's v4, float32 operands rounded to
        bf16 as they are packed; element (i, k) of A at a[i·sam + k·sak], (k, j) of B at
        b[k·sbk + j·sbn] for the strides (sam, sak), (sbk, sbn) of contiguous a and b."""
        a, b = _c(a), _c(b)
        out = np.empty((m, n), np.float32)
        if out.size:
            lib.matmul_bf16_v4_from_float(pointer(a), pointer(b), ffi.NULL if bias is None else pointer(_c(bias)),
                                          pointer(out), m, n, k, *strides_a, *strides_b)
        return out

    @float32_kernel(0, 1)
    def linear_forward(self, x, w, bias=None):
        """y = x wᵀ + b for 2-D x (N, K) and w (M, K): one GEMM whose tiles add the bias."""
        if bias is None or not (bias.dtype == np.float32 and x.ndim == 2 and w.ndim == 2 and x.flags.c_contiguous
                                and w.flags.c_contiguous and bias.flags.c_contiguous):
            return super().linear_forward(x, w, bias)
        if bias.shape != (w.shape[0],):
            raise ValueError(f"linear_forward: bias {bias.shape} does not fit w {w.shape}")
        return _matmul_2d(x, w, False, True, 0, bias)

    @float32_kernel(0, 1, 2)
    def linear_backward(self, g, x, w, need_x=True, need_w=True, need_b=True, threads=0):
        """g w, gᵀ x and Σ_rows g for y = x wᵀ + b (2-D g (N, M), x (N, K), w (M, K)) in one call:
        each core takes its own rows of g and the partial gᵀ x are summed (linear.c). threads: 0 = all."""
        if not (g.ndim == x.ndim == w.ndim == 2 and g.size and x.size
                and g.flags.c_contiguous and x.flags.c_contiguous and w.flags.c_contiguous):
            return super().linear_backward(g, x, w, need_x, need_w, need_b)
        (rows, out), in_ = g.shape, x.shape[1]
        if x.shape[0] != rows or w.shape != (out, in_):
            raise ValueError(f"linear_backward: g {g.shape}, x {x.shape} and w {w.shape} do not fit "
                             f"(expected g (N, M), x (N, K), w (M, K))")
        gx = np.empty((rows, in_), np.float32) if need_x else None
        gw = np.empty((out, in_), np.float32) if need_w else None
        gb = np.empty(out, np.float32) if need_b else None
        outputs = (ffi.NULL if a is None else pointer(a) for a in (gx, gw, gb))
        lib.linear_backward(pointer(g), pointer(x), pointer(w), *outputs, rows, in_, out, threads)
        return gx, gw, gb

    @float32_kernel(0, 1, 2)
    def layernorm_forward(self, x, w, b, eps):
        x, w, b = _c(x), _c(w), _c(b)
        rows, d = x.shape
        y, mean, rstd = np.empty_like(x), np.empty(rows, np.float32), np.empty(rows, np.float32)
        lib.layernorm_forward(pointer(x), pointer(w), pointer(b), pointer(y), pointer(mean), pointer(rstd), rows, d,
                              float(eps))
        return y, mean, rstd

    @float32_kernel(0, 1, 2)
    def layernorm_backward(self, dy, x, w, mean, rstd):
        dy, x, w, mean, rstd = _c(dy), _c(x), _c(w), _c(mean), _c(rstd)
        rows, d = x.shape
        dx, dw, db = np.empty_like(x), np.empty(d, np.float32), np.empty(d, np.float32)
        lib.layernorm_backward(pointer(dy), pointer(x), pointer(w), pointer(mean), pointer(rstd), pointer(dx),
                               pointer(dw), pointer(db), rows, d)
        return dx, dw, db

    @float32_kernel(0)
    def cross_entropy_forward(self, logits, target, ignore_index):
        logits, target = _c(logits), np.ascontiguousarray(target, dtype=np.int64)
        rows, classes = logits.shape
        loss, lse = np.empty(rows, np.float32), np.empty(rows, np.float32)
        lib.cross_entropy_forward(pointer(logits), pointer(target), pointer(loss), pointer(lse), rows, classes,
                                  int(ignore_index))
        return loss, lse

    @float32_kernel(0, 3)
    def cross_entropy_backward(self, logits, target, lse, dloss, ignore_index):
        logits, target = _c(logits), np.ascontiguousarray(target, dtype=np.int64)
        lse, dloss = _c(lse.astype(np.float32, copy=False)), _c(dloss)
        rows, classes = logits.shape
        dlogits = np.empty_like(logits)
        lib.cross_entropy_backward(pointer(logits), pointer(target), pointer(lse), pointer(dloss), pointer(dlogits),
                                   rows, classes, int(ignore_index))
        return dlogits

    @float32_kernel(0, 1)
    def add(self, a, b):
        if not (a.shape == b.shape and a.flags.c_contiguous and b.flags.c_contiguous and a.size >= ADD_IN_C_FROM):
            return a + b  # the reference's add
        out = np.empty_like(a)
        lib.add_arrays(pointer(a), pointer(b), pointer(out), a.size)
        return out

    @float32_kernel(0)
    def gelu_forward(self, x):
        return _elementwise(lib.gelu_forward, x)

    @float32_kernel(0, 1)
    def gelu_backward(self, x, dy):
        return _elementwise(lib.gelu_backward, x, dy)

    @float32_kernel(0)
    def relu_forward(self, x):
        return _elementwise(lib.relu_forward, x)

    @float32_kernel(0, 1)
    def relu_backward(self, x, dy):
        return _elementwise(lib.relu_backward, x, dy)

    @float32_kernel(0, 1, 2, 3, writes=(0, 2, 3))
    def adam_update(self, p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
        if not g.flags.c_contiguous:
            return super().adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)
        lib.adam_update(pointer(p), pointer(g), pointer(m), pointer(v), p.size, lr, beta1, beta2, eps, weight_decay,
                        int(decoupled), lr / (1 - beta1 ** step), 1 / math.sqrt(1 - beta2 ** step))

    def adam_update_many(self, ps, gs, ms, vs, lr, beta1, beta2, eps, weight_decay, decoupled, step):
        """``adam_update`` over lists of tensors in one kernel call (float32, C order); any
        other list takes the one-tensor-at-a-time road."""
        cached = self._state_pointers.get(ps, ms, vs) if ps and all(map(_usable, gs)) else None
        if cached is None:
            return super().adam_update_many(ps, gs, ms, vs, lr, beta1, beta2, eps, weight_decay, decoupled, step)
        p, m, v, sizes = cached
        g = ffi.new("float *[]", [pointer(a) for a in gs])
        lib.adam_update_many(p, g, m, v, sizes, len(ps), lr, beta1, beta2, eps, weight_decay, int(decoupled),
                             lr / (1 - beta1 ** step), 1 / math.sqrt(1 - beta2 ** step))

    def sum_of_squares_many(self, arrays):
        """Σ x² over many float32 arrays in one parallel kernel (grad_norm/v3_one_team.c)."""
        if not all(map(_usable, arrays)):
            return super().sum_of_squares_many(arrays)
        return lib.sum_of_squares_many(*_pointers_and_sizes(arrays), len(arrays))

    def scale_many(self, arrays, factor):
        if not all(map(_writable, arrays)):
            return super().scale_many(arrays, factor)
        lib.scale_many(*_pointers_and_sizes(arrays), len(arrays), factor)

    @float32_kernel(0, 2, writes=(0,))
    def scatter_add_rows(self, target, index, values):
        """An embedding's backward, target[index[i]] += values[i], in one pass (embedding.c)."""
        if target.ndim < 1:
            return super().scatter_add_rows(target, index, values)
        index, values = _c(index.astype(np.int64, copy=False)), _c(values)
        if index.size and (index.min() < 0 or index.max() >= target.shape[0]):  # C would write outside the table
            raise IndexError(f"scatter_add_rows: indices must lie in [0, {target.shape[0]}); "
                             f"got {index.min()} … {index.max()}")
        lib.embedding_backward(pointer(target), pointer(index), pointer(values), index.size,
                               target.size // max(target.shape[0], 1))
        return target
backend = CBackend()


# ---- the numbered teaching versions, beside the backend (lesson 02, the benchmarks) ----------
NUMBERED = _numbered("matmul")


def matmul_numbered(version, a, b):
    """C = A·B with one of the numbered teaching versions (contiguous float32 A, B)."""
    if version not in NUMBERED:
        raise ValueError(f"matmul_numbered: unknown version {version!r}; versions: {', '.join(NUMBERED)}")
    a, b = _c(a.astype(np.float32, copy=False)), _c(b.astype(np.float32, copy=False))
    m, k = a.shape
    n = b.shape[1]
    out = np.empty((m, n), np.float32)
    getattr(lib, version)(pointer(a), pointer(b), pointer(out), m, n, k)
    return out


# ---- the fp32 GEMM's blocks, from the caches the machine reports (kernels/c/matmul/blocking.c) ----
BLOCKING_FIELDS = ("l1", "l2", "l3", "mr", "nr", "kc", "mc", "nc", "nc_l2")


def gemm_blocking():
    """The cache sizes (bytes) the fp32 GEMM's blocks were derived from, its register tile
    (mr × nr) and the blocks in use (kc deep, mc rows of A, nc columns of a shared B panel,
    nc_l2 of v8's): what ``minillm info`` prints."""
    blocking = lib.gemm_blocking_in_use()
    return {name: getattr(blocking, name) for name in BLOCKING_FIELDS}


def blocking_for_caches(l1, l2, l3):
    """The blocks the rule of kernels/c/matmul/blocking.c gives for these cache sizes (bytes;
    0 = not reported, the fallback size)."""
    blocking = lib.blocking_for_caches(l1, l2, l3)
    return {name: getattr(blocking, name) for name in BLOCKING_FIELDS}


@contextlib.contextmanager
def forced_gemm_blocking(kc=0, mc=0, nc=0, nc_l2=0):
    """Every fp32 GEMM inside the ``with`` runs with these blocks (0 = the machine's), for tests
    and benchmarks; not while another thread runs a product."""
    for name, value in (("kc", kc), ("mc", mc), ("nc", nc), ("nc_l2", nc_l2)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"forced_gemm_blocking: {name} must be an int >= 0 (0 = the machine's), got {value!r}")
    lib.gemm_force_blocking(kc, mc, nc, nc_l2)
    try:
        yield gemm_blocking()
    finally:
        lib.gemm_force_blocking(0, 0, 0, 0)

# ---- attention (kernels/c/attention/): v1_naive, v2_rows, v3_tiles (production), v4_rotary (production
# for problems with RoPE's tables: attention_qkv_* with rotary) ----
# ---- bf16 · bf16 → float32 (matmul_bf16.c) ----------------------------------------------------
MATMUL_BF16 = dict(enumerate(_numbered("matmul_bf16"), 1))  # {1: "matmul_bf16_v1_scalar", …}


def matmul_bf16(a_bf16, b_bf16, version=3):
    """C (M×N, float32) = A (M×K) · B (K×N) for A and B in bf16 (uint16 arrays of the top 16 bits
    of float32, ``minillm.bf16.to_bf16``), summed in float32, by numbered version 1 (scalar),
    2 (vdpbf16ps on pairs of k), 3 (v2 with a register tile, on every core) or 4 (v3 reading
    float32 in any layout and rounding as it packs: here the bf16 operands widened to float32,
    exactly, so that it rounds nothing; a Linear layer calls it through
    ``backend.linear_forward_bf16``). Without AVX512_BF16 (``bf16_has_dpbf16()`` false)
    versions 2–4 run version 1's loop."""
    if version not in MATMUL_BF16:
        raise ValueError(f"matmul_bf16: unknown version {version!r}; versions: {', '.join(map(str, MATMUL_BF16))}")
    for name, x in (("a_bf16", a_bf16), ("b_bf16", b_bf16)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint16:
            raise TypeError(f"matmul_bf16: {name} must be a uint16 array of bf16 bits (minillm.bf16.to_bf16), "
                            f"got {getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim != 2:
            raise ValueError(f"matmul_bf16: {name} must be 2-D, got shape {x.shape}")
    (m, k), (k_b, n) = a_bf16.shape, b_bf16.shape
    if k != k_b:
        raise ValueError(f"matmul_bf16: inner dimensions differ: a is {m}×{k}, b is {k_b}×{n}")
    a, b = _c(a_bf16), _c(b_bf16)
    out = np.zeros((m, n), np.float32)
    if out.size and MATMUL_BF16[version].endswith("_from_float"):  # v4: float32 operands, strided, a bias
        a, b = (_c((x.astype(np.uint32) << np.uint32(16)).view(np.float32)) for x in (a, b))
        getattr(lib, MATMUL_BF16[version])(pointer(a), pointer(b), ffi.NULL, pointer(out), m, n, k, k, 1, n, 1)
    elif out.size:
        getattr(lib, MATMUL_BF16[version])(pointer(a), pointer(b), pointer(out), m, n, k)
    return out


def bf16_has_dpbf16():
    """Do matmul_bf16's versions 2–4 run on vdpbf16ps (a build with AVX512_BF16)?"""
    return bool(lib.matmul_bf16_has_avx512bf16())


def bf16_kernel_name():
    """Which bf16 GEMM runs here (a Linear layer's products under autocast("bfloat16")), for
    ``minillm info``."""
    return ("vdpbf16ps (AVX512_BF16)" if bf16_has_dpbf16()
            else "portable loop (this build has no AVX512_BF16): correct, not fast")


def to_bf16_c(x):
    """float32 → bf16 bits by the C helper (bf16_from_float): what the kernels' callers would use;
    tested against ``minillm.bf16.to_bf16``."""
    x = _c(np.asarray(x, dtype=np.float32))
    out = np.empty(x.shape, np.uint16)
    if x.size:
        lib.bf16_from_floats(pointer(x), pointer(out), x.size)
    return out


def stream_read(array, threads=0):
    """Sum a float32 array in one streaming pass (linear_int8.c): timed, the memory's read bandwidth."""
    array = _c(array.astype(np.float32, copy=False))
    return lib.stream_read(pointer(array), array.size, threads)


# ---- the numbered versions of layer norm, cross-entropy, GELU and Adam (kernels/c/<family>/) ----

def _versions(op):
    """The numbered versions of the C function ``op`` (``layernorm_forward_v1_two_pass`` →
    ``v1_two_pass``), in order, read from the library."""
    return tuple(name[len(op) + 1:] for name in _numbered(op))


# each op with numbered versions → its family, the folder kernels/c/<family>/
LADDER_OPS = {"layernorm_forward": "layernorm", "layernorm_backward": "layernorm",
              "cross_entropy_forward": "cross_entropy", "cross_entropy_backward": "cross_entropy",
              "gelu_forward": "gelu", "gelu_backward": "gelu", "adam_update": "adam",
              "sum_of_squares_many": "grad_norm", "scale_many": "grad_norm"}
LADDERS = {family: _versions(next(op for op in LADDER_OPS if LADDER_OPS[op] == family))
           for family in dict.fromkeys(LADDER_OPS.values())}


def _f32(*arrays):
    return [_c(np.asarray(a, dtype=np.float32)) for a in arrays]


def numbered(op, version, *args):
    """The backend's ``op`` (one of LADDER_OPS) computed by numbered version ``version`` of its
    kernel (LADDERS[family]), with the same arguments and results:

        layernorm_forward(x, w, b, eps) → y, mean, rstd      layernorm_backward(dy, x, w, mean, rstd) → dx, dw, db
        cross_entropy_forward(logits, target, ignore_index) → loss, lse
        cross_entropy_backward(logits, target, lse, dloss, ignore_index) → dlogits
        gelu_forward(x) → y      gelu_backward(x, dy) → dx
        adam_update(ps, gs, ms, vs, lr, beta1, beta2, eps, weight_decay, decoupled, step): lists of
            tensors, updated in place (v1–v3 take one tensor a call, v4 all of them in one)
        sum_of_squares_many(arrays) → Σ x²      scale_many(arrays, factor): in place"""
    if op not in LADDER_OPS:
        raise ValueError(f"numbered: unknown op {op!r}; ops: {', '.join(LADDER_OPS)}")
    versions = LADDERS[LADDER_OPS[op]]
    if version not in versions:
        raise ValueError(f"numbered {op}: unknown version {version!r}; versions: {', '.join(versions)}")
    kernel = getattr(lib, f"{op}_{version}")
    if op == "layernorm_forward":
        x, w, b = _f32(*args[:3])
        rows, d = x.shape
        y, mean, rstd = np.empty_like(x), np.empty(rows, np.float32), np.empty(rows, np.float32)
        kernel(*map(pointer, (x, w, b, y, mean, rstd)), rows, d, float(args[3]))
        return y, mean, rstd
    if op == "layernorm_backward":
        dy, x, w, mean, rstd = _f32(*args)
        rows, d = x.shape
        dx, dw, db = np.empty_like(x), np.empty(d, np.float32), np.empty(d, np.float32)
        kernel(*map(pointer, (dy, x, w, mean, rstd, dx, dw, db)), rows, d)
        return dx, dw, db
    if op.startswith("cross_entropy"):
        logits, target, ignore_index = _f32(args[0])[0], np.ascontiguousarray(args[1], np.int64), int(args[-1])
        rows, classes = logits.shape
        if op == "cross_entropy_forward":
            loss, lse = np.empty(rows, np.float32), np.empty(rows, np.float32)
            kernel(*map(pointer, (logits, target, loss, lse)), rows, classes, ignore_index)
            return loss, lse
        lse, dloss = _f32(*args[2:4])
        dlogits = np.empty_like(logits)
        kernel(*map(pointer, (logits, target, lse, dloss, dlogits)), rows, classes, ignore_index)
        return dlogits
    if op in ("sum_of_squares_many", "scale_many"):
        arrays = args[0]
        if not all(map(_writable if op == "scale_many" else _usable, arrays)):
            raise ValueError(f"numbered {op}: the arrays must be C-contiguous float32 arrays (writable, to scale)")
        return kernel(*_pointers_and_sizes(arrays), len(arrays), *args[1:])
    if op.startswith("gelu"):
        arrays = _f32(*args)
        out = np.empty_like(arrays[0])
        kernel(*map(pointer, (*arrays, out)), out.size)
        return out
    ps, gs, ms, vs, lr, beta1, beta2, eps, weight_decay, decoupled, step = args
    if not all(map(_writable, (*ps, *ms, *vs))):
        raise ValueError("numbered adam_update: the parameters and moments must be writable C-contiguous float32 "
                         "arrays (they are updated in place)")
    gs = _f32(*gs)
    scalars = (lr, beta1, beta2, eps, weight_decay, int(decoupled), lr / (1 - beta1 ** step),
               1 / math.sqrt(1 - beta2 ** step))
    if version.endswith("_many"):  # all the tensors in one call
        p, m, v = (ffi.new("float *[]", [pointer(a) for a in group]) for group in (ps, ms, vs))
        g, sizes = _pointers_and_sizes(gs)
        kernel(p, g, m, v, sizes, len(ps), *scalars)
    else:
        for p, g, m, v in zip(ps, gs, ms, vs):
            kernel(pointer(p), pointer(g), pointer(m), pointer(v), p.size, *scalars)
