"""Optimizers (document 000 §3.2.1, 002 §4.1) with PyTorch's formulas, and schedulers.

    GD     θ ← θ − α ∇θ J(θ)                               (gradient descent, 梯度下降)
    SGD    θ ← θ − η ∇L − η λ θ, with momentum / Nesterov  (weight decay, 权重衰减)
    Adam   m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − η m̂ / (√v̂ + ε)
    AdamW  Adam with decoupled decay: θ ← θ − η λ θ before the Adam step
"""
import math

import numpy as np

from . import backends
from .tensor import no_grad


class Optimizer:
    def __init__(self, params, defaults):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if defaults.get("lr", 0) < 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0; got {defaults['lr']}")
        self.defaults = dict(defaults)
        self.lr = defaults["lr"]
        self.state = [{} for _ in self.params]
        self.step_count = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @no_grad()
    def step(self):
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad.data.astype(p.dtype, copy=False), state)

    def update(self, p, g, state):
        raise NotImplementedError

    def state_dict(self):
        """Hyperparameters, step count and per-parameter buffers as plain data
        (``arrays``: name → NumPy array, for a safetensors file; the rest is JSON)."""
        arrays = {f"{i}.{key}": np.array(backends.to_numpy(value)) for i, state in enumerate(self.state)
                  for key, value in state.items()}
        return {"type": type(self).__name__, "lr": self.lr, "defaults": self.defaults,
                "step_count": self.step_count, "arrays": arrays}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()``'s output. It comes from a file, so every hyperparameter
        is checked against the range it must lie in before anything changes."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or state_dict.get("type") != name:
            found = state_dict.get("type") if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{name}.load_state_dict: the state is from {found}")
        defaults = state_dict.get("defaults")
        if not isinstance(defaults, dict) or set(defaults) - set(self.defaults):
            raise ValueError(f"{name}.load_state_dict: defaults must be an object with keys among "
                             f"{', '.join(self.defaults)}; got {defaults!r}")
        _check_hyperparameter(name, "lr", state_dict.get("lr"))
        for key, value in defaults.items():
            _check_hyperparameter(name, key, value)
        step_count = state_dict.get("step_count")
        if not isinstance(step_count, int) or isinstance(step_count, bool) or step_count < 0:
            raise ValueError(f"{name}.load_state_dict: step_count must be an integer >= 0; got {step_count!r}")
        self.lr, self.step_count = float(state_dict["lr"]), step_count
        self.defaults.update({k: tuple(v) if isinstance(v, list) else v for k, v in defaults.items()})
        self.state = [{} for _ in self.params]
        for name, value in state_dict["arrays"].items():
            index, _, key = name.partition(".")
            if not index.isdigit() or int(index) >= len(self.params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state {name!r} names no parameter "
                                 f"(the optimizer has {len(self.params)})")
            if np.ndim(value) and np.shape(value) != self.params[int(index)].shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state {name} has shape "
                                 f"{np.shape(value)}, its parameter {self.params[int(index)].shape}")
            self.state[int(index)][key] = backends.asarray(np.array(value))  # a copy: never share buffers


# what each hyperparameter an optimizer's state may hold must be: (low, high, high included?)
_RANGES = {"lr": (0, math.inf, True), "weight_decay": (0, math.inf, True), "momentum": (0, 1, False),
           "betas": (0, 1, False), "eps": (0, math.inf, True)}


def _check_hyperparameter(optimizer, key, value):
    def number_in_range(v):
        low, high, closed = _RANGES.get(key, (-math.inf, math.inf, True))
        return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v and
                (v <= high if closed else v < high) and (key != "eps" or v > 0))
    if key == "nesterov":
        ok, expected = isinstance(value, bool), "true or false"
    elif key == "betas":
        ok, expected = (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(number_in_range, value)),
                        "a pair of numbers in [0, 1)")
    else:
        low, high, closed = _RANGES.get(key, (-math.inf, math.inf, True))
        ok, expected = number_in_range(value), f"a finite number {'> 0' if key == 'eps' else f'>= {low}'}" + (
            "" if high == math.inf else f" and < {high}")
    if not ok:
        raise ValueError(f"{optimizer}.load_state_dict: {key} must be {expected}; got {value!r}")


class GD(Optimizer):
    """Plain gradient descent: θ = θ − α ∇θ J(θ)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def update(self, p, g, state):
        p.data -= self.lr * g


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov needs momentum > 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay})

    def update(self, p, g, state):
        d = self.defaults
        if d["weight_decay"]:
            g = g + d["weight_decay"] * p.data          # η(∇L + λθ) = η∇L + ηλθ
        if d["momentum"]:
            buf = state.get("momentum_buffer")
            buf = g.copy() if buf is None else d["momentum"] * buf + g
            state["momentum_buffer"] = buf
            g = g + d["momentum"] * buf if d["nesterov"] else buf
        p.data -= self.lr * g


class Adam(Optimizer):
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _moments(self, p, state):
        if "exp_avg" not in state:  # not setdefault: its zeros would be allocated on every step
            xp = backends.xp_of(p.data)
            state["exp_avg"], state["exp_avg_sq"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
        return state["exp_avg"], state["exp_avg_sq"]

    @no_grad()
    def step(self):
        """Every parameter in one backend call (``adam_update_many``: one kernel over all
        tensors in C, the backend's fused ``adam_update`` one tensor at a time elsewhere;
        reference.Backend.adam_update is the formula). The result is the same either way: each
        element's update depends only on that element."""
        self.step_count += 1
        live = [(p, p.grad.data.astype(p.dtype, copy=False), state) for p, state in zip(self.params, self.state)
                if p.grad is not None]
        if not live:
            return
        moments = [self._moments(p, state) for p, _, state in live]
        d = self.defaults
        backends.current().adam_update_many([p.data for p, _, _ in live], [g for _, g, _ in live],
                                            [m for m, _ in moments], [v for _, v in moments], self.lr, *d["betas"],
                                            d["eps"], d["weight_decay"], self.decoupled, self.step_count)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): θ ← θ(1 − ηλ), then Adam."""
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class WarmupCosine:
    """Linear warm-up from 0 to the base lr over ``warmup`` steps, then a cosine decay to
    ``min_lr`` at ``total`` steps (and min_lr after)."""

    def __init__(self, optimizer, warmup, total, min_lr=0.0):
        if not 0 <= warmup <= total:
            raise ValueError(f"WarmupCosine: need 0 <= warmup <= total; got warmup={warmup}, total={total}")
        self.optimizer, self.warmup, self.total, self.min_lr = optimizer, warmup, total, min_lr
        self.base_lr = optimizer.lr
        self.last_step = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, step):
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        if step >= self.total:
            return self.min_lr
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def step(self):
        self.last_step += 1
        self.optimizer.lr = self.lr_at(self.last_step)


class StepLR:
    """Multiply the lr by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lr, self.last_step = optimizer.lr, 0

    def step(self):
        self.last_step += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.last_step // self.step_size)
