"""Module and Parameter: the containers that hold a model's weights.

Attributes that are Parameters or Modules register themselves by being assigned, as in
PyTorch, so ``named_parameters()`` walks them in the order they were defined.
"""
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from .. import backends
from ..tensor import Tensor


_skipping_init = False


@contextmanager
def skip_init():
    """Build modules whose weights are left uninitialised (``np.empty``: no random draws,
    no memory touched) because a checkpoint is about to overwrite them — PyTorch's
    ``skip_init``. Loading GPT-2 small this way never holds a second, random copy."""
    global _skipping_init
    previous, _skipping_init = _skipping_init, True
    try:
        yield
    finally:
        _skipping_init = previous


def init_skipped():
    return _skipping_init


class Parameter(Tensor):
    """A Tensor that is a model weight: requires grad, and is found by ``parameters()``."""

    def __init__(self, data, requires_grad=True):
        data = data.data if isinstance(data, Tensor) else backends.asarray(data)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    training = True

    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal -------------------------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (child for _, child in self.named_children())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs; a Parameter shared by two modules appears once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # ---- state -----------------------------------------------------------------------------
    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def state_dict(self):
        """Every parameter as a NumPy array copy, keyed by its dotted name."""
        return OrderedDict((name, p.numpy().copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy arrays into the parameters; shapes must match, and with ``strict`` so must
        the set of keys. Nothing is changed unless every check passes. ``assign=True``
        makes each parameter hold the given array itself (no copy where it already has the
        dtype and C order), so a large checkpoint is in memory once."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        for name, value in state_dict.items():
            if name in own and tuple(np.shape(value)) != own[name].shape:
                problems.append(f"{name}: checkpoint shape {tuple(np.shape(value))} != model shape {own[name].shape}")
        if problems:
            # RuntimeError, as PyTorch: the arguments are wrong for this model, not a lookup that failed
            raise RuntimeError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        for name, value in state_dict.items():
            if name in own:
                target = own[name]
                if assign:
                    target.data = backends.asarray(np.ascontiguousarray(value, target.dtype))
                else:
                    target.data = backends.asarray(np.asarray(value), target.dtype).copy()
        return self

    def to(self, dtype):
        """Convert every parameter in place (e.g. ``model.to(np.float64)`` for gradcheck)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        return self

    # ---- printing ----------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            lines.append("  " + f"({name}): {child!r}".replace("\n", "\n  "))
        lines.append(")")
        return "\n".join(lines)


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        setattr(self, str(len(self)), module)
        return self

    def __iter__(self):
        return iter(list(self.children()))

    def __getitem__(self, i):
        return list(self.children())[i]

    def __len__(self):
        return len(list(self.children()))


class Sequential(ModuleList):
    """Layers applied one after the other."""

    def __init__(self, *layers):
        super().__init__(layers)

    def forward(self, x):
        for layer in self:
            x = layer(x)
        return x
