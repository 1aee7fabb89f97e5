"""Small, measured experiments for chapter 3 (the lessons call these).

* ``exploding_gradients``: a vanilla RNN over a long sequence, trained with and without
  gradient clipping; returns the gradient norm and loss of every step.
* ``memory_task``: the adding problem (remember two marked numbers across a long
  sequence, output their sum) for the document LSTM, the standard LSTM, the GRU and the
  vanilla RNN, under one budget; returns each model's final error against the baseline
  of always answering the mean.
"""
import math
import time

import numpy as np

from . import functional as F
from . import nn, optim
from .nn.utils import clip_grad_norm_
from .random import manual_seed
from .tensor import no_grad, tensor


def adding_problem(batch, length, rng):
    """Inputs (T, B, 2): a value in [0, 1) and a marker; exactly two markers per sequence,
    one in each half. Target (B, 1): the sum of the two marked values (mean 1, var 1/6)."""
    values = rng.random((length, batch))
    markers = np.zeros((length, batch))
    first = rng.integers(0, length // 2, batch)
    second = rng.integers(length // 2, length, batch)
    markers[first, np.arange(batch)] = 1
    markers[second, np.arange(batch)] = 1
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values * markers).sum(0, keepdims=True).T.astype(np.float32)
    return x, y


class SequenceRegressor(nn.Module):
    """A recurrent layer and a linear read-out of its last output."""

    def __init__(self, recurrent, hidden):
        super().__init__()
        self.recurrent, self.head = recurrent, nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.recurrent(x)
        return self.head(out[-1])


def make_recurrent(kind, hidden):
    if kind in ("document", "standard"):
        return nn.LSTM(2, hidden, variant=kind)
    return {"gru": nn.GRU, "rnn": nn.RNN}[kind](2, hidden)


def memory_task(kinds=("document", "standard", "gru", "rnn"), length=30, hidden=24, steps=500, batch=64,
                lr=0.01, seed=0, log=print):
    """Train each kind on the adding problem with the same data, optimizer and budget.
    Returns {kind: {"mse": final validation MSE, "baseline": MSE of predicting 1, ...}}."""
    results = {}
    val_x, val_y = adding_problem(512, length, np.random.default_rng(seed + 1))
    baseline = float(((val_y - 1.0) ** 2).mean())
    for kind in kinds:
        manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = SequenceRegressor(make_recurrent(kind, hidden), hidden)
        opt = optim.Adam(model.parameters(), lr=lr)
        start = time.perf_counter()
        for step in range(steps):
            x, y = adding_problem(batch, length, rng)
            loss = F.mse_loss(model(tensor(x)), y)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        with no_grad():
            mse = F.mse_loss(model(tensor(val_x)), val_y).item()
        results[kind] = {"mse": mse, "baseline": baseline, "ratio": mse / baseline,
                         "seconds": time.perf_counter() - start, "parameters": model.num_parameters()}
        log(f"adding problem T={length}: {kind:8s} val MSE {mse:.4f} ({mse / baseline:.0%} of the "
            f"predict-the-mean baseline {baseline:.4f}), {model.num_parameters()} parameters")
    return results


def exploding_gradients(length=60, hidden=32, steps=60, lr=0.1, max_norm=1.0, spectral_radius=1.8, seed=0,
                        log=print):
    """A tanh RNN whose recurrent matrix has spectral radius > 1, trained by plain gradient
    descent to regress the sum of its inputs, once without and once with clipping.
    Returns {"unclipped": {"grad_norm": [...], "loss": [...]}, "clipped": {...}}."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((length, 32, 1)) * 0.5).astype(np.float32)
    y = x.sum(0) / math.sqrt(length)
    runs = {}
    for label, clip in (("unclipped", None), ("clipped", max_norm)):
        manual_seed(seed)
        model = SequenceRegressor(nn.RNN(1, hidden), hidden)
        w = np.random.default_rng(seed).standard_normal((hidden, hidden))
        w *= spectral_radius / np.abs(np.linalg.eigvals(w)).max()
        model.recurrent.weight_hh_l0.data = w.astype(np.float32)
        opt = optim.GD(model.parameters(), lr=lr)
        norms, losses = [], []
        with np.errstate(over="ignore", invalid="ignore"):  # the unclipped run is meant to blow up
            _descend(model, opt, x, y, clip, steps, norms, losses)
        runs[label] = {"grad_norm": norms, "loss": losses}
        finite = [v for v in losses if math.isfinite(v)]
        log(f"{label:9s}: max gradient norm {max(norms):.3g}, loss {losses[0]:.3f} -> "
            f"{losses[-1]:.3g} (best {min(finite):.3f})")
    return runs


def _descend(model, opt, x, y, clip, steps, norms, losses):
    for _ in range(steps):
        loss = F.mse_loss(model(tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        # with max_norm = inf clip_grad_norm_ only measures the norm
        norms.append(clip_grad_norm_(model.parameters(), clip or math.inf).item())
        losses.append(loss.item())
        opt.step()
