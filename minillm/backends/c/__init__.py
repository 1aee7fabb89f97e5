"""Backend ``c``: the hot primitives as C kernels (``kernels/c``) called through cffi.

The extension is compiled at install time by ``setup.py``, with ``-march=native``; when it is
missing (running from a source tree), was compiled from other kernels than the kernels/c
beside it (an editable install after a pull), or uses an instruction-set extension this CPU
lacks (installed on another machine: ``minillm_isa_missing``, compiled for the baseline x86-64,
is asked before any kernel runs), kernels for this source and this CPU are built once into
~/.cache/minillm. ``minillm info`` names the extensions the loaded library uses.
``MINILLM_C_SANITIZE=1`` loads an AddressSanitizer + UndefinedBehaviorSanitizer build instead (run Python with
``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``; ``make sanitize`` does it).
The kernels are float32; other dtypes take the reference (``float32_kernel``). The
functions are declared once, where they are defined: ``build.py`` reads the ``MINILLM_API``
definitions of kernels/c for cffi, and the numbered versions are listed from the library.
"""
import contextlib
import math
import os
import re
import warnings
import weakref

import numpy as np

from .. import BackendUnavailable
from ..arrays import gemm_operands
from ..reference import Backend, attention_groups, float32_kernel
from .bf16 import LinearBf16
from .llama import LlamaKernels


def _stale(module):
    """Was ``module`` compiled from other kernels than the kernels/c beside this checkout (an
    editable install after `git pull` or an edit, or a failed rebuild that left the old library
    in place)? An installed package has no kernels/c to compare with: never stale."""
    from .build import c_dir, source_digest
    if not c_dir().is_dir():
        return False
    built = _ffi_string(module, "minillm_source_digest")
    return built != source_digest()


def _ffi_string(module, function):
    """The string a build-info function of ``module`` returns, or None if it has none."""
    fn = getattr(module.lib, function, None)
    return None if fn is None else module.ffi.string(fn()).decode()


def _missing_isa(module):
    """The instruction-set extensions ``module`` was compiled to use that this CPU lacks ("" when
    none): asked of a function compiled for the baseline x86-64, before any kernel runs."""
    return _ffi_string(module, "minillm_isa_missing") or ""


def _load():
    sanitize = os.environ.get("MINILLM_C_SANITIZE") == "1"
    if not sanitize:
        try:
            from minillm import _ckernels
            missing = _missing_isa(_ckernels)
            if not _stale(_ckernels) and not missing:
                return _ckernels
            reason = (f"were built for a CPU with {missing}, which this one lacks (an install from another "
                      f"machine?); building kernels for this CPU" if missing else
                      "were built from older sources than kernels/c; building the current ones")
            warnings.warn(f"minillm: the installed C kernels {reason} in ~/.cache/minillm (reinstall to make it "
                          f"stick: pip install -e .)", RuntimeWarning, stacklevel=2)
        except ImportError:
            pass
    try:
        from .build import build_in_cache
        return build_in_cache(sanitize)
    except Exception as exc:  # no compiler, no cffi, a failing build: say which
        raise BackendUnavailable(f"the C kernels are not built and could not be built here: {exc}") from None


_module = _load()
ffi, lib = _module.ffi, _module.lib
build_flags = ffi.string(lib.minillm_build_flags()).decode()
build_isa = ffi.string(lib.minillm_build_isa()).decode()  # the extensions the kernels were compiled to use
origin = ("the installed library" if _module.__name__ == "minillm._ckernels"
          else f"built at load for this CPU, in {os.path.dirname(_module.__file__)}")


_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.int64): "long long", np.dtype(np.int32): "int",
           np.dtype(np.int8): "signed char", np.dtype(np.uint16): "unsigned short"}


