"""Chapter 04 exercises: attention, built in NumPy (read lessons/04_architecture.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 4

NumPy only: the checks compare your answers with minillm's scaled_dot_product_attention,
nn.MultiHeadAttention and backward() on freshly drawn shapes (T = 1 and primes included),
in float64, so calling the library would only compare it with itself.
"""
import numpy as np  # noqa: F401  (yours to use)


def causal_attention(q, k, v):
    """Causal scaled dot-product attention over the last two axes.

    q, k, v: float arrays of shape (..., T, hs), with any leading axes (none, (B,), (B, nh)).
    Return (..., T, hs): output t = Σ_{s ≤ t} w_ts v_s with w_t = softmax over s of
    q_t · k_s / √hs, where keys after the query (s > t) get weight exactly 0: set their
    scores to −inf before the softmax. Subtract each row's maximum before exp, so large
    scores cannot overflow.
    """
    raise NotImplementedError


def split_heads(x, n_head):
    """(B, T, C) → (B, n_head, T, hs), hs = C // n_head (C is a multiple of n_head).

    Head h gets columns h·hs … (h+1)·hs − 1 of every position: reshape to
    (B, T, n_head, hs), then move the head axis in front of T.
    """
    raise NotImplementedError


def merge_heads(y):
    """The inverse of split_heads: (B, nh, T, hs) → (B, T, nh·hs), the heads side by side
    (head 0's hs columns first)."""
    raise NotImplementedError


def multi_head_attention(x, p, n_head):
    """Causal multi-head self-attention, as minillm's nn.MultiHeadAttention computes it.

    x: (B, T, C). p: a dict of float arrays: "w_q", "w_k", "w_v", "w_o" (C, C) and
    "b_q", "b_k", "b_v", "b_o" (C,); every projection is x @ w + b (the weights are
    (in, out): a minillm Linear stores the transpose). Project x to q, k, v; split each
    into n_head heads; run causal_attention on all heads at once; merge the heads; return
    merged @ w_o + b_o, shape (B, T, C).
    """
    raise NotImplementedError


def softmax_backward(s, g):
    """∂L/∂z for s = softmax(z) along the last axis, given g = ∂L/∂s of the same shape.

    Return s ⊙ (g − Σ_j g_j s_j), the sum taken along the last axis for each row (keep
    that axis so it broadcasts): no T × T Jacobian. Masked entries, where s = 0, get
    exactly 0.
    """
    raise NotImplementedError
