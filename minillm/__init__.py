"""minillm: a language model rebuilt from first principles, then made fast.

The autograd engine (``Tensor``, ``ops``) is NumPy; the hot primitives run on a swappable
backend (``set_backend``: numpy, numba, c, cuda-sim, cupy).
"""
from . import memory

memory.keep_freed_memory()  # before any array of ours exists: see memory.py

from . import amp, backends, functional, nn, ops, optim  # noqa: E402
from .backends import set_backend, use_backend  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .ops import cat, split, stack, where  # noqa: E402
from .rng import manual_seed  # noqa: E402
from .tensor import Tensor, arange, is_grad_enabled, no_grad, ones, randn, tensor, zeros  # noqa: E402


def load(out_dir):
    """(model, tokenizer) from a checkpoint directory written by `minillm train`."""
    from .train import load as load_checkpoint
    return load_checkpoint(out_dir)


__version__ = "0.1.0"

float32, float64, float16 = "float32", "float64", "float16"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "randn", "arange", "no_grad", "is_grad_enabled",
    "cat", "stack", "split", "where", "gradcheck", "manual_seed", "set_backend",
    "use_backend", "backends", "functional", "nn", "ops", "optim", "amp", "load",
]
