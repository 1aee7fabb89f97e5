"""The main job, until the transformer trainer lands: fit a small MLP to a noisy sine
with the autograd engine and plain gradient descent, printing the loss as it falls."""
import numpy as np

from . import functional as F, nn, no_grad, tensor
from .random import manual_seed


def run(steps=300, lr=0.1):
    manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=(256, 1)).astype(np.float32)
    y = (np.sin(x) + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    print(model)
    xt = tensor(x)
    for step in range(steps + 1):
        loss = F.mse_loss(model(xt), y)
        model.zero_grad()
        loss.backward()
        with no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data  # θ = θ − α ∇θ J(θ)
        if step % 50 == 0:
            print(f"step {step}: train loss {loss.item():.4f}")
    return loss.item()
