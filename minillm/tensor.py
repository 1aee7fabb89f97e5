"""The Tensor: an n-dimensional array that remembers how it was made.

Every differentiable op (see ``ops/``) returns a Tensor holding its parents and a
``_backward(g)`` function that maps the gradient of the output to the gradients of the
parents. ``backward()`` sorts the graph topologically and walks it once in reverse,
adding the gradient of every use of a value — the chain rule, nothing more.

Tensor's operators and methods (``a + b``, ``x.sum(-1)``, ``x.T``) are written on the class
below, each a call into ``ops``; comparisons and ``argmax`` give plain tensors outside the graph.
"""
import contextlib
import itertools
import sys

import numpy as np

from . import backends
from .rng import generator

# The ops module, which Tensor's operators call. The ops build Tensors, so minillm/ops
# imports this module and not the other way round; it binds this name once its ops exist
# (importing anything from minillm loads it). Looked up at call time, like any global.
ops = None

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph (inference, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


def _is_floating(dtype):
    return np.issubdtype(dtype, np.floating)


class Tensor:
    """An array plus the bookkeeping reverse-mode autodiff needs.

    ``data`` is an array of the active backend's array module (NumPy, or CuPy on a GPU).
    ``grad`` is a Tensor of the same shape, filled (and accumulated) by ``backward()``.
    """

    __array_priority__ = 1000  # so that `ndarray * Tensor` defers to Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, np.generic):  # NumPy turns 0-d results into scalars
            data = np.asarray(data)
        if requires_grad and not _is_floating(data.dtype):
            raise TypeError(
                f"tensor: only floating-point tensors can require grad; got dtype {data.dtype}")
        self.data = data
        self.requires_grad = requires_grad
        self.grad = None
        self._parents = ()
        self._backward = None
        self._op = None
        self._grad_hooks = ()
        self._created = next(_creation_order)

    # ---- properties that mirror torch / numpy -------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: self._backward is None)

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        # as NumPy: one element converts, more is ambiguous (an error, never a silent True)
        return bool(self.data)

    def numpy(self):
        """The data as a NumPy array (copied to the host when it lives on a GPU)."""
        return backends.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a number; got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and not _is_floating(self.dtype):
            raise TypeError(
                f"requires_grad_: only floating-point tensors can require grad; got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def to(self, dtype):
        """A converted copy; differentiable (the gradient is converted back)."""
        return ops.cast(self, dtype)

    float = lambda self: self.to(np.float32)
    double = lambda self: self.to(np.float64)
    half = lambda self: self.to(np.float16)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", threshold=50)
        return f"tensor({body}, dtype={self.dtype}{grad})"

    # ---- Python's operators (each one op; a number or an array on either side meets the
    # tensor in its dtype, so `2.0 * x` stays float32) --------------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(self, other)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(ops.as_tensor(other, self), self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(self, other)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(ops.as_tensor(other, self), self)

    def __neg__(self):
        return ops.neg(self)

    def __pow__(self, exponent):
        return ops.power(self, exponent)

    def __rpow__(self, base):
        return ops.power(ops.as_tensor(base, self), self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(ops.as_tensor(other, self), self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    # Comparisons give boolean tensors outside the graph (masks, accuracy).
    def __lt__(self, other):
        return Tensor(self.data < _array(other))

    def __le__(self, other):
        return Tensor(self.data <= _array(other))

    def __gt__(self, other):
        return Tensor(self.data > _array(other))

    def __ge__(self, other):
        return Tensor(self.data >= _array(other))

    def __eq__(self, other):
        return Tensor(self.data == _array(other))

    def __ne__(self, other):
        return Tensor(self.data != _array(other))

    __hash__ = object.__hash__  # tensors are graph nodes, keyed by identity (defining __eq__ unsets it)

    # ---- methods with torch's names ------------------------------------------------------
    def matmul(self, other):
        return ops.matmul(self, other)

    def pow(self, exponent):
        return ops.power(self, exponent)

    def sum(self, dim=None, keepdim=False):
        return ops.sum_over(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return ops.mean(self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        """The largest values over ``dim`` (values only: ``torch.amax``, no indices)."""
        return ops.amax(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        """The smallest values over ``dim`` (values only: ``torch.amin``, no indices)."""
        return ops.amin(self, dim, keepdim)

    amax = max
    amin = min

    def var(self, dim=None, keepdim=False, correction=1):
        return ops.var(self, dim, keepdim, correction)

    def argmax(self, dim=None):
        return Tensor(self.data.argmax(axis=dim))

    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def sqrt(self):
        return ops.sqrt(self)

    def tanh(self):
        return ops.tanh(self)

    def abs(self):
        return ops.absolute(self)

    def sigmoid(self):
        return ops.sigmoid(self)

    def relu(self):
        return ops.relu(self)

    def gelu(self, approximate="none"):
        return ops.gelu(self, approximate)

    def clip(self, min=None, max=None):
        return ops.clip(self, min, max)

    clamp = clip

    def softmax(self, dim=-1):
        return ops.softmax(self, dim)

    def log_softmax(self, dim=-1):
        return ops.log_softmax(self, dim)

    def masked_fill(self, mask, value):
        return ops.masked_fill(self, mask, value)

    # ---- shape -----------------------------------------------------------------------------
    def reshape(self, *shape):
        return ops.reshape(self, *shape)

    view = reshape

    def permute(self, *dims):
        return ops.permute(self, *dims)

    def transpose(self, dim0, dim1):
        return ops.transpose(self, dim0, dim1)

    @property
    def T(self):
        return ops.permute(self, tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim=0):
        return ops.reshape(self, self.shape[:start_dim] + (-1,))

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return ops.reshape(self, self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim):
        """Drop axis ``dim`` if it has size 1; otherwise the tensor itself, as torch does."""
        dim = dim % self.ndim
        return ops.reshape(self, self.shape[:dim] + self.shape[dim + 1:]) if self.shape[dim] == 1 else self

    def split(self, split_size_or_sections, dim=0):
        return ops.split(self, split_size_or_sections, dim)

    # ---- autograd ------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient; it may be omitted only for a scalar. As in
        PyTorch, the graph is freed on the way: each op lets go of its parents and of the
        arrays its backward kept (the activations) as soon as it has passed its gradient on,
        so memory shrinks during the backward instead of staying full until the next step's
        forward has built a second graph beside it: the next forward's new arrays then land in
        memory still in the caches instead of in fresh lines. ``retain_graph=True`` keeps it,
        to run backward through the same graph again.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(create leaves with requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implied only for a scalar output; this output has "
                    f"shape {self.shape}, so pass grad= of that shape (or reduce it with .sum())")
            seed = backends.xp_of(self.data).ones_like(self.data)
        else:
            seed = grad.data if isinstance(grad, Tensor) else backends.asarray(grad, self.dtype)
            if tuple(seed.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(seed.shape)}, expected {self.shape}")

        grads = {id(self): seed}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:
                # A leaf owns its gradient: `g` may be the seed, or an array (or a view of
                # one) that `add`, `reshape`, `cat`… also handed to another parent, so it is
                # copied on first store; in-place work on one `.grad` (clipping, unscaling)
                # must never reach another. Not copied: an array no one else can reach (not
                # a view, and no reference but this loop's: a Linear's fresh weight and bias
                # gradients, 3.2 MB of copies a step of nanoGPT's recipe).
                if not _unshared(g, node.dtype):
                    g = g.astype(node.dtype, order="C", copy=True)
                node.grad = Tensor(g) if node.grad is None else Tensor(node.grad.data + g)
                for hook in node._grad_hooks:  # this backward has nothing more to add to node.grad
                    hook(node)
                continue
            for parent, parent_grad in zip(node._parents, node._backward(g)):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = backends.current().add(grads[key], parent_grad) if key in grads else parent_grad
            if not retain_graph:
                node._parents, node._backward = (), _freed_backward

    def zero_grad(self):
        self.grad = None

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` in every backward, as soon as this leaf's ``.grad`` holds all
        that backward adds to it (PyTorch's name). Leaves are reached in reverse order of
        use, so a hook fires while the rest of the backward is still to run: data parallel
        starts reducing a bucket of gradients here. Returns a handle whose ``remove()``
        unregisters the hook."""
        if self._backward is not None or not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf that requires grad accumulates a "
                               ".grad (this tensor is the result of an op, or does not require grad)")
        self._grad_hooks = self._grad_hooks + (hook,)
        return _HookHandle(self, hook)


def _array(value):
    return value.data if isinstance(value, Tensor) else value


_creation_order = itertools.count()  # a tensor's place in time: the backward visits later work first


class _HookHandle:
    def __init__(self, tensor, hook):
        self.tensor, self.hook = tensor, hook

    def remove(self):
        self.tensor._grad_hooks = tuple(h for h in self.tensor._grad_hooks if h is not self.hook)


def _freed_backward(g):
    raise RuntimeError("backward: this part of the graph was freed by an earlier backward() (the arrays it "
                       "kept are gone); pass retain_graph=True to the first backward() to go through it twice")


def _unshared(array, dtype):
    """Is ``array`` (the loop's local ``g``) of ``dtype``, contiguous, and reachable from
    nowhere else? A view is never (its base may have other views); otherwise CPython's
    reference count says: three are the caller's variable, this function's parameter and
    getrefcount's own argument, and anything more (the seed, a pending gradient, another
    leaf's .grad, a view's base) is another holder."""
    return (array.dtype == dtype and array.base is None and array.flags.c_contiguous
            and sys.getrefcount(array) <= 3)


def _topological_order(root):
    """Nodes that require grad, parents before children (iterative: graphs of long
    sequences are deeper than Python's recursion limit). The backward runs this order
    reversed, and it reaches things as soon as it can: a node's leaf parents (its weights)
    are explored last, so they land just before the node and the backward reaches them right
    after the op that uses them; among its other parents, the one created last is explored
    last, so the backward goes first into the most recent computation (as PyTorch's engine
    orders by creation). A weight's gradient is then final while the layers below are still
    to come, and a post-accumulate hook can act on it early: data parallel starts reducing."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        parents = [parent for parent in node._parents if parent.requires_grad and id(parent) not in seen]
        stack.extend((parent, False) for parent in parents if parent._backward is None)
        stack.extend(sorted(((parent, False) for parent in parents if parent._backward is not None),
                            key=lambda entry: -entry[0]._created))
    return order


# ---- constructors ----------------------------------------------------------------------
_DEFAULT_FLOAT = np.float32


def tensor(data, requires_grad=False, dtype=None):
    """A new leaf tensor. Python floats become float32; NumPy arrays keep their dtype
    (so float64 arrays stay float64 end to end, as gradcheck needs)."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None and not hasattr(data, "dtype"):
        probe = np.asarray(data)
        dtype = _DEFAULT_FLOAT if _is_floating(probe.dtype) else probe.dtype
    return Tensor(backends.asarray(data, dtype), requires_grad=requires_grad)


def _filled(fill, shape, dtype, requires_grad):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    xp = backends.current().xp
    return Tensor(fill(xp, tuple(shape), np.dtype(dtype or _DEFAULT_FLOAT)), requires_grad)


def zeros(*shape, dtype=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.zeros(s, d), shape, dtype, requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.ones(s, d), shape, dtype, requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.asarray(generator().standard_normal(s).astype(d)),
                   shape, dtype, requires_grad)


def arange(start, end=None, step=1, dtype=None):
    if end is None:
        start, end = 0, start
    probe = np.arange(start, end, step)
    dtype = dtype or (np.int64 if probe.dtype.kind in "iu" else _DEFAULT_FLOAT)
    return Tensor(backends.asarray(probe, dtype))
