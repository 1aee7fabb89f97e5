# %% [markdown]
# # Lesson 00 — Backpropagation on one screen
#
# Every later lesson trains a model by gradient descent, and every gradient comes from
# the same idea: **reverse-mode automatic differentiation** (反向传播). Write the
# computation as a graph of small operations; each operation knows its local derivative;
# the chain rule multiplies them along every path from the loss back to a weight, and the
# paths that meet at a value add up:
#
#     ∂L/∂x = Σ over the uses y of x:  ∂L/∂y · ∂y/∂x
#
# Visiting the nodes in reverse topological order (every use of x before x itself) means
# each ∂L/∂y is complete when it is passed on. Here that fits in one class, `Value`, with
# `+`, `*` and `tanh`: a scalar engine in the spirit of micrograd. Then we compute the same
# neuron with `minillm.Tensor`, whose `backward` is the same loop over arrays, and check
# both against finite differences.
#
# Run: `python lessons/00_autograd.py [--quick]` or `minillm lesson 0`.

# %%
import inspect
import math

import numpy as np

import minillm
from minillm.lessons import Checks, quick_mode, results_dir, save_figure

QUICK = quick_mode()
checks = Checks("lesson 00")
OUT = results_dir("00_autograd")


# %% [markdown]
# ## The engine: a scalar that remembers how it was made

# %%
class Value:
    """A number, the values it was computed from, and how to pass a gradient back to them."""

    def __init__(self, data, parents=(), op=""):
        self.data, self.grad = float(data), 0.0
        self.parents, self.op = parents, op
        self._backward = lambda: None   # adds this node's grad into its parents' grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def backward():                 # d(a+b)/da = d(a+b)/db = 1
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def backward():                 # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def backward():                 # d tanh(a)/da = 1 − tanh²(a)
            self.grad += (1 - t * t) * out.grad
        out._backward = backward
        return out

    __radd__ = __add__
    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-other)

    def backward(self):
        """Topological order (parents before children), then the chain rule in reverse."""
        order, seen = [], set()

        def visit(node):
            if node not in seen:
                seen.add(node)
                for parent in node.parents:
                    visit(parent)
                order.append(node)
        visit(self)
        self.grad = 1.0                 # dL/dL
        for node in reversed(order):
            node._backward()


# %% [markdown]
# The `+=` matters: a value used twice (x in `x * x`) receives a gradient from each use.
# Setting instead of adding is the classic bug, so we check it first: d(x·x + x)/dx = 2x + 1.

# %%
x = Value(3.0)
y = x * x + x
y.backward()
print(f"y = x·x + x at x = 3: y = {y.data}, dy/dx = {x.grad}")
checks.claim(x.grad == 7.0, "a value used three times gets the sum of the three gradients (2·3 + 1 = 7)")

# %% [markdown]
# ## One neuron, trained with it
#
# A neuron with two inputs, o = tanh(w₁x₁ + w₂x₂ + b), learns the sign of x₁ − x₂ from
# sixteen points by gradient descent on the squared error.

# %%
rng = np.random.default_rng(0)
points = rng.uniform(-1, 1, (16, 2))
targets = np.sign(points[:, 0] - points[:, 1])
w0, b0 = rng.normal(0, 0.5, 2), 0.0


def neuron_loss(w1, w2, b):
    loss = Value(0.0)
    for (x1, x2), t in zip(points, targets):
        out = (w1 * x1 + w2 * x2 + b).tanh()
        loss = loss + (out - t) * (out - t)
    return loss * (1 / len(points))


w1, w2, b = Value(w0[0]), Value(w0[1]), Value(b0)
history = []
for step in range(30 if QUICK else 100):
    loss = neuron_loss(w1, w2, b)
    for p in (w1, w2, b):
        p.grad = 0.0                    # gradients add up, so start each step from zero
    loss.backward()
    for p in (w1, w2, b):
        p.data -= 0.5 * p.grad
    history.append(loss.data)
print(f"loss {history[0]:.3f} → {history[-1]:.3f}; w = ({w1.data:.2f}, {w2.data:.2f}), b = {b.data:.2f}")
checks.claim(history[-1] < 0.5 * history[0], "gradient descent with Value's gradients halves the loss at least")
predicted = [math.copysign(1, math.tanh(w1.data * a + w2.data * c + b.data)) for a, c in points]
checks.claim(predicted == list(targets), "the trained neuron gets the sign of x₁ − x₂ right on every point")

# %% [markdown]
# ## Checking a gradient: finite differences
#
# (f(θ + ε) − f(θ − ε)) / 2ε approximates df/dθ with error O(ε²). As CS231n advises we
# compare by the relative error |a − n| / max(|a|, |n|): around 1e-7 or below is right,
# 1e-2 is a bug.


# %%
def relative_error(a, n):
    return abs(a - n) / max(abs(a), abs(n), 1e-12)


at = [Value(w0[0]), Value(w0[1]), Value(b0)]
neuron_loss(*at).backward()
worst_value = 0.0
for i in range(3):
    eps, plus, minus = 1e-6, [v.data for v in at], [v.data for v in at]
    plus[i] += eps
    minus[i] -= eps
    numeric = (neuron_loss(*map(Value, plus)).data - neuron_loss(*map(Value, minus)).data) / (2 * eps)
    worst_value = max(worst_value, relative_error(at[i].grad, numeric))
