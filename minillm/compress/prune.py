"""Pruning (剪枝): set the least important weights to zero and keep them there.

``prune_magnitude`` (unstructured) zeroes the smallest-magnitude fraction of every
Linear weight; ``prune_heads`` and ``prune_neurons`` (structured) remove whole attention
heads or MLP neurons, those whose weights have the smallest norm. Each returns a
``Masks`` object: call ``masks.apply()`` after every optimizer step of a fine-tune so the
zeros stay zeros."""
import numpy as np

from ..nn import Linear
from ..nn.transformer import MLP, CausalSelfAttention, MultiHeadAttention


class Masks:
    def __init__(self):
        self.entries = []  # (parameter, boolean keep-mask)

    def add(self, parameter, keep):
        self.entries.append((parameter, keep))
        parameter.data *= keep.astype(parameter.dtype)

    def apply(self):
        for parameter, keep in self.entries:
            parameter.data *= keep.astype(parameter.dtype)
            if parameter.grad is not None:
                parameter.grad.data *= keep.astype(parameter.dtype)

    def sparsity(self):
        kept = sum(int(keep.sum()) for _, keep in self.entries)
        total = sum(keep.size for _, keep in self.entries)
        return 1 - kept / max(total, 1)


def _check_amount(amount):
    if not 0 <= amount < 1:
        raise ValueError(f"pruning: amount must be in [0, 1); got {amount}")


def prune_magnitude(model, amount):
    """Zero the ``amount`` fraction of smallest |w| in every Linear weight: exactly
    ⌊amount · size⌋ of them (a quantile cut would also take every weight tied with it, and
    interpolates between two magnitudes, which zeroes one weight too many)."""
    _check_amount(amount)
    masks = Masks()
    for module in model.modules():
        if isinstance(module, Linear):
            w = module.weight.numpy()
            pruned = int(amount * w.size)
            keep = np.ones(w.size, bool)
            keep[np.argsort(np.abs(w), axis=None, kind="stable")[:pruned]] = False
            masks.add(module.weight, keep.reshape(w.shape))
    return masks


def prune_heads(model, amount):
    """Remove the ``amount`` fraction of attention heads with the smallest weight norm, in
    every MultiHeadAttention and CausalSelfAttention: their q/k/v rows and their columns
    of the output projection become zero."""
    _check_amount(amount)
    masks = Masks()
    for attn in (m for m in model.modules() if isinstance(m, (MultiHeadAttention, CausalSelfAttention))):
        h, size = attn.num_heads, attn.embed_dim // attn.num_heads
        inputs, output = _projections(attn)
        # rows of each projection: `parts` blocks (q | k | v for c_attn) of h heads of `size` rows
        norms = sum((p.weight.numpy().reshape(parts, h, size, -1) ** 2).sum(axis=(0, 2, 3)) for p, parts in inputs)
        dropped = np.argsort(norms)[: int(round(amount * h))]
        keep_heads = np.ones(h, bool)
        keep_heads[dropped] = False
        rows = np.repeat(keep_heads, size)                      # (C,): one head's rows side by side
        for proj, parts in inputs:
            keep = np.tile(rows, parts)                         # (parts·C,)
            masks.add(proj.weight, np.broadcast_to(keep[:, None], proj.weight.shape))
            if proj.bias is not None:
                masks.add(proj.bias, keep)
        masks.add(output.weight, np.broadcast_to(rows[None, :], output.weight.shape))
    return masks


def _projections(attn):
    """([(input projection, how many of q, k, v its rows hold)], output projection)."""
    if isinstance(attn, CausalSelfAttention):
        return [(attn.c_attn, 3)], attn.c_proj
    return [(attn.q_proj, 1), (attn.k_proj, 1), (attn.v_proj, 1)], attn.out_proj


def prune_neurons(model, amount):
    """Remove the ``amount`` fraction of MLP hidden neurons with the smallest weight norm."""
    _check_amount(amount)
    masks = Masks()
    for mlp in (m for m in model.modules() if isinstance(m, MLP)):
        norms = (mlp.fc.weight.numpy() ** 2).sum(1) + (mlp.proj.weight.numpy() ** 2).sum(0)
        keep = np.ones(len(norms), bool)
        keep[np.argsort(norms)[: int(round(amount * len(norms)))]] = False
        masks.add(mlp.fc.weight, np.broadcast_to(keep[:, None], mlp.fc.weight.shape))
        if mlp.fc.bias is not None:
            masks.add(mlp.fc.bias, keep)
        masks.add(mlp.proj.weight, np.broadcast_to(keep[None, :], mlp.proj.weight.shape))
    return masks
