# %% [markdown]
# # Lesson 00 — Backpropagation on one screen
#
# Every later lesson trains a model by gradient descent, and every gradient comes from
# the same idea: **reverse-mode automatic differentiation** (反向传播). Write the
# computation as a graph of small operations; each operation knows its local derivative;
# the chain rule multiplies them along every path from the loss back to a weight, and the
# paths that meet at a value add up:
#
# $$
# \frac{\partial L}{\partial x} = \sum_{\text{over the uses } y \text{ of } x} \frac{\partial L}{\partial y} \cdot \frac{\partial y}{\partial x}
# $$
#
# Visiting the nodes in reverse topological order (every use of $x$ before $x$ itself) means
# each $\partial L/\partial y$ is complete when it is passed on. Here that fits in one class, `Value`, with
# `+`, `*` and `tanh`: a scalar engine in the spirit of micrograd. Then we compute the same
# neuron with `minillm.Tensor`, whose `backward` is the same loop over arrays, and check
# both against finite differences. Last, two operations that minillm runs as one graph
# node each, softmax + cross-entropy and layer norm: there is no chain of small steps to
# follow, so we derive their gradients by hand and check them against `backward()`.
#
# Run: `python lessons/00_autograd.py [--quick]` or `minillm lesson 0`.

# %%
import inspect
import math

import numpy as np

import minillm
from minillm import functional as F
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
# The `+=` matters: a value used twice ($x$ in `x * x`) receives a gradient from each use.
# Setting instead of adding is the classic bug, so we check it first: $d(x \cdot x + x)/dx = 2x + 1$.

# %%
x = Value(3.0)
y = x * x + x
y.backward()
print(f"y = x·x + x at x = 3: y = {y.data}, dy/dx = {x.grad}")
checks.claim(x.grad == 7.0, "a value used three times gets the sum of the three gradients (2·3 + 1 = 7)")

# %% [markdown]
# ## One neuron, trained with it
#
# A neuron with two inputs, $o = \tanh(w_1 x_1 + w_2 x_2 + b)$, learns the sign of $x_1 - x_2$ from
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
# $(f(\theta + \varepsilon) - f(\theta - \varepsilon)) / 2\varepsilon$ approximates $df/d\theta$ with error $O(\varepsilon^2)$. As CS231n advises we
# compare by the relative error $\lvert a - n\rvert / \max(\lvert a\rvert, \lvert n\rvert)$: around 1e-7 or below is right,
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
# A Tensor holds an array instead of a number, so the sixteen points go through in one
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
# ## A gradient by hand: softmax and cross-entropy
#
# `Value` and `Tensor` get every gradient by chaining small local derivatives. minillm
# also has operations that are one graph node each, with a backward written as a formula:
# `ops.cross_entropy_rows` and `ops.layer_norm_rows`. Here we derive both formulas and check
# them against `backward()`.
#
# A classifier's last step turns a row of $C$ logits $z$ into probabilities and scores the
# target class $y$ with the cross-entropy (交叉熵):
#
# $$
# p_k = \frac{e^{z_k}}{\sum_j e^{z_j}} \qquad L = -\log p_y = -z_y + \log \sum_j e^{z_j}
# $$
#
# Differentiate the second form. $-z_y$ contributes $-1$ to $\partial L/\partial z_y$ and nothing elsewhere; the
# derivative of $\log \sum_j e^{z_j}$ with respect to $z_k$ is $e^{z_k} / \sum_j e^{z_j} = p_k$. So
#
# $$
# \frac{\partial L}{\partial z_k} = p_k - [k = y], \quad \text{that is} \quad \frac{\partial L}{\partial z} = p - y \quad (y \text{ one-hot})
# $$
#
# and a batch of $N$ rows, whose loss is the mean, divides each row's gradient by $N$. Going
# through the softmax's Jacobian, $\partial p_i/\partial z_k = p_i([i = k] - p_k)$, a $C \times C$ matrix per row,
# gives the same answer: times $\partial L/\partial p_i = -[i = y] / p_y$ it collapses to $p_k - [k = y]$. So
# the fused node never forms that matrix; besides the logits it keeps only each row's
# $\log \sum_j e^{z_j}$.

# %%
rng = np.random.default_rng(1)
N, C = 6, 5
logits = rng.normal(0, 2, (N, C))                        # float64 throughout
labels = rng.integers(0, C, N)

