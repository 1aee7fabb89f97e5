"""Backend ``cuda-sim``: the CUDA kernels of ``kernels/cuda/`` executed on the CPU.

Each ``.cu`` file is compiled unchanged by the host C++ compiler with
``kernels/cuda_sim/cuda_sim.h`` force-included (CUDA threads become fibers, blocks run on
worker threads), plus a generated ``launch_<kernel>(grid, block, args…)`` trampoline per
kernel. The build is cached under ``~/.cache/minillm/cuda-sim``. The launch geometry is
the cupy backend's (``kernels.py``), so CI checks what the GPU would run.

``checked_launches()`` turns on bounds checking: every array is copied into a buffer that
ends at a protected page, and an out-of-range access fails the launch with the kernel's
name, the buffer and the element index.
"""
import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .. import BackendUnavailable
from .kernels import CudaKernels
from .source import cuda_files, kernels_dir, signatures


_CXX = os.environ.get("CXX", "g++")
_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-pthread", "-w"]
_C_API = """
const char* cuda_sim_last_error(void);
void cuda_sim_set_workers(int workers);
void* cuda_sim_guarded_alloc(size_t bytes, size_t element, const char* label);
void cuda_sim_guarded_free(void* pointer);
"""
_DTYPES = {"float*": np.float32, "const float*": np.float32, "long long*": np.int64,
           "const long long*": np.int64, "int*": np.int32, "const int*": np.int32}


class CudaSimError(RuntimeError):
    """A kernel failed on the CPU harness: out-of-range access, divergent barrier, bad launch."""


def _cache_dir():
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(root) / "minillm" / "cuda-sim"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _trampoline(name, params):
    decl = ", ".join(f"{t} {n}" for t, n in params)
    args = ", ".join(n for _, n in params)
    return (f'extern "C" int launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, '
            f'unsigned bz, {decl}) {{\n  return cuda_sim::launch(dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, "{name}", '
            f'[=] {{ {name}({args}); }});\n}}\n')


def build(source_file):
    """Compile one .cu file for the CPU (cached by content); returns (ffi, lib, signatures)."""
    import cffi
    source_file = Path(source_file)
    harness = kernels_dir() / "cuda_sim" / "cuda_sim.h"
    sigs = signatures(source_file.read_text())
    program = f'#include "{source_file.resolve()}"\n' + "".join(_trampoline(n, p) for n, p in sigs.items())
    digest = hashlib.sha256()
    for part in [harness.read_text(), program, _CXX, *_FLAGS,
                 *(f.read_text() for f in sorted(source_file.parent.glob("*.cu*")))]:
        digest.update(part.encode())
    library = _cache_dir() / f"{source_file.stem}-{digest.hexdigest()[:16]}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory() as scratch:
            cpp = Path(scratch) / f"{source_file.stem}.cpp"
            cpp.write_text(program)
            built = Path(scratch) / library.name
            command = [_CXX, *_FLAGS, "-include", str(harness), "-I", str(source_file.parent),
                       "-I", str(kernels_dir() / "cuda"), str(cpp), "-o", str(built)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"cuda-sim: building {source_file.name} failed:\n{result.stderr[-4000:]}")
            shutil.move(str(built), library)  # a finished file appears at once, never half-written
    ffi = cffi.FFI()
    ffi.cdef(_C_API + "".join(
        f"int launch_{n}(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, "
        f"{', '.join(t for t, _ in p)});\n" for n, p in sigs.items()))
    return ffi, ffi.dlopen(str(library)), sigs


class Simulator:
    """Launches kernels of every .cu file by name, like a CUDA driver would."""

    def __init__(self, files):
        self.kernels = {}
        for source_file in files:
            ffi, lib, sigs = build(source_file)
            for name, params in sigs.items():
                self.kernels[name] = (ffi, lib, params)
        self.checked = os.environ.get("MINILLM_CUDA_SIM_CHECK") == "1"

    def __call__(self, name, grid, block, *args):
        ffi, lib, params = self.kernels[name]
        if len(args) != len(params):
            raise TypeError(f"{name}: expected {len(params)} arguments, got {len(args)}")
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        converted, copies = [], []
        try:
            for (ctype, pname), value in zip(params, args):
                if ctype.endswith("*"):
                    if not isinstance(value, np.ndarray) or value.dtype != _DTYPES[ctype]:
                        raise TypeError(f"{name}: argument {pname} must be a {np.dtype(_DTYPES[ctype])} array, "
                                        f"got {getattr(value, 'dtype', type(value).__name__)}")
                    converted.append(self._pointer(ffi, lib, ctype, value, pname, copies))
                else:
                    converted.append(value)
            status = getattr(lib, f"launch_{name}")(*grid, *block, *converted)
            if status:
                raise CudaSimError(ffi.string(lib.cuda_sim_last_error()).decode())
        finally:
            for guarded, view, low, span, writable in copies:
                if writable:
                    np.copyto(view, np.frombuffer(ffi.buffer(guarded, span), np.uint8))
                lib.cuda_sim_guarded_free(guarded)

    def _pointer(self, ffi, lib, ctype, array, label, copies):
        if not self.checked:
            return ffi.cast(ctype, array.ctypes.data)
        # copy the bytes the (possibly strided) view spans into a guarded buffer
        low, high = np.lib.array_utils.byte_bounds(array)
        span = high - low
        guarded = lib.cuda_sim_guarded_alloc(span, array.itemsize, label.encode())
        raw = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * span).from_address(low))
        np.frombuffer(ffi.buffer(guarded, span), np.uint8)[:] = raw
        copies.append((guarded, raw, low, span, not ctype.startswith("const")))
        return ffi.cast(ctype, ffi.cast("char *", guarded) + (array.ctypes.data - low))


@contextlib.contextmanager
def checked_launches():
    """Bounds-check every launch inside this block."""
    previous, launch.checked = launch.checked, True
    try:
        yield
    finally:
        launch.checked = previous


try:
    import cffi  # noqa: F401  (the harness is loaded through it)
except ImportError:
    raise BackendUnavailable("cffi is not installed (pip install cffi)") from None
if shutil.which(_CXX) is None:
    raise BackendUnavailable(f"no C++ compiler ({_CXX}) to build the CPU harness for the CUDA kernels")
try:
    launch = Simulator(cuda_files())
except (RuntimeError, FileNotFoundError) as exc:
    raise BackendUnavailable(str(exc)) from None

backend = CudaKernels("cuda-sim", np, launch)
