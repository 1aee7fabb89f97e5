"""Which OpenBLAS kernel NumPy runs, and how to run it as its library would choose.

OpenBLAS picks its kernels for the CPU when it loads, unless ``OPENBLAS_CORETYPE`` names a
core (and ``OPENBLAS_L2_SIZE`` a cache size) instead: a machine image that sets
``OPENBLAS_CORETYPE=Haswell`` on an AVX-512 CPU runs the AVX2 kernels. Both are read once, at
load, so a fair comparison with OpenBLAS measures it in a process started without them."""
import ctypes
import glob
import os
import subprocess
import sys

OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def core_name():
    """The core OpenBLAS chose (e.g. 'SkylakeX', 'Zen', 'Haswell'), or None when NumPy's BLAS
    is not the OpenBLAS its wheel bundles."""
    import numpy as np
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas*")):
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                       "openblas_get_corename"):
            function = getattr(library, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return None


def overrides():
    """The OpenBLAS settings this process's environment forces, e.g. {'OPENBLAS_CORETYPE': 'Haswell'}."""
    return {name: os.environ[name] for name in OVERRIDES if os.environ.get(name)}


def fair_environment(environ=None):
    """``environ`` without the overrides: OpenBLAS chooses for the CPU it finds."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in OVERRIDES}


_MEASURE = """
import sys, time, numpy as np
from minillm.openblas import core_name
m, k, n, repeats = map(int, sys.argv[1:5])
rng = np.random.default_rng(0)
a = rng.standard_normal((m, k)).astype(np.float32)
b = rng.standard_normal((k, n)).astype(np.float32)
a @ b
time.sleep(0.3)
times = []
for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - start)
print(core_name(), 2 * m * k * n / min(times) / 1e9)
"""


def matmul_gflops_unforced(m, k, n, repeats=5):
    """(core name, best GFLOP/s) of NumPy's float32 matmul (m×k)·(k×n) in a fresh process
    without the overrides."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(m), str(k), str(n), str(repeats)],
                         env=fair_environment(), capture_output=True, text=True, check=True).stdout.split()
    return out[0], float(out[1])
