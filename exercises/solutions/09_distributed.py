"""Chapter 09 exercises, solved (see exercises/09_distributed.py for the tasks)."""
import numpy as np


def data_parallel_gradient(w, x, y, ranks):
    b = len(x)
    grads, full = [], np.zeros_like(w)
    for r in range(ranks):
        rows = slice(r * b // ranks, (r + 1) * b // ranks)
        xr, yr = x[rows], y[rows]
        g = 2 / len(xr) * xr.T @ (xr @ w - yr)
        grads.append(g)
        full += len(xr) / b * g
    return np.array(grads), full


def bounds(n, ranks):
    """Where each np.array_split chunk starts and ends: chunk c is [edges[c], edges[c + 1])."""
    sizes = [n // ranks + (c < n % ranks) for c in range(ranks)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(int)


def ring_reduce_scatter(arrays):
    ranks, n = len(arrays), len(arrays[0])
    edges = bounds(n, ranks)
    chunk = lambda c: slice(edges[c], edges[c + 1])  # noqa: E731
    held = [a.copy() for a in arrays]
    sent = [0] * ranks
    for s in range(ranks - 1):
        messages = [(r, (r - s - 1) % ranks, held[r][chunk((r - s - 1) % ranks)].copy()) for r in range(ranks)]
        for r, c, values in messages:                          # every rank sends at once
            held[(r + 1) % ranks][chunk(c)] += values
            sent[r] += len(values)
    return [held[r][chunk(r)] for r in range(ranks)], sent


def ring_all_gather(chunks, n):
    ranks = len(chunks)
    edges = bounds(n, ranks)
    chunk = lambda c: slice(edges[c], edges[c + 1])  # noqa: E731
    held = [np.zeros(n) for _ in range(ranks)]
    for r in range(ranks):
        held[r][chunk(r)] = chunks[r]
    sent = [0] * ranks
    for s in range(ranks - 1):
        for r in range(ranks):
            c = (r - s) % ranks
            held[(r + 1) % ranks][chunk(c)] = held[r][chunk(c)]
            sent[r] += edges[c + 1] - edges[c]
    return held, sent


def ring_allreduce(arrays):
    chunks, first = ring_reduce_scatter(arrays)
    sums, second = ring_all_gather(chunks, len(arrays[0]))
    return sums, [a + b for a, b in zip(first, second)]


def zero_shard(total, ranks, rank):
    shard = -(-total // ranks)                                 # ceil division
    return rank * shard, (rank + 1) * shard


def zero1_adamw(theta, steps, ranks, lr, betas, eps, weight_decay):
    n = len(theta)
    _, shard = zero_shard(n, ranks, 0)
    flat = np.zeros(shard * ranks)
    flat[:n] = theta
    moments = [(np.zeros(shard), np.zeros(shard)) for _ in range(ranks)]
    beta1, beta2 = betas
    for t, grads in enumerate(steps, start=1):
        mean = np.zeros(shard * ranks)
        mean[:n] = np.sum(grads, axis=0) / ranks                # reduce-scatter: each rank reads its slice
        gathered = flat.copy()
        for r in range(ranks):
            start, stop = zero_shard(n, ranks, r)
            g, p = mean[start:stop], flat[start:stop]
            m, v = moments[r]
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            update = lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
            gathered[start:stop] = p - update - lr * weight_decay * p
            moments[r] = (m, v)
        flat = gathered                                         # all-gather
    return flat[:n], moments