p = np.exp(logits - logits.max(axis=1, keepdims=True))   # the row's max cancels; it only prevents overflow
p /= p.sum(axis=1, keepdims=True)
loss_by_hand = -np.log(p[np.arange(N), labels]).mean()
grad_by_hand = (p - np.eye(C)[labels]) / N               # (p − y) / N

Z = minillm.tensor(logits, requires_grad=True)
loss = F.cross_entropy(Z, labels)
loss.backward()
ce_error = np.abs(grad_by_hand - Z.grad.numpy()).max()
print(f"loss: by hand {loss_by_hand:.12f}, F.cross_entropy {loss.item():.12f}")
print(f"∂L/∂z: max |by hand − backward()| = {ce_error:.1e} ({Z.grad.dtype})")
checks.claim(ce_error < 1e-10 and abs(loss_by_hand - loss.item()) < 1e-10,
             f"softmax + cross-entropy: (p − y)/N equals minillm's backward() to 1e-10 (max difference {ce_error:.0e})")

# %% [markdown]
# ## A gradient by hand: layer norm
#
# Layer norm (层归一化) rescales each row $x$ of $D$ numbers to mean 0 and variance 1, then
# applies a learned scale $\gamma$ and shift $\beta$:
#
# $$
# \begin{aligned}
# \mu &= \frac{1}{D} \sum_i x_i & \sigma^2 &= \frac{1}{D} \sum_i (x_i - \mu)^2 & r &= \frac{1}{\sqrt{\sigma^2 + \varepsilon}} \\
# \hat{x}_i &= (x_i - \mu) \cdot r & y_i &= \gamma_i \hat{x}_i + \beta_i
# \end{aligned}
# $$
#
# Let $g_y = \partial L/\partial y$ arrive from above. $\gamma$ and $\beta$ are used by every row, so their gradients sum
# over the rows: $\partial L/\partial\beta = \sum_\text{rows} g_y$ and $\partial L/\partial\gamma = \sum_\text{rows} g_y \odot \hat{x}$. For $x$, write $g = g_y \odot \gamma$
# (that is $\partial L/\partial\hat{x}$). Each $\hat{x}_i$ depends on every $x_j$, directly and through $\mu$ and $r$:
#
# $$
# \begin{aligned}
# \frac{\partial \mu}{\partial x_j} &= \frac{1}{D} \\
# \frac{\partial \sigma^2}{\partial x_j} &= \frac{2(x_j - \mu)}{D} \qquad \text{(the term through } \mu \text{ vanishes: } \textstyle\sum_i (x_i - \mu) = 0\text{)} \\
# \frac{\partial r}{\partial x_j} &= -\tfrac{1}{2} r^3 \cdot \frac{\partial \sigma^2}{\partial x_j} = -\frac{r^2 \hat{x}_j}{D} \\
# \frac{\partial \hat{x}_i}{\partial x_j} &= r \cdot [i = j] - \frac{r}{D} + (x_i - \mu) \cdot \frac{\partial r}{\partial x_j} = r \left([i = j] - \frac{1}{D} - \frac{\hat{x}_i \hat{x}_j}{D}\right)
# \end{aligned}
# $$
#
# Summing over $i$ with the weights $g_i$:
#
# $$
# \frac{\partial L}{\partial x_j} = r \cdot \left(g_j - \operatorname{mean}(g) - \hat{x}_j \cdot \operatorname{mean}(g \odot \hat{x})\right)
# $$
#
# The three terms are the three paths: direct, through the mean, through the variance.
# Because $\sum_j \hat{x}_j = 0$, each row of $\partial L/\partial x$ sums to zero, as it must: adding a constant to
# a row does not change its layer norm.


# %%
def layer_norm_by_hand(x, gamma, beta, eps, grad_y):
    """Forward and backward of layer norm over the last axis of x (N, D)."""
    mu = x.mean(axis=1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + eps)
    xhat = (x - mu) * r
    y = gamma * xhat + beta
    g = grad_y * gamma                                   # ∂L/∂x̂
    dx = r * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return y, dx, (grad_y * xhat).sum(axis=0), grad_y.sum(axis=0)


D, eps = 8, 1e-5
x_rows = rng.normal(1.0, 3.0, (4, D))
gamma, beta = rng.normal(1.0, 0.5, D), rng.normal(0.0, 0.5, D)
grad_y = rng.normal(0.0, 1.0, (4, D))                    # L = Σ y ⊙ grad_y, so ∂L/∂y = grad_y
y_hand, *grads_hand = layer_norm_by_hand(x_rows, gamma, beta, eps, grad_y)

