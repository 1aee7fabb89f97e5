# %% [markdown]
# # Lesson 08 — Deployment and optimisation: smaller, faster, and measured
#
# A trained model is deployed many times more often than it is trained, so the
# documents' deployment chapters list ways to shrink it (模型压缩):
#
# - **quantisation** (量化): weights and activations as 8-bit integers with a float scale,
#   $w \approx s \cdot q$, $q \in [-127, 127]$; the product runs in $\text{int8} \times \text{int8} \to \text{int32}$;
# - **pruning** (剪枝): zero the smallest weights (or whole heads and neurons), then
#   fine-tune with the zeros held;
# - **knowledge distillation** (知识蒸馏): a smaller student learns the teacher's
#   temperature-softened distribution, $L = \alpha T^2 \, \mathrm{KL}(p_t^T \,\Vert\, p_s^T) + (1 - \alpha)\, \mathrm{CE}$;
# - **low-rank factorisation** (低秩分解): $W \approx U_r S_r V_r^\top$, one layer becomes two thin ones;
# - **export** to ONNX, so another engine (onnxruntime) can serve it;
# - and at generation time, the **KV cache**: the keys and values of the prefix are kept,
#   so each new token runs only its own position through the network. Without the cache,
#   every step runs the whole prefix through every layer again, just to recompute those
#   keys and values. The new token's attention still reads every cached key and value:
#   what the cache saves is the recomputation, not the reading.
#
# This lesson trains a small GPT, then measures every technique against it: size on
# disk, tokens per second, validation perplexity.
#
# Run: `python lessons/08_deployment.py [--quick]` or `minillm lesson 8`.

# %%
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np

import minillm
from minillm import data, optim
from minillm.compress import compression_table
from minillm.compress.distill import distillation_loss
from minillm.compress.report import format_table
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.train import TrainConfig, Trainer, load

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUICK = quick_mode()
checks = Checks("lesson 08")
OUT = results_dir("08_deployment")
backend = "c" if minillm.backends.is_available("c") else "numpy"
out_dir = Path(tempfile.mkdtemp(prefix="minillm-lesson08-"))
config = TrainConfig(out_dir=str(out_dir), max_iters=150 if QUICK else 1200, batch_size=16, block_size=64,
                     n_layer=2, n_head=4, n_embd=128, eval_interval=10_000, eval_iters=4, progress=False,
                     backend=backend)
metrics = Trainer(config, log=lambda *a: None).run()
print(f"baseline GPT: {metrics['parameters']:,} parameters, val perplexity {metrics['val_perplexity']:.2f} "
      f"after {metrics['step']} steps on {backend}")

# %% [markdown]
# ## Each technique in a few lines, on the trained model
#
# The package's `minillm.compress` does the same at the scale of a whole model; here
# each idea is written out on one matrix: the first MLP layer's weight $W$ ($\text{out} \times \text{in}$).

# %%
model, tokenizer = load(out_dir)
W = model.blocks[0].mlp.fc.weight.numpy().astype(np.float64)

# int8, one scale per output channel (row): W ≈ s · q with q = round(W / s) ∈ [−127, 127]
s = np.abs(W).max(axis=1, keepdims=True) / 127
q = np.clip(np.rint(W / s), -127, 127).astype(np.int8)
per_channel = np.linalg.norm(q * s - W) / np.linalg.norm(W)
s_one = np.abs(W).max() / 127                               # one scale for the whole matrix, for contrast
per_tensor = np.linalg.norm(np.clip(np.rint(W / s_one), -127, 127) * s_one - W) / np.linalg.norm(W)
print(f"int8: relative error {per_channel:.2e} with a scale per row, {per_tensor:.2e} with one scale")
checks.claim(per_channel < 0.01 and per_channel <= per_tensor,
             f"per-channel int8 reproduces W to {per_channel:.1e} relative, no worse than one scale for all rows")

