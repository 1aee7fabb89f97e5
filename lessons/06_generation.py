# %% [markdown]
# # Lesson 06 — Generating text: decoding and the KV cache
#
# A trained language model gives, at every position, a distribution over the next token.
# **Generation** (生成) turns that into text one token at a time: predict, choose a token,
# append it to the context, predict again. This is *autoregressive* (自回归) generation,
# and it leaves two questions that this lesson answers in NumPy, in front of the reader,
# and then checks against the library:
#
# 1. **Decoding** (解码): how to choose the token from the distribution. We write greedy
#    decoding, temperature, top-k and top-p (nucleus) sampling as four small functions,
#    draw what each does to one real next-token distribution, check that they give the
#    library's distributions and, from the same random seed, its tokens, and measure what
#    they do to whole samples.
# 2. **The KV cache** (键值缓存): how not to redo the work of the prefix for every new token.
#    We write the small GPT's forward pass and then its cached, one-position-at-a-time
#    version, check both against the library, count their arithmetic, and time the
#    library's cache against context length.
#
# Last, the model goes out as a Hugging Face GPT-2 folder, comes back with
# `GPT.from_pretrained`, and is compared with `transformers`' own GPT-2.
#
# Run: `python lessons/06_generation.py [--quick]` or `minillm lesson 6`.

# %%
import os
import re
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np

import minillm
from minillm import data, optim, tokenizers
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.models import GPT, GPTConfig
from minillm.models.base import next_token_probs, sample
from minillm.nn.transformer import KVCache

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUICK = quick_mode()
STEPS = 250 if QUICK else 1500
checks = Checks("lesson 06")
minillm.set_backend("c" if minillm.backends.is_available("c") else "numpy")
OUT = results_dir("06_generation")
started = time.perf_counter()

# %% [markdown]
# ## A model to generate from
#
# A character-level GPT (2 blocks, 4 heads, width 128, a context of 128 characters) learns
# from the embedded corpus of Python's docstrings, trained as in lesson 01: AdamW, the
# learning rate warmed up and decayed along a cosine, gradients clipped to norm 1. The
# budget is `--quick`'s 250 steps or the full run's 1,500, each of 8 windows of 128
# characters. We score it on 16 validation windows against a yardstick that knows only
# how often each character occurs: the entropy of the training text's character
# frequencies, $H_1 = -\sum_c f_c \ln f_c$ (a model that has learned nothing about
# context cannot do better than that on average).

# %%
BLOCK, BATCH = 128, 8
corpus = data.corpus("python-docs")
tokenizer = tokenizers.CharTokenizer.train(corpus.text)
V = tokenizer.vocab_size
train_ids = np.asarray(tokenizer.encode(corpus.train[:300_000]))
val_ids = np.asarray(tokenizer.encode(corpus.val[:20_000]))

minillm.manual_seed(0)
model = GPT(GPTConfig(V, BLOCK, n_layer=2, n_head=4, n_embd=128))
opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
schedule = optim.WarmupCosine(opt, warmup=min(50, STEPS // 10), total=STEPS, min_lr=3e-4)
batch_rng = np.random.default_rng(0)
train_start = time.perf_counter()
for step in range(STEPS):
    _, loss = model(*data.batches(train_ids, BLOCK, BATCH, batch_rng))
    opt.zero_grad()
    loss.backward()
    minillm.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    schedule.step()
model.eval()
starts = np.linspace(0, len(val_ids) - BLOCK - 1, 16).astype(int)
windows = np.stack([val_ids[s:s + BLOCK + 1] for s in starts])          # (16, 129)
with minillm.no_grad():
    val_loss = model(windows[:, :-1], windows[:, 1:])[1].item()
frequencies = np.bincount(train_ids, minlength=V) / len(train_ids)
unigram_entropy = -np.sum(frequencies[frequencies > 0] * np.log(frequencies[frequencies > 0]))
print(f"{model.num_parameters():,} parameters, {STEPS} steps in {time.perf_counter() - train_start:.1f} s; "
      f"validation loss {val_loss:.3f} nats/char (perplexity {np.exp(val_loss):.1f}); "
      f"character frequencies alone: {unigram_entropy:.3f}")
checks.claim(val_loss < unigram_entropy, f"the model uses its context: validation loss {val_loss:.2f} nats/char, "
             f"below the {unigram_entropy:.2f} of character frequencies alone")

# %% [markdown]
# ## One step of generation: logits, then a distribution
#
# Give the model a prompt and take its logits $z \in \mathbb{R}^V$ at the last position
# (one number per character of the vocabulary). The model's distribution for the next
# character is their softmax,
#
# $$p_i = \frac{e^{z_i}}{\sum_j e^{z_j}} .$$
#
# The prompt below ends with a space, so the model is choosing the first letter of a word:
# a distribution with many plausible choices, which makes the filters visible.

# %%
PROMPT = "Return the "
prompt_ids = np.asarray([tokenizer.encode(PROMPT)])                      # (1, 11)
with minillm.no_grad():
    z = model(prompt_ids)[0].numpy()[0, -1].astype(np.float64)            # (V,) the last position's logits


def shown(ch):
    return {" ": "␣", "\n": "\\n", "\t": "\\t"}.get(ch, ch)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))                             # shifted: exp never overflows
    return e / e.sum(-1, keepdims=True)


