"""Chapter 06 exercises, solved (see exercises/06_generation.py for the tasks)."""
import numpy as np


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def apply_temperature(logits, temperature):
    return softmax(logits / temperature)


def top_k_filter(probs, k):
    kth = np.sort(probs, axis=-1)[:, -min(k, probs.shape[-1])][:, None]   # each row's k-th largest
    kept = np.where(probs >= kth, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


def top_p_filter(probs, p):
    kept = np.zeros_like(probs)
    for row, out in zip(probs, kept):
        order = np.argsort(-row, kind="stable")              # most likely first, ties by id
        n = int(np.searchsorted(np.cumsum(row[order]), p)) + 1   # the shortest head with mass >= p
        out[order[:n]] = row[order[:n]]
    return kept / kept.sum(axis=-1, keepdims=True)


def draw(probs, u):
    cumulative = np.cumsum(probs)
    cumulative /= cumulative[-1]
    return int(np.searchsorted(cumulative, u, side="right"))   # the first i with c_i > u


def kv_attention_step(q, k, v, cache_k, cache_v):
    cache_k = np.concatenate([cache_k, k[:, None]], axis=1)
    cache_v = np.concatenate([cache_v, v[:, None]], axis=1)
    scores = np.einsum("hd,htd->ht", q, cache_k) / np.sqrt(q.shape[-1])
    return np.einsum("ht,htd->hd", softmax(scores), cache_v), cache_k, cache_v
