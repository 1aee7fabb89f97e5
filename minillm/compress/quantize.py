"""int8 quantisation (量化): weights per output channel, activations per row, both
symmetric — w ≈ s_w · q_w with s_w = max|w_row| / 127 and q_w = round(w / s_w) ∈ [−127, 127].

A quantised linear layer computes y ≈ s_x s_w (q_x · q_wᵀ) + b: the product runs in
int8 × int8 → int32 on the backend (``matmul_int8``), and the activation scale s_x is
found at run time for every row (dynamic quantisation). Embedding tables are stored as
int8 rows too. Weights take a quarter of their float32 bytes."""
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


class QuantizedLinear(Module):
    """A Linear layer stored as int8 weights + per-channel scales (inference only)."""

    def __init__(self, linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.qweight, self.scale = quantize_symmetric(linear.weight.numpy())
        self.bias = None if linear.bias is None else linear.bias.numpy().copy()

    def forward(self, x):
        rows = x.numpy().reshape(-1, self.in_features)
        qx, sx = quantize_symmetric(rows, axis=1)                       # per-row activation scales
        acc = backends.current().matmul_int8(qx, self.qweight)           # (rows, out) int32
        y = acc.astype(np.float32) * sx[:, None] * self.scale[None, :]
        if self.bias is not None:
            y += self.bias
        return Tensor(backends.asarray(y.reshape(x.shape[:-1] + (self.out_features,))))

    def state(self):
        out = {"qweight": self.qweight, "scale": self.scale}
        if self.bias is not None:
            out["bias"] = self.bias
        return out

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class QuantizedEmbedding(Module):
    """An embedding table stored as int8 rows with one scale per row; a lookup
    dequantises only the rows it reads."""

    def __init__(self, embedding):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self.qweight, self.scale = quantize_symmetric(embedding.weight.numpy())

    def forward(self, idx):
        idx = np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx)
        rows = self.qweight[idx].astype(np.float32) * self.scale[idx][..., None]
        return Tensor(backends.asarray(rows))

    def state(self):
        return {"qweight": self.qweight, "scale": self.scale}

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


QUANTIZED = {Linear: QuantizedLinear, Embedding: QuantizedEmbedding}


def _quantizable(module, prefix=""):
    """(parent, attribute, dotted path, layer) for every Linear/Embedding, quantised or not."""
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, tuple(QUANTIZED) + tuple(QUANTIZED.values())):
            yield module, name, path, child
        else:
            yield from _quantizable(child, path)


def quantize_model(model):
    """Replace every Linear and Embedding in ``model`` by its int8 counterpart, in place;
    returns the model. Refuses an untrained model (nothing worth measuring) and a
    quantised one."""
    if any(isinstance(layer, tuple(QUANTIZED.values())) for *_, layer in _quantizable(model)):
        raise ValueError(f"quantize_model: {type(model).__name__} is already quantised")
    if not getattr(model, "trained_steps", 0):
        raise ValueError(f"quantize_model: {type(model).__name__} has not been trained (trained_steps = 0); "
                         f"quantising random weights measures nothing — train it or load a checkpoint first")
    for parent, name, _, layer in list(_quantizable(model)):
        setattr(parent, name, QUANTIZED[type(layer)](layer))
    model.quantized = True
    return model


def quantized_state(model):
    """Every array a quantised model needs, by dotted name (int8 where quantised)."""
    state = {name: p.numpy() for name, p in model.named_parameters()}
    for _, _, path, layer in _quantizable(model):
        if isinstance(layer, tuple(QUANTIZED.values())):
            state.update({f"{path}.{k}": v for k, v in layer.state().items()})
    return state
