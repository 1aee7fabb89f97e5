"""Checks for chapter 06: temperature, top-k and top-p against minillm's next_token_probs,
drawing against minillm's sample from the same seed, and one cached attention step
against full causal attention (float64). The distributions for the filters are dyadic
(counts / a power of 2), so every running sum is exact and p can sit exactly on a
boundary; counts repeat, so ties are common, and some are 0."""
import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import functional as F
from minillm.exercise import Wrong, arrays, exercise, expect_close, expect_equal, sides
from minillm.models.base import next_token_probs, sample

TOL = 1e-9


@exercise("apply_temperature", case=st.tuples(sides(), sides()).flatmap(lambda s: arrays(s, -5, 5)),
          temperature=st.sampled_from([0.003, 0.01, 0.1, 0.5, 1.0, 2.0, 10.0]))
def check_apply_temperature(learner, case, temperature):
    expected = next_token_probs(case, temperature)
    expect_close(learner.apply_temperature(case.copy(), temperature), expected, TOL,
                 f"apply_temperature(logits, {temperature})")
    expect_close(learner.apply_temperature(case + 1000.0, temperature), expected, TOL,       # exp(1000) overflows:
                 f"apply_temperature(logits + 1000, {temperature}), the same distribution")  # shift by the max


@st.composite
def dyadic_rows(draw):
    """(B, V) rows of counts / 2^m that sum to exactly 1."""
    batch, vocab = draw(sides()), draw(sides())
    rows = []
    for _ in range(batch):
        counts = np.array(draw(st.lists(st.integers(0, 4), min_size=vocab, max_size=vocab)), np.float64)
        total = 2.0 ** int(np.ceil(np.log2(max(counts.sum(), 1))))
        counts[draw(st.integers(0, vocab - 1))] += total - counts.sum()    # top up to a power of 2
        rows.append(counts / total)
    return np.array(rows)


def as_logits(probs):
    with np.errstate(divide="ignore"):
        return np.log(probs)        # log 0 = −inf: a token the library can never keep


@exercise("top_k_filter", probs=dyadic_rows(), k=st.integers(1, 8))
def check_top_k_filter(learner, probs, k):
    expected = next_token_probs(as_logits(probs), 1.0, top_k=k)
    expect_close(learner.top_k_filter(probs.copy(), k), expected, TOL,
                 f"top_k_filter(probs, {k}), as next_token_probs(log probs, top_k={k})")


def nucleus(probs, p):
    """The reference: exact on dyadic rows (their running sums are exact)."""
    out = np.zeros_like(probs)
    for row, kept in zip(probs, out):
        total = 0.0
        for i in np.argsort(-row, kind="stable"):
            kept[i] = row[i]
            total += row[i]
            if total >= p:
                break
    return out / out.sum(axis=1, keepdims=True)


@st.composite
def nucleus_case(draw):
    probs = draw(dyadic_rows())
    row = probs[draw(st.integers(0, len(probs) - 1))]
    boundaries = [float(b) for b in np.cumsum(np.sort(row)[::-1]) if 0 < b <= 1]
    p = draw(st.one_of(st.sampled_from(boundaries), st.floats(0.01, 1.0)))    # exactly at a boundary, or anywhere
    return probs, p


@exercise("top_p_filter", case=nucleus_case())
def check_top_p_filter(learner, case):
    probs, p = case
    got = learner.top_p_filter(probs.copy(), p)
    expect_close(got, nucleus(probs, p), TOL, f"top_p_filter(probs, {p:.6g})")
    running = np.cumsum(-np.sort(-probs, axis=1), axis=1)
    if np.abs(running - p).min() > 1e-9:    # off every boundary the library's float sums agree as well
        expect_close(got, next_token_probs(as_logits(probs), 1.0, top_p=p), TOL,
                     f"top_p_filter(probs, {p:.6g}), as next_token_probs(log probs, top_p={p:.6g})")


@exercise("draw", logits=sides().flatmap(lambda v: arrays((v,), -4, 4)), seed=st.integers(0, 2 ** 16),
          rule=st.sampled_from([(1.0, None, None), (0.5, None, None), (2.0, 3, None), (1.0, None, 0.8),
                                (0.7, 2, 0.9)]))
def check_draw(learner, logits, seed, rule):
    temperature, k, p = rule
    probs = next_token_probs(logits[None], temperature, k, p)[0]
    minillm.manual_seed(seed)
    expected = int(sample(logits[None], temperature, k, p)[0])        # what generate() would append
    u = float(np.random.default_rng(seed).random())                    # the same generator's first number
    got = learner.draw(probs.copy(), u)
    if not isinstance(got, (int, np.integer)):
        raise Wrong(f"draw(probs, {u:.6g}): expected an int, got {type(got).__name__}")
    expect_equal(got, expected, f"draw(probs, {u:.6g}), the token minillm's sample draws with seed {seed}")


@st.composite
def qkv(draw):
    shape = (draw(sides()), draw(sides()), draw(sides()))        # H, T, hs
    return tuple(draw(arrays(shape, -3, 3)) for _ in range(3))


@exercise("kv_attention_step", qkv=qkv())
def check_kv_attention_step(learner, qkv):
    q, k, v = qkv
    heads, length, hs = q.shape
    full = F.scaled_dot_product_attention(*map(minillm.tensor, qkv), is_causal=True).numpy()   # (H, T, hs)
    cache_k, cache_v = np.zeros((heads, 0, hs)), np.zeros((heads, 0, hs))
    for t in range(length):
        answer = learner.kv_attention_step(q[:, t].copy(), k[:, t].copy(), v[:, t].copy(), cache_k, cache_v)
        if not isinstance(answer, tuple) or len(answer) != 3:
            raise Wrong(f"expected a triple (y, cache_k, cache_v), got {type(answer).__name__}")
        y, cache_k, cache_v = answer
        expect_close(y, full[:, t], TOL, f"y at position {t}, row {t} of full causal attention")
        expect_close(cache_k, k[:, :t + 1], 0, f"cache_k after position {t}")
        expect_close(cache_v, v[:, :t + 1], 0, f"cache_v after position {t}")
