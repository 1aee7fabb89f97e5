"""Checks for chapter 09: the ranks' gradients against backward() on each shard and the
full batch, the ring's halves against sums taken directly and the numbers each rank must
send, ZeRO-1's slices against minillm/zero.py's ZeroAdamW, and ZeRO-1 training against
optim.AdamW on the mean gradient; float64, 1 rank and primes, lengths R does not divide."""
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import nn, optim
from minillm.exercise import Wrong, arrays, exercise, expect_close, expect_equal, sides
from minillm.zero import ZeroAdamW

TOL = 1e-9
RANKS = (1, 2, 3, 5, 7, 8)
LENGTHS = (1, 2, 3, 5, 7, 11, 13)


def expect_pair(answer, names):
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong(f"expected a pair ({', '.join(names)}), got {type(answer).__name__}")
    return answer


def expect_list(got, length, what):
    if not isinstance(got, (list, tuple)) or len(got) != length:
        size = f" of {len(got)}" if isinstance(got, (list, tuple)) else ""
        raise Wrong(f"{what}: expected a list of {length} (one per rank), got {type(got).__name__}{size}")
    return got


def chunk_sizes(n, ranks):
    return [len(c) for c in np.array_split(np.arange(n), ranks)]


@st.composite
def batch_case(draw):
    ranks = draw(st.sampled_from(RANKS[:-1]))
    b, d = draw(st.integers(ranks, 13)), draw(sides())       # B ≥ R, often not a multiple of R
    return draw(arrays((d,))), draw(arrays((b, d))), draw(arrays((b,))), ranks


def mse_gradient(w, x, y):
    weights = minillm.tensor(w, requires_grad=True)
    loss = ((minillm.tensor(x) @ weights - minillm.tensor(y)) ** 2).mean()
    loss.backward()
    return weights.grad.numpy()


