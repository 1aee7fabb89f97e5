"""Chapter 01 exercises: counting and neural language models (read
lessons/01_language_models.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 1

NumPy and `math` only: the checks compare your answers with minillm's NGramLM and
MLPLM on freshly drawn token sequences, so calling them would only compare them with
themselves. Tokens are ints in [0, vocab_size).
"""
import math  # noqa: F401  (yours to use)

import numpy as np  # noqa: F401  (yours to use)


def add_k_bigram(tokens, vocab_size, k):
    """The add-k smoothed bigram model counted from one token sequence.

    tokens: a list of ints; vocab_size: V; k > 0.
    Return a (V, V) float array P with P[a, b] = (count(a → b) + k) / (count(a → ·) + k·V),
    where count(a → b) is how often b directly follows a in tokens, and count(a → ·) how
    often a is followed by anything. Every row sums to 1; a token never followed by
    anything gets the uniform row 1/V.
    """
    raise NotImplementedError


def bigram_perplexity(P, tokens):
    """The perplexity of a bigram model on a token sequence.

    P: (V, V) array, P[a, b] = p(next token is b | this token is a); tokens: a list of ints,
    at least 2 of them. Every token after the first is predicted from the one before it:
    return exp(−(1/(n − 1)) Σ_{i=1}^{n−1} log P[tokens[i−1], tokens[i]]) as a float.
    (A model that gives every token 1/V scores exactly V.)
    """
    raise NotImplementedError


def context_windows(idx, context, pad):
    """The fixed windows a neural n-gram model (MLPLM) reads.

    idx: (B, T) int array of tokens; context: the window length n; pad: the padding id.
    Return a (B, T, context) int array W with W[b, t] = the tokens at positions
    t − context + 1, …, t of row b, oldest first, and `pad` for positions before 0.
    (The window ending at t is what predicts the token at t + 1.)
    """
    raise NotImplementedError


def mlp_lm_logits(idx, params, context):
    """The logits of Bengio et al.'s fixed-window neural LM (minillm's MLPLM).

    idx: (B, T) int array, tokens in [0, V). params: a dict of float arrays
      "embed" (V + 1, E): row V is the padding token's vector;
      "w_hidden" (context·E, H), "b_hidden" (H,); "w_head" (H, V), "b_head" (V,)
    (each layer computes x @ w + b). For every position t: look up the embeddings of
    context_windows(idx, context, pad=V)[b, t], concatenate them (oldest first) into one
    vector of context·E numbers, apply the hidden layer and tanh, then the head.
    Return the (B, T, V) logits.
    """
    raise NotImplementedError
