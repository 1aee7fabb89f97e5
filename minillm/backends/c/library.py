"""The C kernels' library, loaded once: the extension that ``setup.py`` compiled at install time
(with ``-march=native``) or, when that one is missing (a source tree), was compiled from other
kernels than the kernels/c beside it (an editable install after a pull), or uses an
instruction-set extension this CPU lacks (installed on another machine: ``minillm_isa_missing``,
compiled for the baseline x86-64, is asked before any kernel runs), kernels for this source and
this CPU built once into ~/.cache/minillm (``build.py``). ``MINILLM_C_SANITIZE=1`` loads an
AddressSanitizer + UndefinedBehaviorSanitizer build instead (run Python with
``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``; ``make sanitize`` does it).

``ffi`` and ``lib`` are cffi's; ``pointer`` hands a NumPy array to a kernel."""
import os
import re
import warnings

import numpy as np

from .. import BackendUnavailable


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


def _numbered(family):
    """The numbered versions ``<family>_v<N>_<idea>`` the library exports, in the order of N
    (read from the library: a new version file is listed without a list to edit)."""
    found = ((int(m.group(1)), name) for name in dir(lib) if (m := re.fullmatch(rf"{family}_v(\d+)_\w+", name)))
    return tuple(name for _, name in sorted(found))
