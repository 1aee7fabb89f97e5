"""The basic layers. Initialisation follows PyTorch's defaults so results are comparable."""
import math

import numpy as np

from .. import functional as F
from .. import ops
from ..rng import generator
from .module import Module, Parameter, init_skipped


def uniform(shape, bound, dtype=np.float32):
    if init_skipped():
        return Parameter(np.empty(shape, dtype))
    return Parameter(generator().uniform(-bound, bound, size=shape).astype(dtype))


class Linear(Module):
    """y = x Wᵀ + b with W (out_features, in_features), initialised U(−1/√in, 1/√in)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = uniform((out_features, in_features), bound)
        self.bias = uniform((out_features,), bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors, initialised N(0, 1)."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        shape = (num_embeddings, embedding_dim)
        self.weight = Parameter(np.empty(shape, np.float32) if init_skipped()
                                else generator().standard_normal(shape).astype(np.float32))

    def forward(self, idx):
        return F.embedding(idx, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = Parameter(np.ones(self.normalized_shape, np.float32)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, np.float32)) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1); got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class _Activation(Module):
    fn = None

    def forward(self, x):
        return type(self).fn(x)


class ReLU(_Activation):
    fn = staticmethod(ops.relu)


class Tanh(_Activation):
    fn = staticmethod(ops.tanh)


class Sigmoid(_Activation):
    fn = staticmethod(ops.sigmoid)


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return ops.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Conv1d(Module):
    """1-D convolution over (B, C_in, L) → (B, C_out, L_out), as a gather of windows
    (B, L_out, C_in·K) followed by one matrix product with the (C_out, C_in·K) kernel."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        bound = 1 / math.sqrt(in_channels * kernel_size)
        self.weight = uniform((out_channels, in_channels, kernel_size), bound)
        self.bias = uniform((out_channels,), bound) if bias else None

    def forward(self, x):
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv1d: expected input (B, {self.in_channels}, L); got {x.shape}")
        if self.padding:
            pad = ops.as_tensor(np.zeros(x.shape[:2] + (self.padding,), x.dtype), x)
            x = ops.cat([pad, x, pad], dim=2)
        windows = _windows(x, self.kernel_size, self.stride, "Conv1d")          # (B, C, L_out, K)
        cols = windows.permute(0, 2, 1, 3).reshape(x.shape[0], windows.shape[2], -1)  # (B, L_out, C·K)
        out = F.linear(cols, self.weight.reshape(self.out_channels, -1), self.bias)  # (B, L_out, C_out)
        return out.permute(0, 2, 1)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class MaxPool1d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride or kernel_size

    def forward(self, x):
        return _windows(x, self.kernel_size, self.stride, "MaxPool1d").max(dim=-1)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _windows(x, kernel_size, stride, name):
    """(B, C, L) → (B, C, L_out, K): every window of the last axis, by integer indexing."""
    length = x.shape[-1]
    if length < kernel_size:
        raise ValueError(f"{name}: input length {length} is shorter than kernel_size {kernel_size}")
    starts = np.arange(0, length - kernel_size + 1, stride)
    return x[..., starts[:, None] + np.arange(kernel_size)[None, :]]