print(f"Value: max relative error against central differences {worst_value:.1e}")
checks.claim(worst_value < 1e-6, f"Value's gradients agree with finite differences (max rel error {worst_value:.0e})")

# %% [markdown]
# ## The same neuron in `minillm.Tensor`
#
# A Tensor holds an array instead of a number, so the eight points go through in one
# product. Its `backward` is the loop above: a topological order, then each node's
# backward function in reverse, adding into parents that were used more than once.

# %%
X, T = minillm.tensor(points), minillm.tensor(targets)
W = minillm.tensor(w0, requires_grad=True)          # float64: finite differences need it
B = minillm.tensor(np.array(b0), requires_grad=True)


def tensor_loss(W, B):
    out = (X @ W + B).tanh()
    return ((out - T) * (out - T)).mean()


tensor_loss(W, B).backward()
at = [Value(w0[0]), Value(w0[1]), Value(b0)]
neuron_loss(*at).backward()
engine_grads = np.array([v.grad for v in at])
tensor_grads = np.concatenate([W.grad.numpy(), [B.grad.item()]])
print("Value grads: ", np.round(engine_grads, 8))
print("Tensor grads:", np.round(tensor_grads, 8))
checks.claim(np.allclose(engine_grads, tensor_grads, rtol=1e-12, atol=1e-14),
             "Tensor's gradients equal Value's to 1e-12: the same chain rule, over arrays")
checks.claim(minillm.gradcheck(tensor_loss, W, B), "minillm.gradcheck (every element, float64) passes on the neuron")

# %% [markdown]
# Side by side, `minillm/tensor.py`'s `backward` — the copy on first store is why a leaf's
# gradient never shares memory with another's:

# %%
source = inspect.getsource(minillm.Tensor.backward)
print(source[source.index("grads = {"):])
checks.claim("reversed(_topological_order(self))" in source, "Tensor.backward walks the same reverse topological order")

# %% [markdown]
# ## The graph
#
# Each circle is a `Value`, each arrow a use; gradients flow against the arrows. The
# picture is the graph of one point's squared error, laid out by depth.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

w1, w2, b = Value(w0[0]), Value(w0[1]), Value(b0)
(x1, x2), t = points[0], targets[0]
out = (w1 * x1 + w2 * x2 + b).tanh()
diff = out - t                         # one node, used twice by the square
err = diff * diff
err.backward()
depth, nodes = {}, []


def place(node):
    if node not in depth:
        depth[node] = 1 + max((place(p) for p in node.parents), default=-1)
        nodes.append(node)
    return depth[node]


place(err)
names = {w1: "w₁", w2: "w₂", b: "b", diff: "out − t", err: "loss"}
names.update({n: ("x₁" if n.data == x1 else "x₂" if n.data == x2 else "−t")
              for n in nodes if not n.op and n not in names})
rows = {}
position = {}
for node in nodes:
    rows.setdefault(depth[node], []).append(node)
    position[node] = (depth[node], len(rows[depth[node]]) - 1)
fig, ax = plt.subplots(figsize=(10, 4))
for node in nodes:
    for parent in node.parents:
        (x0, y0), (x1_, y1_) = position[parent], position[node]
        ax.annotate("", (x1_, y1_), (x0, y0), arrowprops=dict(arrowstyle="-|>", color="0.5", shrinkA=18, shrinkB=18))
for node, (x, y) in position.items():
    label = f"{names.get(node, node.op)}\n{node.data:.2f}\ng {node.grad:.2f}"
    ax.text(x, y, label, ha="center", va="center", fontsize=7,
            bbox=dict(boxstyle="circle", fc="#dbe9f6" if node.op else "#f6e3db"))
ax.set(xlim=(-0.6, max(depth.values()) + 0.6), ylim=(-0.8, max(len(r) for r in rows.values()) - 0.2),
       title="(tanh(w₁x₁ + w₂x₂ + b) − t)²: values forward, gradients g = ∂loss/∂node backward")
ax.axis("off")
save_figure(fig, OUT / "graph.png", dpi=110)
leaves = [n for n in nodes if not n.op]
checks.claim(len(nodes) - len(leaves) == 7 and len(leaves) == 6,
             "one squared error is 7 operations (2 ×, 2 +, tanh, − t, the square) on 6 leaves (w₁, w₂, b, x₁, x₂, −t)")
checks.claim(err.parents[0] is err.parents[1] and math.isclose(diff.grad, 2 * diff.data),
             "the square uses (out − t) twice, and its gradient is the sum of both uses: 2·(out − t)")

# %% [markdown]
# ## Exercises
# 1. Add `exp` and `__pow__` to `Value` (their local derivatives are eˣ and n·xⁿ⁻¹) and
#    gradient-check them the way we checked the neuron.
# 2. Replace `+=` by `=` in `__mul__`'s backward and run `y = x * x + x` again: which
#    gradient is lost, and why does the topological order not save it?
# 3. `Value.backward` recurses; a 10,000-step RNN would overflow Python's stack. Read
#    `_topological_order` in `minillm/tensor.py`: how does it avoid recursion?

# %%
checks.finish()