# low rank: keep the singular directions holding 90% of the energy Σσ²; by Eckart–Young the
# error of the best rank-r matrix is exactly the energy left out, √(1 − kept)
U, S, Vt = np.linalg.svd(W, full_matrices=False)
energy = np.cumsum(S ** 2) / np.sum(S ** 2)
r = int(np.searchsorted(energy, 0.9)) + 1
W_r = (U[:, :r] * S[:r]) @ Vt[:r]                           # = (U_r S_r) · V_rᵀ: two thin layers
error = np.linalg.norm(W_r - W) / np.linalg.norm(W)
print(f"low rank: r = {r} of {min(W.shape)} keeps {energy[r - 1]:.1%} of the energy; relative error {error:.3f}; "
      f"parameters {r * sum(W.shape):,} instead of {W.size:,}")
checks.claim(abs(error - np.sqrt(1 - energy[r - 1])) < 1e-9, "the rank-r error is exactly √(energy left out)")

# %% [markdown]
# **Pruning** keeps a mask: the smallest half of every weight matrix is zeroed, and after
# every optimizer step the zeros are put back (Adam would otherwise revive them).

# %%
train_ids = np.asarray(tokenizer.encode(data.corpus(config.data).train[:100_000]))
masks = {p: np.abs(p.numpy()) > np.quantile(np.abs(p.numpy()), 0.5) for p in model.parameters() if p.ndim == 2}
for p, keep in masks.items():
    p.data *= keep
opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
rng = np.random.default_rng(0)
pruned_losses = []
for step in range(10 if QUICK else 40):
    _, loss = model(*data.batches(train_ids, config.block_size, 16, rng))
    opt.zero_grad()
    loss.backward()
    opt.step()
    for p, keep in masks.items():
        p.data *= keep                                      # the mask holds through fine-tuning
    pruned_losses.append(loss.item())
zeros = sum(int((p.numpy() == 0).sum()) for p in masks) / sum(p.size for p in masks)
print(f"pruning: {zeros:.1%} of the matrices' weights are zero after {len(pruned_losses)} fine-tuning steps; "
      f"loss {pruned_losses[0]:.3f} → {pruned_losses[-1]:.3f}")
checks.claim(zeros >= 0.5, f"half the weights stay zero through fine-tuning ({zeros:.1%})")

# %% [markdown]
# **Distillation** trains a student on the teacher's softened distribution. The loss,
# written out: the KL divergence between the two softmaxes at temperature $T$, times $T^2$,
# mixed with the ordinary cross-entropy on the data.

# %%
teacher, _ = load(out_dir)
x, y = data.batches(train_ids, config.block_size, 4, np.random.default_rng(1))
with minillm.no_grad():
    z_t = teacher(x)[0].numpy().reshape(-1, tokenizer.vocab_size).astype(np.float64)
    z_s = model(x)[0].numpy().reshape(-1, tokenizer.vocab_size).astype(np.float64)   # the pruned model as student
T, alpha = 2.0, 0.5


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


kl = (np.exp(log_softmax(z_t / T)) * (log_softmax(z_t / T) - log_softmax(z_s / T))).sum(-1).mean()
ce = -log_softmax(z_s)[np.arange(len(z_s)), y.reshape(-1)].mean()
by_hand = alpha * T * T * kl + (1 - alpha) * ce
with minillm.no_grad():
    library = distillation_loss(minillm.tensor(z_s), minillm.tensor(z_t), y, T, alpha).item()
print(f"distillation loss: {by_hand:.6f} by hand, {library:.6f} from minillm.compress")
checks.claim(abs(by_hand - library) < 1e-6 * max(1.0, abs(by_hand)), "the written-out loss equals the library's")

# %% [markdown]
# ## The compression table
#
# Pruning and low rank are fine-tuned after compressing, and those steps alone would
# change the uncompressed model's perplexity too. So the table also gives the fp32 model
# the same fine-tune, on the same batches (its row says by how much that moves it), and
# measures pruning and low rank against that row (column "against"), so that neither is
# credited with what the extra training did. int8 and the distilled student are measured
# against the baseline as trained. Tokens/s is generation with the KV cache, one sequence, the best of three runs
# of 32 tokens.

# %%
FINE_TUNE = 30 if QUICK else 150
rows, goals = compression_table(out_dir, fine_tune_steps=FINE_TUNE, distill_steps=100 if QUICK else 600,
                                log=lambda *a: None)