p = softmax(z)
ranked = np.argsort(-p, kind="stable")
print(f"after {PROMPT!r} the model's 8 most likely next characters:",
      ", ".join(f"{shown(tokenizer.decode([i]))!r} {p[i]:.3f}" for i in ranked[:8]))

# %% [markdown]
# ## Four ways to choose the token
#
# - **Greedy decoding** (贪心解码) takes the most likely token, $\arg\max_i z_i$: no
#   randomness at all, the same text every time.
# - **Temperature** (温度) $T$ divides the logits before the softmax,
#   $p_i(T) = e^{z_i/T} / \sum_j e^{z_j/T}$. $T < 1$ stretches the gaps between logits and
#   sharpens the distribution towards the argmax (which it becomes as $T \to 0$); $T > 1$
#   shrinks them and flattens it towards uniform. $T = 1$ is the model's own distribution.
# - **Top-k** keeps the $k$ most likely tokens, sets the rest to zero and renormalises:
#   $\tilde p_i = p_i / \sum_{j \in K} p_j$ for $i$ in the top-$k$ set $K$.
# - **Top-p**, or nucleus sampling (核采样), keeps the *smallest* set $N$ of most likely
#   tokens whose mass reaches $p$: sort the probabilities in decreasing order and keep
#   the shortest head with $\sum_{i \in N} p_i \ge p$, then renormalise as top-k does.
#   Where the model is sure, $N$ is one or two tokens; where it hesitates, $N$ grows.
#   Top-k keeps $k$ tokens whatever the shape of the distribution.
#
# Temperature comes first and the filters act on its result, as in the library (and in
# Hugging Face's `generate`). Each filter cuts off the long tail of unlikely tokens, which
# are individually rare but, over a few hundred tokens, together likely to be drawn
# somewhere, and one bad token derails what follows.
#
# Drawing from a distribution: the cumulative sums $c_i = \sum_{j \le i} p_j$ cut
# $[0, 1)$ into one interval per token, of length $p_i$; a uniform random number
# $u \in [0, 1)$ falls into interval $i$ with probability $p_i$, and the token is the first
# $i$ with $c_i > u$.

# %%
def greedy(z):
    return int(np.argmax(z))


def with_temperature(z, temperature):
    return softmax(z / temperature)


def top_k(probs, k):
    kth = np.sort(probs)[-k]                                             # the k-th largest probability
    kept = np.where(probs >= kth, probs, 0.0)
    return kept / kept.sum()


def top_p(probs, mass):
    order = np.argsort(-probs, kind="stable")                            # most likely first
    running = np.cumsum(probs[order])
    n = int(np.searchsorted(running, mass)) + 1                          # the shortest head with mass ≥ p
    kept = np.zeros_like(probs)
    kept[order[:n]] = probs[order[:n]]
    return kept / kept.sum()


def draw(probs, rng):
    cumulative = np.cumsum(probs)
    cumulative /= cumulative[-1]
    return int(np.searchsorted(cumulative, rng.random(), side="right"))  # the first i with c_i > u


K, P = 5, 0.9
cold, hot = with_temperature(z, 0.5), with_temperature(z, 2.0)
truncated_k, truncated_p = top_k(p, K), top_p(p, P)
nucleus = np.flatnonzero(truncated_p)
print(f"greedy: {shown(tokenizer.decode([greedy(z)]))!r}")
print(f"largest probability: T=0.5 {cold.max():.3f}, T=1 {p.max():.3f}, T=2 {hot.max():.3f}")
print(f"top-{K} keeps {np.count_nonzero(truncated_k)} tokens holding {p[truncated_k > 0].sum():.3f} of the mass; "
      f"top-p {P} keeps {len(nucleus)} holding {p[nucleus].sum():.3f}")

# %% [markdown]
# The same distribution before (grey) and after (colour) each rule, for the 30 most likely
# characters in the model's order (␣ is the space). The last panel adds the running mass
# of the sorted probabilities: the nucleus ends where it first reaches $p$.

# %%
shown_ids = ranked[:30]
labels = [shown(tokenizer.decode([i])) for i in shown_ids]
xs = np.arange(len(shown_ids))
fig, axes = plt.subplots(2, 2, figsize=(13, 7.5), sharex=True)
(a_greedy, a_temp), (a_k, a_p) = axes
a_greedy.bar(xs, p[shown_ids], color="0.6")
a_greedy.bar([0], [p[shown_ids[0]]], color="#c0392b", label=f"greedy picks {labels[0]!r} every time")
a_greedy.set(title=f"T = 1: the model's distribution after {PROMPT!r}", ylabel="probability")
a_temp.bar(xs, p[shown_ids], color="0.8", label="T = 1")
a_temp.plot(xs, cold[shown_ids], "o-", color="#2e6fb0", ms=4, label="T = 0.5: sharper")
a_temp.plot(xs, hot[shown_ids], "s-", color="#e08a1e", ms=4, label="T = 2: flatter")
a_temp.set(title="temperature: softmax(z / T)")
a_k.bar(xs, p[shown_ids], color="0.8", label="before")
a_k.bar(xs, truncated_k[shown_ids], color="#2e6fb0", label=f"top-{K}, renormalised")
a_k.set(title=f"top-k, k = {K}", ylabel="probability")
a_p.bar(xs, p[shown_ids], color="0.8", label="before")
a_p.bar(xs, truncated_p[shown_ids], color="#2e8b57", label=f"top-p, p = {P}: {len(nucleus)} kept")
mass_axis = a_p.twinx()
mass_axis.plot(xs, np.cumsum(p[shown_ids]), "k.-", lw=0.8, ms=3)
mass_axis.axhline(P, color="k", ls=":", lw=0.8)
mass_axis.text(6, P + 0.01, f"p = {P}", ha="left", va="bottom", fontsize=8)
mass_axis.set(ylim=(0, 1.02), ylabel="running mass (black)")
a_p.set(title=f"top-p (nucleus), p = {P}")
for ax in axes.flat:
    ax.set_xticks(xs, labels, fontsize=9)
    ax.legend(fontsize=8, loc="center right")
