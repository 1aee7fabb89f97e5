"""Chapter 08 exercises, solved (see exercises/08_deployment.py for the tasks)."""
import numpy as np


def quantize_int8(w):
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def int8_linear(x, q_w, s_w, b):
    q_x, s_x = quantize_int8(x)
    acc = q_x.astype(np.int32) @ q_w.astype(np.int32).T          # exact integer products
    return acc * s_x[:, None] * s_w[None, :] + b


def magnitude_mask(w, sparsity):
    m = int(np.floor(sparsity * w.size))
    keep = np.ones(w.size, bool)
    keep[np.argsort(np.abs(w).ravel(), kind="stable")[:m]] = False   # the m smallest, ties by position
    return keep.reshape(w.shape)


def low_rank(w, energy):
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    kept = np.cumsum(s ** 2) / np.sum(s ** 2)
    r = int(np.searchsorted(kept, energy - 1e-12)) + 1
    root = np.sqrt(s[:r])
    return root[:, None] * vt[:r], u[:, :r] * root[None, :]


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def distillation_loss(student, teacher, targets, temperature, alpha):
    t, n = temperature, len(student)
    log_s, log_t = log_softmax(student / t), log_softmax(teacher / t)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(axis=-1).mean()
    log_p = log_softmax(student)
    ce = -log_p[np.arange(n), targets].mean()
    onehot = np.eye(student.shape[1])[targets]
    grad = alpha * t * (np.exp(log_s) - np.exp(log_t)) / n + (1 - alpha) * (np.exp(log_p) - onehot) / n
    return float(alpha * t * t * kl + (1 - alpha) * ce), grad
