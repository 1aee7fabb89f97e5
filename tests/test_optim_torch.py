"""Optimizers against torch.optim over 20 steps (torch is the oracle; everything that
needs no torch is in test_optim.py)."""
import numpy as np
import pytest

import minillm
from minillm import optim
from test_optim import param

torch = pytest.importorskip("torch", reason="torch is the optional oracle (pip install 'minillm[oracle]')")

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.05)),
]


@pytest.mark.parametrize("name,kwargs", CONFIGS)
def test_twenty_steps_match_torch(name, kwargs):
    rng = np.random.default_rng(5)
    start = rng.standard_normal((4, 3))
    grads = rng.standard_normal((20, 4, 3))
    ours = param(start, grads[0])
    theirs = torch.tensor(start, requires_grad=True)
    opt = getattr(optim, name)([ours], **kwargs)
    topt = getattr(torch.optim, name)([theirs], **kwargs)
    for g in grads:
        ours.grad = minillm.tensor(g)
        theirs.grad = torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-12)
