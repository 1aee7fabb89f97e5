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

import matplotlib
import numpy as np

import minillm
from minillm import amp, nn, optim
from minillm import functional as F
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.nn.utils import clip_grad_norm_

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUICK = quick_mode()
checks = Checks("lesson 03")
OUT = results_dir("03_algorithms")

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
# plain gradient descent to output the (scaled) sum of its inputs: once without
# clipping, once with ‖g‖ ≤ 1. Backpropagation through time multiplies by the recurrent
# matrix once per step, so with a spectral radius above 1 the gradient can grow like 1.8⁶⁰.
#
# The model is a recurrent layer and a linear read-out of its last output.


# %%
class SequenceRegressor(nn.Module):
    def __init__(self, recurrent, hidden):
        super().__init__()
        self.recurrent, self.head = recurrent, nn.Linear(hidden, 1)

    def forward(self, x):                      # x (T, B, features)
        out, _ = self.recurrent(x)
        return self.head(out[-1])              # predict from the last step only


def exploding_gradients(length=60, hidden=32, steps=60, lr=0.1, max_norm=1.0, spectral_radius=1.8, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((length, 32, 1)) * 0.5).astype(np.float32)
    y = x.sum(0) / math.sqrt(length)
    runs = {}
    for label, clip in (("unclipped", math.inf), ("clipped", max_norm)):
        minillm.manual_seed(seed)
        model = SequenceRegressor(nn.RNN(1, hidden), hidden)
        w = np.random.default_rng(seed).standard_normal((hidden, hidden))
        w *= spectral_radius / np.abs(np.linalg.eigvals(w)).max()   # rescale to the chosen spectral radius
        model.recurrent.weight_hh_l0.data = w.astype(np.float32)
        opt = optim.GD(model.parameters(), lr=lr)
        norms, losses = [], []
        with np.errstate(over="ignore", invalid="ignore"):           # the unclipped run is meant to blow up
            for _ in range(steps):
                loss = F.mse_loss(model(minillm.tensor(x)), y)
                opt.zero_grad()
                loss.backward()
                # the global norm before clipping; with max_norm = inf this only measures it
                norms.append(clip_grad_norm_(model.parameters(), clip).item())
                losses.append(loss.item())
                opt.step()
        runs[label] = {"grad_norm": norms, "loss": losses}
        finite = [v for v in losses if math.isfinite(v)]
        print(f"{label:9s}: max gradient norm {max(norms):.3g}, loss {losses[0]:.3f} → {losses[-1]:.3g} "
              f"(best {min(finite):.3f})")
    return runs


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
# The adding problem: each input step carries a value in [0, 1) and a marker; exactly two
# steps are marked, one in each half, and the network must output the sum of the two
# marked values at the end. Predicting the mean scores the baseline MSE (≈ 1/6); a
# network that carries the numbers across the sequence scores far below it.


# %%
def adding_problem(batch, length, rng):
    values = rng.random((length, batch))
    markers = np.zeros((length, batch))
    markers[rng.integers(0, length // 2, batch), np.arange(batch)] = 1        # one in the first half
    markers[rng.integers(length // 2, length, batch), np.arange(batch)] = 1   # one in the second
    x = np.stack([values, markers], axis=-1).astype(np.float32)                # (T, B, 2)
    y = (values * markers).sum(0, keepdims=True).T.astype(np.float32)          # (B, 1)
    return x, y


x, y = adding_problem(5, 10, np.random.default_rng(0))
checks.claim((x[:, :, 1].sum(0) == 2).all() and np.allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(0)),
             "every sequence has exactly two markers and its target is the sum of the marked values")


def make_recurrent(kind, hidden):
    if kind in ("document", "standard"):
        return nn.LSTM(2, hidden, variant=kind)
    return {"gru": nn.GRU, "rnn": nn.RNN}[kind](2, hidden)


def memory_task(kinds=("document", "standard", "gru", "rnn"), length=30, hidden=24, steps=500, batch=64, lr=0.01):
    """Each kind on the same data, optimizer (Adam, clipping at 1) and budget."""
    results = {}
    val_x, val_y = adding_problem(512, length, np.random.default_rng(1))
    baseline = float(((val_y - 1.0) ** 2).mean())        # always answering the mean, 1
    for kind in kinds:
        minillm.manual_seed(0)
        rng = np.random.default_rng(0)                     # the same batches for every kind
        model = SequenceRegressor(make_recurrent(kind, hidden), hidden)
        opt = optim.Adam(model.parameters(), lr=lr)
        curve = []
        for step in range(steps):
            bx, by = adding_problem(batch, length, rng)
            loss = F.mse_loss(model(minillm.tensor(bx)), by)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            curve.append(loss.item())
        with minillm.no_grad():
            mse = F.mse_loss(model(minillm.tensor(val_x)), val_y).item()
        results[kind] = {"mse": mse, "ratio": mse / baseline, "curve": curve, "baseline": baseline}
        print(f"adding problem T={length}: {kind:8s} val MSE {mse:.4f} ({mse / baseline:.0%} of the "
              f"predict-the-mean baseline {baseline:.4f}), {model.num_parameters()} parameters")
    return results


results = memory_task(steps=150 if QUICK else 500)
checks.claim(results["rnn"]["ratio"] > 0.5, "the plain RNN stays near the baseline: it does not carry the numbers")
gated = min(results[k]["ratio"] for k in ("standard", "gru"))
checks.claim(gated < 0.5, f"a gated network (standard LSTM or GRU) gets below half the baseline ({gated:.0%})")
if not QUICK:
    checks.claim(results["document"]["ratio"] < 0.5,
                 f"the document's literal LSTM learns the task too ({results['document']['ratio']:.0%} of baseline)")

# %% [markdown]
# The two experiments in one picture: the gradient norm per step with and without
# clipping (log scale), and each network's training loss on the adding problem.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.semilogy(unclipped["grad_norm"], label="no clipping")
left.semilogy(clipped["grad_norm"], label="clipped at ‖g‖ = 1 (norm before clipping)")
left.set(xlabel="step", ylabel="global gradient norm", title="RNN, spectral radius 1.8, T = 60")
left.legend()
window = 10
for kind, r in results.items():
    smooth = np.convolve(r["curve"], np.ones(window) / window, mode="valid")
    right.plot(smooth, label=kind)
right.axhline(results["rnn"]["baseline"], color="0.5", ls="--", label="predict the mean")
right.set(xlabel="step", ylabel=f"training MSE ({window}-step mean)", title="the adding problem, T = 30")
right.legend()
save_figure(fig, OUT / "clipping_and_memory.png")

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
# - Turn clipping off in the memory task (`memory_task` above clips at 1.0).
# - Swap the document LSTM for the standard one in lesson 01's language model.
# - Raise `spectral_radius` to 3 and lower the clipping threshold: how small can C go?
