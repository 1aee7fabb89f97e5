"""Chapter 01 exercises, solved (see exercises/01_language_models.py for the tasks)."""
import math

import numpy as np


def add_k_bigram(tokens, vocab_size, k):
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(tokens[:-1], tokens[1:]):
        counts[a, b] += 1
    return (counts + k) / (counts.sum(axis=1, keepdims=True) + k * vocab_size)


def bigram_perplexity(P, tokens):
    logs = [math.log(P[a, b]) for a, b in zip(tokens[:-1], tokens[1:])]
    return math.exp(-sum(logs) / len(logs))


def context_windows(idx, context, pad):
    b, t = idx.shape
    padded = np.concatenate([np.full((b, context - 1), pad), idx], axis=1)
    return padded[:, np.arange(t)[:, None] + np.arange(context)[None, :]]   # row t: padded[t : t + context]


def mlp_lm_logits(idx, params, context):
    vocab = params["embed"].shape[0] - 1
    windows = context_windows(idx, context, pad=vocab)                     # (B, T, context)
    x = params["embed"][windows].reshape(idx.shape[0], idx.shape[1], -1)   # (B, T, context·E)
    hidden = np.tanh(x @ params["w_hidden"] + params["b_hidden"])
    return hidden @ params["w_head"] + params["b_head"]
