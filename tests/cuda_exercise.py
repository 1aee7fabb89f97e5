"""Launch every CUDA kernel on awkward shapes through the active CUDA backend — a script
for `compute-sanitizer --tool memcheck|racecheck|synccheck python tests/cuda_exercise.py`
on a GPU (backend cupy), or for the bounds-checked CPU harness (backend cuda-sim)."""
import sys

import numpy as np

from minillm import backends

name = sys.argv[1] if len(sys.argv) > 1 else "cupy"
xp = backends.get(name).xp
prims = backends.get(name)
rng = np.random.default_rng(0)


def arr(*shape):
    return xp.asarray(rng.standard_normal(shape).astype(np.float32))


for m, n, k in [(1, 1, 1), (67, 31, 129), (130, 260, 36)]:
    a, b = arr(m, k), arr(k, n)
    for version in prims.SGEMM_VERSIONS:
        if version == "sgemm_v5_vectorized" and (k % 4 or n % 4):
            continue
        prims.sgemm_numbered(version, a, b)
    prims.matmul(a, arr(n, k), trans_b=True)
    prims.matmul(arr(k, m), b, trans_a=True)
    prims.matmul(arr(3, m, k), arr(3, k, n))
for n_heads, tq, tk, d, causal in [(1, 1, 1, 1, True), (3, 67, 67, 64, True), (2, 5, 70, 13, False), (2, 33, 40, 128, True), (2, 9, 9, 16, True), (3, 70, 70, 32, False)]:
    q, k, v, do = arr(n_heads, tq, d), arr(n_heads, tk, d), arr(n_heads, tk, d), arr(n_heads, tq, d)
    out, lse = prims.attention_forward(q, k, v, causal, 0.125)
    prims.attention_backward(q, k, v, out, lse, do, causal, 0.125)
for rows, d in [(1, 2), (67, 129), (300, 768), (3, 1500), (2, 5000)]:
    x, w, bias = arr(rows, d), arr(d), arr(d)
    y, mean, rstd = prims.layernorm_forward(x, w, bias, 1e-5)
    prims.layernorm_backward(arr(rows, d), x, w, mean, rstd)
for rows, classes in [(1, 1), (67, 96), (5, 1000)]:
    logits = arr(rows, classes)
    target = xp.asarray(rng.integers(0, classes, rows))
    target[0] = -100
    loss, lse = prims.cross_entropy_forward(logits, target, -100)
    prims.cross_entropy_backward(logits, target, lse, loss, -100)
for n in (1, 1000, 70001):
    x = arr(n)
    prims.gelu_forward(x)
    prims.gelu_backward(x, arr(n))
if xp is not np:
    xp.cuda.runtime.deviceSynchronize()
print(f"cuda_exercise: every kernel launched on {name}")