print(format_table(rows, goals))
by_name = {r["technique"]: r for r in rows}
int8 = by_name["int8 weights + activations"]
checks.claim(int8["size_ratio"] >= 3.5, f"int8 storage is at least 3.5× smaller ({int8['size_ratio']:.2f}×)")
checks.claim(int8["perplexity_change"] <= 0.05, f"int8 keeps perplexity within 5% ({int8['perplexity_change']:+.1%})")
tuned = by_name[f"fp32 + {FINE_TUNE}-step fine-tune"]
pruned, low_rank = by_name["50% magnitude pruning"], by_name["low rank (90% energy)"]
print(f"the {FINE_TUNE}-step fine-tune alone moves the fp32 baseline's perplexity by {tuned['perplexity_change']:+.1%}")
checks.claim(pruned["against"] == low_rank["against"] == tuned["technique"],
             "pruning and low rank are measured against the baseline given the same fine-tune")
checks.claim(pruned["perplexity_change"] <= 0.25, "with half the weights zeroed, perplexity stays within 25% of "
             f"the baseline fine-tuned alike ({pruned['perplexity_change']:+.1%})")

# %% [markdown]
# The frontier: each technique's size against its quality (left; several sit on top of each
# other at the fp32 size, since pruning's zeros are still stored), and its generation speed
# (right).

# %%
fig, (ax, speed_ax) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1]})
markers = "osD^vP*X"
for r, marker in zip(rows, markers):
    ax.scatter(r["size_bytes"] / 1e6, r["val_perplexity"], s=70, alpha=0.7, marker=marker, label=r["technique"])
ax.set(xlabel="size on disk (MB)", ylabel="validation perplexity", title="size against quality")
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
names = [r["technique"] for r in rows]
speed_ax.barh(names, [r["tokens_per_s"] for r in rows], color="#3b75af")
speed_ax.invert_yaxis()
speed_ax.tick_params(axis="y", labelsize=8)
speed_ax.set(xlabel="tokens/s (generation, KV cache, best of 3)", title="speed")
checks.timing(low_rank["tokens_per_s"] < by_name["fp32 baseline"]["tokens_per_s"],
              "low rank is smaller but not faster here: each factored layer becomes two calls, and at one token "
              "a step a call's fixed cost, not its arithmetic, is what the small products pay (the int8 section "
              "below measures that cost)")
save_figure(fig, OUT / "frontier.png")

# %% [markdown]
# ## Why int8 weights and activations are smaller but not faster here
#
# Eight bits buy speed where arithmetic or memory traffic is what limits, and a kernel
# turns them into less of it. Neither limits here: this model's weights (1.7 MB in fp32)
# stay in the caches, and one token's products are small, so the time goes to the fixed
# cost of each call, and int8 makes more calls. Per generated token, each quantised layer
# (`QuantizedLinear.forward` in `minillm/compress/quantize.py`):
#
# 1. quantises its input in NumPy, finding the scale anew on every call (dynamic
#    quantisation): $\max \lvert x\rvert$, divide, round, clip, cast — a pass and a temporary array each;
# 2. calls `matmul_int8` (`kernels/c/matmul_int8.c`): one dot product per output, with each
#    int8 widened to 16 and then 32 bits (no VNNI `vpdpbusd`, which multiplies and adds four
#    int8 pairs at once, and no register tile), in an OpenMP region opened even for one row;
# 3. turns the int32 sums back into float32, multiplies by both scales and adds the bias:
#    four more NumPy passes.
#
# The fp32 layer is one C call. At one row (generating one token) the arithmetic is
# $128 \times 512$ multiply-adds either way, so the NumPy passes around the int8 product cost
# about as much as the whole fp32 layer. For many rows at once (a prompt, or the
# perplexity evaluation) the int8 kernel's dot products also lose to the fp32 GEMM's
# register-tiled micro-kernel (lesson 02). Attention, layer norm and the softmax stay
# float32 in both models. One layer, timed each way:

# %%
from minillm import backends  # noqa: E402
from minillm.compress.quantize import QuantizedLinear, quantize_symmetric  # noqa: E402

fp32_model, _ = load(out_dir)
fc = fp32_model.blocks[0].mlp.fc
int8_fc = QuantizedLinear(fc)


