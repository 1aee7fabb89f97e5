"""Checks for chapter 08: int8 quantisation exactly against quantize_symmetric, the int8
layer (int8 weights and activations) against quantize_symmetric and the backend's
int8 × int8 → int32 product, the pruning mask against a float64 reference (and against
prune_magnitude where the two rules must agree), low rank against factorize's rank and
Eckart–Young, distillation against distillation_loss and backward()."""
import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import nn
from minillm.backends.reference import backend as numpy_backend
from minillm.compress.distill import distillation_loss
from minillm.compress.lowrank import factorize
from minillm.compress.prune import prune_magnitude
from minillm.compress.quantize import quantize_symmetric
from minillm.exercise import Wrong, arrays, exercise, expect_close, expect_equal, sides

TOL = 1e-9


def expect_pair(answer, names):
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong(f"expected a pair ({', '.join(names)}), got {type(answer).__name__}")
    return answer


def matrices(low=-2.0, high=2.0):
    return st.tuples(sides(), sides()).flatmap(lambda shape: arrays(shape, low, high))


@exercise("quantize_int8", w=matrices(-3, 3).map(lambda w: w.astype(np.float32)))
def check_quantize_int8(learner, w):
    q, scale = quantize_symmetric(w)
    got_q, got_scale = expect_pair(learner.quantize_int8(w.copy()), ("q", "scale"))
    for got, name, dtype in ((got_q, "q", np.int8), (got_scale, "scale", np.float32)):
        if np.asarray(got).dtype != dtype:
            raise Wrong(f"{name}: expected dtype {np.dtype(dtype)}, got {np.asarray(got).dtype}")
    expect_close(got_scale, scale, 0, "scale, as quantize_symmetric computes it (float32)")
    expect_equal(got_q, q, "q")


@st.composite
def layer_case(draw):
    n, fan_in, fan_out = draw(sides()), draw(sides()), draw(sides())
    x, w, b = draw(arrays((n, fan_in), -3, 3)), draw(arrays((fan_out, fan_in))), draw(arrays((fan_out,)))
    return x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)


@exercise("int8_linear", case=layer_case())
def check_int8_linear(learner, case):
    x, w, b = case
    q_w, s_w = quantize_symmetric(w)                       # weights: one scale per output channel
    q_x, s_x = quantize_symmetric(x)                       # activations: one scale per row, at run time
    acc = numpy_backend.matmul_int8(q_x, q_w)              # int8 × int8 → int32, exact
    expected = acc * s_x[:, None].astype(np.float64) * s_w[None, :] + b
    expect_close(learner.int8_linear(x.copy(), q_w.copy(), s_w.copy(), b.copy()), expected, 1e-5,
                 "int8_linear(x, q_w, s_w, b), s_x · s_w · (q_x q_wᵀ) + b")


@st.composite
def pruning_case(draw):
    w = draw(matrices())
    if draw(st.booleans()):
        w = np.round(w, 1)                                    # many ties in |w|
    return w, draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9]))


@exercise("magnitude_mask", case=pruning_case())
def check_magnitude_mask(learner, case):
    w, sparsity = case
    pruned = int(np.floor(sparsity * w.size))
    what = f"magnitude_mask(w, {sparsity}) (True = kept)"
    got = learner.magnitude_mask(w.copy(), sparsity)
    if not isinstance(got, np.ndarray) or got.dtype != bool:
        raise Wrong(f"{what}: expected a bool array, got {getattr(got, 'dtype', type(got).__name__)}")
    expect_equal(got.shape, w.shape, f"{what}: the shape")
    expect_equal(int((~got).sum()), pruned, f"{what}: how many are pruned, floor({sparsity} · {w.size})")
    if 0 < pruned < w.size and np.abs(w[~got]).max() > np.abs(w[got]).min():
        raise Wrong(f"{what}: expected every pruned |w| ≤ every kept |w|, got a pruned {np.abs(w[~got]).max():.6g} "
                    f"and a kept {np.abs(w[got]).min():.6g}")
    distinct = len(np.unique(np.abs(w))) == w.size
    if sparsity > 0 and distinct and float(sparsity * w.size).is_integer():  # there the library's rule is the same
        linear = nn.Linear(w.shape[1], w.shape[0]).to(np.float64)
        linear.weight.data = w.copy()
        expect_equal(got, prune_magnitude(linear, sparsity).entries[0][1],
                     f"{what}, the mask prune_magnitude keeps")


def nonzero(w):
    if np.linalg.norm(w) < 1e-3:                   # all (nearly) zero: nothing to factorise
        w = w.copy()
        w[0, 0] = 1.0
    return w


@exercise("low_rank", w=matrices().map(nonzero),
          energy=st.sampled_from([0.5, 0.8, 0.9, 0.99, 1.0]))
def check_low_rank(learner, w, energy):
    linear = nn.Linear(w.shape[1], w.shape[0]).to(np.float64)
    linear.weight.data = w.copy()
    library = factorize(linear, energy=energy)
    rank = library.rank
    s = np.linalg.svd(w, compute_uv=False)
    A, B = expect_pair(learner.low_rank(w.copy(), energy), ("A", "B"))
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.ndim != 2 or A.shape[0] != rank:
        raise Wrong(f"A: expected shape ({rank}, {w.shape[1]}) (the rank factorize keeps for energy {energy}), "
                    f"got shape {A.shape}")
    if B.shape != (w.shape[0], rank):
        raise Wrong(f"B: expected shape {(w.shape[0], rank)}, got shape {B.shape}")
    expect_close(np.linalg.norm(w - B @ A), np.sqrt(library.discarded_energy), TOL,
                 f"‖W − B A‖_F at rank {rank}, the discarded √(S_{rank + 1}² + …) (Eckart–Young)")
    expect_close(A @ A.T, np.diag(s[:rank]), TOL, "A Aᵀ (A = diag(√S_r) V_rᵀ gives diag(S_r))")
    expect_close(B.T @ B, np.diag(s[:rank]), TOL, "Bᵀ B (B = U_r diag(√S_r) gives diag(S_r))")


@st.composite
def distill_case(draw):
    n, vocab = draw(sides()), draw(sides())
    targets = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n)))
    return draw(arrays((n, vocab), -5, 5)), draw(arrays((n, vocab), -5, 5)), targets


@exercise("distillation_loss", case=distill_case(), temperature=st.sampled_from([1.0, 2.0, 4.0]),
          alpha=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def check_distillation_loss(learner, case, temperature, alpha):
    student, teacher, targets = case
    z = minillm.tensor(student, requires_grad=True)
    loss = distillation_loss(z, minillm.tensor(teacher), targets, temperature, alpha)
    loss.backward()
    got_loss, got_grad = expect_pair(learner.distillation_loss(student.copy(), teacher.copy(), targets.copy(),
                                                               temperature, alpha), ("loss", "grad"))
    expect_close(got_loss, loss.item(), TOL, f"the loss (T = {temperature}, α = {alpha})")
    expect_close(got_grad, z.grad.numpy(), TOL, f"∂L/∂student (T = {temperature}, α = {alpha})")
