"""The blocks of a modern decoder (Llama and most models since 2023). RMSNorm, RoPE and
SwiGLU's gate are each one fused op (``ops.rms_norm_rows``, ``ops.rope``, ``ops.swiglu``:
one pass over memory in the C and Numba kernels, instead of a handful of elementwise ops
and their temporaries); ``rotate_half`` keeps the composite that ``apply_rope`` equals:

* ``RMSNorm`` — LayerNorm without centring or bias.
* rotary position embeddings (RoPE) — positions as rotations of query/key pairs, so
  q·k depends only on the distance between the two positions.
* ``SwiGLU`` — a gated MLP.
* ``GroupedQueryAttention`` — fewer key/value heads than query heads.

Names follow Hugging Face's Llama (``q_proj``, ``gate_proj``, ``input_layernorm``…) so a
checkpoint's tensors map onto these modules by name alone.
"""
import numpy as np

from .. import backends, functional as F
from .. import ops
from ..tensor import is_grad_enabled
from .layers import Linear
from .module import Module, Parameter


class RMSNorm(Module):
    """y = x / √(mean(x²) + ε) · g   (Zhang & Sennrich, 2019).

    LayerNorm subtracts the mean and divides by the standard deviation; RMSNorm only
    divides by the root mean square. One reduction instead of two, no bias, and in
    practice the same quality."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim, np.float32))

    def forward(self, x):
        return F.rms_norm(x, self.dim, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


def rope_tables(head_dim, length, theta=10000.0, dtype=np.float32):
    """cos and sin (length, head_dim) for RoPE (Su et al., 2021).

    Dimension pair i rotates by angle p·θ^(−2i/d) at position p: slow for high i, fast
    for low i, like the sinusoidal encoding's frequencies. Hugging Face's layout pairs
    dimension i with i + d/2 (not 2i with 2i+1), so the angles are written twice:
    [θ₀ … θ_{d/2−1}, θ₀ … θ_{d/2−1}]."""
    if head_dim % 2:
        raise ValueError(f"rope_tables: head_dim must be even (pairs of dimensions rotate); got {head_dim}")
    inverse_frequency = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(np.arange(length, dtype=np.float64), inverse_frequency)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def rotate_half(x):
    """(x₁, x₂) → (−x₂, x₁) on the two halves of the last dimension: a quarter turn of
    every (i, i + d/2) pair."""
    half = x.shape[-1] // 2
    return ops.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, cos, sin):
    """x (…, T, d) rotated by its positions' angles: x·cos + rotate_half(x)·sin, for tables
    (T, d) in Hugging Face's layout (``rope_tables``: both halves the same angles), as one
    fused op that reads each pair's angle from the first half."""
    half = x.shape[-1] // 2
    if x.ndim < 2 or x.shape[-1] % 2 or np.shape(cos) != x.shape[-2:] or np.shape(sin) != x.shape[-2:]:
        raise ValueError(f"apply_rope: expected x (..., T, d) with d even and cos, sin (T, d); got x {x.shape}, "
                         f"cos {np.shape(cos)}, sin {np.shape(sin)}")
    cos, sin = (backends.to_numpy(t) for t in (cos, sin))
    if not (np.array_equal(cos[:, :half], cos[:, half:]) and np.array_equal(sin[:, :half], sin[:, half:])):
        raise ValueError("apply_rope: the tables' two halves differ; Hugging Face's layout repeats each pair's "
                         "angle in both (rope_tables)")
    return ops.rope(x, np.ascontiguousarray(cos[:, :half]), np.ascontiguousarray(sin[:, :half]))


class SwiGLU(Module):
    """down(silu(gate(x)) ⊙ up(x)) (Shazeer, 2020): the gate decides, per hidden unit, how
    much of up(x) passes; silu(z) = z·σ(z)."""

    def __init__(self, dim, hidden, bias=False):
        super().__init__()
        self.gate_proj = Linear(dim, hidden, bias)
        self.up_proj = Linear(dim, hidden, bias)
        self.down_proj = Linear(hidden, dim, bias)

    def forward(self, x):
        gate, up = self.gate_proj, self.up_proj
        if is_grad_enabled() and type(gate) is Linear and type(up) is Linear and gate.bias is None and up.bias is None:
            # training: one (dim → 2·hidden) GEMM instead of two, and its backward one GEMM for dx
            # instead of two and their sum; the weights read as one matrix where they lie when
            # Llama packed them (nn.packing), else copied side by side. (Generation, under
            # no_grad, reads each weight on its own.)
            both = ops.row_blocks([gate.weight, up.weight])
            return self.down_proj(ops.swiglu(F.linear(x, both)))
        return self.down_proj(ops.swiglu(gate(x), up(x)))


