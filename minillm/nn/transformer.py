"""Attention and the transformer block (documents 003 §2.3–2.4, 004 §3.2)."""
import math

import numpy as np

from .. import amp, backends, ops
from .. import functional as F
from ..masks import causal_mask
from ..tensor import Tensor, is_grad_enabled
from .layers import GELU, Dropout, LayerNorm, Linear
from .module import Module


class KVCache:
    """Keys and values of the positions seen so far, so generating one more token costs
    one query against the cache instead of re-running the whole prefix.

    With ``capacity`` (the model's block size) the buffers are allocated once, at the first
    append, and each new position is written in place: a token costs the same whatever the
    context, where concatenating would copy the whole cache on every token (O(T²) over a
    generation). Without it, or when gradients are recorded, keys and values are joined
    with ``cat`` (differentiable)."""

    def __init__(self, capacity=None):
        self.capacity = capacity
        self.k = self.v = None
        self.length = 0

    def append(self, k, v):  # (B, nh, T, hs) each
        if self.capacity is None or is_grad_enabled():
            self.k = k if self.k is None else ops.cat([self.k, k], dim=2)
            self.v = v if self.v is None else ops.cat([self.v, v], dim=2)
            self.length = self.k.shape[2]
            return self.k, self.v
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KVCache: {end} positions exceed the capacity of {self.capacity}")
        if self.k is None:
            xp = backends.xp_of(k.data)
            shape = k.shape[:2] + (self.capacity,) + k.shape[3:]
            self.k, self.v = xp.empty(shape, k.dtype), xp.empty(shape, v.dtype)
        self.k[:, :, self.length:end] = k.data
        self.v[:, :, self.length:end] = v.data
        self.length = end
        return Tensor(self.k[:, :, :end]), Tensor(self.v[:, :, :end])

    def __len__(self):
        return self.length


class MultiHeadAttention(Module):
    """softmax(Q Kᵀ / √d_k) V in ``num_heads`` heads of size d_k = embed_dim / num_heads.

    Self-attention when ``key``/``value`` are omitted, cross-attention (a decoder attending
    to an encoder) otherwise. ``key_padding_mask`` (B, Tk) is True at padding positions.
    Set ``record_weights = True`` to keep the last (B, nh, Tq, Tk) attention probabilities
    in ``last_weights`` (for pictures; it costs a second, unfused computation)."""

    record_weights = False

    def __init__(self, embed_dim, num_heads, bias=True, dropout=0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.q_proj = Linear(embed_dim, embed_dim, bias)
        self.k_proj = Linear(embed_dim, embed_dim, bias)
        self.v_proj = Linear(embed_dim, embed_dim, bias)
        self.out_proj = Linear(embed_dim, embed_dim, bias)

    def _heads(self, x):
        b, t, c = x.shape
        return x.reshape(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, query, key=None, value=None, key_padding_mask=None, is_causal=False, cache=None):
        key = query if key is None else key
        value = key if value is None else value
        b, t, c = query.shape
        if c != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: expected embed_dim {self.embed_dim}, got input {query.shape}")
        if (key is query and value is query and key_padding_mask is None and cache is None
                and not self.record_weights and (self.dropout == 0.0 or not self.training)
                and amp.autocast_dtype() != "float16" and self._projections_fuse()):
            return self.out_proj(self._self_attention_in_one_projection(query, is_causal))
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        if cache is not None:
            k, v = cache.append(k, v)
        mask = None
        if key_padding_mask is not None:
            keep = ~np.asarray(key_padding_mask.numpy() if isinstance(key_padding_mask, Tensor) else key_padding_mask,
                               bool)
            mask = keep[:, None, None, :]  # (B, 1, 1, Tk)
        dropout = self.dropout if self.training else 0.0
        if self.record_weights:
            self.last_weights = _attention_weights(q, k, mask, is_causal)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C): heads side by side again
        return self.out_proj(y)

    def _projections_fuse(self):
        """Plain Linear layers with matching biases (a LoRA-wrapped one keeps its own path)."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        return (all(type(p) is Linear for p in projections)
                and len({p.bias is None for p in projections}) == 1)

    def _self_attention_in_one_projection(self, x, is_causal):
        """q, k and v from one GEMM against the three weights side by side, and attention
        read straight from that (B, T, 3C) product (``ops.attention_qkv``): the same
        function as the three projections and the head reshapes, in a third of the GEMM
        calls. The concatenated weight is rebuilt each call (C×3C floats), so the module
        keeps PyTorch's three projections (and LoRA can wrap one of them); GPT, whose
        checkpoints hold one ``c_attn``, has ``CausalSelfAttention`` instead."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = ops.cat([p.weight for p in projections], 0)
        bias = None if self.q_proj.bias is None else ops.cat([p.bias for p in projections], 0)
        scale = 1.0 / math.sqrt(self.embed_dim // self.num_heads)
        return ops.attention_qkv(F.linear(x, weight, bias), self.num_heads, bool(is_causal), scale)


class CausalSelfAttention(Module):
    """GPT-2's masked self-attention, in its layout and with its names: one projection
    ``c_attn`` makes q, k and v side by side (a Linear C → 3C, weight (3C, C): rows 0…C−1
    make q, C…2C−1 k, 2C…3C−1 v), each position attends to itself and the positions
    before it, and ``c_proj`` mixes the heads' outputs. ``record_weights`` as in
    ``MultiHeadAttention``."""

    record_weights = False

    def __init__(self, embed_dim, num_heads, bias=True, dropout=0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"CausalSelfAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.c_attn = Linear(embed_dim, 3 * embed_dim, bias)
        self.c_proj = Linear(embed_dim, embed_dim, bias)

    def forward(self, x, cache=None, is_causal=True, key_padding_mask=None):
        # is_causal and key_padding_mask are TransformerBlock's arguments: refused, not ignored
        if not is_causal or key_padding_mask is not None:
            raise ValueError("CausalSelfAttention: always causal, with no padding mask (use MultiHeadAttention)")
        b, t, c = x.shape
        if c != self.embed_dim:
            raise ValueError(f"CausalSelfAttention: expected embed_dim {self.embed_dim}, got input {x.shape}")
        qkv = self.c_attn(x)                                               # (B, T, 3C): q | k | v
        scale = 1.0 / math.sqrt(c // self.num_heads)
        dropout = self.dropout if self.training else 0.0
        if cache is None and dropout == 0.0 and not self.record_weights and amp.autocast_dtype() != "float16":
            # one node reads the heads where they lie in qkv: no copies to split or merge them
            y = ops.attention_qkv(qkv, self.num_heads, True, scale)           # (B, T, C)
        else:
            heads = qkv.reshape(b, t, 3, self.num_heads, c // self.num_heads)  # (B, T, 3, nh, hs)
            heads = heads.permute(2, 0, 3, 1, 4)                               # (3, B, nh, T, hs)
            q, k, v = heads[0], heads[1], heads[2]                             # (B, nh, T, hs) each
            if cache is not None:
                k, v = cache.append(k, v)                                      # (B, nh, T_cached + T, hs)
            if self.record_weights:
                self.last_weights = _attention_weights(q, k, None, True)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, dropout_p=dropout)
            y = y.transpose(1, 2).reshape(b, t, c)                             # (B, nh, T, hs) → (B, T, C)
        return self.c_proj(y)


def _attention_weights(q, k, mask, is_causal):
    """The (B, nh, Tq, Tk) attention probabilities, for pictures (not on the training path)."""
    from ..tensor import no_grad
    with no_grad():
        scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]))
        if is_causal:
            scores = scores.masked_fill(~causal_mask(np, q.shape[-2], k.shape[-2]), -np.inf)
        if mask is not None:
            scores = scores.masked_fill(~mask, -np.inf)
        return F.softmax(scores, -1).numpy()


