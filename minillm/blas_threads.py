"""One thread pool at a time: NumPy's BLAS steps aside while a backend with its own team runs.

NumPy's OpenBLAS keeps its worker threads spinning for a while after each matrix product,
waiting for the next one. The ``c`` backend's kernels (OpenMP) and ``numba``'s parallel loops
start a team of their own on the same cores; while OpenBLAS's workers spin, that team shares
its cores with them, and a GEMM right after a NumPy ``@`` runs at a fraction of its speed
(``python -m benchmarks --op thread_pools`` measures both rows). Any script that mixes NumPy
and minillm pays it.

So while such a backend is the current one (``set_backend``, ``use_backend``,
``MINILLM_BACKEND``), the BLAS libraries loaded in the process (NumPy's OpenBLAS; MKL too, if
torch is loaded by then — the benchmarks run torch in processes of its own) are limited to one thread through
threadpoolctl — the well-kept tool for exactly this — and their own setting comes back when
a backend without a team of its own (``numpy``) is current again. Nothing changes for NumPy
while minillm's backend is ``numpy``, or when minillm is not used at all. ``blas_threads()``
tells what NumPy's BLAS is allowed now; to give BLAS its threads back inside a block (to time
OpenBLAS as a peer, say), use ``threadpoolctl.threadpool_limits(None)`` or ``use_backend("numpy")``.
"""
_OWN_TEAMS = frozenset({"c", "numba"})
_limited = None  # threadpoolctl's handle on the limit in force, to restore the original


def follow(backend_name):
    """Limit NumPy's BLAS to one thread if ``backend_name`` runs a team of its own; else
    restore what it had. Idempotent; cheap when nothing changes."""
    global _limited
    if backend_name in _OWN_TEAMS:
        if _limited is None:
            from threadpoolctl import threadpool_limits
            _limited = threadpool_limits(limits=1, user_api="blas")
    elif _limited is not None:
        _limited.restore_original_limits()
        _limited = None


def blas_threads():
    """The number of threads NumPy's BLAS may use now (the largest over the BLAS libraries
    loaded; None if threadpoolctl finds none)."""
    from threadpoolctl import threadpool_info
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(counts) if counts else None
