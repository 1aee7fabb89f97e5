"""Chapter 07 exercises, solved (see exercises/07_pretrain_finetune.py for the tasks)."""
import numpy as np


def adamw_step(theta, g, m, v, t, lr, betas, eps, weight_decay):
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps) - lr * weight_decay * theta
    return theta, m, v


def mask_tokens(idx, vocab_size, rng, probability=0.15):
    chosen = (rng.random(idx.shape) < probability) & (idx < vocab_size)
    labels = np.where(chosen, idx, -100)
    roll = rng.random(idx.shape)
    inputs = idx.copy()
    inputs[chosen & (roll < 0.8)] = vocab_size + 1                        # [MASK]
    randomise = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[randomise] = rng.integers(0, vocab_size, int(randomise.sum()))
    return inputs, labels


def sigmoid(z):
    e = np.exp(-np.abs(z))                                   # never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def bce_with_logits(z, y):
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return float(loss.mean()), (sigmoid(z) - y) / len(z)


def precision_recall_f1(predicted, actual):
    tp = int(np.sum((predicted == 1) & (actual == 1)))
    fp = int(np.sum((predicted == 1) & (actual == 0)))
    fn = int(np.sum((predicted == 0) & (actual == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def lora_forward(x, W, b, A, B, alpha):
    return x @ W.T + b + (alpha / A.shape[0]) * ((x @ A.T) @ B.T)


def lora_merge(W, A, B, alpha):
    return W + (alpha / A.shape[0]) * (B @ A)
