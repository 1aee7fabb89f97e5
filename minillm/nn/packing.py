"""Weights that one GEMM reads together, kept together: Llama's q, k and v projections run
as one product in training, and so do gate and up; ``ops.row_blocks`` reads their weights as
one matrix without a copy when they lie back to back in one buffer. ``pack`` puts them there
(as PyTorch's ``RNN.flatten_parameters`` does for cuDNN); each Parameter keeps its name, shape
and values, its array becoming a view of the shared buffer, so the optimizer's in-place
updates land in that buffer too.

Anything that later gives a weight a new array (``Module.to``, a move between backends, LoRA's
merge) only costs the copy again, each step: ``row_blocks`` checks where the blocks lie every
time it is called, and falls back to concatenating."""
import numpy as np

from ..backends.arrays import back_to_back


def pack(params):
    """Make the 2-D ``params`` (same width and dtype) views of one new buffer, in order, unless
    they already lie back to back (in ours, or in ZeRO's flat buffer) or one of them is a view
    of another buffer that its owner keeps them in (ZeRO's): that one stays where it is, and
    training copies the group each step instead. NumPy arrays only. Returns whether the group
    lies back to back now."""
    arrays = [p.data for p in params]
    if back_to_back(arrays) is not None:
        return True
    if not all(isinstance(a, np.ndarray) and a.ndim == 2 and a.base is None and a.dtype == arrays[0].dtype
               and a.shape[1] == arrays[0].shape[1] for a in arrays):
        return False
    buffer = np.concatenate(arrays, axis=0)
    start = 0
    for p in params:
        p.data = buffer[start:start + p.shape[0]]
        start += p.shape[0]
    return True
