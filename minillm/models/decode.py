"""GPT's decode step on arrays: the new tokens against the KV caches, each layer calling the
backend's primitives directly, with no Tensor nodes.

Decoding one token reads every weight once, so its floor is (bytes of weights) ÷ (memory
bandwidth). The Tensor path adds thousands of Python calls a token around the kernels (graph
nodes, each op's shape checks, backend guards, reshape nodes, the cache's Tensor views), time in
which no weight is read. Here the model's structure is checked once per generation
(``ArrayDecoder.fits``) and each step is the kernels and a few NumPy views.

Every step calls the same backend methods, in the same order and on the same values, as
``GPT.forward`` with caches does, so the logits, and hence the tokens, are the same bit for
bit (tests/test_decode_step.py). A model this file does not know (LoRA, a subclass with its
own forward, another block, autocast, a GPU backend) keeps the Tensor path."""
import math

import numpy as np

from .. import amp, backends
from ..compress.quantize import Int8WeightLinear, QuantizedEmbedding
from ..nn import Dropout, Embedding, LayerNorm, Linear
from ..nn.layers import GELU
from ..nn.transformer import MLP, CausalSelfAttention, TransformerBlock

CPU_BACKENDS = ("numpy", "numba", "c")  # NumPy arrays in and out; the GPU backends keep the Tensor path


def _linear(layer):
    """``rows (N, in) -> (N, out)`` for a plain or an int8-weight Linear, the backend's method
    and the layer's arrays bound once (the step then pays one call a layer)."""
    backend = backends.current()
    if type(layer) is Int8WeightLinear:
        q, s, b = layer.qweight, layer.scale, layer.bias
        return lambda rows: backend.linear_int8(rows, q, s, b)
    w, b = layer.weight.data, None if layer.bias is None else layer.bias.data
    return lambda rows: backend.linear_forward(rows, w, b)


def _embedding(table):
    """``ids -> rows`` as Embedding / QuantizedEmbedding compute them (int8 rows dequantised
    only where read)."""
    if type(table) is QuantizedEmbedding:
        q, s = table.qweight, table.scale
        return lambda ids: q[ids].astype(np.float32) * s[ids][..., None]
    w = table.weight.data
    return lambda ids: w[ids]


def _known_linear(layer):
    return type(layer) is Int8WeightLinear or (type(layer) is Linear and isinstance(layer.weight.data, np.ndarray))


def _known_norm(norm):
    return type(norm) is LayerNorm and norm.weight is not None and norm.bias is not None \
        and len(norm.normalized_shape) == 1


def _known_block(block):
    attn, mlp = block.attn, block.mlp
    return (type(block) is TransformerBlock and block.pre_norm and block.residual and block.cross is None
            and type(block.drop) is Dropout and _known_norm(block.ln_1) and _known_norm(block.ln_2)
            and type(attn) is CausalSelfAttention and not attn.record_weights
            and _known_linear(attn.c_attn) and _known_linear(attn.c_proj)
            and type(mlp) is MLP and type(mlp.act) is GELU and mlp.act.approximate == "tanh"
            and type(mlp.drop) is Dropout and _known_linear(mlp.fc) and _known_linear(mlp.proj))


