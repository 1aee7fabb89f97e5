"""Swappable backends for the hot primitives.

Every primitive is declared once, as a method of ``reference.Backend`` (the NumPy
reference, with its docstring: shapes and equation). A backend is a subclass in its own
module or folder (``c/``, ``numba/``, ``cuda/``) that overrides the primitives it has
kernels for and inherits the rest; the module's ``backend`` is its instance. Pick one
with ``set_backend(name)``, ``use_backend(name)`` or the environment variable
``MINILLM_BACKEND``. Autograd lives apart (``minillm.ops``): it calls
``current().<primitive>`` and never knows which backend answered.
"""
import contextlib
import importlib
import os

import numpy as np

from .. import blas_threads
from .arrays import to_numpy, xp_of
from .reference import Backend


# ---- array helpers shared by autograd and backends (the stateless ones live in arrays.py) ----
def asarray(data, dtype=None):
    """``data`` as an array of the active backend's module."""
    xp = current().xp
    if xp is not np and isinstance(data, np.ndarray):
        return xp.asarray(data, dtype=dtype)
    if xp is np and not isinstance(data, (np.ndarray, np.generic, list, tuple, int, float, bool)):
        data = to_numpy(data)
    return xp.asarray(data, dtype=dtype)


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices adding up (an embedding's backward)."""
    xp = xp_of(target)
    if xp is np and isinstance(index, np.ndarray) and index.dtype.kind in "iu" and index.ndim >= 1:
        # rows gathered by an integer array (an embedding): the backend's scatter_add_rows
        flat = index.reshape(-1)
        flat = np.where(flat < 0, flat + target.shape[0], flat)  # -1 and n-1 are one row
        if flat.size and (flat.min() < 0 or flat.max() >= target.shape[0]):
            raise IndexError(f"scatter_add: index out of range for {target.shape[0]} rows")
        backend = current() if current().xp is np else _load("numpy")
        backend.scatter_add_rows(target, flat, values.reshape((flat.size,) + target.shape[1:]))
    elif xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target



PRIMITIVES = tuple(name for name, value in vars(Backend).items() if callable(value) and not name.startswith("_"))

KNOWN = {  # name -> the module, under minillm.backends, whose ``backend`` it is
    "numpy": "reference",
    "numba": "numba",
    "c": "c",
    "cuda-sim": "cuda.sim",
    "cupy": "cuda.cupy",
}


class BackendUnavailable(RuntimeError):
    """Raised by a backend module at import time, with the reason it cannot run here."""


_loaded = {}
_reasons = {}
_current = None


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name not in KNOWN:
        raise ValueError(f"set_backend: unknown backend {name!r}; known backends: {', '.join(KNOWN)}")
    if name in _reasons:
        raise BackendUnavailable(f"backend {name!r} is not available here: {_reasons[name]}")
    try:
        backend = importlib.import_module(f".{KNOWN[name]}", __name__).backend
    except BackendUnavailable as exc:
        _reasons[name] = str(exc)
        raise BackendUnavailable(f"backend {name!r} is not available here: {exc}") from None
    _loaded[name] = backend
    return backend


def get(name):
    """The backend called ``name`` (loading it if needed)."""
    return _load(name)


def current():
    """The active backend; the first call honours ``MINILLM_BACKEND`` (default numpy)."""
    global _current
    if _current is None:
        _current = _load(os.environ.get("MINILLM_BACKEND", "numpy"))
        blas_threads.follow(_current.name)
    return _current


def set_backend(name):
    global _current
    _current = _load(name)
    blas_threads.follow(name)  # NumPy's BLAS steps aside while a backend with its own threads runs
    return _current


@contextlib.contextmanager
def use_backend(name):
    global _current
    previous = current()
    _current = _load(name)
    blas_threads.follow(name)
    try:
        yield _current
    finally:
        _current = previous
        blas_threads.follow(previous.name)


def is_available(name):
    """Whether backend ``name`` runs here, loading that backend only (``status()`` loads every
    one, and building the CUDA harness for ``cuda-sim`` is not free)."""
    try:
        _load(name)
        return True
    except BackendUnavailable:
        return False


def status():
    """Every known backend mapped to "ok" or the reason it cannot run here (loads them all)."""
    report = {}
    for name in KNOWN:
        try:
            _load(name)
            report[name] = "ok"
        except BackendUnavailable:
            report[name] = _reasons[name]
    return report


def available():
    return [name for name, state in status().items() if state == "ok"]


