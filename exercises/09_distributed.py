"""Chapter 09 exercises: data parallelism, the ring all-reduce and ZeRO-1, simulated in one
process (read lessons/09_distributed.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 9

NumPy only; no MPI: a "rank" here is an index into a list, and "sending" is copying an
array from one list entry to another. The checks compare your answers with backward() on
the full batch, with sums taken directly, with minillm/zero.py's ZeroAdamW and with
optim.AdamW, on freshly drawn sizes: 1 rank and primes of ranks, vector lengths that the
number of ranks does not divide. Arrays are float64.
"""
import numpy as np  # noqa: F401  (yours to use)


def data_parallel_gradient(w, x, y, ranks):
    """Each rank's gradient on its shard of one global batch, and the full batch's gradient
    put back together from them.

    The model is linear regression: loss(w; X, Y) = mean over the rows i of (X_i · w − Y_i)².
    w: (D,); x: (B, D) and y: (B,), the global batch; ranks: R ≤ B. Rank r's shard is
    rows r·B//R up to (but not including) (r+1)·B//R (integer division, as the lesson's
    SPMD program slices), n_r rows. Each rank computes the gradient of the mean loss over
    its own shard: g_r = (2 / n_r) X_rᵀ (X_r w − Y_r).
    Return (grads (R, D), rank r's g_r in row r; full (D,)), where full combines them into
    the gradient of the mean loss over all B rows: Σ_r (n_r / B) g_r. When R divides B
    every n_r / B is 1/R, and that is the plain average an all-reduce computes.
    """
    raise NotImplementedError


def ring_reduce_scatter(arrays):
    """The first half of a ring all-reduce: afterwards rank r holds chunk r of the sum.

    arrays: a list of R arrays (N,), rank r's vector. Cut 0…N−1 into R consecutive chunks
    as np.array_split does (the first N % R chunks one longer; some are empty when N < R).
    Each rank starts with its own vector. Then, for step s = 0 … R−2, every rank r at once
    sends its current values of chunk (r − s − 1) mod R to rank (r + 1) mod R, which adds
    them into its own values of that chunk (use the values from before the step). After
    R − 1 steps rank r holds chunk r summed over all ranks.
    Return (chunks, sent): chunks, a list of R arrays, rank r's summed chunk r; sent, a
    list of R ints, how many numbers rank r sent in all.
    """
    raise NotImplementedError


def ring_all_gather(chunks, n):
    """The second half: every rank ends with every chunk.

    chunks: a list of R arrays, rank r's chunk r of a vector of length n (chunked as
    np.array_split cuts n numbers into R). For step s = 0 … R−2, every rank r sends chunk
    (r − s) mod R, which it holds, to rank (r + 1) mod R, which stores it. Return
    (arrays, sent): arrays, a list of R arrays (n,), the whole vector as rank r holds it;
    sent, a list of R ints, how many numbers rank r sent in all.
    """
    raise NotImplementedError


def ring_allreduce(arrays):
    """A ring all-reduce: ring_reduce_scatter, then ring_all_gather.

    arrays: a list of R arrays (N,). Return (sums, sent): sums, a list of R arrays (N,),
    every one the elementwise sum of all the arrays; sent, a list of R ints, the numbers
    rank r sent in both halves. When R divides N each rank sends 2 (R − 1) / R · N: close
    to 2N whatever R is.
    """
    raise NotImplementedError


def zero_shard(total, ranks, rank):
    """ZeRO-1's slice of the flat parameters that rank ``rank`` owns, as minillm/zero.py cuts.

    total: how many numbers the parameters hold; ranks: R. Every rank gets a slice of the
    same length, shard = ⌈total / R⌉ (ceil division), so the flat buffer is padded with
    zeros to shard · R numbers and the last slice(s) may end in padding. Return
    (start, stop): rank ``rank`` owns flat[start:stop] of the padded buffer.
    """
    raise NotImplementedError


def zero1_adamw(theta, steps, ranks, lr, betas, eps, weight_decay):
    """AdamW trained the ZeRO-1 way, every rank holding the moments of its slice only.

    theta: (N,) the flat weights, the same on every rank. steps: a list with one entry per
    training step, each a list of R gradient arrays (N,), rank r's own gradient.
    Pad theta with zeros to shard · R numbers (zero_shard's shard) and give rank r the
    moments m_r, v_r of its slice only, zeros at first. At step t = 1, 2, …:
      1. reduce-scatter: rank r gets its slice of the mean gradient (Σ over ranks) / R
         (the padding's gradient is 0);
      2. rank r runs one AdamW step (as optim.AdamW: decoupled weight decay, bias
         correction at step t) on its slice of the weights with m_r and v_r;
      3. all-gather: every rank receives every updated slice.
    Return (theta, moments): theta (N,), the weights after the last step (padding
    dropped); moments, a list of R pairs (m_r, v_r), each of shape (shard,). The weights
    are what plain AdamW on the mean gradient gives, with 1/R of its state per rank.
    """
    raise NotImplementedError
