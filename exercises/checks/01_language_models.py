"""Checks for chapter 01: the count model against counts taken by hand, perplexity
against NGramLM's cross-entropy, and the neural LM against minillm's MLPLM (float64)."""
import math

import numpy as np
from hypothesis import strategies as st

import minillm
from minillm.exercise import exercise, expect_close, expect_equal, sides
from minillm.models import MLPLM, NGramLM

TOL = 1e-9


@st.composite
def token_sequences(draw, min_size=2):
    vocab = draw(sides())
    return vocab, draw(st.lists(st.integers(0, vocab - 1), min_size=min_size, max_size=40))


@exercise("add_k_bigram", text=token_sequences(), k=st.sampled_from([0.1, 0.5, 1.0, 2.0]))
def check_add_k_bigram(learner, text, k):
    vocab, tokens = text
    counts = np.zeros((vocab, vocab))
    for i in range(1, len(tokens)):
        counts[tokens[i - 1], tokens[i]] += 1
    expected = (counts + k) / (counts.sum(axis=1, keepdims=True) + k * vocab)
    expect_close(learner.add_k_bigram(list(tokens), vocab, k), expected, TOL, "P")


@exercise("bigram_perplexity", text=token_sequences())
def check_bigram_perplexity(learner, text):
    vocab, tokens = text
    uniform = np.full((vocab, vocab), 1 / vocab)
    expect_close(learner.bigram_perplexity(uniform, list(tokens)), vocab, TOL,
                 "the perplexity of the uniform model (it must be V)")
    model = NGramLM(2, vocab).fit(tokens)             # an interpolated bigram model: any P will do
    P = np.array([[model.prob([a], b) for b in range(vocab)] for a in range(vocab)])
    expect_close(learner.bigram_perplexity(P, list(tokens)), math.exp(model.cross_entropy(tokens)), TOL,
                 "the perplexity of NGramLM(2)'s table (exp of its cross_entropy)")


@st.composite
def windows_case(draw):
    vocab, b, t, context = draw(sides()), draw(sides()), draw(sides()), draw(st.integers(1, 5))
    idx = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=b * t, max_size=b * t))).reshape(b, t)
    return idx, context, vocab


@exercise("context_windows", case=windows_case())
def check_context_windows(learner, case):
    idx, context, pad = case
    expected = np.full(idx.shape + (context,), pad)
    for t in range(idx.shape[1]):
        for j in range(context):                      # window slot j holds position t − context + 1 + j
            if t - context + 1 + j >= 0:
                expected[:, t, j] = idx[:, t - context + 1 + j]
    expect_equal(learner.context_windows(idx.copy(), context, pad), expected, "the windows")


@exercise("mlp_lm_logits", case=windows_case(), seed=st.integers(0, 2 ** 16), sizes=st.tuples(sides(), sides()))
def check_mlp_lm_logits(learner, case, seed, sizes):
    idx, context, vocab = case
    embd, hidden = sizes
    minillm.manual_seed(seed)
    model = MLPLM(vocab, context=context, n_embd=embd, hidden=hidden, block_size=idx.shape[1]).to(np.float64)
    params = {"embed": model.embed.weight.numpy().copy(),
              "w_hidden": model.hidden.weight.numpy().T.copy(), "b_hidden": model.hidden.bias.numpy().copy(),
              "w_head": model.head.weight.numpy().T.copy(), "b_head": model.head.bias.numpy().copy()}
    with minillm.no_grad():
        expected, _ = model(idx)
    expect_close(learner.mlp_lm_logits(idx.copy(), params, context), expected.numpy(), TOL, "the logits")