def best_us(fn, calls=20):
    """Best of seven batches of ``calls``, in µs a call (short batches: on a shared machine
    a long one is rarely left alone)."""
    fn()
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return min(runs)


primitives = backends.current()
one = np.random.default_rng(2).standard_normal((1, fc.in_features)).astype(np.float32)
many = np.random.default_rng(3).standard_normal((16 * config.block_size, fc.in_features)).astype(np.float32)
q_one, s_one = quantize_symmetric(one, axis=1)
acc_one = primitives.matmul_int8(q_one, int8_fc.qweight)
with minillm.no_grad():
    cost = {"fp32 layer": best_us(lambda: fc(minillm.tensor(one))),
            "int8 layer": best_us(lambda: int8_fc(minillm.tensor(one))),
            "  1. quantise x (NumPy)": best_us(lambda: quantize_symmetric(one, axis=1)),
            "  2. matmul_int8 (C)": best_us(lambda: primitives.matmul_int8(q_one, int8_fc.qweight)),
            "  3. dequantise + bias (NumPy)": best_us(lambda: acc_one.astype(np.float32) * s_one[:, None]
                                                      * int8_fc.scale[None, :] + int8_fc.bias)}
q_many, _ = quantize_symmetric(many, axis=1)
gemm = {"fp32": best_us(lambda: primitives.linear_forward(many, fc.weight.data, fc.bias.data), 3),
        "int8": best_us(lambda: primitives.matmul_int8(q_many, int8_fc.qweight), 3)}
print(f"one row through the first MLP layer ({fc.in_features} → {fc.out_features}), µs a call:")
for name, us in cost.items():
    print(f"  {name:32s} {us:7.1f}")
cpu_flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
print(f"{len(many)} rows: fp32 GEMM {gemm['fp32']:.0f} µs, int8 kernel alone {gemm['int8']:.0f} µs "
      f"(this CPU {'has' if ' avx512_vnni' in cpu_flags else 'does not report'} AVX512-VNNI, which the kernel "
      f"does not use)")
numpy_passes = cost["  1. quantise x (NumPy)"] + cost["  3. dequantise + bias (NumPy)"]
checks.timing(numpy_passes > 0.5 * cost["fp32 layer"], f"the NumPy passes around the int8 product take more than half "
              f"the fp32 layer's time ({numpy_passes:.1f} vs {cost['fp32 layer']:.1f} µs)")
checks.timing(cost["int8 layer"] > cost["fp32 layer"], "at one row the int8 layer costs more than the fp32 one")
checks.timing(int8["tokens_per_s"] < by_name["fp32 baseline"]["tokens_per_s"],
              f"the int8 model generates fewer tokens/s than fp32 ({int8['tokens_per_s']:.0f} vs "
              f"{by_name['fp32 baseline']['tokens_per_s']:.0f})")

# %% [markdown]
# ## int8 weights alone: one call a layer, and VNNI
#
# The table's "int8 weights" row keeps the activations in float32 and stores only the
# weights as int8, one scale per output row (`Int8WeightLinear`, `minillm.compress.quantize_weights`).
# A layer is then one C call, `linear_int8` (`kernels/c/linear_int8.c`), with no NumPy pass
# around it: inside the kernel each input row is split into two int8 "digits" (about 16 bits
# of precision between them), and AVX-512 VNNI's `vpdpbusd` multiplies four int8 pairs and
# adds them into a 32-bit sum per instruction. The weights are read once, a quarter of the
# fp32 bytes. The same layer as above, one row:

# %%
from minillm.compress.quantize import Int8WeightLinear  # noqa: E402

weights_only = Int8WeightLinear(fc)
with minillm.no_grad():
    exact = fc(minillm.tensor(one)).numpy()
    approx = weights_only(minillm.tensor(one)).numpy()
    cost["int8-weight layer"] = best_us(lambda: weights_only(minillm.tensor(one)))
error = np.linalg.norm(approx - exact) / np.linalg.norm(exact)
print(f"one row, µs a call: fp32 layer {cost['fp32 layer']:.1f}, int8 weights + activations "
      f"{cost['int8 layer']:.1f}, int8 weights {cost['int8-weight layer']:.1f}; the int8-weight layer's output "
      f"is {error:.1e} from fp32's, relative")
