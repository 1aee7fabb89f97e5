"""bf16 mixed precision (``amp.autocast("bfloat16")``, ``minillm train --dtype=bfloat16``): a
Linear layer's three products on bf16 inputs with float32 sums, on every backend that runs
them (c: matmul_bf16.c's v4; numpy: the emulation), and training with them.

Tolerances, u = 2⁻²⁴ (float32's unit roundoff), v = 2⁻⁸ (bf16's: 8 significant bits, so
rounding moves a value by at most 2⁻⁸ of itself; 1 + 2⁻⁸ is a tie and rounds to 1):

  against float64 products of the bf16-ROUNDED inputs: the products of two bf16 values are
  exact in float32, so only the float32 sums round: |C − ref| ≤ (K + 2)·u·(|A|·|B| + |bias|)
  against float64 products of the UNROUNDED float32 inputs: each factor is off by at most v
  of itself, a product by at most (1 + v)² − 1 = 2v + v², so that term joins the sums' one:
  |C − exact| ≤ ((K + 2)·u + 2v + v²)·(|A|·|B| + |bias|)
  the bias gradient Σ_rows g stays float32: |db − exact| ≤ N·u·Σ|g|
"""
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import minillm
from minillm import amp, amp_bf16, backends, cli, nn
from minillm.bf16 import from_bf16, to_bf16
from minillm.models import GPT, GPTConfig
from minillm.train import TrainConfig, Trainer, load

U, V = 2.0 ** -24, 2.0 ** -8
BACKENDS = [b for b in ("c", "numpy") if b in backends.available()]
SIZES = st.sampled_from([1, 2, 3, 13, 16, 31, 33, 64, 769])


def rounded(a):
    return from_bf16(to_bf16(a)).astype(np.float64)