fig.suptitle("one next-character distribution, before (grey) and after each decoding rule")
save_figure(fig, OUT / "decoding_filters.png", dpi=90)

# %% [markdown]
# ### The same as the library's, distribution for distribution and token for token
#
# `minillm.models.base.sample` is what `generate` calls for every token. It computes the
# filtered distribution with `next_token_probs(logits, temperature, top_k, top_p)` (read it:
# the same steps in the same order, vectorised over a batch of rows) and then draws with
# the library's random generator, `rng.choice(V, p=probs)`; `temperature=0` is its argmax.
# NumPy's `choice` draws exactly as `draw` above does (cumulative sums, one uniform
# number, the first interval past it), so after `minillm.manual_seed(s)` the library and
# `draw` with `np.random.default_rng(s)` must pick the same token, seed after seed.

# %%
settings = [(1.0, None, None), (0.5, None, None), (2.0, None, None), (1.0, K, None), (1.0, None, P),
            (0.7, 20, 0.95)]


def ours(z, temperature, k, mass):
    probs = with_temperature(z, temperature)
    if k:
        probs = top_k(probs, k)
    if mass:
        probs = top_p(probs, mass)
    return probs


gaps, same_tokens, seeds = [], 0, range(200)
for temperature, k, mass in settings:
    mine = ours(z, temperature, k, mass)
    library = next_token_probs(z[None], temperature, k, mass)[0]
    gaps.append(np.abs(mine - library).max())
    for seed in seeds:
        minillm.manual_seed(seed)
        same_tokens += int(sample(z[None], temperature, k, mass)[0]) == draw(mine, np.random.default_rng(seed))
minillm.manual_seed(0)
print(f"{len(settings)} settings (T, top-k, top-p): {settings}")
print(f"max |ours − next_token_probs| per setting: {', '.join(f'{g:.0e}' for g in gaps)}")
print(f"same token from the same seed: {same_tokens} of {len(settings) * len(seeds)}")
checks.claim(greedy(z) == int(sample(z[None], temperature=0)[0]) and max(gaps) < 1e-12,
             f"our greedy token is the library's temperature=0 token, and temperature, top-k, top-p and a "
             f"combination give the library's filtered distribution to {max(gaps):.0e} (every setting above)")
checks.claim(np.count_nonzero(truncated_k) == K and p[nucleus].sum() >= P > p[nucleus].sum() - p[nucleus].min(),
             f"top-{K} keeps {K} tokens; the nucleus is the smallest set reaching p = {P} "
             f"({len(nucleus)} tokens, {p[nucleus].sum():.3f}; without its least likely token it falls below)")
checks.claim(same_tokens == len(settings) * len(seeds), f"from the same seed, `draw` picks the library's token "
             f"every time ({same_tokens} of {len(settings) * len(seeds)} draws)")

# %% [markdown]
# ## What the rules do to whole samples
#
# Now whole continuations of the prompt, 117 characters each (prompt and continuation
# fill the 128-character context exactly), 16 per setting, generated by the library with
# its KV cache. Three measurements per setting, each averaged over the 16 samples:
#
# - **entropy per token**: $H = -\sum_i \tilde p_i \ln \tilde p_i$ of the distribution each
#   token was actually drawn from (0 for greedy), in nats: how much choice was left;
# - **distinct 6-grams**: the fraction of a sample's 6-character substrings that are
#   different from each other. Text that repeats itself scores low;
# - **real words**: the fraction of the sample's words (runs of two or more letters) that
#   occur as words somewhere in the training text.
#
# The printed samples are the first of each setting's 16 (⏎ marks a newline).

# %%
SAMPLES, NEW = 16, BLOCK - prompt_ids.shape[1]
decoders = {"greedy": (0.0, None, None), "T = 0.5": (0.5, None, None), "T = 1": (1.0, None, None),
            "T = 1.5": (1.5, None, None), "top-k 10": (1.0, 10, None), "top-p 0.9": (1.0, None, 0.9)}
known_words = set(re.findall(r"[A-Za-z]{2,}", corpus.train))


def distinct_ngrams(text, n=6):
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams)


def real_words(text):
    words = re.findall(r"[A-Za-z]{2,}", text)
    return np.mean([w in known_words for w in words]) if words else 0.0


