# %% [markdown]
# # Lesson 04 — The Transformer's parts
#
# **Attention** (注意力): each position asks a question (query q), every position offers
# a key k and a value v, and the answer is the values weighted by how well the keys
# match:
#
#     Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V
#
# The 1/√d_k keeps the scores' spread independent of the head size; without it softmax
# saturates as d_k grows (document 004's pseudo-code leaves it out, and its shapes do not
# line up: we implement the scaled version). **Multi-head** attention (多头注意力) splits
# the width into h heads of size d_k = d/h that attend independently, then merges them.
# **Residual connections and layer normalisation** (残差连接, 层归一化) make a deep stack
# trainable: each sublayer adds a correction to its input, LN(x) = (x − μ)/σ · γ + β.
#
# Then three shapes of model: encoder-only (BERT: every token sees every token),
# decoder-only (GPT: a token sees only the past) and encoder–decoder (T5: a decoder
# that also attends to the encoded source).
#
# Run: `python lessons/04_architecture.py [--quick]` or `minillm lesson 4`.

# %%
import numpy as np

import minillm
from minillm import data, optim, tokenizers
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.models import (GPT, BertConfig, BertEncoder, EncoderDecoder, EncoderDecoderConfig, GPTConfig,
                            Seed001LM, teacher_forcing_batch)
from minillm.train import perplexity_of

QUICK = quick_mode()
checks = Checks("lesson 04")
minillm.set_backend("c" if minillm.backends.is_available("c") else "numpy")


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
# ## Seeing attention: a model that learns to copy
# Sequences `x₁ … x₈ | x₁ … x₈`: after the separator every token repeats the one nine
# places back. A one-layer GPT must learn to look exactly there, and the picture of
# its attention weights shows it.

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
rows = np.arange(L + 1, 2 * L)                            # queries that predict a copied token
target_column = rows - L                                  # the token to copy sits here
best_head = max(range(weights.shape[0]), key=lambda h: weights[h, rows, target_column].mean())
focus = weights[best_head, rows, target_column].mean()
print(f"copy accuracy {copy_accuracy:.1%}; head {best_head} puts {focus:.0%} of its attention on the source token")

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, weights.shape[0], figsize=(4 * weights.shape[0], 4))
for h, ax in enumerate(np.atleast_1d(axes)):
    ax.imshow(weights[h], cmap="viridis")
    ax.set(title=f"head {h}", xlabel="key position", ylabel="query position")
fig.suptitle("attention weights of the copying model (averaged over 64 sequences)")
save_figure(fig, results_dir("04") / "attention_copy.png", dpi=90)
checks.claim(copy_accuracy > 0.9, f"the model learned to copy ({copy_accuracy:.1%} of copied tokens right)")
checks.claim(focus > 0.5, f"one head attends to the token it copies ({focus:.0%} of its weight)")

# %% [markdown]
# ## Multi-head: the same parameters, split into heads

# %%
one = minillm.nn.MultiHeadAttention(64, 1)
four = minillm.nn.MultiHeadAttention(64, 4)
print(f"parameters: 1 head {one.num_parameters():,}, 4 heads {four.num_parameters():,}; "
      f"4 heads of size {64 // 4} each see a different projection")
checks.claim(one.num_parameters() == four.num_parameters(), "splitting into heads costs no parameters")

# %% [markdown]
# ## Residual connections and layer norm, on and off
# Six blocks trained on the docstring corpus for the same number of steps: with the
# residual path, and without it (each block's output replaces its input).

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
# The single-layer formula (E = W_e·X, one causal attention, F = σ(W_f·(O + E)),
# Y = W_o·F + b) against a two-block GPT, same data and steps.

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
print(f"encoder–decoder (T5-style): reverses unseen sequences, {exact:.0%} exactly")
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
#    proportional to its position, so q·k sees only the distance between two tokens.
# 3. **SwiGLU** for the GELU MLP: down(silu(gate(x)) ⊙ up(x)), at ⅔ the width so the
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
                    "curve": curve}
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

fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4))
for name, r in stages.items():
    curves.plot(np.convolve(r["curve"], np.ones(10) / 10, mode="valid"), label=name)
curves.set(xlabel="step", ylabel="training loss (10-step mean)", title="GPT → Llama, one change at a time")
curves.legend(fontsize=8)
names = list(stages)
bars.barh(names, [stages[n]["kv"] for n in names], color="#3b75af")
for i, n in enumerate(names):
    bars.text(stages[n]["kv"], i, f"  val {stages[n]['val_loss']:.2f}", va="center", fontsize=8)
bars.set(xlabel="KV cache, bytes per token (2 layers, float32)", title="what generation keeps per token")
bars.invert_yaxis()
save_figure(fig, results_dir("04") / "gpt_to_llama.png")
checks.finish()

# %% [markdown]
# ## Try this
# - Remove the 1/√d_k scale (`scale=1.0` in `scaled_dot_product_attention`) with wide heads.
# - Switch the blocks to post-LN (`TransformerBlock(pre_norm=False)`), as the 2017 paper had it.
# - Give the copy task a longer sequence and one head only.
# - Train the GPT → Llama stages for longer (`STEPS`) and with more seeds: which changes
#   survive the noise? Try `kv_heads=2` between MHA and GQA.
