# %% [markdown]
# # Lesson 04 — The Transformer's parts
#
# **Attention** (注意力) lets every position of a sequence collect information from the
# other positions, with weights it computes from the data itself. It is the part of the
# Transformer that an RNN does not have, so this lesson builds it by hand, in NumPy, one
# step at a time, printing (and where it helps, drawing) each step:
#
# 1. averaging the past with one matrix product;
# 2. the same weights as a masked softmax, then weights that depend on the data;
# 3. one causal head: queries, keys, values, and why the scores are divided by $\sqrt{d}$;
# 4. several heads at once, by reshaping;
# 5. a check that our attention gives the same numbers as minillm's
#    `nn.MultiHeadAttention` (and PyTorch's, where it is installed);
# 6. softmax's backward pass, derived by hand and checked against `backward()`.
#
# From there on the lesson uses the library's attention: a model that learns to copy (and
# a picture of where it looks), residual connections on and off, document 001's
# single-layer model against GPT, the three shapes of model — encoder-only (BERT: every
# token sees every token), decoder-only (GPT: a token sees only the past) and
# encoder–decoder (T5: a decoder that also attends to the encoded source) — and, last,
# GPT's block turned into Llama's one change at a time.
#
# Run: `python lessons/04_architecture.py [--quick]` or `minillm lesson 4`.

# %%
import matplotlib
import numpy as np

import minillm
from minillm import data, optim, tokenizers
from minillm import functional as F
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.models import (GPT, BertConfig, BertEncoder, EncoderDecoder, EncoderDecoderConfig, GPTConfig,
                            Seed001LM, teacher_forcing_batch)
from minillm.train import perplexity_of

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUICK = quick_mode()
checks = Checks("lesson 04")
minillm.set_backend("c" if minillm.backends.is_available("c") else "numpy")
OUT = results_dir("04_architecture")
rand = np.random.default_rng(4)  # the random numbers of the hand-built sections


def fit(model, batch_fn, steps, lr=3e-3):
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        _, loss = model(*batch_fn(step))
        opt.zero_grad()
        loss.backward()
        minillm.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


# %% [markdown]
# ## Step 1 — averaging the past with one matrix product
#
# A language model predicts the next token, so position $t$ may use positions $0 \dots t$ and
# nothing after them. The simplest way for position $t$ to gather its past is the mean of
# $x_0 \dots x_t$. A loop over positions computes it; so does one matrix product. Take the
# lower-triangular matrix of ones (`tril`): row $t$ has ones in columns $0 \dots t$. Divide each
# row by its sum, $t + 1$, and row $t$ becomes the weights of a mean over the past; `W @ x` is
# then every position's running mean at once. The same $(T, T)$ matrix multiplies a whole
# batch $(B, T, C)$ too, by broadcasting. Attention keeps this product and changes only how
# $W$ is made.

# %%
T, C = 6, 2
x = rand.normal(size=(T, C))                                     # six positions, two features each
by_loop = np.stack([x[:t + 1].mean(axis=0) for t in range(T)])   # row t: the mean of x₀ … x_t
tril = np.tril(np.ones((T, T)))
average = tril / tril.sum(axis=1, keepdims=True)                 # row t: 1/(t+1) in columns 0 … t, 0 after
by_matmul = average @ x                                          # (T, T) @ (T, C) → (T, C)
print("W = tril / row sums:\n" + np.array2string(average, precision=3, suppress_small=True))
average_gap = np.abs(by_loop - by_matmul).max()
print(f"W @ x against the loop of means: max difference {average_gap:.1e}")
checks.claim(average_gap < 1e-12, f"tril / row sums @ x is the running mean of the past "
             f"(max difference from the loop {average_gap:.0e})")

# %% [markdown]
# ## Step 2 — the weights as a masked softmax
#
# Write the weights as a softmax over a row of scores, $\operatorname{softmax}(z)_s = e^{z_s} / \sum_j e^{z_j}$,
# and forbid the future by setting its scores to $-\infty$ (the causal mask, 因果掩码): $e^{-\infty} = 0$,
# so a future position gets weight exactly 0 and the rest still sum to one. When all the
# allowed scores are equal, each of the $t + 1$ allowed positions gets
# $e^0 / ((t + 1)\, e^0) = 1/(t + 1)$: step 1's matrix, exactly.
#
# Now let the scores depend on the data. Here the score of query $t$ for key $s$ is
# $x_t \cdot x_s$: each position still averages its past, but with weights that grow with the
# dot product, favouring the past vectors that point the way its own does.