def products(backend):
    """The (forward, backward) pair ops.linear uses for ``backend`` under bf16 autocast."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the emulation's once-only warning
        return amp_bf16.linear_products(backends.get(backend))


def check(name, got, rounded_ref, exact_ref, magnitude, k):
    """Both bounds of the docstring, printing how much of each the worst element uses."""
    assert got.dtype == np.float32, f"{name}: {got.dtype}"
    tight = (k + 2) * U * magnitude
    loose = ((k + 2) * U + 2 * V + V * V) * magnitude
    err_r, err_e = np.abs(got - rounded_ref), np.abs(got - exact_ref)
    print(f"{name}: error vs rounded {err_r.max():.2e} (≤ {(err_r / np.maximum(tight, 1e-300)).max():.2f} of the "
          f"bound), vs exact {err_e.max():.2e} (≤ {(err_e / np.maximum(loose, 1e-300)).max():.2f} of the bound)")
    assert np.all(err_r <= tight), f"{name}: beyond (K+2)·2⁻²⁴·|A||B| against the rounded inputs"
    assert np.all(err_e <= loose), f"{name}: beyond bf16's rounding against the unrounded inputs"


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(rows=SIZES, k=SIZES, out=SIZES, seed=st.integers(0, 2 ** 32 - 1), scale=st.integers(-12, 12),
       with_bias=st.booleans())
def test_linear_products_against_float64(backend, rows, k, out, seed, scale, with_bias):
    assume(rows * k * out <= 600_000)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, k)) * 2.0 ** scale).astype(np.float32)
    w = rng.standard_normal((out, k)).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32) if with_bias else None
    g = rng.standard_normal((rows, out)).astype(np.float32)
    forward, backward = products(backend)
    with backends.use_backend(backend):
        y = forward(x, w, b)
        gx, gw, gb = backward(g, x, w, True, True, with_bias)
    x64, w64, g64 = x.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    bias64 = np.zeros(out) if b is None else b.astype(np.float64)
    check("y = x·Wᵀ + b", y, rounded(x) @ rounded(w).T + bias64, x64 @ w64.T + bias64,
          np.abs(x64) @ np.abs(w64).T + np.abs(bias64), k)
    check("dx = g·W", gx, rounded(g) @ rounded(w), g64 @ w64, np.abs(g64) @ np.abs(w64), out)
    check("dW = gᵀ·x", gw, rounded(g).T @ rounded(x), g64.T @ x64, np.abs(g64).T @ np.abs(x64), rows)
    if with_bias:
        assert gb.dtype == np.float32
        assert np.all(np.abs(gb - g64.sum(0)) <= rows * U * np.abs(g64).sum(0))
    else:
        assert gb is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_under_autocast_keeps_float32_weights_and_gradients(backend):
    minillm.manual_seed(0)
    with backends.use_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        layer = nn.Linear(33, 13)
        x = minillm.Tensor(np.random.default_rng(1).standard_normal((2, 5, 33)).astype(np.float32),
                           requires_grad=True)
        with amp.autocast("bfloat16"):
            y = layer(x)
        assert y.dtype == np.float32 and y.shape == (2, 5, 13)
        y.sum().backward()
    assert layer.weight.data.dtype == layer.weight.grad.dtype == x.grad.dtype == np.float32
    w, xs = layer.weight.numpy().astype(np.float64), x.numpy().reshape(-1, 33)
    np.testing.assert_allclose(y.numpy().reshape(-1, 13), rounded(xs) @ rounded(w).T + layer.bias.numpy(),
                               rtol=0, atol=35 * U * (np.abs(xs) @ np.abs(w).T).max() + 1e-6)
    # the product really ran on rounded inputs: float32 products of the same operands differ
    assert not np.array_equal(y.numpy().reshape(-1, 13), (xs @ layer.weight.numpy().T + layer.bias.numpy()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_outside_linear_rounds_its_operands(backend):
    """A batched product (attention's, when it is not fused) under bf16 autocast: both operands
    rounded to bf16, the product float32; the gradients reach the float32 operands."""
    rng = np.random.default_rng(3)
    a64, b64 = rng.standard_normal((2, 13, 31)), rng.standard_normal((2, 31, 7))
    a, b = (minillm.Tensor(m.astype(np.float32), requires_grad=True) for m in (a64, b64))
    with backends.use_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with amp.autocast("bfloat16"):
            y = minillm.ops.matmul(a, b)
        y.sum().backward()
    ref = rounded(a.numpy()) @ rounded(b.numpy())
    bound = 33 * U * (np.abs(a.numpy()).astype(np.float64) @ np.abs(b.numpy()))
    assert y.dtype == np.float32 and np.all(np.abs(y.numpy() - ref) <= bound)
    assert a.grad.dtype == b.grad.dtype == np.float32 and a.grad.shape == a.shape


def test_autocast_names_its_dtype_and_refuses_others():
    assert amp.autocast_dtype() is None
    with amp.autocast():
        assert amp.autocast_dtype() == "float16"
    with amp.autocast("bfloat16"):
        assert amp.autocast_dtype() == "bfloat16" and amp.is_autocast_enabled()
        with amp.autocast(False):
            assert amp.autocast_dtype() is None
        assert amp.autocast_dtype() == "bfloat16"
    with amp.autocast(dtype="bfloat16"):
        assert amp.autocast_dtype() == "bfloat16"
    assert amp.autocast_dtype() is None
    with pytest.raises(ValueError, match="autocast: dtype must be one of float16, bfloat16; got 'float8'"):
        with amp.autocast("float8"):
            pass


def test_emulation_warns_once():
    amp_bf16._warned.discard("numpy")
    layer = nn.Linear(4, 3)
    with backends.use_backend("numpy"), amp.autocast("bfloat16"), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            layer(minillm.Tensor(np.ones((2, 4), np.float32)))
    messages = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "emulates bf16" in messages[0], messages


def train_losses(backend, dtype, steps=30):
    """A tiny GPT trained for ``steps`` AdamW steps to continue counting (token t+1 follows t,
    modulo 31, from random starts); the losses."""
    minillm.manual_seed(0)
    with backends.use_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = GPT(GPTConfig(vocab_size=31, block_size=16, n_layer=2, n_head=2, n_embd=32))
        opt = minillm.optim.AdamW(model.parameters(), lr=3e-3)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(steps):
            idx = (rng.integers(0, 31, (4, 1)) + np.arange(17)) % 31
            with amp.autocast(dtype == "bfloat16", dtype="bfloat16"):
                _, loss = model(idx[:, :-1], idx[:, 1:])
            opt.zero_grad()
            loss.backward()
            assert all(p.grad.dtype == np.float32 for p in model.parameters())
            opt.step()
            losses.append(loss.item())
    return np.array(losses)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_training_tracks_float32(backend):
    """Tolerance: 0.01 nats at every one of the 30 steps (bf16's 2⁻⁸ relative rounding of the
    products' inputs moves a loss near 3.4 by far less; the curves must also drop by 0.3)."""
    fp32, bf16 = train_losses(backend, "float32"), train_losses(backend, "bfloat16")
    print(f"{backend}: fp32 {fp32[0]:.4f} → {fp32[-1]:.4f}, bf16 {bf16[0]:.4f} → {bf16[-1]:.4f}, "
          f"largest gap {np.abs(fp32 - bf16).max():.4f}")
    assert np.abs(fp32 - bf16).max() <= 0.01
    assert bf16[-1] < bf16[0] - 0.3
    assert not np.array_equal(fp32, bf16)  # bf16 really ran


TINY = dict(data="python-docs", model="gpt", max_iters=8, batch_size=4, block_size=16, n_layer=1, n_head=2,
            n_embd=16, eval_interval=4, eval_iters=2, warmup_iters=2, progress=False,
            backend=BACKENDS[0])


@pytest.mark.parametrize("first, then", [("bfloat16", "float32"), ("float32", "bfloat16")])
def test_resume_across_dtypes(tmp_path, first, then):
    """Checkpoints stay float32; a run started in one precision continues in the other."""
    out = str(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        Trainer(TrainConfig(**TINY, out_dir=out, dtype=first, stop_after=4), log=lambda *a: None).run()
        metrics = Trainer(TrainConfig(**TINY, out_dir=out, dtype=then, resume=True), log=lambda *a: None).run()
    assert metrics["step"] == 8 and np.isfinite(metrics["val_loss"])
    model, _ = load(out)
    assert all(p.data.dtype == np.float32 for p in model.parameters())


def test_command_line_dtype(tmp_path, capsys):
    args = [f"--{k}={v}" for k, v in TINY.items()] + [f"--out_dir={tmp_path / 'cli'}", "--max_iters=2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert cli.main(["train", *args, "--dtype=bfloat16"]) == 0
    assert "dtype=bfloat16" in capsys.readouterr().out
    assert cli.main(["train", "--dtype=float8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--dtype" in err and "float8" in err and "bfloat16" in err, err
