"""Differentiable ops. Each computes its output array and a ``backward(g)`` that returns one
gradient per parent (``None`` for a parent that takes none). Everything else in the
library (``Tensor``'s operators, functional, nn, models) is composed from these.

``OPS`` is the registry of every op with a hand-written backward, keyed by the function's
own name (``@op`` registers it); tests/test_ops.py checks that each has a property-based
gradcheck. The ops live by kind, one file each:

- ``core.py``: the registry and ``@op``, ``result`` (wraps an output and records the
  graph), ``as_tensor``, ``unbroadcast``, and the shape checks the others share.
- ``elementwise.py``: add, sub, mul, div, neg, power; exp, log, sqrt, tanh, absolute,
  relu, sigmoid, gelu_exact, gelu_tanh (and ``gelu``, torch's switch between them);
  clip, where, masked_fill, dropout.
- ``reductions.py``: sum_over, mean, amax, amin, var; softmax, log_softmax.
- ``shape.py``: reshape, permute, transpose, getitem, cat (and row_blocks, its view when the blocks lie back to back), stack, split, cast.
- ``linalg.py``: matmul and linear (the backend's GEMM).
- ``fused.py``: one node for a whole block of work, kernels in the backend:
  layer_norm_rows, attention, attention_heads, attention_qkv, cross_entropy_rows, bce_with_logits; Llama's
  rms_norm_rows, rope, swiglu. A new fused op (a norm, a rotary embedding, an attention
  variant) goes here.

No op is named like a builtin (``sum_over``, not ``sum``): this package's code keeps
Python's ``sum``, ``max``, ``min``, ``abs`` and ``pow``. The names users see stay torch's:
``Tensor.sum()``, ``.max()``, ``.abs()``, ``x ** 2``, ``minillm.functional``.
"""
import sys

from .. import tensor as _tensor
from .core import OPS, as_tensor, op, result, unbroadcast
from .elementwise import (absolute, add, clip, div, dropout, exp, gelu, gelu_exact, gelu_tanh, log,
                          masked_fill, mul, neg, power, relu, sigmoid, sqrt, sub, tanh, where)
from .fused import (attention, attention_heads, attention_qkv, bce_with_logits, cross_entropy_rows, layer_norm_rows,
                    rms_norm_rows, rope, swiglu)
from .linalg import linear, matmul
from .reductions import amax, amin, log_softmax, mean, softmax, sum_over, var
from .shape import cast, cat, getitem, permute, reshape, row_blocks, split, stack, transpose

# Tensor's operators (tensor.py) call the ops through the name `ops` in that module: the
# ops build Tensors, so this package imports tensor.py, never the other way round, and
# hands itself over here, once every op is defined.
_tensor.ops = sys.modules[__name__]

__all__ = [
    "OPS", "op", "result", "as_tensor", "unbroadcast",
    "add", "sub", "mul", "div", "neg", "power", "exp", "log", "sqrt", "tanh", "absolute", "relu",
    "sigmoid", "gelu_exact", "gelu_tanh", "gelu", "clip", "where", "masked_fill", "dropout",
    "sum_over", "mean", "amax", "amin", "var", "softmax", "log_softmax",
    "reshape", "permute", "transpose", "getitem", "cat", "row_blocks", "stack", "split", "cast",
    "matmul", "linear",
    "layer_norm_rows", "attention", "attention_heads", "attention_qkv", "cross_entropy_rows", "bce_with_logits",
    "rms_norm_rows", "rope", "swiglu",
]