class GroupedQueryAttention(Module):
    """Causal self-attention with ``n_head`` query heads and ``n_kv_head`` key/value heads
    (Ainslie et al., 2023): ``n_kv_head = n_head`` is ordinary multi-head attention,
    ``n_kv_head = 1`` is multi-query attention. The KV cache holds only the n_kv_head
    heads — that is the point: n_head / n_kv_head times less cache memory. The attention
    kernels take the groups as they are (query head h reads key/value head
    h // (n_head / n_kv_head)), so the shared heads are not copied, in training or from the
    cache, on the CPU backends (the CUDA kernels and the masked composite path repeat them)."""

    # without a cache, the heads stay in the projections' layout (False: the (B, H, T, d) road
    # through scaled_dot_product_attention that a cache takes; benchmarks.llama_gqa times both)
    projection_layout = True

    def __init__(self, dim, n_head, n_kv_head=None, head_dim=None, rope_theta=10000.0, bias=False, rope=True):
        super().__init__()
        self.rope = rope  # False: positions must come from elsewhere (GPT's learned table)
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if n_kv_head < 1 or n_head % n_kv_head:
            raise ValueError(f"GroupedQueryAttention: n_kv_head ({n_kv_head}) must divide n_head ({n_head})")
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = head_dim or dim // n_head
        self.rope_theta = rope_theta
        self.q_proj = Linear(dim, n_head * self.head_dim, bias)
        self.k_proj = Linear(dim, n_kv_head * self.head_dim, bias)
        self.v_proj = Linear(dim, n_kv_head * self.head_dim, bias)
        self.o_proj = Linear(n_head * self.head_dim, dim, bias)
        self._cos = self._sin = np.zeros((0, self.head_dim), np.float32)

    def _rope(self, end):
        if len(self._cos) < end:  # grown on demand, doubling, so a long generation builds it a few times
            self._cos, self._sin = rope_tables(self.head_dim, max(end, 2 * len(self._cos)), self.rope_theta)
        return self._cos, self._sin

    def _rope_halves(self, t):
        """cos and sin (t, d/2), one angle per pair (``rope_tables`` writes each twice), contiguous,
        kept until the tables grow: ``ops.rope`` takes them as they are."""
        cos, sin = self._rope(t)
        if getattr(self, "_halves_of", None) is not cos:
            half = self.head_dim // 2
            self._halves_of = cos
            self._cos_half, self._sin_half = np.ascontiguousarray(cos[:, :half]), np.ascontiguousarray(sin[:, :half])
        return self._cos_half[:t], self._sin_half[:t]

    def _heads(self, x, n):
        b, t, _ = x.shape
        return x.reshape(b, t, n, self.head_dim).transpose(1, 2)  # (B, n, T, d)

    def forward(self, x, cache=None):
        b, t, _ = x.shape
        if cache is None and self.rope and self.projection_layout:
            return self._forward_in_projection_layout(x)
        start = len(cache) if cache is not None else 0
        q = self._heads(self.q_proj(x), self.n_head)
        k = self._heads(self.k_proj(x), self.n_kv_head)
        v = self._heads(self.v_proj(x), self.n_kv_head)
        if self.rope:
            cos, sin = self._rope(start + t)
            q = apply_rope(q, cos[start:start + t], sin[start:start + t])
            k = apply_rope(k, cos[start:start + t], sin[start:start + t])
        if cache is not None:
            k, v = cache.append(k, v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, n_head, T, d)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))

    def _forward_in_projection_layout(self, x):
        """Without a cache (training, a prompt): the heads never leave the projections' (B, T, n·d)
        layout. q, k and v come from one GEMM (the three weights side by side, as GPT's c_attn;
        names and checkpoints stay Hugging Face's) and ``ops.attention_qkv`` turns q and k
        (RoPE) and attends, reading each head where it lies and writing its output ready for
        ``o_proj``: no transpose, reshape or split node and no copy of a head, forward or
        backward, and one GEMM for the projections' backward. Projections that are not plain
        bias-free Linears (LoRA, say) each run on their own: ``ops.rope(..., heads=n)`` and
        ``ops.attention_heads`` read them in the same layout."""
        cos, sin = self._rope_halves(x.shape[1])
        scale = self.head_dim ** -0.5
        projections = (self.q_proj, self.k_proj, self.v_proj)
        if all(type(p) is Linear and p.bias is None for p in projections):
            # the weights as one matrix: where they lie when Llama packed them (nn.packing), else a copy
            qkv = F.linear(x, ops.row_blocks([p.weight for p in projections]))
            y = ops.attention_qkv(qkv, self.n_head, True, scale, kv_heads=self.n_kv_head, rotary=(cos, sin))
            return self.o_proj(y)
        q = ops.rope(self.q_proj(x), cos, sin, heads=self.n_head)      # (B, T, n_head·d), each head turned
        k = ops.rope(self.k_proj(x), cos, sin, heads=self.n_kv_head)   # (B, T, n_kv_head·d)
        y = ops.attention_heads(q, k, self.v_proj(x), self.n_head, self.n_kv_head, True, scale)
        return self.o_proj(y)


class LlamaBlock(Module):
    """x + Attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)): GPT-2's pre-norm block with
    each part swapped for its modern counterpart, and no biases."""

    def __init__(self, dim, n_head, n_kv_head, hidden, eps=1e-5, rope_theta=10000.0, head_dim=None):
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = GroupedQueryAttention(dim, n_head, n_kv_head, head_dim, rope_theta)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cache)
        return x + self.mlp(self.post_attention_layernorm(x))
