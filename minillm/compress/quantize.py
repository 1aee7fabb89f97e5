"""int8 quantisation (量化): weights per output channel, activations per row, both
symmetric — w ≈ s_w · q_w with s_w = max|w_row| / 127 and q_w = round(w / s_w) ∈ [−127, 127].

Two ways to use it:

- ``quantize_model`` (weights + activations): a quantised linear layer computes
  y ≈ s_x s_w (q_x · q_wᵀ) + b, the product in int8 × int8 → int32 on the backend
  (``matmul_int8``), the activation scale s_x found in NumPy for every row at run time
  (dynamic quantisation), the result dequantised in NumPy.
- ``quantize_weights`` (weight-only, for generation): y = x (s_w ⊙ q_w)ᵀ + b with x float32,
  one backend call per layer (``linear_int8``, kernels/c/linear_int8.c). Decoding one token
  reads every weight once, so it is limited by memory bandwidth, and int8 weights are a
  quarter of the bytes to read.

Embedding tables are stored as int8 rows in both. Weights take a quarter of their float32
bytes."""
import numpy as np

from .. import backends
from ..nn import Embedding, Linear, Module
from ..tensor import Tensor


def quantize_symmetric(w, axis=1):
    """(int8 values, float32 scales) with w ≈ scales · values, one scale per slice along
    ``axis`` (per output channel for a (out, in) weight)."""
    w = np.asarray(w, np.float32)
    peak = np.abs(w).max(axis=axis, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale.squeeze(axis)


class _Int8Weights(Module):
    """What both int8 Linear layers store: int8 weights (out, in), one float32 scale per
    output row, and the float32 bias. ``quantized`` passes (q, s) already made (a tied table)."""

    def __init__(self, linear, quantized=None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, s = quantized if quantized is not None else quantize_symmetric(linear.weight.numpy())
        self.qweight, self.scale = np.ascontiguousarray(q), np.ascontiguousarray(s, np.float32)
        self.bias = None if linear.bias is None else np.ascontiguousarray(linear.bias.numpy(), np.float32)

    def state(self):
        out = {"qweight": self.qweight, "scale": self.scale}
        if self.bias is not None:
            out["bias"] = self.bias
        return out


class QuantizedLinear(_Int8Weights):
    """A Linear layer stored as int8 weights + per-channel scales, its input quantised per
    row on every call (weights and activations int8; inference only)."""

    def forward(self, x):
        rows = x.numpy().reshape(-1, self.in_features)
        qx, sx = quantize_symmetric(rows, axis=1)                       # per-row activation scales
        acc = backends.current().matmul_int8(qx, self.qweight)           # (rows, out) int32
        y = acc.astype(np.float32) * sx[:, None] * self.scale[None, :]
        if self.bias is not None:
            y += self.bias
        return Tensor(backends.asarray(y.reshape(x.shape[:-1] + (self.out_features,))))

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8WeightLinear(_Int8Weights):
    """A Linear layer stored as int8 weights + one float32 scale per output row, with float32
    input and output (weight-only quantisation, inference only): y = x (s ⊙ q)ᵀ + b in one
    backend call, ``linear_int8``."""

    def forward(self, x):
        data = x.numpy()
        rows = data.reshape(-1, self.in_features)
        if rows.dtype != np.float32:
            rows = rows.astype(np.float32)
        y = backends.current().linear_int8(rows, self.qweight, self.scale, self.bias)
        return Tensor(backends.asarray(y.reshape(data.shape[:-1] + (self.out_features,))))

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


class QuantizedEmbedding(Module):
    """An embedding table stored as int8 rows with one scale per row; a lookup
    dequantises only the rows it reads."""

    def __init__(self, embedding, quantized=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self.qweight, self.scale = quantized if quantized is not None else quantize_symmetric(embedding.weight.numpy())

    def forward(self, idx):
        idx = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx)
        rows = self.qweight[idx].astype(np.float32) * self.scale[idx][..., None]
        return Tensor(backends.asarray(rows))

    def state(self):
        return {"qweight": self.qweight, "scale": self.scale}

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


QUANTIZED = {Linear: QuantizedLinear, Embedding: QuantizedEmbedding}
QUANTIZED_TYPES = (QuantizedLinear, QuantizedEmbedding, Int8WeightLinear)


def _quantizable(module, prefix=""):
    """(parent, attribute, dotted path, layer) for every Linear/Embedding, quantised or not."""
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, tuple(QUANTIZED) + QUANTIZED_TYPES):
            yield module, name, path, child
        else:
            yield from _quantizable(child, path)


def _refuse_quantised(model, caller):
    if any(isinstance(layer, QUANTIZED_TYPES) for *_, layer in _quantizable(model)):
        raise ValueError(f"{caller}: {type(model).__name__} is already quantised")


def quantize_model(model):
    """Replace every Linear and Embedding in ``model`` by its int8 counterpart, in place;
    returns the model. Refuses an untrained model (nothing worth measuring) and a
    quantised one."""
    _refuse_quantised(model, "quantize_model")
    if not getattr(model, "trained_steps", 0):
        raise ValueError(f"quantize_model: {type(model).__name__} has not been trained (trained_steps = 0); "
                         f"quantising random weights measures nothing — train it or load a checkpoint first")
    for parent, name, _, layer in list(_quantizable(model)):
        setattr(parent, name, QUANTIZED[type(layer)](layer))
    model.quantized = True
    return model


def quantize_weights(model):
    """Weight-only int8, in place (returns the model): every Linear becomes an
    ``Int8WeightLinear`` (int8 weights, a float32 scale per output row, float32 activations)
    and every Embedding a ``QuantizedEmbedding``. A table tied to an output layer (GPT-2's
    wte and lm_head) keeps one int8 copy for both. For generation and evaluation (no
    gradients). Unlike ``quantize_model`` it accepts an untrained model (timing random
    weights is fine) but refuses a quantised one."""
    _refuse_quantised(model, "quantize_weights")
    made = {}  # id of a weight Parameter → its (q, s): tied weights are quantised once
    for parent, name, _, layer in list(_quantizable(model)):
        key = id(layer.weight)
        if key not in made:
            made[key] = quantize_symmetric(layer.weight.numpy())
        make = Int8WeightLinear if isinstance(layer, Linear) else QuantizedEmbedding
        setattr(parent, name, make(layer, made[key]))
    model.quantized = "int8 weights"
    return model


def quantized_state(model):
    """Every array a quantised model needs, by dotted name (int8 where quantised)."""
    state = {name: p.numpy() for name, p in model.named_parameters()}
    for _, _, path, layer in _quantizable(model):
        if isinstance(layer, QUANTIZED_TYPES):
            state.update({f"{path}.{k}": v for k, v in layer.state().items()})
    return state