minillm.manual_seed(6)
measured = {}
for name, (temperature, k, mass) in decoders.items():
    out = model.generate(np.repeat(prompt_ids, SAMPLES, 0), NEW, temperature=temperature, top_k=k, top_p=mass)
    with minillm.no_grad():
        logits = model(out[:, :-1])[0].numpy().astype(np.float64)       # every step's logits, same contexts
    steps = logits[:, prompt_ids.shape[1] - 1:]                           # (16, 117, V): those that chose a token
    if temperature == 0:
        entropy = 0.0
    else:
        drawn_from = next_token_probs(steps.reshape(-1, V), temperature, k, mass)
        logs = np.log(np.where(drawn_from > 0, drawn_from, 1.0))        # 0 · log 0 counts as 0
        entropy = float(np.mean(-np.sum(drawn_from * logs, -1)))
    texts = [tokenizer.decode(row[prompt_ids.shape[1]:].tolist()) for row in out]
    measured[name] = {"entropy": entropy, "distinct": np.mean([distinct_ngrams(t) for t in texts]),
                      "words": np.mean([real_words(t) for t in texts])}
    print(f"--- {name}: entropy {entropy:.2f} nats/token, distinct 6-grams {measured[name]['distinct']:.0%}, "
          f"real words {measured[name]['words']:.0%}")
    print(PROMPT + texts[0].replace("\n", "⏎"))

# %% [markdown]
# What to look for, checked on this run's numbers below. Greedy decoding settles into a
# loop: the same words again and again, because the argmax after the loop's last character
# leads back to its first. Raising the temperature leaves more choice at every step (the
# entropy rises) and the text repeats itself less, but the higher the temperature, the
# more of its words never occur in the corpus. Top-k and top-p sample at $T = 1$ without
# the tail: less entropy than plain $T = 1$.
#
# How good the text is depends on the budget. At the `--quick` budget (250 steps) the model
# has learned spaces, a few common short words and likely letter pairs, and little more:
# greedy loops on one short word, and the sampled text is mostly word-shaped nonsense,
# with fewer than half of its words real even at $T = 0.5$. After the full run's 1,500
# steps the samples read like docstrings: sentences that start with "Return" or "This",
# paragraphs, most words real at $T = 0.5$ (and about half at $T = 1$), with grammar that
# falls apart within a line. The budget's statement is checked below as well.

# %%
order = ["greedy", "T = 0.5", "T = 1", "T = 1.5"]
entropies = [measured[n]["entropy"] for n in order]
distinct = [measured[n]["distinct"] for n in order]
checks.claim(distinct[0] < min(distinct[1:]), f"greedy repeats itself: {distinct[0]:.0%} of its 6-grams are "
             f"distinct, against {min(distinct[1:]):.0%} or more for every sampled temperature")
checks.claim(entropies[1] < entropies[2] < entropies[3], "entropy per token rises with temperature "
             f"({entropies[1]:.2f} < {entropies[2]:.2f} < {entropies[3]:.2f} nats at T = 0.5, 1, 1.5)")
checks.claim(distinct[1] < distinct[3], f"a higher temperature repeats less: distinct 6-grams {distinct[1]:.0%} at "
             f"T = 0.5, {distinct[3]:.0%} at T = 1.5")
checks.claim(measured["T = 1.5"]["words"] < measured["T = 0.5"]["words"],
             f"and invents more words: {measured['T = 1.5']['words']:.0%} of T = 1.5's words occur in the corpus, "
             f"{measured['T = 0.5']['words']:.0%} of T = 0.5's")
words_cold = measured["T = 0.5"]["words"]
if QUICK:
    checks.claim(words_cold < 0.5, f"at 250 steps fewer than half of the words sampled at T = 0.5 are real "
                 f"({words_cold:.0%})")
else:
    checks.claim(words_cold > 0.7, f"at 1,500 steps most of the words sampled at T = 0.5 are real ({words_cold:.0%})")
checks.claim(max(measured["top-k 10"]["entropy"], measured["top-p 0.9"]["entropy"]) < entropies[2],
             f"cutting the tail lowers the entropy at T = 1: top-k 10 {measured['top-k 10']['entropy']:.2f}, "
             f"top-p 0.9 {measured['top-p 0.9']['entropy']:.2f}, against {entropies[2]:.2f}")

# %% [markdown]
# ## The KV cache, by hand
#
# Without a cache, generating token $t+1$ runs the whole context $x_0 \dots x_t$ through
# the network and keeps only the last position's logits, although positions $0 \dots t-1$
# were computed, identically, for the previous token: in a causal model a position's
# output depends on itself and the past only, never on what comes after it.
#
# Inside each block, what position $t$ needs from the past is small: the **keys** and
# **values** of the positions up to it, per layer and per head. Its query meets every
# key, $s_{j} = q_t \cdot k_j / \sqrt{d}$ for $j \le t$, and its output is
# $\sum_j \mathrm{softmax}(s)_j \, v_j$. So keep each layer's $K$ and $V$ in a buffer
# (the cache), and for a new token run *only its own position* through the network:
# compute its $q$, $k$, $v$, append $k$ and $v$ to the layer's cache, attend over all of
# the cache, go on to the next layer.
#
# First the whole forward pass in NumPy, from the trained model's weights, in float64:
# embeddings, then per block $x \leftarrow x + \mathrm{Attn}(\mathrm{LN}_1(x))$ and
# $x \leftarrow x + \mathrm{MLP}(\mathrm{LN}_2(x))$ (the MLP's GELU is the tanh form, as
# GPT-2's), a last layer norm and the output head. Every matrix product goes through
# `mm`, which also counts its multiply–adds.

# %%
weights = {name: minillm.backends.to_numpy(q.data).astype(np.float64) for name, q in model.named_parameters()}
LAYERS, HEADS, C = model.config.n_layer, model.config.n_head, model.config.n_embd
HS = C // HEADS
multiply_adds = [0]


