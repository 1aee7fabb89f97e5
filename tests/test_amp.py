"""Mixed precision: autocast runs matmuls in float16 with float32 master weights; the
GradScaler skips overflowing steps; and what the documents' literal recipe (16-bit
updates) loses, measured."""
import numpy as np

import minillm
from minillm import amp, nn, optim, functional as F


def make_model():
    minillm.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))


def train(use_amp, steps=150):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x[:, :4].argmax(1)).astype(np.int64)
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    scaler = amp.GradScaler(init_scale=1024.0)
    for _ in range(steps):
        with amp.autocast(use_amp):
            loss = F.cross_entropy(model(minillm.tensor(x)), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss.item(), model


def test_autocast_matmul_runs_in_half_and_weights_stay_float32():
    model = make_model()
    with amp.autocast():
        hidden = model[0](minillm.randn(2, 8))
        assert hidden._parents[0]._op == "matmul" and hidden._parents[0].dtype == np.float16
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_amp_training_ends_close_to_fp32():
    fp32, _ = train(False)
    mixed, model = train(True)
    print(f"final loss fp32 {fp32:.4f}, mixed precision {mixed:.4f}")
    assert mixed < 0.5 * 1.386  # learned (chance level is log 4 = 1.386)
    assert abs(mixed - fp32) <= 0.05 + 0.1 * fp32
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_overflow_skips_the_step_and_backs_off():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    scaler = amp.GradScaler(init_scale=2.0 ** 10)
    loss = F.cross_entropy(model(minillm.randn(4, 8)), np.array([0, 1, 2, 3]))
    scaler.scale(loss).backward()
    model[0].weight.grad.data[0, 0] = np.inf  # injected overflow
    before = [p.numpy().copy() for p in model.parameters()]
    assert scaler.step(opt) is False
    scaler.update()
    for b, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(b, p.numpy())
    assert scaler.scale_value == 2.0 ** 9 and scaler.skipped_steps == 1


def test_scale_grows_after_a_run_of_good_steps():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.01)
    scaler = amp.GradScaler(init_scale=8.0, growth_interval=3)
    for _ in range(3):
        opt.zero_grad()
        scaler.scale(model(minillm.randn(2, 8)).sum()).backward()
        assert scaler.step(opt)
        scaler.update()
    assert scaler.scale_value == 16.0


def test_literal_sixteen_bit_updates_lose_small_steps():
    """With weights near 1, float16's spacing is 2^-10 ≈ 9.8e-4: every update smaller
    than half of it vanishes, while float32 master weights keep them all."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 2.0, 10000)
    updates = 10.0 ** rng.uniform(-6, -2, 10000)
    lost16, lost32 = amp.lost_updates(weights, updates)
    print(f"updates lost: float16 weights {lost16:.1%}, float32 master weights {lost32:.1%}")
    assert lost16 > 0.5 and lost32 == 0.0
    assert amp.half_spacing(1.0) == 2.0 ** -11
