"""Two thread pools on the same cores: the C backend's GEMM in steady state and right after
a NumPy matrix product (whose OpenBLAS workers keep spinning for a while afterwards).

Two rows: with minillm's current backend ``numpy`` (NumPy's BLAS keeps all its threads, as
without minillm) and with ``c`` current (``minillm.blas_threads``: NumPy's BLAS limited to one
thread while a backend with its own team runs). The C kernels are called directly in both.

    python -m benchmarks --op thread_pools
"""
import time

import numpy as np

from minillm import backends
from minillm.blas_threads import blas_threads

from .timing import SETTLE_SECONDS


def _gflops(seconds, n):
    return 2 * n ** 3 / seconds / 1e9


def _rows_for(current, n, repeats):
    """(steady GFLOP/s, GFLOP/s right after a NumPy product) of the C GEMM at n³ with
    ``current`` the active backend."""
    c = backends.get("c")
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    with backends.use_backend(current):
        threads = blas_threads()
        time.sleep(SETTLE_SECONDS)
        for _ in range(3):
            c.matmul(a, b)
        steady = []
        for _ in range(repeats):
            start = time.perf_counter()
            c.matmul(a, b)
            steady.append(time.perf_counter() - start)
        after = []
        for _ in range(repeats):
            a @ b  # NumPy's product: OpenBLAS's workers spin on after it
            start = time.perf_counter()
            c.matmul(a, b)
            after.append(time.perf_counter() - start)
    steady_gflops, after_gflops = _gflops(np.median(steady), n), _gflops(np.median(after), n)
    return dict(current_backend=current, blas_threads=threads, n=n, steady_gflops=round(steady_gflops, 1),
                after_numpy_gflops=round(after_gflops, 1), after_vs_steady=round(after_gflops / steady_gflops, 3))


def run(quick, log=print, n=None):
    if not backends.is_available("c"):
        return []
    n = n or (256 if quick else 1024)
    repeats = 5 if quick else 15
    rows = [_rows_for(current, n, repeats) for current in ("numpy", "c")]
    for r in rows:
        log(f"current backend {r['current_backend']:5s} (NumPy's BLAS threads: {r['blas_threads']}): C GEMM {n}³ "
            f"steady {r['steady_gflops']:.0f} GFLOP/s, right after a NumPy product {r['after_numpy_gflops']:.0f} "
            f"({r['after_vs_steady']:.2f}×)")
    return rows


def table(rows, render):
    header = ["minillm's current backend", "NumPy's BLAS threads", "n", "C GEMM steady GFLOP/s",
              "right after a NumPy product", "after ÷ steady"]
    return render(header, [[r["current_backend"], r["blas_threads"], r["n"], r["steady_gflops"],
                            r["after_numpy_gflops"], r["after_vs_steady"]] for r in rows])


if __name__ == "__main__":
    run(quick=False)