checks.claim(error < 1e-2, f"int8 weights reproduce the fp32 layer's output to 1% ({error:.1e})")
weights_row = by_name["int8 weights"]
checks.timing(weights_row["tokens_per_s"] > by_name["fp32 baseline"]["tokens_per_s"],
              f"the int8-weight model generates more tokens/s than fp32 ({weights_row['tokens_per_s']:.0f} vs "
              f"{by_name['fp32 baseline']['tokens_per_s']:.0f})")

# %% [markdown]
# This model's 1.7 MB of weights sit in the caches, so reading a quarter of the bytes buys
# little. The gain is where the weights do not fit: decoding GPT-2 124M reads 495 MB of fp32
# weights a token, 125 MB in int8. `python -m benchmarks.decode_bandwidth` measures both
# against the machine's read bandwidth (`benchmarks/RESULTS.md` has its numbers: int8 about
# three times fp32's tokens per second).
#
# ## The KV cache
# Without the cache, each new token runs every position of the context so far through
# every layer again; with it, only the new position goes through, and its attention reads
# the keys and values of all the earlier positions from the cache. Both attend to the
# whole context; only one recomputes it.

# %%
model, tokenizer = load(out_dir)
prompt = np.asarray([tokenizer.encode("Return the ")])
timings = {}
for use_cache in (True, False):
    model.generate(prompt, 2, use_cache=use_cache)
    runs = []
    for _ in range(3):  # best of three: a timing on two shared cores has outliers
        start = time.perf_counter()
        model.generate(prompt, 48, use_cache=use_cache)
        runs.append((time.perf_counter() - start) / 48 * 1e3)
    timings[use_cache] = min(runs)
print(f"generation: {timings[True]:.2f} ms/token with the KV cache, {timings[False]:.2f} without")
checks.timing(timings[True] < timings[False], "the KV cache makes each new token cheaper")

# %% [markdown]
# ## Export to ONNX

# %%
try:
    import onnxruntime as ort

    from minillm.export import export_onnx
    path = export_onnx(model, out_dir / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    idx = np.asarray([tokenizer.encode("def forward(self, x):")])
    ours, theirs = model(idx)[0].numpy(), session.run(["logits"], {"idx": idx})[0]
    error = np.linalg.norm(ours - theirs) / np.linalg.norm(ours)
    print(f"ONNX: {path.stat().st_size / 1e6:.2f} MB, onnxruntime logits match minillm's to {error:.1e}")
    checks.claim(error < 1e-4, "onnxruntime computes the same logits")
except ImportError:
    print("onnx/onnxruntime are not installed (pip install 'minillm[export]'): export skipped")
checks.finish()

# %% [markdown]
# ## Try this
# - Quantise only the attention projections and compare perplexity with quantising everything
#   (set each block's `attn.c_attn` and `attn.c_proj` to `QuantizedLinear` of itself) — expect
#   no difference you can measure: int8 attention alone, int8 MLPs alone and `quantize_model`'s
#   everything all stay within 0.05% of fp32 (full run: 6.616 against 6.616, 6.616 and 6.619;
#   with `--quick` all 14.497 ± 0.001). A per-channel int8 error of about 0.6% per weight is
#   far below what this model notices.
# - Prune 80% and fine-tune longer: where does perplexity break? — expect the break between
#   80% and 90%. On the full run's model, against the fp32 model fine-tuned alike: after 150
#   fine-tuning steps 70% costs +0.2%, 80% +10%, 90% +55%; after 600 steps 80% costs +2% and
#   90% still +20% (95%: +52%). With `--quick`, 30 → 150 steps take 80% from +7% to +2% and
#   90% from +30% to +8%.
# - Distil with temperature 1 and 4 (`distill(..., temperature=)`) — expect $T = 1$ to distil
#   best here: the half-depth student ends 18.5% above the teacher's perplexity after the full
#   run's 600 steps (4.8% with `--quick`), against +57% at the default $T = 2$ and +59% at
#   $T = 4$. A student trained on the data alone (`alpha=0`) lands between: +31% (quick +11%).
#
# Graded exercises for this chapter: `minillm exercise 8` (fill in `exercises/08_deployment.py`;
# `--solution` shows ours).