def mm(a, b):
    """a @ b, counting its multiply-adds: (batch dims) × m × k × n."""
    out = a @ b
    multiply_adds[0] += out.size * a.shape[-1]
    return out


def linear(x, name):
    y = mm(x, weights[name + ".weight"].T)                               # Linear stores W as (out, in)
    return y + weights[name + ".bias"] if name + ".bias" in weights else y


def layer_norm(x, name, eps=model.config.layer_norm_eps):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weights[name + ".weight"] + weights[name + ".bias"]


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def heads(x):
    return x.reshape(x.shape[0], HEADS, HS).transpose(1, 0, 2)           # (T, C) → (heads, T, hs)


def mlp(x, block):
    return linear(gelu(linear(layer_norm(x, block + "ln_2"), block + "mlp.fc")), block + "mlp.proj")


def forward_full(ids):
    """ids (T,) → logits (T, V): every position at once, as training does."""
    t = len(ids)
    x = weights["wte.weight"][ids] + weights["wpe.weight"][:t]           # (T, C)
    for layer in range(LAYERS):
        block = f"blocks.{layer}."
        h = layer_norm(x, block + "ln_1")
        q, k, v = (heads(z) for z in np.split(linear(h, block + "attn.c_attn"), 3, axis=-1))  # (heads, T, hs) each
        scores = mm(q, k.transpose(0, 2, 1)) / np.sqrt(HS)               # (heads, T, T)
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        y = mm(softmax(scores), v).transpose(1, 0, 2).reshape(t, C)      # (heads, T, hs) → (T, C)
        x = x + linear(y, block + "attn.c_proj")
        x = x + mlp(x, block)
    return linear(layer_norm(x, "ln_f"), "lm_head")


def new_cache():
    """Per layer, room for the keys and values of every position: (layers, heads, block, hs)."""
    return {"k": np.zeros((LAYERS, HEADS, BLOCK, HS)), "v": np.zeros((LAYERS, HEADS, BLOCK, HS)), "length": 0}


def forward_one(token, cache):
    """One new token at position cache["length"] → its logits (V,); its keys and values
    are appended to the cache, and its query attends over all of the cache."""
    t = cache["length"]
    x = weights["wte.weight"][[token]] + weights["wpe.weight"][[t]]      # (1, C): one position only
    for layer in range(LAYERS):
        block = f"blocks.{layer}."
        h = layer_norm(x, block + "ln_1")
        q, k, v = (heads(z) for z in np.split(linear(h, block + "attn.c_attn"), 3, axis=-1))  # (heads, 1, hs) each
        cache["k"][layer, :, t], cache["v"][layer, :, t] = k[:, 0], v[:, 0]      # append
        keys, values = cache["k"][layer, :, :t + 1], cache["v"][layer, :, :t + 1]  # (heads, t+1, hs): all of the past
        scores = mm(q, keys.transpose(0, 2, 1)) / np.sqrt(HS)            # (heads, 1, t+1): no mask needed
        y = mm(softmax(scores), values).transpose(1, 0, 2).reshape(1, C)
        x = x + linear(y, block + "attn.c_proj")
        x = x + mlp(x, block)
    cache["length"] = t + 1
    return linear(layer_norm(x, "ln_f"), "lm_head")[0]


# %% [markdown]
# Three checks on a validation window of 128 characters: the NumPy forward against the
# library's (float64 against float32, so agreement to float32's precision, about $10^{-6}$
# relative, is all there is to ask); the cached loop, position by position, against the
# full forward (both float64: only the order of summation differs); and the cached loop
# against the library's own cache, `KVCache`, fed one token at a time the same way
# (`model(token, caches=caches)`).
#
# Then the arithmetic. For the token at position $t$ (context length $t + 1$), the cached
# step costs, per layer, $12C^2$ multiply–adds in the projections and the MLP (the same
# for every token) plus $2(t+1)C$ to read the cache: one score and one weighted value per
# cached position, per channel; and $CV$ once, in the output head. Without the cache the
# same token costs a forward pass over all $t + 1$ positions: per layer
# $(t+1) \cdot 12C^2$, plus $2(t+1)^2 C$ for attention over the full
# $(t+1) \times (t+1)$ score matrix, and $(t+1) \cdot CV$ in the head. We count both with `mm`'s counter for every $t$:
# the cached count must grow by the same amount, $2 \cdot \text{layers} \cdot C$, per
# position (linear), the uncached one by more at each step (its second difference is
# $4 \cdot \text{layers} \cdot C$: quadratic). In fact the uncached count is exactly
# $t + 1$ times the cached one: the full forward does for each of the $t + 1$ positions
# the work the cached step does for the last one (the output head included, since the
# forward computes every position's logits and generation keeps one row).

# %%
window = windows[0, :BLOCK]
full = forward_full(window)
with minillm.no_grad():
    library_full = model(window[None])[0].numpy()[0].astype(np.float64)
cache, cached, cached_count, uncached_count, last_rows = new_cache(), [], [], [], []
for t, token in enumerate(window):
    before = multiply_adds[0]
    cached.append(forward_one(token, cache))
    cached_count.append(multiply_adds[0] - before)
    before = multiply_adds[0]
    last_rows.append(forward_full(window[:t + 1])[-1])                   # what generation without a cache computes
    uncached_count.append(multiply_adds[0] - before)
