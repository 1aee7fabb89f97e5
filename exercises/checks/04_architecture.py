"""Checks for chapter 04: attention against minillm's scaled_dot_product_attention and
nn.MultiHeadAttention, the head reshapes against slicing column by column, and softmax's
backward against backward(); float64, shapes with 1 and primes."""
import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import functional as F
from minillm.exercise import arrays, exercise, expect_close, sides

TOL = 1e-9


@st.composite
def qkv(draw):
    lead = tuple(draw(st.lists(sides(), max_size=2)))   # (), (B,) or (B, nh)
    shape = lead + (draw(sides()), draw(sides()))       # (..., T, hs)
    return tuple(draw(arrays(shape, -3, 3)) for _ in range(3))


@exercise("causal_attention", qkv=qkv())
def check_causal_attention(learner, qkv):
    expected = F.scaled_dot_product_attention(*map(minillm.tensor, qkv), is_causal=True)
    expect_close(learner.causal_attention(*(a.copy() for a in qkv)), expected.numpy(), TOL,
                 "causal_attention(q, k, v)")


@st.composite
def heads_case(draw):
    batch, length, n_head, hs = draw(sides()), draw(sides()), draw(sides()), draw(sides())
    return draw(arrays((batch, length, n_head * hs))), n_head


@exercise("split_heads", case=heads_case())
def check_split_heads(learner, case):
    x, n_head = case
    hs = x.shape[2] // n_head
    expected = np.stack([x[:, :, h * hs:(h + 1) * hs] for h in range(n_head)], axis=1)  # head h: its columns
    expect_close(learner.split_heads(x.copy(), n_head), expected, 0, f"split_heads(x, {n_head})")


@exercise("merge_heads", case=heads_case())
def check_merge_heads(learner, case):
    x, n_head = case
    heads = np.stack(np.split(x, n_head, axis=2), axis=1)                  # (B, nh, T, hs), built by slicing
    expect_close(learner.merge_heads(heads.copy()), x, 0, "merge_heads(heads)")


@exercise("multi_head_attention", case=heads_case(), seed=st.integers(0, 2 ** 16))
def check_multi_head_attention(learner, case, seed):
    x, n_head = case
    minillm.manual_seed(seed)
    library = minillm.nn.MultiHeadAttention(x.shape[2], n_head).to(np.float64)
    p = {}
    for name, layer in (("q", library.q_proj), ("k", library.k_proj), ("v", library.v_proj), ("o", library.out_proj)):
        p["w_" + name], p["b_" + name] = layer.weight.numpy().T.copy(), layer.bias.numpy().copy()
    with minillm.no_grad():
        expected = library(minillm.tensor(x), is_causal=True)
    expect_close(learner.multi_head_attention(x.copy(), p, n_head), expected.numpy(), TOL,
                 f"multi_head_attention(x, p, {n_head})")


@st.composite
def scores_case(draw):
    lead = tuple(draw(st.lists(sides(), max_size=2)))
    t = draw(sides())
    return draw(arrays(lead + (t, t), -4, 4)), draw(arrays(lead + (t, t))), draw(st.booleans())


@exercise("softmax_backward", case=scores_case())
def check_softmax_backward(learner, case):
    scores, g, causal = case
    z = minillm.tensor(scores, requires_grad=True)
    future = ~np.tril(np.ones(scores.shape[-2:], bool))
    s = F.softmax(z.masked_fill(future, -np.inf) if causal else z, dim=-1)
    (s * minillm.tensor(g)).sum().backward()                                # L = Σ g ⊙ s, so ∂L/∂s = g
    expect_close(learner.softmax_backward(s.numpy().copy(), g.copy()), z.grad.numpy(), TOL,
                 "∂L/∂z" + (" (future scores masked)" if causal else ""))