class ArrayDecoder:
    """Greedy or sampled decoding of a ``GPT`` (float32 or ``quantize_weights``'d) on arrays.
    ``step(ids)`` runs the (B, T) new tokens against the caches and returns the last
    position's logits (B, vocab); ``reset()`` empties the caches (the context was cropped)."""

    enabled = True  # False: every model takes the Tensor path (the benchmark's A/B, the tests' reference)

    @classmethod
    def fits(cls, model):
        """Whether every module on GPT's decode path is one this file computes exactly as its
        forward does; anything else (a LoRA layer, a subclass's own forward) keeps the Tensor path."""
        from .gpt import GPT
        return (cls.enabled and isinstance(model, GPT) and type(model).forward is GPT.forward and not model.training
                and amp.autocast_dtype() is None and backends.current().name in CPU_BACKENDS
                and type(model.wte) in (Embedding, QuantizedEmbedding)
                and type(model.wpe) in (Embedding, QuantizedEmbedding) and type(model.drop) is Dropout
                and _known_norm(model.ln_f) and _known_linear(model.lm_head)
                and all(map(_known_block, model.blocks)))

    def __init__(self, model):
        self.backend = backends.current()
        self.block_size, self.vocab = model.block_size, model.config.vocab_size
        self.wte, self.wpe = _embedding(model.wte), _embedding(model.wpe)
        norm = lambda ln: (ln.weight.data, ln.bias.data, ln.eps)  # noqa: E731
        self.layers = [dict(ln_1=norm(b.ln_1), ln_2=norm(b.ln_2), c_attn=_linear(b.attn.c_attn),
                            c_proj=_linear(b.attn.c_proj), fc=_linear(b.mlp.fc), proj=_linear(b.mlp.proj),
                            heads=b.attn.num_heads) for b in model.blocks]
        self.ln_f, self.lm_head = norm(model.ln_f), _linear(model.lm_head)
        self.reset()

    def reset(self):
        self.keys = self.values = None  # (B, nh, block_size, hs) per layer, allocated at the first step
        self.length = 0

    def __len__(self):
        return self.length

    def _norm(self, x, params):
        w, b, eps = params
        return self.backend.layernorm_forward(x, w, b, eps)[0]

    def step(self, ids):
        backend, start = self.backend, self.length
        (batch, t), end = ids.shape, self.length + ids.shape[1]
        if end > self.block_size:
            raise ValueError(f"GPT: sequence of {end} tokens exceeds block_size {self.block_size}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):  # NumPy would wrap a negative id round
            bad = int(ids.max()) if ids.max() >= self.vocab else int(ids.min())
            raise IndexError(f"embedding: index {bad} is out of range for {self.vocab} embeddings")
        x = self.wte(ids) + self.wpe(np.arange(start, end))          # (B, T, C), as GPT.forward adds them
        c = x.shape[-1]
        x = x.reshape(batch * t, c)                                   # rows, as every kernel folds them
        if self.keys is None:
            shapes = [(batch, layer["heads"], self.block_size, c // layer["heads"]) for layer in self.layers]
            self.keys = [np.empty(shape, x.dtype) for shape in shapes]   # the model's dtype, as KVCache
            self.values = [np.empty(shape, x.dtype) for shape in shapes]
        for layer, keys, values in zip(self.layers, self.keys, self.values):
            nh = layer["heads"]
            hs = c // nh
            qkv = layer["c_attn"](self._norm(x, layer["ln_1"]))       # (B·T, 3C): q | k | v
            heads = qkv.reshape(batch, t, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (3, B, nh, T, hs), a view
            keys[:, :, start:end] = heads[1]                          # the cache, written in place
            values[:, :, start:end] = heads[2]
            # (B·nh, T, hs) queries (a copy, as the Tensor path's fold makes); the cache's
            # first ``end`` positions are read where they lie
            q = heads[0].reshape(batch * nh, t, hs)
            k = keys[:, :, :end].reshape(batch * nh, end, hs)
            v = values[:, :, :end].reshape(batch * nh, end, hs)
            y, _ = backend.attention_forward(q, k, v, True, float(1.0 / math.sqrt(hs)))
            y = y.reshape(batch, nh, t, hs).transpose(0, 2, 1, 3).reshape(batch * t, c)  # heads side by side
            x = backend.add(x, layer["c_proj"](y))
            h = backend.gelu_forward(layer["fc"](self._norm(x, layer["ln_2"])))
            x = backend.add(x, layer["proj"](h))
        self.length = end
        # the head runs on every new position, as GPT.forward does: a GEMM of one row and one of
        # T rows need not sum in the same order, and the prompt's logits must be the Tensor path's
        logits = self.lm_head(self._norm(x, self.ln_f))
        return logits.reshape(batch, t, -1)[:, -1]