cached, last_rows = np.stack(cached), np.stack(last_rows)
library_caches = [KVCache(BLOCK) for _ in model.blocks]
with minillm.no_grad():
    library_cached = np.concatenate([model(window[None, t:t + 1], caches=library_caches)[0].numpy()[0]
                                     for t in range(BLOCK)]).astype(np.float64)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


print(f"NumPy float64 forward vs the library's float32 forward: max relative difference "
      f"{relative(library_full, full):.1e}")
print(f"cached loop vs the full forward: max |difference| {np.abs(cached - full).max():.1e}; "
      f"vs the full forward of each prefix (uncached generation) {np.abs(cached - last_rows).max():.1e}")
print(f"cached loop vs the library's KVCache path: max relative difference {relative(library_cached, cached):.1e}")
cached_count, uncached_count = np.asarray(cached_count), np.asarray(uncached_count)
print(f"multiply-adds for the token at context 1, 64, 128: cached {cached_count[[0, 63, 127]].tolist()}, "
      f"uncached {uncached_count[[0, 63, 127]].tolist()}")
print(f"cached: +{np.diff(cached_count)[0]} per position of context (2·layers·C = {2 * LAYERS * C}); "
      f"uncached: second difference {np.diff(uncached_count, 2)[0]} (4·layers·C = {4 * LAYERS * C})")
checks.claim(relative(library_full, full) < 1e-5, f"the NumPy forward gives the library's logits "
             f"(max relative difference {relative(library_full, full):.0e}, float32's precision)")
checks.claim(np.abs(cached - full).max() < 1e-10 and np.abs(cached - last_rows).max() < 1e-10,
             f"the cached loop, one position at a time, gives the full forward's logits at all {BLOCK} positions "
             f"(max difference {max(np.abs(cached - full).max(), np.abs(cached - last_rows).max()):.0e}, float64)")
checks.claim(relative(library_cached, cached) < 1e-5, f"and the library's KVCache path gives the same "
             f"(max relative difference {relative(library_cached, cached):.0e})")
contexts_1 = np.arange(1, BLOCK + 1)
checks.claim((np.diff(cached_count) == 2 * LAYERS * C).all() and (np.diff(uncached_count, 2) == 4 * LAYERS * C).all()
             and (uncached_count == contexts_1 * cached_count).all(),
             f"counted: with the cache a token's multiply-adds grow linearly with context (+{2 * LAYERS * C} per "
             f"position), without it quadratically, and at every context t + 1 exactly t + 1 times the cached "
             f"count ({uncached_count[-1] / cached_count[-1]:.0f}× at {BLOCK})")

# %% [markdown]
# So the cache saves the recomputation: the projections, MLPs and attention of the prefix,
# whose keys and values it already holds. It does not save the reading: each new token's
# query still meets every cached key and every cached value, in every layer, so even with
# the cache the work per token grows with the context, linearly. What it costs is memory:
# $2 \cdot \text{layers} \cdot C$ numbers per position per sequence ($K$ and $V$), here
# 512 floats, or 2 KiB in float32, per character of context.
#
# The library's `generate` does the same with `KVCache` (its buffers preallocated to the
# block size, each new key and value written in place), and gives the same tokens as
# generating without the cache: greedily, and when sampling from the same seed.

# %%
minillm.manual_seed(1)
with_cache = model.generate(prompt_ids, 60, temperature=0.8, use_cache=True)
minillm.manual_seed(1)
without_cache = model.generate(prompt_ids, 60, temperature=0.8, use_cache=False)
greedy_same = np.array_equal(model.generate(prompt_ids, 60, temperature=0, use_cache=True),
                             model.generate(prompt_ids, 60, temperature=0, use_cache=False))
print("with the cache:   ", tokenizer.decode(with_cache[0].tolist()).replace("\n", "⏎"))
print("without the cache:", tokenizer.decode(without_cache[0].tolist()).replace("\n", "⏎"))
checks.claim(greedy_same and np.array_equal(with_cache, without_cache), "generate gives the same 60 tokens with "
             "and without the cache, greedily and sampling at T = 0.8 from the same seed")

# %% [markdown]
# ## Time per token against context length
#
# Now the clock, on the library's model. A context of 128 is too short to show anything,
# so we time a GPT of the same shape (2 blocks, width 128) with a context of 1,024; its
# weights are random, which changes the numbers it computes but not the time it takes.
# Eight sequences are generated side by side, so that the arithmetic, not Python's fixed
# cost per operation, dominates. At each context length $t$:
#
# - **with the cache**: the cache holds $t$ positions; time one step of the 8 new tokens,
#   `model(next, caches=caches)`. Before each repeat the caches are rewound to length $t$
#   (`KVCache.length`), so each repeat writes the same position again;
# - **without**: time `model(context)` over all $t + 1$ positions, which is what
#   `generate(use_cache=False)` runs for each token.
#
# Each time is the median of repeated runs, in milliseconds per step (one new token in
# each of the 8 sequences), the repeats taken in rounds over all the context lengths.
# Timings on a shared machine are noisy, so the statements below are reported as held or
# not on this run, never as claims.

# %%
TIMED_BLOCK, TIMED_BATCH = 1024, 8
contexts = [16, 128, 256, 384, 512, 768, 1023]
minillm.manual_seed(2)
timed = GPT(GPTConfig(V, TIMED_BLOCK, n_layer=2, n_head=4, n_embd=128))
timed.eval()
timed_ids = np.random.default_rng(3).integers(0, V, (TIMED_BATCH, TIMED_BLOCK))