@exercise("data_parallel_gradient", case=batch_case())
def check_data_parallel_gradient(learner, case):
    w, x, y, ranks = case
    b = len(x)
    grads, full = expect_pair(learner.data_parallel_gradient(w.copy(), x.copy(), y.copy(), ranks), ("grads", "full"))
    shards = [slice(r * b // ranks, (r + 1) * b // ranks) for r in range(ranks)]
    expected = np.array([mse_gradient(w, x[rows], y[rows]) for rows in shards])
    expect_close(full, mse_gradient(w, x, y), TOL, f"full, the gradient of the mean loss over all {b} rows "
                                                   f"({ranks} ranks, shards of {[s.stop - s.start for s in shards]})")
    expect_close(grads, expected, TOL, "grads, each rank's gradient on its own shard")


@st.composite
def vectors(draw):
    ranks, n = draw(st.sampled_from(RANKS)), draw(st.sampled_from(LENGTHS))
    return [draw(arrays((n,), -3, 3)) for _ in range(ranks)]


@exercise("ring_reduce_scatter", per_rank=vectors())
def check_ring_reduce_scatter(learner, per_rank):
    ranks, n = len(per_rank), len(per_rank[0])
    chunks, sent = expect_pair(learner.ring_reduce_scatter([a.copy() for a in per_rank]), ("chunks", "sent"))
    total = np.array_split(np.sum(per_rank, axis=0), ranks)
    for r, got in enumerate(expect_list(chunks, ranks, "chunks")):
        expect_close(got, total[r], TOL, f"rank {r}'s chunk {r} of the sum ({ranks} ranks, N = {n})")
    expected = [n - size for size in chunk_sizes(n, ranks)]     # every chunk but its own
    expect_equal(expect_list(sent, ranks, "sent"), expected, f"sent, the numbers each rank sends ({ranks} ranks, "
                                                             f"N = {n})")


@exercise("ring_all_gather", case=st.tuples(st.sampled_from(RANKS), st.sampled_from(LENGTHS)).flatmap(
    lambda s: st.tuples(st.just(s[0]), arrays((s[1],), -3, 3))))
def check_ring_all_gather(learner, case):
    ranks, whole = case
    n = len(whole)
    arrays_, sent = expect_pair(learner.ring_all_gather([c.copy() for c in np.array_split(whole, ranks)], n),
                                ("arrays", "sent"))
    for r, got in enumerate(expect_list(arrays_, ranks, "arrays")):
        expect_close(got, whole, 0, f"the vector rank {r} holds after the all-gather ({ranks} ranks, n = {n})")
    sizes = chunk_sizes(n, ranks)
    expected = [n - sizes[(r + 1) % ranks] for r in range(ranks)]  # every chunk but its successor's
    expect_equal(expect_list(sent, ranks, "sent"), expected, f"sent ({ranks} ranks, n = {n})")


@exercise("ring_allreduce", per_rank=vectors())
def check_ring_allreduce(learner, per_rank):
    ranks, n = len(per_rank), len(per_rank[0])
    sums, sent = expect_pair(learner.ring_allreduce([a.copy() for a in per_rank]), ("sums", "sent"))
    total = np.sum(per_rank, axis=0)
    for r, got in enumerate(expect_list(sums, ranks, "sums")):
        expect_close(got, total, TOL, f"the sum rank {r} holds ({ranks} ranks, N = {n})")
    sizes = chunk_sizes(n, ranks)
    expected = [2 * n - sizes[r] - sizes[(r + 1) % ranks] for r in range(ranks)]
    what = f"sent ({ranks} ranks, N = {n}" + (f": 2(R − 1)/R · N = {2 * (ranks - 1) * n // ranks} each)"
                                              if n % ranks == 0 else ")")
    expect_equal(expect_list(sent, ranks, "sent"), expected, what)


def library_shard(total, ranks):
    """ZeroAdamW's slice length, from a stand-in communicator (no MPI needed to build one)."""
    params = [nn.Parameter(np.zeros(total))]
    return ZeroAdamW(params, SimpleNamespace(comm=None, MPI=None, rank=0, size=ranks)).shard


@exercise("zero_shard", total=st.sampled_from([1, 2, 3, 5, 7, 11, 13, 16, 60, 97]), ranks=st.sampled_from(RANKS))
def check_zero_shard(learner, total, ranks):
    shard = library_shard(total, ranks)
    for rank in range(ranks):
        expect_equal(learner.zero_shard(total, ranks, rank), (rank * shard, (rank + 1) * shard),
                     f"zero_shard({total}, {ranks}, {rank}), as ZeroAdamW slices the padded buffer")


@st.composite
def zero_case(draw):
    ranks, n = draw(st.sampled_from(RANKS)), draw(st.sampled_from(LENGTHS))
    steps = [[draw(arrays((n,), -3, 3)) for _ in range(ranks)] for _ in range(draw(st.integers(1, 3)))]
    hyper = dict(lr=draw(st.sampled_from([1e-3, 0.1])), betas=draw(st.sampled_from([(0.9, 0.999), (0.8, 0.99)])),
                 eps=1e-8, weight_decay=draw(st.sampled_from([0.0, 0.1])))
    return draw(arrays((n,))), steps, hyper


@exercise("zero1_adamw", case=zero_case())
def check_zero1_adamw(learner, case):
    theta, steps, hyper = case
    ranks, n = len(steps[0]), len(theta)
    weight = nn.Parameter(theta.copy())
    opt = optim.AdamW([weight], **hyper)
    for grads in steps:
        weight.grad = minillm.tensor(np.sum(grads, axis=0) / ranks)    # what one process with the mean gradient does
        opt.step()
    got_theta, moments = expect_pair(learner.zero1_adamw(theta.copy(), [[g.copy() for g in s] for s in steps],
                                                         ranks, **hyper), ("theta", "moments"))
    expect_close(got_theta, weight.numpy(), TOL, f"theta after {len(steps)} steps on {ranks} ranks, as "
                                                 f"optim.AdamW on the mean gradient leaves it")
    shard = library_shard(n, ranks)
    padded = {key: np.concatenate([opt.state[0][key], np.zeros(shard * ranks - n)]) for key in ("exp_avg",
                                                                                               "exp_avg_sq")}
    for r, pair in enumerate(expect_list(moments, ranks, "moments")):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise Wrong(f"moments[{r}]: expected a pair (m, v), got {type(pair).__name__}")
        mine = slice(r * shard, (r + 1) * shard)
        expect_close(pair[0], padded["exp_avg"][mine], TOL, f"rank {r}'s m, AdamW's m on its slice (padding 0)")
        expect_close(pair[1], padded["exp_avg_sq"][mine], TOL, f"rank {r}'s v")
