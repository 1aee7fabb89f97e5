# %% [markdown]
# # Lesson 01 — Language models: from counting to neural networks
#
# A language model (语言模型) gives a probability to the next token given the ones
# before it. We measure every model the same way: **perplexity** (困惑度), the
# exponential of the mean cross-entropy on held-out text,
#
#     PPL = exp( −(1/n) Σ log p(x_i | x_<i) ),
#
# which reads as "the model is as unsure as a uniform choice among PPL tokens".
#
# The documents trace a history: statistical n-gram models (统计语言模型) that count how
# often a token follows the previous n−1; the neural language model that maps a fixed
# window of previous tokens to a distribution through learned embeddings; recurrent
# networks (RNN, LSTM) that carry a state along the whole sequence; and the Transformer,
# whose attention looks back at every previous token directly. Here all of them learn
# from the same text — Python's own docstrings, character by character — under the same
# budget, and we compare their perplexity on the same validation split.
#
# Run: `python lessons/01_language_models.py [--quick]` or `minillm lesson 1`.

# %%
import math
import time

import numpy as np

import minillm
from minillm import data, optim, tokenizers
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.models import GPT, GPTConfig, LSTMLM, MLPLM, NGramLM
from minillm.train import perplexity_of

QUICK = quick_mode()
STEPS = 150 if QUICK else 1500
TRAIN_CHARS = 60_000 if QUICK else 300_000
checks = Checks("lesson 01")
minillm.set_backend("c" if minillm.backends.is_available("c") else "numpy")

corpus = data.corpus("python-docs")
tokenizer = tokenizers.CharTokenizer.train(corpus.text)
train_ids = np.asarray(tokenizer.encode(corpus.train[:TRAIN_CHARS]))
val_ids = np.asarray(tokenizer.encode(corpus.val[:20_000]))
vocab = tokenizer.vocab_size
print(f"{len(train_ids):,} training characters, {len(val_ids):,} validation, vocabulary {vocab}")

# %% [markdown]
# ## Counting: n-gram models
# P(x | previous n−1 characters) is a ratio of counts, mixed with shorter contexts so
# that an unseen combination does not get probability zero (smoothing, 平滑).

# %%
results = {}
for n in (1, 3, 5):
    model = NGramLM(n, vocab).fit(train_ids)
    loss = model.cross_entropy(val_ids[:5000])
    results[f"{n}-gram"] = math.exp(loss)
    print(f"{n}-gram: validation perplexity {results[f'{n}-gram']:.2f}")

# %% [markdown]
# ## Learning: neural language models
# The same optimizer (AdamW), steps, batch and context for each; only the architecture
# changes.

# %%
BLOCK, BATCH = 64, 16


curves = {}


def train_neural(name, model):
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    curves[name] = []
    for _ in range(STEPS):
        _, loss = model(*data.batches(train_ids, BLOCK, BATCH, rng))
        opt.zero_grad()
        loss.backward()
        minillm.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curves[name].append(loss.item())
    _, ppl = perplexity_of(model, tokenizer, corpus.val[:20_000], BLOCK, batches=8)
    results[name] = ppl
    print(f"{name}: validation perplexity {ppl:.2f} ({model.num_parameters():,} parameters, "
          f"{time.perf_counter() - start:.0f} s)")


minillm.manual_seed(0)
train_neural("MLP (window 8)", MLPLM(vocab, context=8, n_embd=32, hidden=256, block_size=BLOCK))
train_neural("LSTM", LSTMLM(vocab, n_embd=64, hidden=128, block_size=BLOCK))
train_neural("GPT", GPT(GPTConfig(vocab, BLOCK, 2, 4, 128)))

# %% [markdown]
# ## What the numbers say

# %%
print("\nvalidation perplexity (lower is better):")
for name, ppl in sorted(results.items(), key=lambda kv: kv[1]):
    print(f"  {name:16s} {ppl:8.2f}")
best_neural = min(results[k] for k in ("MLP (window 8)", "LSTM", "GPT"))

# %% [markdown]
# The same numbers as a picture: each model's validation perplexity (log scale), and the
# neural models' training loss as perplexity, exp(loss), step by step.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
ordered = sorted(results.items(), key=lambda kv: -kv[1])
left.barh([name for name, _ in ordered], [ppl for _, ppl in ordered],
          color=["#c9a66b" if "gram" in name else "#3b75af" for name, _ in ordered])
left.axvline(vocab, color="0.5", ls="--", label=f"uniform guess ({vocab})")
left.set(xscale="log", xlabel="validation perplexity (log scale; lower is better)", title="counted vs learned")
left.legend()
window = max(1, STEPS // 50)
for name, curve in curves.items():
    smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
    right.plot(np.exp(smooth), label=name)
right.set(yscale="log", xlabel="step", ylabel="training perplexity exp(loss)", title="the neural models learning")
right.legend()
save_figure(fig, results_dir("01") / "perplexity.png")
checks.claim(results["3-gram"] < results["1-gram"], "a longer counted context beats single-character frequencies "
             f"({results['3-gram']:.2f} < {results['1-gram']:.2f})")
checks.claim(all(results[k] < results["1-gram"] for k in ("MLP (window 8)", "LSTM", "GPT")),
             "every neural model beats the unigram baseline")
checks.claim(all(v < vocab for v in results.values()), f"every model is better than a uniform guess among {vocab}")
if not QUICK:
    checks.claim(best_neural < results["5-gram"], "with a full budget the best neural model beats the 5-gram "
                 f"({best_neural:.2f} < {results['5-gram']:.2f})")
checks.finish()

# %% [markdown]
# ## Try this
# - Give the GPT more steps (`STEPS`) and watch its perplexity fall below the n-grams'.
# - Increase the n-gram order to 8: the counts get sparse and perplexity stops improving.
# - Swap the LSTM for the documents' literal variant: `LSTMLM(..., variant="document")`.
# - Run with `MINILLM_BACKEND=numba` and compare the times.
