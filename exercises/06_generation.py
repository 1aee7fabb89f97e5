"""Chapter 06 exercises: decoding rules and the KV cache (read lessons/06_generation.py
first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 6

NumPy only: the checks compare your answers with minillm's next_token_probs and sample
(minillm/models/base.py) and with causal attention, on freshly drawn distributions (ties,
zeros, vocabularies of 1 and primes, p exactly at a boundary), so calling those would only
compare them with themselves. Every array is float64.
"""
import numpy as np  # noqa: F401  (yours to use)


def apply_temperature(logits, temperature):
    """The next-token distribution at a temperature: softmax(logits / T), row by row.

    logits: (B, V) floats; temperature: T > 0 (small T sharpens, large T flattens).
    Return probabilities (B, V), each row summing to 1. Subtract each row's maximum of
    logits / T before exp, so a tiny T (logits / T in the thousands) cannot overflow.
    """
    raise NotImplementedError


def top_k_filter(probs, k):
    """Top-k: keep each row's k most likely tokens, zero the rest, renormalise.

    probs: (B, V), each row a distribution (entries ≥ 0, summing to 1); k ≥ 1.
    A token stays when its probability is ≥ the row's k-th largest probability, so tokens
    tied with the k-th all stay (as the library does); k ≥ V keeps every token. Return
    (B, V): the kept probabilities divided by their row's sum, 0 elsewhere.
    """
    raise NotImplementedError


def top_p_filter(probs, p):
    """Top-p (nucleus): keep each row's smallest set of most likely tokens whose mass
    reaches p, zero the rest, renormalise.

    probs: (B, V), each row a distribution; 0 < p ≤ 1. Sort each row's tokens from the
    most likely down; among equal probabilities the smaller token id comes first (a
    stable sort of −probs). Keep the first n tokens in that order, n the smallest number
    whose probabilities add up to ≥ p: so the most likely token always stays, and when
    the first n add up to exactly p, token n + 1 does not. Return (B, V): the kept
    probabilities divided by their row's sum, 0 elsewhere.
    """
    raise NotImplementedError


def draw(probs, u):
    """Draw one token from ``probs`` (V,), given a uniform number u in [0, 1).

    The cumulative sums c_i = p_0 + … + p_i, divided by their last one (so they end at
    exactly 1), cut [0, 1) into one interval per token of length p_i. Return the token
    whose interval holds u: the first i with c_i > u, as a Python int. (A token of
    probability 0 is never drawn.) This is how NumPy's rng.choice(V, p=probs) draws, with
    u = rng.random(): with the same seed you get the library's token.
    """
    raise NotImplementedError


def kv_attention_step(q, k, v, cache_k, cache_v):
    """One generation step of causal self-attention with a KV cache.

    q, k, v: (H, hs), the new position's query, key and value in each of H heads.
    cache_k, cache_v: (H, t, hs), the keys and values of the t positions before it (t may
    be 0: an empty cache). Append k and v to the caches (along the positions axis), then
    attend: per head, weights = softmax over the t + 1 cached positions of q · k_j / √hs
    (no mask: nothing in the cache lies in the future), output = Σ_j weights_j v_j.
    Return (y (H, hs), new cache_k (H, t+1, hs), new cache_v (H, t+1, hs)); the new
    position's output equals row t of full causal attention over all t + 1 positions.
    """
    raise NotImplementedError
