"""LoRA (Hu et al., 2021): fine-tune a large model by training a low-rank correction.

A frozen weight W (out × in) gets two small trainable matrices, A (r × in) and B (out × r):

    y = x Wᵀ + (α / r) · x Aᵀ Bᵀ

B starts at zero, so the adapted model starts as the base model exactly; only r·(in + out)
numbers per layer train instead of in·out, and the optimizer's state shrinks with them.
``merge_lora`` folds the correction in, W ← W + (α/r)·B A, leaving a plain model that
runs as fast as the original.
"""
import math

import numpy as np

from .. import backends
from ..rng import generator
from .layers import Linear
from .module import Module, Parameter


class LoRALinear(Module):
    """A frozen ``Linear`` plus a trainable rank-``rank`` update."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        if not isinstance(base, Linear):
            raise TypeError(f"LoRALinear: wraps a Linear; got {type(base).__name__}")
        if rank < 1:
            raise ValueError(f"LoRALinear: rank must be >= 1; got {rank}")
        self.base, self.rank, self.alpha = base, rank, alpha
        self.scaling = alpha / rank
        bound = 1 / math.sqrt(base.in_features)  # A as a Linear's default init, B at zero
        self.lora_A = Parameter(generator().uniform(-bound, bound, (rank, base.in_features)).astype(np.float32))
        self.lora_B = Parameter(np.zeros((base.out_features, rank), np.float32))
        for p in (self.lora_A, self.lora_B):
            p.data = backends.asarray(p.data, base.weight.dtype)

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self):
        """The base Linear with the update folded into its weight."""
        update = (self.lora_B.data @ self.lora_A.data) * self.scaling
        self.base.weight.data = (self.base.weight.data + update).astype(self.base.weight.dtype)
        return self.base

    def extra_repr(self):
        return f"rank={self.rank}, alpha={self.alpha}"


def _children(model):
    for module in model.modules():
        for name, child in list(vars(module).items()):
            if isinstance(child, Module):
                yield module, name, child


def default_targets(model):
    """The layers LoRA adapts when none are named: the model's ``lora_targets`` (GPT's:
    ``c_attn``, which makes q, k and v), else ``q_proj`` and ``v_proj`` (Llama,
    MultiHeadAttention); Hugging Face PEFT's defaults for GPT-2 and Llama."""
    return tuple(getattr(model, "lora_targets", ("q_proj", "v_proj")))


def add_lora(model, rank=8, alpha=16, targets=None):
    """Freeze every parameter of ``model`` and wrap each Linear whose attribute name is in
    ``targets`` (None: ``default_targets(model)``) in a ``LoRALinear``; returns the number
    of adapted layers. Only the adapters' ``lora_A``/``lora_B`` then require gradients.
    A target that names no Linear is an error, and the model is left as it was."""
    targets = default_targets(model) if targets is None else tuple(targets)
    linears = {name for _, name, child in _children(model) if isinstance(child, Linear)}
    unknown = [t for t in targets if t not in linears]
    if unknown or not targets:
        raise ValueError(f"add_lora: no Linear named {', '.join(map(repr, unknown)) or 'by an empty list'} in "
                         f"{type(model).__name__}; its Linear layers are named {', '.join(sorted(linears))}")
    model.requires_grad_(False)
    wrapped = 0
    for parent, name, child in list(_children(model)):
        if name in targets and isinstance(child, Linear):
            setattr(parent, name, LoRALinear(child, rank, alpha))
            wrapped += 1
    return wrapped


def merge_lora(model):
    """Fold every adapter into its base weight and put the plain Linear back; returns the
    number of merged layers. The model computes the same function, with no extra cost."""
    merged = 0
    for parent, name, child in list(_children(model)):
        if isinstance(child, LoRALinear):
            setattr(parent, name, child.merged())
            merged += 1
    return merged