class MLP(Module):
    def __init__(self, embed_dim, hidden_dim, bias=True, dropout=0.0):
        super().__init__()
        self.fc = Linear(embed_dim, hidden_dim, bias)
        self.act = GELU(approximate="tanh")
        self.proj = Linear(hidden_dim, embed_dim, bias)
        self.drop = Dropout(dropout)

    def forward(self, x):
        return self.drop(self.proj(self.act(self.fc(x))))


class TransformerBlock(Module):
    """x + Attention(LN(x)), then x + MLP(LN(x)) — pre-LN, as GPT-2 and most models since.
    ``pre_norm=False`` is the 2017 paper's post-LN: LN(x + Attention(x)), LN(x + MLP(x)).
    ``cross_attention=True`` adds encoder–decoder attention between the two (a decoder).
    ``attention`` replaces the self-attention module, MultiHeadAttention by default (GPT
    passes its ``CausalSelfAttention``, one ``c_attn`` as in GPT-2's checkpoints)."""

    def __init__(self, embed_dim, num_heads, mlp_ratio=4, dropout=0.0, bias=True, pre_norm=True,
                 cross_attention=False, residual=True, norm_eps=1e-5, attention=None):
        super().__init__()
        self.pre_norm, self.residual = pre_norm, residual
        self.ln_1 = LayerNorm(embed_dim, eps=norm_eps)
        self.attn = attention if attention is not None else MultiHeadAttention(embed_dim, num_heads, bias, dropout)
        self.cross = MultiHeadAttention(embed_dim, num_heads, bias, dropout) if cross_attention else None
        self.ln_cross = LayerNorm(embed_dim, eps=norm_eps) if cross_attention else None
        self.ln_2 = LayerNorm(embed_dim, eps=norm_eps)
        self.mlp = MLP(embed_dim, mlp_ratio * embed_dim, bias, dropout)
        self.drop = Dropout(dropout)

    def _sublayer(self, x, norm, fn):
        if self.pre_norm:
            out = self.drop(fn(norm(x)))
            return x + out if self.residual else out
        out = self.drop(fn(x))
        return norm(x + out if self.residual else out)

    def forward(self, x, is_causal=False, key_padding_mask=None, cache=None, memory=None, memory_mask=None):
        x = self._sublayer(x, self.ln_1, lambda h: self.attn(h, key_padding_mask=key_padding_mask,
                                                             is_causal=is_causal, cache=cache))
        if self.cross is not None:
            x = self._sublayer(x, self.ln_cross, lambda h: self.cross(h, memory, key_padding_mask=memory_mask))
        return self._sublayer(x, self.ln_2, self.mlp)


def sinusoidal_positions(length, dim):
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)) (the 2017 paper)."""
    position = np.arange(length)[:, None]
    rate = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim), np.float32)
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate)[:, : dim // 2]
    return table


class PositionalEncoding(Module):
    """Adds fixed sinusoidal position vectors (not learned, so it has no parameters)."""

    def __init__(self, dim, max_len=4096):
        super().__init__()
        self.table = sinusoidal_positions(max_len, dim)

    def forward(self, x, start=0):
        t = x.shape[1]
        if start + t > len(self.table):
            raise ValueError(f"PositionalEncoding: position {start + t} exceeds max_len {len(self.table)}")
        return x + ops.as_tensor(self.table[start:start + t], x)