def pointer(array):
    """A C pointer to a NumPy array's data, typed by its dtype. ``ffi.from_buffer`` is
    several times cheaper than ``array.ctypes.data``, and a GPT step makes hundreds of these
    calls. Strided views (transposed operands) have no buffer to share and take the slower
    road."""
    ctype = _CTYPES[array.dtype]
    if array.flags.c_contiguous:
        return ffi.from_buffer(ctype + "[]", array)
    return ffi.cast(ctype + " *", array.ctypes.data)


def _c(array):
    return np.ascontiguousarray(array)


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


def _numbered(family):
    """The numbered versions ``<family>_v<N>_<idea>`` the library exports, in the order of N
    (read from the library: a new version file is listed without a list to edit)."""
    found = ((int(m.group(1)), name) for name in dir(lib) if (m := re.fullmatch(rf"{family}_v(\d+)_\w+", name)))
    return tuple(name for _, name in sorted(found))


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


def _heads_where_they_lie(a):
    """The head_layout_t of an (N, T, D) float32 array whose rows are contiguous (a KV cache's
    first T positions, a contiguous array): the kernels read it in place. None otherwise."""
    s0, s1, s2 = a.strides
    if s2 != 4 or s0 < 0 or s1 < 0 or s0 % 4 or s1 % 4:
        return None
    return {"heads": 1, "seq": s0 // 4, "step": 0, "ld": s1 // 4}


def _attention_kernel(version, direction):
    """The production path (kernels/c/attention/attention.c) for version None, else numbered
    version ``version`` (ATTENTION_VERSIONS)."""
    if version is None:
        return getattr(lib, f"attention_{direction}")
    if version not in ATTENTION_VERSIONS:
        raise ValueError(f"attention: unknown version {version!r}; versions: {', '.join(ATTENTION_VERSIONS)}")
    return getattr(lib, f"attention_{version}_{direction}")


def _problem(q, k, causal, scale, q_layout, kv_layout, out_layout):
    """The attention_t of q (N, Tq, D) against k (N_kv, Tk, D), with the three layouts."""
    return ffi.new("attention_t *", {"n": q.shape[0], "n_kv": k.shape[0], "t_query": q.shape[1],
                                     "t_key": k.shape[1], "d": q.shape[2], "causal": int(causal),
                                     "scale": float(scale), "q": q_layout, "kv": kv_layout, "out": out_layout})


def _qkv_parts(qkv, heads, kv_heads):
    """Pointers to the q, k and v blocks of a contiguous (B, T, (heads + 2·kv_heads)·D) array."""
    base, d = pointer(qkv), qkv.shape[-1] // (heads + 2 * kv_heads)
    return base, base + heads * d, base + (heads + kv_heads) * d


def _qkv_problem(qkv, heads, kv_heads, causal, scale):
    """Query head h of sequence b is the D columns from h·D of rows W = (heads + 2·kv_heads)·D
    long, key (value) head g the D columns from g·D of the k (v) block of the same rows; the
    output's heads lie side by side in (B, T, heads·D)."""
    b, t, w = qkv.shape
    d = w // (heads + 2 * kv_heads)
    rows = {"seq": t * w, "step": d, "ld": w}
    return ffi.new("attention_t *", {"n": b * heads, "n_kv": b * kv_heads, "t_query": t, "t_key": t, "d": d,
                                     "causal": int(causal), "scale": float(scale), "q": {"heads": heads, **rows},
                                     "kv": {"heads": kv_heads, **rows},
                                     "out": {"heads": heads, "seq": t * heads * d, "step": d, "ld": heads * d}})


def _qkv_fit(qkv, heads, kv_heads):
    """Does the projection split into whole heads, grouped evenly (else the reference answers)?"""
    return qkv.ndim == 3 and not (heads % kv_heads or qkv.shape[-1] % (heads + 2 * kv_heads))


def _heads_fit(q, k, v, heads, kv_heads):
    """Do the projections split into whole heads, grouped evenly (else the reference answers)?"""
    return not (q.shape[-1] % heads or k.shape[-1] % kv_heads or k.shape != v.shape or heads % kv_heads)


def _heads_problem(q, k, heads, kv_heads, causal, scale):
    """The attention_t of a (B, T, heads·D) q (and output) against (B, T, kv_heads·D) k and v:
    head h of sequence b starts at b·T·C + h·D, its rows C floats apart."""
    b, t, c = q.shape
    d, c_kv = c // heads, k.shape[-1]
    q_layout = {"heads": heads, "seq": t * c, "step": d, "ld": c}
    return ffi.new("attention_t *", {"n": b * heads, "n_kv": b * kv_heads, "t_query": t, "t_key": k.shape[1], "d": d,
                                     "causal": int(causal), "scale": float(scale), "q": q_layout, "out": q_layout,
                                     "kv": {"heads": kv_heads, "seq": k.shape[1] * c_kv, "step": d, "ld": c_kv}})


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


class CBackend(LinearBf16, LlamaKernels, Backend):
    """The primitives the C kernels cover; the rest (and every non-float32 call) are the
    reference's. Each override: the guard (``float32_kernel``), contiguous copies where a
    kernel needs them, the outputs allocated here, one call into C. A Linear layer's bf16
    products (``linear_forward_bf16``, ``linear_backward_bf16``) are in ``bf16.py``, Llama's
    blocks in ``llama.py``."""

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
    def attention_forward(self, q, k, v, causal, scale, version=None):
        """q (N, Tq, D), k and v (N_kv, Tk, D) with N_kv dividing N: query head n reads key/value
        head n // (N / N_kv), no copies. ``version`` runs one of the numbered versions
        (ATTENTION_VERSIONS) instead of the production path (kernels/c/attention/attention.c: a
        few queries go to the decoder). Arrays whose rows are contiguous, such as a KV cache's
        first Tk positions, are read in place."""
        attention_groups(q, k, v)
        if q.shape[-1] != v.shape[-1]:
            return super().attention_forward(q, k, v, causal, scale)
        kernel = _attention_kernel(version, "forward")
        if _heads_where_they_lie(q) is None:
            q = _c(q)
        if _heads_where_they_lie(k) is None or k.strides != v.strides:  # k and v share one layout
            k, v = _c(k), _c(v)
        out, lse = np.empty(q.shape, np.float32), np.empty(q.shape[:2], np.float32)
        problem = _problem(q, k, causal, scale, _heads_where_they_lie(q), _heads_where_they_lie(k),
                           _heads_where_they_lie(out))
        kernel(problem, pointer(q), pointer(k), pointer(v), pointer(out), pointer(lse))
        return out, lse

    @float32_kernel(0, 1, 2, 5)
    def attention_backward(self, q, k, v, out, lse, dout, causal, scale, version=None):
        """(dq, dk, dv) of ``attention_forward``; with N_kv < N each key/value head's gradient
        sums over its group (one thread owns a key/value head: no two write the same row)."""
        attention_groups(q, k, v)
        if q.shape[-1] != v.shape[-1]:
            return super().attention_backward(q, k, v, out, lse, dout, causal, scale)
        kernel = _attention_kernel(version, "backward")
        q, k, v, out, lse, dout = (_c(t.astype(np.float32, copy=False)) for t in (q, k, v, out, lse, dout))
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        problem = _problem(q, k, causal, scale, *(_heads_where_they_lie(a) for a in (q, k, out)))
        kernel(problem, pointer(q), pointer(k), pointer(v), pointer(out), pointer(lse), pointer(dout), pointer(dq),
               pointer(dk), pointer(dv))
        return dq, dk, dv

    @float32_kernel(0)
    def attention_qkv_forward(self, qkv, heads, causal, scale, kv_heads=None):
        """Causal self-attention straight from one (B, T, (heads + 2·kv_heads)·D) projection to
        (B, T, heads·D): the kernel reads each head where it lies (rows W apart; a query head
        reads its group's key/value head) and writes the heads side by side, so the split into
        heads, the merge back and the repeat of shared heads copy nothing."""
        kv_heads = kv_heads or heads
        if not _qkv_fit(qkv, heads, kv_heads):
            return super().attention_qkv_forward(qkv, heads, causal, scale, kv_heads)
        qkv = _c(qkv)
        b, t, w = qkv.shape
        y = np.empty((b, t, w // (heads + 2 * kv_heads) * heads), np.float32)
        lse = np.empty((b * heads, t), np.float32)
        lib.attention_forward(_qkv_problem(qkv, heads, kv_heads, causal, scale), *_qkv_parts(qkv, heads, kv_heads),
                              pointer(y), pointer(lse))
        return y, lse

    @float32_kernel(0, 1, 3)
    def attention_qkv_backward(self, qkv, y, lse, dy, heads, causal, scale, kv_heads=None):
        kv_heads = kv_heads or heads
        if not _qkv_fit(qkv, heads, kv_heads):
            return super().attention_qkv_backward(qkv, y, lse, dy, heads, causal, scale, kv_heads)
        qkv, y, lse, dy = _c(qkv), _c(y), _c(lse), _c(dy)
        dqkv = np.empty_like(qkv)  # every row of every head is zeroed by the kernel, then accumulated
        lib.attention_backward(_qkv_problem(qkv, heads, kv_heads, causal, scale), *_qkv_parts(qkv, heads, kv_heads),
                               pointer(y), pointer(lse), pointer(dy), *_qkv_parts(dqkv, heads, kv_heads))
        return dqkv

    @float32_kernel(0, 1, 2)
    def attention_heads_forward(self, q, k, v, heads, kv_heads, causal, scale):
        """Attention between (B, T, heads·D) and (B, T, kv_heads·D) projections read where they
        lie (head h of sequence b: the D columns from h·D of rows heads·D long), the output's
        heads written side by side: no split, merge or repeat copies anything."""
        if not _heads_fit(q, k, v, heads, kv_heads):
            return super().attention_heads_forward(q, k, v, heads, kv_heads, causal, scale)
        q, k, v = _c(q), _c(k), _c(v)
        y, lse = np.empty(q.shape, np.float32), np.empty((q.shape[0] * heads, q.shape[1]), np.float32)
        lib.attention_forward(_heads_problem(q, k, heads, kv_heads, causal, scale), pointer(q), pointer(k),
                              pointer(v), pointer(y), pointer(lse))
        return y, lse

    @float32_kernel(0, 1, 2, 3, 5)
    def attention_heads_backward(self, q, k, v, y, lse, dy, heads, kv_heads, causal, scale):
        if not _heads_fit(q, k, v, heads, kv_heads):
            return super().attention_heads_backward(q, k, v, y, lse, dy, heads, kv_heads, causal, scale)
        q, k, v, y, lse, dy = _c(q), _c(k), _c(v), _c(y), _c(lse), _c(dy)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)  # zeroed by the kernel, then summed
        lib.attention_backward(_heads_problem(q, k, heads, kv_heads, causal, scale), pointer(q), pointer(k),
                               pointer(v), pointer(y), pointer(lse), pointer(dy), pointer(dq), pointer(dk), pointer(dv))
        return dq, dk, dv

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

    def matmul_int8(self, a, b):
        a, b = _c(a.astype(np.int8, copy=False)), _c(b.astype(np.int8, copy=False))
        out = np.empty((a.shape[0], b.shape[0]), np.int32)
        lib.matmul_int8(pointer(a), pointer(b), pointer(out), a.shape[0], b.shape[0], a.shape[1])
        return out

    def linear_int8(self, x, qweight, scale, bias=None, threads=0):
        """y = x (s ⊙ W)ᵀ + b for float32 x (M, K) and int8 W (N, K) with a float32 scale per output
        row. Up to INT8_KERNEL_ROWS rows (decoding, short prompts) run the kernel (linear_int8.c: v5
        for one or two rows, v4 for more), which reads each weight byte once; more rows (an
        evaluation batch) dequantise blocks of W for the fp32 GEMM."""
        if not (x.dtype == np.float32 and qweight.dtype == np.int8 and scale.dtype == np.float32
                and (bias is None or bias.dtype == np.float32) and x.ndim == 2 and qweight.ndim == 2):
            return super().linear_int8(x, qweight, scale, bias)
        _check_int8_shapes(x, qweight, scale, bias)
        if x.shape[0] > INT8_KERNEL_ROWS:
            return self._linear_int8_blocks(x, qweight, scale, bias)
        x, qweight, scale = _c(x), _c(qweight), _c(scale)
        out = np.empty((x.shape[0], qweight.shape[0]), np.float32)
        lib.linear_int8(pointer(x), pointer(qweight), pointer(scale), ffi.NULL if bias is None else pointer(_c(bias)),
                        pointer(out), x.shape[0], qweight.shape[0], x.shape[1], threads)
        return out

    def _linear_int8_blocks(self, x, qweight, scale, bias):
        n = qweight.shape[0]
        out = np.empty((x.shape[0], n), np.float32)
        step = max(1, DEQUANTIZED_FLOATS // max(qweight.shape[1], 1))
        for start in range(0, n, step):
            block = qweight[start:start + step].astype(np.float32)
            block *= scale[start:start + step, None]
            out[:, start:start + step] = self.linear_forward(x, block,
                                                             None if bias is None else bias[start:start + step])
        return out


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

# ---- attention (kernels/c/attention/): v1_naive, v2_rows, v3_tiles (the production path's tiles) ----
ATTENTION_VERSIONS = tuple(name[len("attention_"):-len("_forward")] for name in _numbered("attention")
                           if name.endswith("_forward"))


# ---- int8 weights, float32 activations (linear_int8.c) ---------------------------------------
LINEAR_INT8 = _numbered("linear_int8")
# Up to this many rows the kernel; more: dequantised blocks of weights through the fp32 GEMM.
# The kernel reads each weight once and multiplies it, from L1, by every row's digits (2·K bytes
# a row, read again by every tile of 4 weight rows): it stays ahead of dequantising + the GEMM
# while those digits fit in L2, a few hundred rows.
INT8_KERNEL_ROWS = 256
DEQUANTIZED_FLOATS = 1 << 20  # the GEMM road's block of float32 weights (4 MB)


def _check_int8_shapes(x, qweight, scale, bias):
    n, k = qweight.shape
    if x.shape[1] != k or scale.shape != (n,) or (bias is not None and bias.shape != (n,)):
        raise ValueError(f"linear_int8: x {x.shape}, weight {qweight.shape}, scale {scale.shape} and bias "
                         f"{None if bias is None else bias.shape} do not fit (expected (M, K), (N, K), (N,), (N,))")


def linear_int8_numbered(version, x, qweight, scale, bias=None, threads=0):
    """``linear_int8`` by one of the numbered kernels (LINEAR_INT8), any number of rows."""
    if version not in LINEAR_INT8:
        raise ValueError(f"linear_int8: unknown version {version!r}; versions: {', '.join(LINEAR_INT8)}")
    _check_int8_shapes(x, qweight, scale, bias)
    x = _c(x.astype(np.float32, copy=False))
    qweight, scale = _c(qweight.astype(np.int8, copy=False)), _c(scale.astype(np.float32, copy=False))
    bias = None if bias is None else _c(bias.astype(np.float32, copy=False))
    (m, k), n = x.shape, qweight.shape[0]
    out = np.empty((m, n), np.float32)
    getattr(lib, version)(pointer(x), pointer(qweight), pointer(scale), ffi.NULL if bias is None else pointer(bias),
                          pointer(out), m, n, k, threads)
    return out


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
