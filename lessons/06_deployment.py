# %% [markdown]
# # Lesson 06 — Deployment and optimisation: smaller, faster, and measured
#
# A trained model is deployed many times more often than it is trained, so the
# documents' deployment chapters list ways to shrink it (模型压缩):
#
# - **quantisation** (量化): weights and activations as 8-bit integers with a float scale,
#   w ≈ s·q, q ∈ [−127, 127]; the product runs in int8 × int8 → int32;
# - **pruning** (剪枝): zero the smallest weights (or whole heads and neurons), then
#   fine-tune with the zeros held;
# - **knowledge distillation** (知识蒸馏): a smaller student learns the teacher's
#   temperature-softened distribution, L = α T² KL(p_t^T ‖ p_s^T) + (1 − α) CE;
# - **low-rank factorisation** (低秩分解): W ≈ U_r S_r V_rᵀ, one layer becomes two thin ones;
# - **export** to ONNX, so another engine (onnxruntime) can serve it;
# - and at generation time, the **KV cache**: keys and values of the prefix are kept,
#   so each new token costs one query instead of re-reading the whole context.
#
# This lesson trains a small GPT, then measures every technique against it: size on
# disk, tokens per second, validation perplexity.
#
# Run: `python lessons/06_deployment.py [--quick]` or `minillm lesson 6`.

# %%
import tempfile
import time
from pathlib import Path

import numpy as np

import minillm
from minillm.compress import compression_table
from minillm.compress.report import format_table
from minillm.lessons import Checks, quick_mode
from minillm.train import TrainConfig, Trainer, load

QUICK = quick_mode()
checks = Checks("lesson 06")
backend = "c" if minillm.backends.is_available("c") else "numpy"
out_dir = Path(tempfile.mkdtemp(prefix="minillm-lesson06-"))
config = TrainConfig(out_dir=str(out_dir), max_iters=150 if QUICK else 1200, batch_size=16, block_size=64,
                     n_layer=2, n_head=4, n_embd=128, eval_interval=10_000, eval_iters=4, progress=False,
                     backend=backend)
metrics = Trainer(config, log=lambda *a: None).run()
print(f"baseline GPT: {metrics['parameters']:,} parameters, val perplexity {metrics['val_perplexity']:.2f} "
      f"after {metrics['step']} steps on {backend}")

# %% [markdown]
# ## The compression table

# %%
rows, goals = compression_table(out_dir, fine_tune_steps=30 if QUICK else 150, distill_steps=100 if QUICK else 600,
                                log=lambda *a: None)
print(format_table(rows, goals))
by_name = {r["technique"]: r for r in rows}
int8 = by_name["int8 weights + activations"]
checks.claim(int8["size_ratio"] >= 3.5, f"int8 storage is at least 3.5× smaller ({int8['size_ratio']:.2f}×)")
checks.claim(int8["perplexity_change"] <= 0.05, f"int8 keeps perplexity within 5% ({int8['perplexity_change']:+.1%})")
pruned = by_name["50% magnitude pruning"]
checks.claim(pruned["perplexity_change"] <= 0.25, "half the weights can go with a modest loss after fine-tuning "
             f"({pruned['perplexity_change']:+.1%})")

# %% [markdown]
# ## The KV cache

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
# - Quantise only the attention projections and compare perplexity with quantising everything.
# - Prune 80% and fine-tune longer: where does perplexity break?
# - Distil with temperature 1 and 4 (`distill(..., temperature=)`).