def elapsed_ms(fn):
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


caches = {t: [KVCache(TIMED_BLOCK) for _ in timed.blocks] for t in contexts}
samples_cached, samples_uncached = {t: [] for t in contexts}, {t: [] for t in contexts}


def one_step(t):
    for each in caches[t]:
        each.length = t                                                  # rewind: write position t again
    timed(timed_ids[:, t:t + 1], caches=caches[t])


with minillm.no_grad():
    for t in contexts:
        timed(timed_ids[:, :t], caches=caches[t])                        # fill the cache with the prefix, once
        one_step(t)                                                      # and warm up
    for _ in range(5 if QUICK else 11):                                  # rounds over all contexts: a slow
        for t in contexts:                                               # moment hits every context alike
            samples_cached[t] += [elapsed_ms(lambda: one_step(t)) for _ in range(4)]
            samples_uncached[t].append(elapsed_ms(lambda: timed(timed_ids[:, :t + 1])))
ms_cached = [float(np.median(samples_cached[t])) for t in contexts]
ms_uncached = [float(np.median(samples_uncached[t])) for t in contexts]
for t, c, u in zip(contexts, ms_cached, ms_uncached):
    print(f"context {t:5d}: {c:6.2f} ms per step with the cache, {u:7.2f} without")
slope, intercept = np.polyfit(contexts, ms_cached, 1)
fitted = intercept + slope * np.asarray(contexts)
r2 = 1 - np.sum((ms_cached - fitted) ** 2) / np.sum((ms_cached - np.mean(ms_cached)) ** 2)
print(f"with the cache: {intercept:.2f} ms + {1e3 * slope:.2f} ms per 1,000 positions of context "
      f"(straight-line fit, R² = {r2:.3f})")
checks.timing(all(c < u for c, u in zip(ms_cached[1:], ms_uncached[1:])),
              f"the cache is faster at every context from {contexts[1]} on "
              f"({ms_uncached[-1] / ms_cached[-1]:.0f}× at {contexts[-1]})")
checks.timing(ms_cached[-1] > 1.3 * ms_cached[0], f"with the cache a step still costs more at context {contexts[-1]} "
              f"than at {contexts[0]} ({ms_cached[-1]:.2f} vs {ms_cached[0]:.2f} ms): it reads the whole cache")
checks.timing(r2 > 0.9, f"and it grows along a straight line (R² = {r2:.2f})")
checks.timing(ms_uncached[-1] > 2 * ms_uncached[contexts.index(512)],
              f"without the cache, doubling the context from 512 more than doubles the time "
              f"({ms_uncached[contexts.index(512)]:.1f} → {ms_uncached[-1]:.1f} ms): attention is quadratic in it")

fig, (both, alone) = plt.subplots(1, 2, figsize=(12, 4.3))
both.plot(contexts, ms_uncached, "s-", color="#c0392b", label="without the cache: the whole context again")
both.plot(contexts, ms_cached, "o-", color="#2e6fb0", label="with the KV cache: one position")
both.set(xlabel="context length (positions)", ylabel="ms per step (8 sequences)",
         title="time to generate one more token")
both.legend(fontsize=8)
alone.plot(contexts, ms_cached, "o", color="#2e6fb0", label="measured (median)")
alone.plot(contexts, fitted, "-", color="0.4", label=f"{intercept:.2f} + {1e3 * slope:.2f}·t/1000 ms")
alone.set(xlabel="context length (positions)", ylabel="ms per step (8 sequences)", ylim=(0, None),
          title="with the cache alone: still growing, linearly")
alone.legend(fontsize=8)
save_figure(fig, OUT / "kv_cache_time.png", dpi=90)

# %% [markdown]
# ## A Hugging Face GPT-2 folder, out and back
#
# minillm's `GPT` has GPT-2's architecture, so the trained model can be written in the
# layout Hugging Face uses for GPT-2 (`config.json` and `model.safetensors`; GPT-2 stores
# its linear layers transposed and its query, key and value projections as one matrix, and
# `save_pretrained` converts) and read back by `GPT.from_pretrained`. The character
# tokenizer goes beside it (`tokenizer-minillm.json`: Hugging Face has no character
# tokenizer), in `lessons/results/06_generation/gpt2_folder`. Where `transformers` is
# installed (an optional extra, `minillm[oracle]`), its own `GPT2LMHeadModel` loads the
# same folder, and the two must agree: logits to $10^{-4}$ of their largest magnitude
# (both float32, summing in different orders), and the same greedy continuation, token
# for token, with `transformers`' own `generate` (which runs its own KV cache).

# %%
folder = OUT / "gpt2_folder"
model.save_pretrained(folder, tokenizer)
print("wrote", ", ".join(f"{f.name} ({f.stat().st_size:,} bytes)" for f in sorted(folder.iterdir())))
loaded, loaded_tokenizer = GPT.from_pretrained(folder), tokenizers.from_pretrained(folder)
with minillm.no_grad():
    reloaded_gap = np.abs(loaded(window[None])[0].numpy() - model(window[None])[0].numpy()).max()
