"""Mixed precision (document 000, §3.2.3): fp32 master weights, fp16 arithmetic.
``autocast("bfloat16")`` (or ``autocast(dtype="bfloat16")``) is the bf16 variant: see
``amp_bf16.py``; it needs no GradScaler, bf16 having float32's range.

``autocast()`` makes every matrix product run in float16 (its inputs are cast on the way
in, and the casts' backward returns float32 gradients to the float32 weights), while
reductions that lose accuracy in half precision — softmax cross-entropy, layer norm —
are computed in float32. ``GradScaler`` multiplies the loss by a large factor so small
gradients survive float16, divides it out before the step, skips a step whose gradients
overflowed (inf/NaN) and lowers the scale, and raises it again after a run of good steps.

The document's step list says to *update* the parameters in 16-bit too; we keep the
update in float32, because a float16 weight cannot absorb an update smaller than half its
spacing (1 + 1e-4 rounds back to 1 in float16). ``lost_updates`` measures that loss.
"""
import contextlib
import math

import numpy as np

from . import backends

_enabled = False
_dtype = "float16"
DTYPES = ("float16", "bfloat16")


def is_autocast_enabled():
    return _enabled


def autocast_dtype():
    """"float16" or "bfloat16" while autocast is on, else None."""
    return _dtype if _enabled else None


@contextlib.contextmanager
def autocast(enabled=True, dtype="float16"):
    """``autocast()`` / ``autocast(dtype="float16")``: products in float16; ``autocast("bfloat16")``
    (a dtype name as the first argument means enabled) or ``autocast(dtype="bfloat16")``: Linear
    layers on bf16 inputs with float32 accumulation. ``autocast(False)`` turns either off."""
    global _enabled, _dtype
    if isinstance(enabled, str):
        enabled, dtype = True, enabled
    if dtype not in DTYPES:
        raise ValueError(f"autocast: dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    previous = _enabled, _dtype
    _enabled, _dtype = bool(enabled), (dtype if enabled else _dtype)
    try:
        yield
    finally:
        _enabled, _dtype = previous


class GradScaler:
    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
        if init_scale <= 0 or growth_factor <= 1 or not 0 < backoff_factor < 1:
            raise ValueError("GradScaler: need init_scale > 0, growth_factor > 1 and 0 < backoff_factor < 1")
        self.scale_value, self.growth_factor, self.backoff_factor = init_scale, growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self.good_steps = 0
        self.skipped_steps = 0
        self._unscaled = False
        self._found_inf = False

    def scale(self, loss):
        return loss * self.scale_value

    def unscale_(self, optimizer):
        """Divide the gradients by the scale (once per step; call before clipping)."""
        if self._unscaled:
            return
        inv = 1.0 / self.scale_value
        found_inf = False
        for p in optimizer.params:
            if p.grad is not None:
                g = p.grad.data
                g *= g.dtype.type(inv)
                found_inf = found_inf or not bool(backends.xp_of(g).isfinite(g).all())
        self._found_inf, self._unscaled = found_inf, True

    def step(self, optimizer):
        """optimizer.step() unless a gradient overflowed; returns whether it stepped."""
        self.unscale_(optimizer)
        if self._found_inf:
            self.skipped_steps += 1
            return False
        optimizer.step()
        return True

    def update(self):
        if self._found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps % self.growth_interval == 0:
                self.scale_value *= self.growth_factor
        self._unscaled = self._found_inf = False

    def state_dict(self):
        return {"scale": self.scale_value, "good_steps": self.good_steps, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state):
        self.scale_value, self.good_steps = state["scale"], state["good_steps"]
        self.skipped_steps = state.get("skipped_steps", 0)


def lost_updates(weights, updates):
    """Fraction of nonzero updates that vanish when the weight is stored in float16
    (w16 − u rounds back to w16), against float32 master weights. Returns (fp16, fp32)."""
    weights, updates = np.asarray(weights, np.float32), np.asarray(updates, np.float32)
    moving = updates != 0
    w16 = weights.astype(np.float16)
    lost16 = (w16 - updates.astype(np.float16)) == w16
    lost32 = (weights - updates) == weights
    count = max(int(moving.sum()), 1)
    return float((lost16 & moving).sum()) / count, float((lost32 & moving).sum()) / count


def half_spacing(value):
    """Half the gap between ``value`` and the next float16: updates below it are lost."""
    return float(np.spacing(np.float16(value))) / 2 if math.isfinite(value) else math.inf
