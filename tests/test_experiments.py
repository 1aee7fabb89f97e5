"""The chapter-3 experiments run and show what they claim, on this run's numbers."""
import math

from minillm.experiments import adding_problem, exploding_gradients, memory_task

import numpy as np


def test_adding_problem_targets():
    x, y = adding_problem(5, 10, np.random.default_rng(0))
    assert x.shape == (10, 5, 2) and y.shape == (5, 1)
    assert (x[:, :, 1].sum(0) == 2).all()
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(0), rtol=1e-6)


def test_clipping_tames_exploding_gradients():
    runs = exploding_gradients(steps=30)
    unclipped, clipped = runs["unclipped"], runs["clipped"]
    assert max(unclipped["grad_norm"]) > 1e3                      # it explodes ...
    assert not math.isfinite(unclipped["loss"][-1]) or unclipped["loss"][-1] > 10 * unclipped["loss"][0]
    assert all(math.isfinite(v) for v in clipped["loss"])         # ... and clipping keeps it finite
    assert min(clipped["loss"]) < clipped["loss"][0]


def test_memory_task_reports_every_model():
    results = memory_task(kinds=("gru", "rnn"), steps=150, length=20)
    assert set(results) == {"gru", "rnn"}
    assert results["gru"]["ratio"] < 0.5  # the gated network learns to carry the two numbers
    for r in results.values():
        assert r["baseline"] > 0.1 and r["mse"] >= 0