ours_greedy = loaded.generate(prompt_ids, NEW, temperature=0)
print(f"reloaded: max |logits − the original's| = {reloaded_gap:.1e}; greedy continuation:")
print(loaded_tokenizer.decode(ours_greedy[0].tolist()).replace("\n", "⏎"))
checks.claim(reloaded_gap == 0 and loaded_tokenizer.encode(PROMPT) == tokenizer.encode(PROMPT),
             "save_pretrained → from_pretrained gives back the same model (logits equal bit for bit) and tokenizer")

try:
    with warnings.catch_warnings():                                      # tqdm's note about Jupyter widgets
        warnings.simplefilter("ignore")
        import torch
        import transformers
except ImportError:
    transformers = None
    print("transformers (and torch) are not installed here, so the comparison with Hugging Face's GPT2LMHeadModel "
          "is skipped: pip install 'minillm[oracle]' to run it")
if transformers is not None:
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        hf_logits = hf(torch.tensor(window[None])).logits.numpy()[0].astype(np.float64)
        hf_greedy = hf.generate(torch.tensor(prompt_ids), max_new_tokens=NEW, do_sample=False,
                                attention_mask=torch.ones(prompt_ids.shape, dtype=torch.long),
                                pad_token_id=V - 1).numpy()
    hf_gap = relative(library_full, hf_logits)
    print(f"transformers {transformers.__version__}: max |ours − GPT2LMHeadModel| / max |theirs| = {hf_gap:.1e}; "
          f"greedy continuations equal: {np.array_equal(hf_greedy, ours_greedy)}")
    checks.claim(hf_gap < 1e-4, f"transformers' GPT2LMHeadModel reads the folder and gives our logits "
                 f"(max relative difference {hf_gap:.0e}, tolerance 1e-4)")
    checks.claim(np.array_equal(hf_greedy, ours_greedy), f"and its generate continues the prompt greedily with "
                 f"the same {NEW} tokens as ours")

# %% [markdown]
# **The real GPT-2.** OpenAI's GPT-2 (124M parameters; about 550 MB as
# `model.safetensors`) is the same architecture at width 768, with 12 layers of 12 heads,
# a context of 1,024 and a byte-level BPE vocabulary of 50,257 tokens. Its weights are not
# on this machine, which has no network, so this page cannot show what it writes.
# Downloaded, for example with `huggingface-cli download gpt2 config.json
# model.safetensors vocab.json merges.txt --local-dir gpt2`, they are read by the same
# loader (`GPT.from_pretrained("gpt2")`, and `tokenizers.from_pretrained("gpt2")` reads
# its `vocab.json` and `merges.txt`); set `MINILLM_GPT2` to that folder and the cell below
# samples from it with the library's `generate`.

# %%
gpt2_folder = os.environ.get("MINILLM_GPT2")
if gpt2_folder and Path(gpt2_folder).is_dir():
    gpt2, gpt2_tokenizer = GPT.from_pretrained(gpt2_folder), tokenizers.from_pretrained(gpt2_folder)
    prompt = np.asarray([gpt2_tokenizer.encode("The meaning of a docstring is")])
    minillm.manual_seed(0)
    for name, (temperature, k, mass) in (("greedy", (0.0, None, None)), ("top-p 0.9", (1.0, None, 0.9))):
        out = gpt2.generate(prompt, 30, temperature=temperature, top_k=k, top_p=mass)
        print(f"{name}: {gpt2_tokenizer.decode(out[0].tolist())!r}")
else:
    print("MINILLM_GPT2 is not set to a GPT-2 folder: nothing to sample from the real GPT-2 here")
print(f"lesson 06 ran in {time.perf_counter() - started:.0f} s")
checks.finish()

# %% [markdown]
# ## Try this
# - Sample at $T = 0.1$ and at $T = 3$ (add both to `decoders`). At 0.1 the text is
#   nearly greedy's loop (distinct 6-grams 48% against greedy's 43% after the full run);
#   at 3 the entropy per token comes close to a uniform guess's $\ln V = \ln 102 \approx
#   4.6$ nats (4.3 measured) and only about 5% of the words are real.
# - Print the size of the nucleus, `np.count_nonzero(top_p(p, 0.9))`, at every position of
#   the greedy sample. After the full run it is 1 or 2 inside a word the model has
#   recognised (after "Retur" only "n" is left) and about 20 after a space; top-k with
#   one fixed k cannot follow that. (At the quick budget the model is unsure everywhere:
#   5 or more at every position.)
# - Add a repetition penalty to greedy decoding: before the argmax, divide the positive
#   logits, and multiply the negative ones, of every character among the last 20 by 1.3.
#   The loop breaks: distinct 6-grams rise from 43% to about 80% after the full run, with
#   the text still mostly real words (9% to 60% at the quick budget).
# - Time the cached step with one sequence instead of eight (`TIMED_BATCH = 1`): the cached
#   line flattens (about 0.30 → 0.36 ms from context 16 to 1,023 in a run here), because
#   Python's fixed cost per step hides the cache reads; without the cache it is still
#   about 8 ms at 1,023.
# - Give `forward_one` a sliding window: attend only over the last 32 cached keys and
#   values. Its multiply-add count stops growing at 32 positions, and its logits part
#   from the full forward's from the 33rd position on.
# - Count what generating all 128 positions costs: `uncached_count.sum() /
#   cached_count.sum()` is about 66 (it grows linearly with the length generated, as the
#   per-token counts above say it must).
#
# Graded exercises for this chapter: `minillm exercise 6` (fill in `exercises/06_generation.py`;
# `--solution` shows ours).
