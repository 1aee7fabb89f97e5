"""GPU benchmarks of the CUDA kernels (backend cupy): every numbered SGEMM version against
cuBLAS (cupy.matmul), fused flash attention forward+backward against the CuPy composite
(time and peak memory), layer norm against device-copy bandwidth, and a GPT training
step on cupy against the numpy backend on the host.

    python -m benchmarks.cuda_bench [--quick] [--out DIR]
"""
import argparse
import math
import re

import numpy as np

from .timing import GpuPeakMemory, gpu_median_seconds, machine_info, median_seconds, write_json


def sgemm(prims, cupy, sizes, rotate=2):
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        pairs = [(cupy.asarray(rng.standard_normal((n, n), np.float32)),
                  cupy.asarray(rng.standard_normal((n, n), np.float32))) for _ in range(rotate)]
        flops = 2.0 * n ** 3
        reps = 3 if n >= 4096 else 10
        t_cublas = gpu_median_seconds(lambda a, b: a @ b, pairs, repeats=reps)
        row = {"n": n, "cublas_tflops": flops / t_cublas / 1e12}
        for version in prims.SGEMM_VERSIONS:
            if version in ("sgemm_v1_naive", "sgemm_v2_coalesced") and n > 4096:
                continue  # minutes per call; the trend is clear from the smaller sizes
            t = gpu_median_seconds(lambda a, b, v=version: prims.sgemm_numbered(v, a, b), pairs, repeats=reps)
            row[f"{version}_tflops"] = flops / t / 1e12
            row[f"{version}_vs_cublas"] = t_cublas / t
        a, b = pairs[0]
        row["v5_max_rel_err"] = float(cupy.abs(prims.sgemm_numbered("sgemm_v5_vectorized", a, b) - a @ b).max()
                                      / cupy.abs(a @ b).max())
        print(row, flush=True)
        rows.append(row)
    return rows


def attention(prims, reference, cupy, lengths, heads=32, d=64):
    rows = []
    for t in lengths:
        rng = np.random.default_rng(t)
        q, k, v, do = (cupy.asarray(rng.standard_normal((heads, t, d), np.float32)) for _ in range(4))
        scale = 1 / math.sqrt(d)
        row = {"T": t, "BH": heads, "d": d, "causal": True}
        for label, impl in (("fused", prims), ("composite", reference)):
            def step(q, k, v, do, impl=impl):
                out, lse = impl.attention_forward(q, k, v, True, scale)
                impl.attention_backward(q, k, v, out, lse, do, True, scale)
            with GpuPeakMemory() as mem:
                step(q, k, v, do)
                cupy.cuda.runtime.deviceSynchronize()
            row[f"{label}_ms"] = gpu_median_seconds(step, [(q, k, v, do)], repeats=5) * 1e3
            row[f"{label}_peak_mb"] = mem.peak / 2 ** 20
        row["speedup"] = row["composite_ms"] / row["fused_ms"]
        print(row, flush=True)
        rows.append(row)
    return rows


def layernorm(prims, cupy, shapes):
    rows = []
    for r, d in shapes:
        rng = np.random.default_rng(r + d)
        x = cupy.asarray(rng.standard_normal((r, d), np.float32))
        w, b = cupy.ones(d, np.float32), cupy.zeros(d, np.float32)
        dy = cupy.asarray(rng.standard_normal((r, d), np.float32))
        nbytes = x.nbytes
        t_copy = gpu_median_seconds(lambda x: cupy.copyto(cupy.empty_like(x), x), [(x,)])
        t_fwd = gpu_median_seconds(lambda x: prims.layernorm_forward(x, w, b, 1e-5), [(x,)])
        y, mean, rstd = prims.layernorm_forward(x, w, b, 1e-5)
        t_bwd = gpu_median_seconds(lambda dy: prims.layernorm_backward(dy, x, w, mean, rstd), [(dy,)])
        copy_gbs = 2 * nbytes / t_copy / 1e9      # read + write
        fwd_gbs = 2 * nbytes / t_fwd / 1e9        # read x, write y
        bwd_gbs = 3 * nbytes / t_bwd / 1e9        # read dy and x, write dx
        row = {"rows": r, "d": d, "copy_GBs": copy_gbs, "forward_GBs": fwd_gbs, "backward_GBs": bwd_gbs,
               "forward_vs_copy": fwd_gbs / copy_gbs, "backward_vs_copy": bwd_gbs / copy_gbs}
        print(row, flush=True)
        rows.append(row)
    return rows


def gpt_step(steps=5):
    import minillm
    from minillm.models import GPT, GPTConfig
    config = GPTConfig(vocab_size=96, block_size=128, n_layer=4, n_head=4, n_embd=256)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 96, size=(16, 129))
    row = {"config": "vocab 96, block 128, batch 16, 4 layers, 4 heads, 256 wide"}
    for name in ("cupy", "numpy"):
        with minillm.use_backend(name):
            minillm.manual_seed(0)
            model = GPT(config)

            def step(idx):
                _, loss = model(idx[:, :-1], idx[:, 1:])
                model.zero_grad()
                loss.backward()
                with minillm.no_grad():
                    for p in model.parameters():
                        p.data -= 1e-3 * p.grad.data
                return loss.item()  # the one host copy per step

            seconds = median_seconds(step, [(batch,)], repeats=steps, warmup=2)
        row[f"{name}_ms"] = seconds * 1e3
        row[f"{name}_tokens_per_s"] = 16 * 128 / seconds
    row["speedup"] = row["numpy_ms"] / row["cupy_ms"]
    print(row, flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    import cupy

    from minillm import backends
    numpy_backend, prims = backends.get("numpy"), backends.get("cupy")
    info = machine_info(gpu=True)
    print(info, flush=True)
    results = {"machine": info,
               "sgemm": sgemm(prims, cupy, [1024, 2048] if args.quick else [1024, 2048, 4096, 8192]),
               "attention": attention(prims, numpy_backend, cupy, [256, 1024] if args.quick else [256, 512, 1024, 2048, 4096]),
               "layernorm": layernorm(prims, cupy, [(4096, 768), (16384, 1024)] if args.quick
                                      else [(2048, 256), (8192, 768), (16384, 1024), (32768, 4096)]),
               "gpt_step": gpt_step()}
    stem = "cuda-" + re.sub(r"[^A-Za-z0-9]+", "-", info["gpu"]).strip("-").lower() + "-" + info["date"]
    print("wrote", write_json(results, args.out, stem))


if __name__ == "__main__":
    main()
