"""Chapter 08 exercises: making a model smaller (read lessons/08_deployment.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 8

NumPy only: the checks compare your answers with minillm.compress (quantize_symmetric,
prune_magnitude, factorize, distillation_loss), backward(), and float64
references, on freshly drawn matrices (sides of 1 and primes, zero rows, ties), so calling
those would only compare them with themselves.
"""
import numpy as np  # noqa: F401  (yours to use)


def quantize_int8(w):
    """Symmetric int8 quantisation, one scale per row (per output channel).

    w: float32 (out, in). For each row, scale = max|w_row| / 127 (float32; a row of zeros
    gets scale 1), and q = round(w / scale) to the nearest integer (np.rint: halves to
    even), clipped to [−127, 127], as int8. Compute in float32, as the library does, so
    the roundings agree. Return (q int8 (out, in), scale float32 (out,)); w ≈ scale[:, None] · q.
    """
    raise NotImplementedError


def int8_linear(x, q_w, s_w, b):
    """A quantised linear layer, int8 weights and int8 activations: y ≈ x Wᵀ + b with
    W ≈ s_w[:, None] · q_w.

    x: float32 (N, in); q_w: int8 (out, in) and s_w: float32 (out,), from quantize_int8;
    b: float32 (out,). Quantise x the same way, one scale per row (dynamic quantisation:
    q_x, s_x = quantize_int8(x)). Multiply the integers exactly, q_x · q_wᵀ, in int32 (cast
    first: int8 products overflow int8), then rescale: y[n, o] = s_x[n] · s_w[o] · acc[n, o]
    + b[o]. Return y (N, out) as floats.
    """
    raise NotImplementedError


def magnitude_mask(w, sparsity):
    """Unstructured magnitude pruning: which weights to keep.

    w: (out, in) floats; 0 ≤ sparsity < 1. Let n = w.size and m = floor(sparsity · n).
    Prune exactly m weights, those of smallest |w| (where equal magnitudes straddle the
    cut, prune any of them: np.argsort of |w|.ravel() will do). Return a bool array of
    w's shape: False where pruned, True where kept.
    """
    raise NotImplementedError


def low_rank(w, energy):
    """Low-rank factorisation by truncated SVD: W ≈ B A with two thin factors.

    w: (out, in) floats, not all zero; 0 < energy ≤ 1. With W = U diag(S) Vᵀ
    (np.linalg.svd(w, full_matrices=False), S descending), keep the smallest r whose
    fraction of the energy, (S_1² + … + S_r²) / Σ S², is ≥ energy − 1e-12 (the 1e-12
    absorbs rounding where it lands exactly on energy). Split √S between the two factors:
    A = diag(√S_r) V_rᵀ (r, in) and B = U_r diag(√S_r) (out, r). Return (A, B). By
    Eckart–Young, ‖W − B A‖_F = √(S_{r+1}² + …), the least any rank-r matrix can do.
    """
    raise NotImplementedError


def distillation_loss(student, teacher, targets, temperature, alpha):
    """Knowledge distillation's loss and its gradient with respect to the student's logits.

    student, teacher: logits (N, V); targets: int array (N,); T = temperature; α = alpha.
    With p^T = softmax(logits / T) row by row:
        KL = mean over rows of Σ_v p_t^T (log p_t^T − log p_s^T)
        CE = mean over rows of −log softmax(student)[n, targets[n]]
        L  = α T² KL + (1 − α) CE
    Return (L as a float, ∂L/∂student (N, V)). The gradient is
    α T (p_s^T − p_t^T) / N + (1 − α) (softmax(student) − onehot(targets)) / N: the T² makes
    the soft term's gradient as large as the hard term's whatever T is.
    """
    raise NotImplementedError