Xt, Gt, Bt = (minillm.tensor(a, requires_grad=True) for a in (x_rows, gamma, beta))
Y = F.layer_norm(Xt, D, Gt, Bt, eps=eps)
(Y * minillm.tensor(grad_y)).sum().backward()
ln_errors = [np.abs(h - t.grad.numpy()).max() for h, t in zip(grads_hand, (Xt, Gt, Bt))]
row_sums = grads_hand[0].sum(axis=1)
print(f"y: max |by hand − F.layer_norm| = {np.abs(y_hand - Y.numpy()).max():.1e}")
print("max |by hand − backward()|: ∂L/∂x {:.1e}, ∂L/∂γ {:.1e}, ∂L/∂β {:.1e}".format(*ln_errors))
print("row sums of ∂L/∂x:", " ".join(f"{v:.1e}" for v in row_sums))
checks.claim(max(ln_errors) < 1e-10 and np.abs(y_hand - Y.numpy()).max() < 1e-10,
             f"layer norm: the hand-derived ∂L/∂x, ∂L/∂γ, ∂L/∂β equal minillm's backward() to 1e-10 "
             f"(max difference {max(ln_errors):.0e})")
checks.claim(np.abs(row_sums).max() < 1e-12, "each row of layer norm's ∂L/∂x sums to zero")

# %% [markdown]
# ## Try this
# 1. Add `exp` and `__pow__` to `Value` (their local derivatives are $e^x$ and $n \cdot x^{n-1}$) and
#    gradient-check them the way we checked the neuron — expect the neuron's agreement again:
#    with its tanh rebuilt from them, $1 - 2\,(e^{2z} + 1)^{-1}$, the largest relative error on the
#    sixteen points is about 3e-10, far under the 1e-6 that marks a bug.
# 2. Replace `+=` by `=` in `__mul__`'s backward and run `y = x * x + x` again: which
#    gradient is lost, and why does the topological order not save it? — expect
#    `dy/dx = 3.0` instead of 7: `+`'s backward runs first and leaves 1 in `x.grad`, then `*`'s
#    backward overwrites it twice with $x \cdot 1 = 3$. The order is right; each `=` throws
#    away what the other uses had already added.
# 3. `Value.backward` recurses; a 10,000-step RNN would overflow Python's stack. Read
#    `_topological_order` in `minillm/tensor.py`: how does it avoid recursion? — expect an
#    explicit stack of `(node, expanded)` pairs: a node is pushed once to push its parents and
#    once more to be appended after them. To see why it matters: `Value.backward` on a chain
#    of about 1,000 `tanh`s raises `RecursionError` (Python's default limit is 1,000 frames),
#    while `Tensor.backward` goes through a chain of 10,000 operations.
# 4. Derive the gradient of binary cross-entropy on a logit, $L = -y \log\sigma(z) - (1 - y) \log(1 - \sigma(z))$,
#    and check it against `F.binary_cross_entropy_with_logits`' `backward()` the way we
#    checked $p - y$. (The answer has the same shape as $p - y$: $\sigma(z) - y$.) — expect
#    `backward()` to equal $(\sigma(z) - y)/N$ for a batch of $N$ logits (the loss is their
#    mean) to about 1e-17 in float64.
# 5. RMSNorm drops the mean: $\hat{x} = x / \sqrt{\operatorname{mean}(x^2) + \varepsilon}$. Redo the layer-norm derivation
#    without $\mu$ and check it against `backward()` through the same formula in float64 Tensors
#    (`minillm/nn/llama_blocks.py`'s `RMSNorm.forward` is that formula, times its weight, built
#    from small ops). — expect
#    $\partial L/\partial x = r\,(g - \hat{x} \cdot \operatorname{mean}(g \odot \hat{x}))$
#    with $r = 1/\sqrt{\operatorname{mean}(x^2) + \varepsilon}$, layer norm's formula without the mean term,
#    equal to `backward()` to about 1e-16. Its rows no longer sum to zero (adding a constant
#    to a row now changes the output); instead each row's $x \cdot \partial L/\partial x$ is about 0
#    (2e-6, from $\varepsilon$), because scaling a row leaves RMSNorm unchanged.
#
# Graded exercises for this chapter: `minillm exercise 0` (fill in `exercises/00_autograd.py`;
# `--solution` shows ours).

# %%
checks.finish()