# %%
def softmax(z):
    """Along the last axis. Subtracting the row's maximum changes nothing but keeps exp
    from overflowing; a −∞ score becomes a weight of exactly 0."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


future = np.triu(np.ones((T, T), bool), k=1)                     # True where the key comes after the query
equal = np.where(future, -np.inf, 0.0)                           # every allowed score the same
softmax_gap = np.abs(softmax(equal) - average).max()
print(f"softmax of equal scores under the mask against W: max difference {softmax_gap:.1e}")
similar = np.where(future, -np.inf, x @ x.T)                     # (T, C) @ (C, T) → (T, T): x_t · x_s
chosen = softmax(similar)
print("softmax(x xᵀ, masked):\n" + np.array2string(chosen, precision=3, suppress_small=True))
checks.claim(softmax_gap < 1e-15, f"softmax of equal scores, future masked with −∞, is step 1's "
             f"tril / row sums (max difference {softmax_gap:.0e})")
checks.claim(np.abs(chosen.sum(axis=1) - 1).max() < 1e-12 and (chosen[future] == 0).all(),
             "data-dependent weights: every row still sums to 1 and every future position gets exactly 0")

fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
panels = [(average, "step 1: tril / row sums"), (similar, "step 2: scores x_t · x_s, future = −∞ (blank)"),
          (chosen, "softmax of those scores: the weights")]
for ax, (matrix, title) in zip(axes, panels):
    ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis")
    middle = np.mean([matrix[np.isfinite(matrix)].min(), matrix[np.isfinite(matrix)].max()])
    for (row, column), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > middle else "white")
    ax.set(title=title, xlabel="key position s", ylabel="query position t")
fig.suptitle("where each position looks: a fixed average of the past, then weights chosen from the data")
save_figure(fig, OUT / "weights_by_matmul.png", dpi=90)

# %% [markdown]
# ## Step 3 — one causal head: queries, keys and values
#
# A head gives every position three vectors, each a learned linear map of $x$: a **query**
# $q = x W_q$ (what this position looks for), a **key** $k = x W_k$ (what it offers to be
# found by) and a **value** $v = x W_v$ (what it hands over when chosen). The score of query
# $t$ for key $s$ is $q_t \cdot k_s$; then step 2's mask and softmax, and the output is the weighted
# sum of the values:
#
# $$
# \operatorname{head}(x) = \operatorname{softmax}\left(\operatorname{mask}\left(\frac{Q K^\top}{\sqrt{d}}\right)\right) V, \qquad d = \text{the head size}
# $$
#
# **Why $\sqrt{d}$.** Take $q$ and $k$ with independent entries of mean 0 and variance 1. Each product
# $q_i k_i$ has mean 0 and variance $\mathrm{E}[q_i^2]\, \mathrm{E}[k_i^2] = 1$, and $q \cdot k$ adds $d$ of them, so
# $\operatorname{Var}(q \cdot k) = d$: the scores' standard deviation grows like $\sqrt{d}$. A softmax of widely spread scores
# puts nearly all the weight on the largest (it saturates), and a saturated softmax passes
# almost no gradient back (step 6 shows why). Dividing by $\sqrt{d}$ gives the scores variance 1
# whatever the head size. Document 004's pseudo-code leaves the scale out; we keep it.

# %%
B, T, C, HS = 2, 8, 32, 8                                        # batch, positions, width, head size
x = rand.normal(size=(B, T, C))
w_q, w_k, w_v = (rand.normal(0, C ** -0.5, (C, HS)) for _ in range(3))  # q, k, v entries of variance ≈ 1


def attend(q, k, v):
    """Causal scaled dot-product attention over the last two axes:
    q, k, v (..., T, hs) → (..., T, hs), position t using only keys 0 … t."""
    t, hs = q.shape[-2:]
    scores = q @ k.swapaxes(-2, -1) / np.sqrt(hs)                # (..., T, hs) @ (..., hs, T) → (..., T, T)
    scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)  # no key after its query
    return softmax(scores) @ v                                   # (..., T, T) @ (..., T, hs) → (..., T, hs)


def one_head(x, w_q, w_k, w_v):
    return attend(x @ w_q, x @ w_k, x @ w_v)                     # (B, T, C) @ (C, hs) → (B, T, hs) each


head_out = one_head(x, w_q, w_k, w_v)
print(f"x {x.shape} → q, k, v {(x @ w_q).shape} each → scores {(B, T, T)} → output {head_out.shape}")
changed = x.copy()
changed[:, 5:] = rand.normal(size=(B, T - 5, C))                 # new vectors at positions 5, 6, 7
changed_out = one_head(changed, w_q, w_k, w_v)
before_5 = np.abs(changed_out[:, :5] - head_out[:, :5]).max()
after_5 = np.abs(changed_out[:, 5:] - head_out[:, 5:]).max()
print(f"positions 5–7 replaced: outputs 0–4 move by {before_5:.1e}, outputs 5–7 by {after_5:.2f}")
checks.claim(before_5 < 1e-12 < after_5, "the head is causal: new inputs at positions 5–7 change outputs 5–7 "
             f"(by up to {after_5:.2f}) and leave outputs 0–4 as they were")

dims, keys, queries = [4, 16, 64, 256, 1024], 16, 500
dots = {d: np.einsum("nd,nkd->nk", rand.normal(size=(queries, d)), rand.normal(size=(queries, keys, d)))
        for d in dims}                                           # (queries, keys): q · k, entries N(0, 1)
spread = {d: (dots[d].var(), (dots[d] / np.sqrt(d)).var()) for d in dims}
peak = {d: (softmax(dots[d]).max(axis=1).mean(), softmax(dots[d] / np.sqrt(d)).max(axis=1).mean()) for d in dims}
print(f"{'d':>5s} {'Var(q·k)':>9s} {'Var(q·k/√d)':>12s}   largest of {keys} softmax weights: q·k, q·k/√d")
for d in dims:
    print(f"{d:5d} {spread[d][0]:9.1f} {spread[d][1]:12.2f}   {peak[d][0]:22.2f} {peak[d][1]:8.2f}")
checks.claim(all(abs(spread[d][0] / d - 1) < 0.15 and abs(spread[d][1] - 1) < 0.15 for d in dims),
             "Var(q · k) ≈ d and Var(q · k / √d) ≈ 1 for every d measured (within 15%)")
checks.claim(peak[dims[-1]][0] > 0.9 > 0.5 > peak[dims[-1]][1],
             f"at d = {dims[-1]} the unscaled softmax is nearly one-hot (largest weight {peak[dims[-1]][0]:.2f} "
             f"on average), the scaled one is not ({peak[dims[-1]][1]:.2f})")

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.loglog(dims, [spread[d][0] for d in dims], "o-", label="q · k")
left.loglog(dims, [spread[d][1] for d in dims], "s-", label="q · k / √d")
left.loglog(dims, dims, ":", color="grey", label="d")
left.set(xlabel="head size d", ylabel="variance of the score", title=f"{queries * keys:,} scores per d")
right.semilogx(dims, [peak[d][0] for d in dims], "o-", label="softmax(q · k)")
right.semilogx(dims, [peak[d][1] for d in dims], "s-", label="softmax(q · k / √d)")
right.axhline(1 / keys, color="grey", ls=":", label=f"uniform, 1/{keys}")
right.set(xlabel="head size d", ylabel="largest weight in the row (mean)", ylim=(0, 1.05),
          title=f"one query against {keys} keys")
for ax in (left, right):
    ax.legend(fontsize=8)
fig.suptitle("why the scores are divided by √d")
save_figure(fig, OUT / "why_sqrt_d.png", dpi=90)

# %% [markdown]
# ## Step 4 — several heads at once, by reshaping
#
# One head averages with one set of weights per position. **Multi-head** attention
# (多头注意力) runs $\mathit{nh}$ heads side by side, each with its own $W_q$, $W_k$, $W_v$ of width
# $\mathit{hs} = C / \mathit{nh}$, so one head can follow the previous token while another follows a matching
# bracket; their outputs are joined back to width $C$ and mixed by an output projection $W_o$.
#
# No loop over heads is needed. Put the $\mathit{nh}$ heads' projections side by side in one $C \times C$
# matrix, compute $x W_q$ once, and reshape $(B, T, C) \to (B, T, \mathit{nh}, \mathit{hs})$ $\to$ transpose to
# $(B, \mathit{nh}, T, \mathit{hs})$: the head becomes one more batch axis and step 3's `attend` runs on every
# head at once. Transposing and reshaping back gives $(B, T, C)$, the heads' outputs next to
# each other. The weights are the same $C \times C$ matrices for any $\mathit{nh}$ — the number of heads
# only changes the reshape. (Document 004's pseudo-code projects to $d_\text{model} \cdot \text{num\_heads}$ and
# then applies a $d_\text{model} \to d_\text{model}$ output projection to the merged heads; those shapes do
# not line up. Here, as in GPT, the heads share the width $C$.)

# %%
N_HEAD = 4
assert C == N_HEAD * HS


def split_heads(t, n_head):
    b, length, c = t.shape
    t = t.reshape(b, length, n_head, c // n_head)                # (B, T, nh, hs)
    return t.transpose(0, 2, 1, 3)                               # (B, nh, T, hs)


def merge_heads(t):
    b, n_head, length, hs = t.shape
    t = t.transpose(0, 2, 1, 3)                                  # (B, T, nh, hs)
    return t.reshape(b, length, n_head * hs)                     # (B, T, C): the heads side by side


def causal_self_attention(x, p, n_head):
    """x (B, T, C) → (B, T, C). ``p`` holds the (C, C) matrices w_q, w_k, w_v, w_o and the
    (C,) biases b_q, b_k, b_v, b_o, each projection computed as x @ w + b."""
    q = split_heads(x @ p["w_q"] + p["b_q"], n_head)             # (B, T, C) → (B, nh, T, hs)
    k = split_heads(x @ p["w_k"] + p["b_k"], n_head)             # (B, nh, T, hs)
    v = split_heads(x @ p["w_v"] + p["b_v"], n_head)             # (B, nh, T, hs)
    y = merge_heads(attend(q, k, v))                             # (B, nh, T, hs) → (B, T, C)
    return y @ p["w_o"] + p["b_o"]                               # (B, T, C)


p = {f"{kind}_{name}": rand.normal(0, C ** -0.5, (C, C) if kind == "w" else C)
     for kind in "wb" for name in "qkvo"}
q = split_heads(x @ p["w_q"] + p["b_q"], N_HEAD)
print(f"x {x.shape} → x @ w_q {(x @ p['w_q']).shape} → heads {q.shape} → merged {merge_heads(q).shape}")
by_reshape = causal_self_attention(x, p, N_HEAD)
heads = []
for h in range(N_HEAD):
    cols = slice(h * HS, (h + 1) * HS)                           # head h's columns of each projection
    heads.append(attend(*(x @ p["w_" + name][:, cols] + p["b_" + name][cols] for name in "qkv")))  # (B, T, hs)
by_heads = np.concatenate(heads, axis=-1) @ p["w_o"] + p["b_o"]  # nh × (B, T, hs) → (B, T, C) → (B, T, C)
heads_gap = np.abs(by_reshape - by_heads).max()
print(f"{N_HEAD} heads by reshaping against {N_HEAD} heads one at a time: max difference {heads_gap:.1e}")
checks.claim(heads_gap < 1e-12, f"the reshape (B, T, C) → (B, nh, T, hs) runs {N_HEAD} separate heads at once "
             f"(max difference {heads_gap:.0e})")

# %% [markdown]
# ## Step 5 — the same numbers as the library's
#
# minillm's `nn.MultiHeadAttention` has four `Linear` layers, `q_proj`, `k_proj`, `v_proj`
# and `out_proj`, each with a bias. A `Linear` stores its weight as (out, in), as PyTorch
# does, and computes $x W^\top + b$, so our `w` is its weight transposed. We copy a freshly
# initialised module's weights into `p`, run both on the same float64 input, and also
# compare step 3's `attend` with PyTorch's `scaled_dot_product_attention` on the same
# queries, keys and values. (When it can, the library joins its three projections into
# one matrix product — nanoGPT's `c_attn` — and reads the heads from that; the call below
# takes that path, and the function is still the one written above.)

# %%
minillm.manual_seed(0)
library = minillm.nn.MultiHeadAttention(C, N_HEAD).to(np.float64)
copied = {}
for name, layer in (("q", library.q_proj), ("k", library.k_proj), ("v", library.v_proj), ("o", library.out_proj)):
    copied["w_" + name] = layer.weight.numpy().T                 # (out, in) → (in, out), so x @ w = x Wᵀ
    copied["b_" + name] = layer.bias.numpy()
ours = causal_self_attention(x, copied, N_HEAD)
with minillm.no_grad():
    theirs = library(minillm.tensor(x), is_causal=True)
library_gap = np.abs(ours - theirs.numpy()).max()
print(f"ours against minillm.nn.MultiHeadAttention ({theirs.dtype}): max difference {library_gap:.1e}")
checks.claim(theirs.dtype == np.float64 and library_gap < 1e-6, "the hand-built multi-head attention equals "
             f"minillm.nn.MultiHeadAttention with the same weights, in float64 (max difference {library_gap:.0e})")
try:
    import torch
except ImportError:
    print("PyTorch is not installed: the comparison with torch's scaled_dot_product_attention is skipped")
else:
    q, k, v = (split_heads(x @ copied["w_" + name] + copied["b_" + name], N_HEAD) for name in "qkv")
    reference = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(np.ascontiguousarray(t)) for t in (q, k, v)), is_causal=True)
    torch_gap = np.abs(attend(q, k, v) - reference.numpy()).max()
    print(f"attend against torch.nn.functional.scaled_dot_product_attention ({reference.dtype}): "
          f"max difference {torch_gap:.1e}")
    checks.claim(reference.dtype == torch.float64 and torch_gap < 1e-6, "attend equals PyTorch's "
                 f"scaled_dot_product_attention(is_causal=True) in float64 (max difference {torch_gap:.0e})")

one = minillm.nn.MultiHeadAttention(64, 1)
four = minillm.nn.MultiHeadAttention(64, 4)
print(f"parameters: 1 head {one.num_parameters():,}, 4 heads {four.num_parameters():,}; "
      f"4 heads of size {64 // 4} each see a different slice of the same projections")
checks.claim(one.num_parameters() == four.num_parameters(), "splitting into heads costs no parameters")

# %% [markdown]
# ## Step 6 — softmax's backward pass, by hand
#
# Training needs the gradient of the loss $L$ with respect to the scores $z$, given the
# gradient $g = \partial L/\partial s$ that arrives at the weights $s = \operatorname{softmax}(z)$ (one row at a time).
# Differentiate $s_i = e^{z_i} / \sum_j e^{z_j}$ with respect to $z_k$, by the quotient rule:
#
# $$
# \frac{\partial s_i}{\partial z_k} = s_i [i = k] - s_i s_k = s_i ([i = k] - s_k)
# $$
#
# and sum over the outputs $i$ with the chain rule:
#
# $$
# \frac{\partial L}{\partial z_k} = \sum_i g_i s_i ([i = k] - s_k) = s_k g_k - s_k \sum_i g_i s_i = s_k (g_k - g \cdot s)
# $$
#
# so, for the whole row, **$\partial L/\partial z = s \odot (g - (g \cdot s))$**: one dot product per row and no
# $T \times T$ Jacobian. Two consequences can be read off the formula. A masked score has $s_k = 0$,
# so it gets exactly zero gradient: the future neither contributes nor learns. And when $s$
# is nearly one-hot ($s_k \approx 1$ for one $k$, $\approx 0$ elsewhere), $g \cdot s \approx g_k$ and every entry of
# $\partial L/\partial z$ is nearly 0 — the saturated softmax of step 3 that the $1/\sqrt{d}$ prevents. minillm's
# `ops.softmax` keeps this very line as its backward; here we check it against
# `backward()` on masked scores in float64.

# %%
def softmax_backward(s, g):
    """∂L/∂z for s = softmax(z) along the last axis, given g = ∂L/∂s: s ⊙ (g − g·s)."""
    return s * (g - (g * s).sum(axis=-1, keepdims=True))


causal = np.tril(np.ones((T, T), bool))
scores = minillm.tensor(rand.normal(size=(B, N_HEAD, T, T)), requires_grad=True)  # float64
weights = F.softmax(scores.masked_fill(~causal, -np.inf), dim=-1)
upstream = rand.normal(size=weights.shape)                       # g: any ∂L/∂s will do
(weights * minillm.tensor(upstream)).sum().backward()            # L = Σ g ⊙ s, so ∂L/∂s = g
by_hand = softmax_backward(weights.numpy(), upstream)
backward_gap = np.abs(by_hand - scores.grad.numpy()).max()
print(f"∂L/∂z: max |s ⊙ (g − g·s) − backward()| = {backward_gap:.1e} ({scores.grad.dtype}); "
      f"largest gradient on a masked score {np.abs(scores.grad.numpy()[..., ~causal]).max():.1f}")
checks.claim(backward_gap < 1e-10, f"softmax's backward s ⊙ (g − g·s) equals minillm's backward() to 1e-10 "
             f"(max difference {backward_gap:.0e})")
checks.claim((scores.grad.numpy()[..., ~causal] == 0).all(), "masked (future) scores get exactly zero gradient")
d = dims[-1]
raw, scaled = (np.abs(softmax_backward(softmax(z), rand.normal(size=z.shape))).mean()
               for z in (dots[d], dots[d] / np.sqrt(d)))
print(f"d = {d}: mean |∂L/∂z| through softmax(q·k) {raw:.4f}, through softmax(q·k/√d) {scaled:.4f}")
checks.claim(raw * 5 < scaled, f"at d = {d} an unscaled softmax passes back {scaled / raw:.0f}× less gradient "
             "than a scaled one")

# %% [markdown]
# ## Seeing attention: a model that learns to copy
# From here on the lesson uses the library's attention, which step 5 checked computes
# what we built.
#
# Sequences `x₁ … x₈ | x₁ … x₈`, 17 tokens at positions 0–16 with the separator at 8:
# from position 9 on, every token repeats the one nine places back. The model reads
# positions 0–15, and the query at position $p$ predicts the token at $p + 1$, whose copy
# sits at $p + 1 - 9 = p - 8$. So to copy, a query must look exactly **8** places back: in
# the picture, a bright diagonal eight columns left of the main one, from (query 8, key 0)
# — the separator, predicting $x_1$ — to (query 15, key 7); red squares mark those cells. A
# one-layer GPT with two heads (the library's `CausalSelfAttention` inside `GPT`, the same
# attention with q, k and v from one `c_attn` projection) learns
# to look there.

# %%
L, V, SEP = 8, 10, 10
rng = np.random.default_rng(0)


def copy_batch(_step, batch=32):
    first = rng.integers(0, V, (batch, L))
    seq = np.concatenate([first, np.full((batch, 1), SEP), first], axis=1)
    return seq[:, :-1], seq[:, 1:]


minillm.manual_seed(0)
copier = GPT(GPTConfig(V + 1, 2 * L + 1, 1, 2, 32))
fit(copier, copy_batch, 800 if QUICK else 1500, lr=5e-3)  # at 1e-2 it can stall near 89%
x, y = copy_batch(0, batch=64)
attention = copier.blocks[0].attn
attention.record_weights = True
with minillm.no_grad():
    logits, _ = copier(x)
attention.record_weights = False
predicted = logits.numpy().argmax(-1)
copy_accuracy = (predicted[:, L:] == y[:, L:]).mean()
weights = attention.last_weights.mean(axis=0)             # (heads, T, T), averaged over the batch
rows = np.arange(L, 2 * L)                                # the 8 queries that predict a copied token
target_column = rows - L                                  # the token to copy sits 8 places back
best_head = max(range(weights.shape[0]), key=lambda h: weights[h, rows, target_column].mean())
focus = weights[best_head, rows, target_column].mean()
print(f"copy accuracy {copy_accuracy:.1%}; head {best_head} puts {focus:.0%} of its attention on the source token")

fig, axes = plt.subplots(1, weights.shape[0], figsize=(4 * weights.shape[0], 4))
for h, ax in enumerate(np.atleast_1d(axes)):
    ax.imshow(weights[h], cmap="viridis")
    ax.scatter(target_column, rows, s=70, marker="s", facecolors="none", edgecolors="red", linewidths=0.8)
    ax.set(title=f"head {h}", xlabel="key position", ylabel="query position")
fig.suptitle("attention weights of the copying model (averaged over 64 sequences); red: key = query − 8")
save_figure(fig, OUT / "attention_copy.png", dpi=90)
checks.claim(copy_accuracy > 0.9, f"the model learned to copy ({copy_accuracy:.1%} of copied tokens right)")
checks.claim(focus > 0.5, f"one head attends to the token it copies ({focus:.0%} of its weight)")

# %% [markdown]
# ## Residual connections, on and off
# **Residual connections** (残差连接) make a deep stack trainable: each sublayer adds a
# correction to its input, $x + f(\mathrm{LN}(x))$, so the input — and the gradient coming back —
# passes every block unchanged alongside the correction. **Layer normalisation**
# (层归一化), $\mathrm{LN}(x) = (x - \mu)/\sigma \cdot \gamma + \beta$ over each token's features, keeps what every
# sublayer receives at a steady scale. Below, six of GPT's pre-LN blocks are trained on the
# docstring corpus for the same number of steps, with the residual path and without it
# (each sublayer's output $f(\mathrm{LN}(x))$ replaces its input). Only the additions are switched:
# both runs keep every layer norm.

# %%
corpus = data.corpus("python-docs")
tokenizer = tokenizers.CharTokenizer.train(corpus.text)
ids = np.asarray(tokenizer.encode(corpus.train[:100_000]))
STEPS = 120 if QUICK else 500
lm_rng = np.random.default_rng(1)
batch = lambda _s: data.batches(ids, 32, 16, lm_rng)  # noqa: E731
final = {}
for residual in (True, False):
    minillm.manual_seed(0)
    model = GPT(GPTConfig(tokenizer.vocab_size, 32, 6, 4, 64))
    for block in model.blocks:
        block.residual = residual
    losses = fit(model, batch, STEPS)
    final[residual] = float(np.mean(losses[-10:]))
    print(f"6 blocks {'with' if residual else 'without'} residuals: training loss {losses[0]:.2f} → {final[residual]:.2f}")
checks.claim(final[True] < final[False], "residual connections make the deep stack train faster "
             f"({final[True]:.2f} vs {final[False]:.2f})")

# %% [markdown]
# ## The 001 document's model against GPT
# The single-layer formula ($E = W_e \cdot X$, one causal attention, $F = \sigma(W_f \cdot (O + E))$,
# $Y = W_o \cdot F + b$) against a two-block GPT, same data and steps.

# %%
compared = {}
for name, model in (("Seed001LM", Seed001LM(tokenizer.vocab_size, 64, 256, 32)),
                    ("GPT (2 blocks)", GPT(GPTConfig(tokenizer.vocab_size, 32, 2, 4, 64)))):
    fit(model, batch, STEPS)
    compared[name] = perplexity_of(model, tokenizer, corpus.val[:20_000], 32, batches=8)[1]
    print(f"{name}: validation perplexity {compared[name]:.2f} ({model.num_parameters():,} parameters)")
checks.claim(all(v < tokenizer.vocab_size for v in compared.values()), "both learn (perplexity below a uniform guess)")

# %% [markdown]
# ## Encoder-only, decoder-only, encoder–decoder

# %%
minillm.manual_seed(0)
bert = BertEncoder(BertConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32))
hidden = bert(rng.integers(0, V, (4, 12)))
print(f"encoder-only (BERT): tokens (4, 12) → states {hidden.shape}, every position sees all 12")
mlm_rng = np.random.default_rng(2)
mlm = []
opt = optim.AdamW(bert.parameters(), lr=3e-3)
for _ in range(60 if QUICK else 200):
    sequences = np.sort(rng.integers(0, V, (32, 12)), axis=1)  # sorted: neighbours predict a masked token
    loss = bert.mlm_loss(sequences, mlm_rng)
    opt.zero_grad()
    loss.backward()
    opt.step()
    mlm.append(loss.item())
print(f"  masked-LM loss {mlm[0]:.2f} → {np.mean(mlm[-10:]):.2f}")
logits, _ = copier(x)
print(f"decoder-only (GPT): tokens {x.shape} → next-token logits {logits.shape}, each position sees its past")
config = EncoderDecoderConfig(vocab_size=8, block_size=12, n_layer=2, n_head=4, n_embd=48)
t5 = EncoderDecoder(config)


def reverse_pairs(n):
    return [(s, s[::-1]) for s in (list(rng.integers(0, 8, rng.integers(3, 7))) for _ in range(n))]


fit(t5, lambda _s: teacher_forcing_batch(reverse_pairs(64), config), 200 if QUICK else 400)
test = reverse_pairs(100)
exact = np.mean([list(p) == list(t) for p, (_, t) in zip(t5.generate(teacher_forcing_batch(test, config)[0], 8), test)])
print(f"encoder–decoder (T5-style): reverses {exact:.0%} of 100 newly drawn sequences exactly "
      "(short ones can repeat a training sequence)")
checks.claim(np.mean(mlm[-10:]) < mlm[0], "the encoder learns masked-token prediction")
checks.claim(exact > 0.8, "the encoder–decoder learns to reverse sequences")

# %% [markdown]
# ## From GPT's block to Llama's, one change at a time
#
# The decoders people meet today (Llama, Mistral, Qwen…) are GPT's pre-norm block with four
# parts swapped. We switch them on one after another on the same data, steps and seed:
#
# 1. **RMSNorm** for LayerNorm: divide by the root mean square only — no centring, no bias.
# 2. **RoPE** for the learned position table: rotate each query/key pair by an angle
#    proportional to its position, so $q \cdot k$ sees only the distance between two tokens.
# 3. **SwiGLU** for the GELU MLP: $\operatorname{down}(\operatorname{silu}(\operatorname{gate}(x)) \odot \operatorname{up}(x))$, at $\tfrac{2}{3}$ the width so the
#    three matrices cost what GPT's two did.
# 4. **Grouped-query attention**: 4 query heads share 1 key/value head, so the KV cache —
#    what generation keeps per token — shrinks 4×.
#
# The decoder below takes each choice as a switch; its parts are `minillm.nn`'s.

# %%
from minillm.nn import Embedding, LayerNorm, Linear, Module, ModuleList  # noqa: E402
from minillm.nn.llama_blocks import GroupedQueryAttention, RMSNorm, SwiGLU  # noqa: E402
from minillm.nn.transformer import MLP  # noqa: E402


class SwitchableBlock(Module):
    def __init__(self, dim, heads, kv_heads, rms, rope, swiglu):
        super().__init__()
        norm = (lambda: RMSNorm(dim, 1e-5)) if rms else (lambda: LayerNorm(dim))
        self.norm_1, self.norm_2 = norm(), norm()
        self.attn = GroupedQueryAttention(dim, heads, kv_heads, rope=rope)
        self.mlp = SwiGLU(dim, 2 * 4 * dim // 3) if swiglu else MLP(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm_1(x))
        return x + self.mlp(self.norm_2(x))


class SwitchableDecoder(Module):
    def __init__(self, vocab, block, dim=64, layers=2, heads=4, kv_heads=4, rms=False, rope=False, swiglu=False):
        super().__init__()
        self.tokens = Embedding(vocab, dim)
        self.positions = None if rope else Embedding(block, dim)  # RoPE needs no table
        self.blocks = ModuleList(SwitchableBlock(dim, heads, kv_heads, rms, rope, swiglu) for _ in range(layers))
        self.norm = RMSNorm(dim, 1e-5) if rms else LayerNorm(dim)
        self.head = Linear(dim, vocab, bias=False)
        self.kv_bytes_per_token = 2 * layers * kv_heads * (dim // heads) * 4  # keys + values, float32

    def forward(self, idx, targets):
        x = self.tokens(idx)
        if self.positions is not None:
            x = x + self.positions(np.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        return logits, minillm.functional.cross_entropy(logits, targets.reshape(-1))


STAGES = [("GPT", {}), ("+ RMSNorm", {"rms": True}), ("+ RoPE", {"rms": True, "rope": True}),
          ("+ SwiGLU", {"rms": True, "rope": True, "swiglu": True}),
          ("+ GQA (4 q heads : 1 kv) = Llama", {"rms": True, "rope": True, "swiglu": True, "kv_heads": 1})]
val_ids = np.asarray(tokenizer.encode(corpus.val[:20_000]))
stages = {}
for name, switches in STAGES:
    minillm.manual_seed(0)
    stage_rng = np.random.default_rng(7)  # the same batches for every stage
    model = SwitchableDecoder(tokenizer.vocab_size, 32, **switches)
    curve = fit(model, lambda _s: data.batches(ids, 32, 16, stage_rng), STEPS)
    eval_rng = np.random.default_rng(8)
    with minillm.no_grad():
        val = float(np.mean([model(*data.batches(val_ids, 32, 16, eval_rng))[1].item() for _ in range(8)]))
    stages[name] = {"val_loss": val, "parameters": model.num_parameters(), "kv": model.kv_bytes_per_token,
                    "curve": np.convolve(curve, np.ones(10) / 10, mode="valid"), "model": model}
print(f"{'decoder':34s} {'params':>8s} {'val loss':>9s} {'KV cache bytes/token':>21s}")
for name, r in stages.items():
    print(f"{name:34s} {r['parameters']:8,d} {r['val_loss']:9.3f} {r['kv']:21,d}")
gpt, llama = stages["GPT"], stages["+ GQA (4 q heads : 1 kv) = Llama"]
checks.claim(all(r["val_loss"] < np.log(tokenizer.vocab_size) - 0.5 for r in stages.values()),
             "every stage learns (validation loss well below a uniform guess's log V)")
checks.claim(llama["kv"] * 4 == gpt["kv"], f"grouped-query attention keeps a quarter of the KV cache "
             f"({llama['kv']} vs {gpt['kv']} bytes per token)")
checks.claim(stages["+ RoPE"]["parameters"] == stages["+ RMSNorm"]["parameters"] - 32 * 64,
             "RoPE removes the position table's 32 × 64 parameters")

# %% [markdown]
# ### Why GPT's and + RMSNorm's curves nearly coincide
#
# They are two different computations — LayerNorm subtracts each vector's mean $\mu$ before
# dividing and adds a learned bias; RMSNorm does neither — but everything else is shared:
# `manual_seed(0)` gives both the same initial weights (the norms' own parameters start at
# ones and zeros, so they draw no random numbers; checked below), and both see the same
# batches in the same order. What separates the curves is only what the two norms compute
# differently: the centring, and LayerNorm's bias, which starts at zero. Centring matters
# little when $\mu$ is small next to the vector's size, so we record the vectors that the
# trained GPT stage's five LayerNorms receive and measure how far apart the two
# normalisations put them. The middle panel of the figure plots each stage's loss minus
# GPT's, step by step on the same batches, so a change that does nothing stays on zero.

# %%
initial = {}
for name in ("GPT", "+ RMSNorm"):
    minillm.manual_seed(0)
    fresh = SwitchableDecoder(tokenizer.vocab_size, 32, **dict(STAGES)[name])
    initial[name] = {n: q.data.copy() for n, q in fresh.named_parameters() if "norm" not in n}
same_start = initial["GPT"].keys() == initial["+ RMSNorm"].keys() and all(
    np.array_equal(initial["GPT"][n], initial["+ RMSNorm"][n]) for n in initial["GPT"])
checks.claim(same_start, f"GPT and + RMSNorm start from the same {len(initial['GPT'])} weight tensors "
             "(everything but the norms)")
received = []
gpt_model = gpt["model"]
norms = [m for m in gpt_model.modules() if isinstance(m, LayerNorm)]
for norm in norms:  # record each LayerNorm's input, then normalise as before
    norm.forward = lambda h, forward=norm.forward: received.append(h.numpy()) or forward(h)
with minillm.no_grad():
    gpt_model(*data.batches(val_ids, 32, 16, np.random.default_rng(8)))
for norm in norms:
    del norm.forward
h = np.concatenate([r.reshape(-1, r.shape[-1]) for r in received]).astype(np.float64)  # (vectors, 64)
layer_normed = (h - h.mean(axis=-1, keepdims=True)) / h.std(axis=-1, keepdims=True)
rms_normed = h / np.sqrt((h ** 2).mean(axis=-1, keepdims=True))
moved = np.median(np.linalg.norm(layer_normed - rms_normed, axis=-1) / np.linalg.norm(rms_normed, axis=-1))
curve_gap = np.abs(stages["+ RMSNorm"]["curve"] - gpt["curve"]).max()
print(f"{len(norms)} LayerNorms, {len(h):,} vectors they receive: (x − μ)/σ and x/rms(x) differ by "
      f"{moved:.1%} of the vector's length (median)")
print(f"GPT against + RMSNorm: the 10-step mean training losses differ by at most {curve_gap:.3f}; "
      f"validation {gpt['val_loss']:.3f} vs {stages['+ RMSNorm']['val_loss']:.3f}")
checks.claim(moved < 0.25, f"on the vectors the trained GPT's norms receive, LayerNorm and RMSNorm differ "
             f"by {moved:.0%} (median), so the two runs stay close")
checks.claim(0 < curve_gap < 0.05, f"GPT's and + RMSNorm's loss curves are distinct but within {curve_gap:.3f} "
             "of each other at every step")

fig, (curves, gaps, bars) = plt.subplots(1, 3, figsize=(17, 4))
for name, r in stages.items():
    style = "--" if name == "+ RMSNorm" else "-"
    curves.plot(r["curve"], style, label=name)
    gaps.plot(r["curve"] - gpt["curve"], style, label=name)
curves.set(xlabel="step", ylabel="training loss (10-step mean)", title="GPT → Llama, one change at a time")
curves.legend(fontsize=8)
gaps.axhline(0, color="grey", lw=0.5)
gaps.set(xlabel="step", ylabel="loss − GPT's loss (same batches)",
         title=f"+ RMSNorm (dashed) stays within {curve_gap:.3f} of GPT")
names = list(stages)
bars.barh(names, [stages[n]["kv"] for n in names], color="#3b75af")
for i, n in enumerate(names):
    bars.text(stages[n]["kv"], i, f"  val {stages[n]['val_loss']:.2f}", va="center", fontsize=8)
bars.set(xlabel="KV cache, bytes per token (2 layers, float32)", title="what generation keeps per token")
bars.invert_yaxis()
save_figure(fig, OUT / "gpt_to_llama.png")
checks.finish()

# %% [markdown]
# ## Try this
# - In `attend`, drop the `np.where(…, -np.inf)` line: which claim fails, and why? — expect
#   three: step 3's causality check (outputs 0–4 now move, by about 1.0, when positions 5–7
#   change) and both comparisons in step 5, with `nn.MultiHeadAttention` (max difference about
#   0.8) and with PyTorch where installed (about 1.0), both called with `is_causal=True`:
#   without the mask every position also averages the future. The rest still hold; steps 1, 2
#   and 6 build their own masks.
# - Remove the $1/\sqrt{d}$ scale (`scale=1.0` in `scaled_dot_product_attention`) with wide heads,
#   and train: step 3 and step 6 say what to expect. GPT's blocks compute their scale in
#   `CausalSelfAttention.forward` (`minillm/nn/transformer.py`), so set `scale = 1.0` there —
#   expect nearly one-hot attention and slower learning: a 2-block GPT with one head of 128,
#   500 steps on this lesson's text, ends at validation perplexity 21.2 instead of 19.5, its
#   largest attention weight 0.99 on average instead of 0.88 (4 heads of 32: 20.6 instead of
#   17.9). At the quick budget's 120 steps the gap is small (23.6 against 23.0).
# - Write the backward of `attend` itself ($\partial L/\partial q$, $\partial L/\partial k$, $\partial L/\partial v$, using `softmax_backward`)
#   and check it against the library's `backward()` as step 6 does — expect agreement to about
#   1e-15 in float64 ($\partial L/\partial v = s^\top g$; $\partial L/\partial q$ and $\partial L/\partial k$
#   through `softmax_backward`, divided by $\sqrt{d}$).
# - Switch layer norm off as well as the residuals: replace each block's `ln_1` and `ln_2`
#   with a module whose `forward` returns its input — expect the same plateau as without the
#   residuals alone, about 3.3 (3.25 with `--quick`, 3.29 after 500 steps), against 2.81 and
#   2.41 with both on. With the residuals kept, removing the norms costs
#   nothing at this depth (2.72 and 2.44).
# - Switch the blocks to post-LN (`TransformerBlock(pre_norm=False)`), as the 2017 paper had it;
#   in the GPT set `block.pre_norm = False` on each block, as the residual section sets
#   `block.residual` — expect no trouble at six blocks and this learning rate: it trains a
#   little faster, 2.70 against 2.81 with `--quick` and 2.11 against 2.41 after 500 steps.
# - Give the copy task a longer sequence and one head only — expect one head to copy less
#   well and to fail on long sequences: 800 steps give 88% (8 tokens), 94% (16) and 10%, chance,
#   for 32 tokens (15% after 1,500 steps), where two heads reach 100%, 100% and 72%, and four
#   heads 97% at 32.
# - Train the GPT → Llama stages for longer (`STEPS`) and with more seeds: which changes
#   survive the noise? Try `kv_heads=2` between MHA and GQA. — expect only RoPE's: at 500 steps,
#   over three seeds, the validation loss goes 2.49 (GPT), 2.48 (+ RMSNorm), 2.34 (+ RoPE), 2.33
#   (+ SwiGLU), 2.33 (GQA), each ± 0.01 to 0.02 between seeds. `kv_heads=2` lands at 2.33 too,
#   with half of GPT's KV cache (512 bytes per token, against 1,024 and GQA's 256).
#
# Graded exercises for this chapter: `minillm exercise 4` (fill in `exercises/04_architecture.py`;
# `--solution` shows ours).
