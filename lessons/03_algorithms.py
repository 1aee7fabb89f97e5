# %% [markdown]
# # Lesson 03 — The algorithms: recurrent networks, gradient descent, clipping, mixed precision
#
# **Gradient descent** (梯度下降) moves the parameters against the gradient of the loss:
#
#     θ ← θ − α ∇θ J(θ)
#
# **Gradient clipping** (梯度裁剪) keeps the global norm of the gradient at most C:
# when ‖g‖₂ > C every gradient is scaled by C/‖g‖₂, so the direction is kept.
#
# **The LSTM**, exactly as document 000 §3.1.3 writes it (门控机制):
#
#     i_t = σ(W_ix x_t + W_ih h_{t-1} + b_i)      f_t = σ(W_fx x_t + W_fh h_{t-1} + b_f)
#     o_t = σ(W_ox x_t + W_oh h_{t-1} + b_o)      h_t = tanh(W_ih h_{t-1} + W_hx x_t + b_h)
#     c_t = f_t ⊙ c_{t-1} + i_t ⊙ h_t             o_t = σ(W_oh c_t + b_o)
#
# Read literally, W_ih is shared by the input gate and the candidate, the first o_t is
# computed and then shadowed (it feeds nothing), and h_t is the un-gated candidate.
# `nn.LSTM(variant="document")` runs exactly that; `variant="standard"` is the usual
# LSTM. We put both, a GRU and a plain RNN on the same memory task.
#
# **Mixed precision** (混合精度): float16 arithmetic, float32 master weights, and a
# loss scale so small gradients survive float16. The document's step list says to
# update the weights in 16-bit too; we measure what that would lose.
#
# Run: `python lessons/03_algorithms.py [--quick]` or `minillm lesson 3`.

# %%
import math

import numpy as np

import minillm
from minillm import amp, nn, optim
from minillm.experiments import exploding_gradients, memory_task
from minillm.lessons import Checks, quick_mode

QUICK = quick_mode()
checks = Checks("lesson 03")

# %% [markdown]
# ## Gradient descent is the formula

# %%
p = nn.Parameter(np.array([1.0, -2.0]))
p.grad = minillm.tensor(np.array([0.5, 0.25]))
optim.GD([p], lr=0.1).step()
print(f"θ = [1, -2], ∇J = [0.5, 0.25], α = 0.1  →  θ = {p.numpy()}")
checks.claim(np.allclose(p.numpy(), [0.95, -2.025]), "one GD step equals θ − α∇J computed by hand")

# %% [markdown]
# ## Exploding gradients, and clipping
# A tanh RNN whose recurrent matrix has spectral radius 1.8, over 60 steps, trained by
# plain gradient descent: once without clipping, once with ‖g‖ ≤ 1.

# %%
runs = exploding_gradients(steps=30 if QUICK else 60)
unclipped, clipped = runs["unclipped"], runs["clipped"]
print("gradient norm per step (unclipped):", " ".join(f"{g:.2g}" for g in unclipped["grad_norm"][:12]), "…")
checks.claim(max(unclipped["grad_norm"]) > 1e3,
             f"without clipping the gradient norm explodes (max {max(unclipped['grad_norm']):.2g})")
checks.claim(not math.isfinite(unclipped["loss"][-1]) or unclipped["loss"][-1] > 10 * unclipped["loss"][0],
             "and the loss diverges")
checks.claim(all(math.isfinite(v) for v in clipped["loss"]) and min(clipped["loss"]) < clipped["loss"][0],
             f"with clipping the loss stays finite and improves (best {min(clipped['loss']):.3f} "
             f"from {clipped['loss'][0]:.3f})")

# %% [markdown]
# ## Which recurrent network remembers?
# The adding problem: two numbers marked somewhere in a sequence of 30 must be added at
# the end. Predicting the mean scores the baseline MSE (≈ 1/6); a network that
# remembers scores far below it.

# %%
results = memory_task(steps=150 if QUICK else 500)
checks.claim(results["rnn"]["ratio"] > 0.5, "the plain RNN stays near the baseline: it does not carry the numbers")
gated = min(results[k]["ratio"] for k in ("standard", "gru"))
checks.claim(gated < 0.5, f"a gated network (standard LSTM or GRU) gets below half the baseline ({gated:.0%})")
if not QUICK:
    checks.claim(results["document"]["ratio"] < 0.5,
                 f"the document's literal LSTM learns the task too ({results['document']['ratio']:.0%} of baseline)")

# %% [markdown]
# ## Mixed precision, and what 16-bit updates lose

# %%
rng = np.random.default_rng(0)
weights = rng.uniform(0.5, 2.0, 10000)
updates = 10.0 ** rng.uniform(-6, -2, 10000)  # lr × gradient, as in a typical step
lost16, lost32 = amp.lost_updates(weights, updates)
print(f"updates that vanish: {lost16:.1%} with float16 weights, {lost32:.1%} with float32 master weights "
      f"(float16 spacing near 1 is {2 * amp.half_spacing(1.0):.1e})")
checks.claim(lost16 > 0.5 and lost32 == 0.0, "updating in 16-bit loses most small updates; float32 masters keep them")

scaler = amp.GradScaler(init_scale=2.0 ** 10)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
opt = optim.Adam(model.parameters(), lr=0.01)
x = minillm.tensor(rng.standard_normal((64, 4)).astype(np.float32))
y = x.numpy()[:, :1] * 2
first = None
for _ in range(100):
    with amp.autocast():
        loss = minillm.functional.mse_loss(model(x), y)
    first = first if first is not None else loss.item()
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
print(f"autocast + GradScaler: loss {first:.3f} → {loss.item():.4f}; weights stay {model[0].weight.dtype}")
checks.claim(loss.item() < 0.2 * first, "a model trained with float16 matmuls and loss scaling learns")
checks.finish()

# %% [markdown]
# ## Try this
# - Turn clipping off in the memory task (`experiments.memory_task` clips at 1.0).
# - Swap the document LSTM for the standard one in lesson 01's language model.
# - Raise `spectral_radius` to 3 and lower the clipping threshold: how small can C go?
