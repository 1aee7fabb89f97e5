"""bf16 GEMM on the CPU (kernels/c/matmul_bf16.c, issue #34): GFLOP/s of the numbered versions
v1 (scalar), v2 (vdpbf16ps, one accumulator), v3 (register tile, every core) and v4 (v3 from
float32 operands, rounded to bf16 as they are packed: timed as a Linear layer's forward, x·Wᵀ,
the rounding included), against the
fp32 C GEMM (the c backend's production matmul) and PyTorch's bf16 ``torch.matmul`` when torch
is installed (``torch.set_num_threads`` = the OpenMP threads of our kernels).

Shapes M×K·K×N: 1024³, 2048³ and a GPT-step product (2048×1024 · 1024×256, the `base`
config's MLP down-projection on 2048 tokens). Each series: warm-up, then the median of
repeats (benchmarks/timing.median_seconds); v1 and v2 take fewer repeats (they are slow and
only say where the ladder starts). Prints the ratios of v4 — what a Linear layer runs under
``amp.autocast("bfloat16")``, its rounding included — to the fp32 C GEMM (goal ≥ 1.7) and to
torch's bf16 matmul (goal ≥ 1.0; torch's inputs are bf16 already, so v4 pays a rounding torch
does not). ``--quick``: small shapes, a few seconds, the code checked.

    python -m benchmarks.bf16_gemm [--quick] [--out=benchmarks/results]
"""
import sys

import numpy as np

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (2048, 1024, 256)]   # (M, K, N)
QUICK_SHAPES = [(128, 128, 128), (256, 128, 64)]
GOALS = {"v4_over_fp32": 1.7, "v4_over_torch": 1.0}


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def run(quick=False, log=print):
    from minillm.backends import c
    from minillm.bf16 import to_bf16
    from .timing import median_seconds
    threads = c.lib.minillm_max_threads()
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
    repeats = 3 if quick else 7
    rows = []
    for m, k, n in QUICK_SHAPES if quick else SHAPES:
        rng = np.random.default_rng(0)
        a32 = rng.standard_normal((m, k), dtype=np.float32)
        b32 = rng.standard_normal((k, n), dtype=np.float32)
        a16, b16 = to_bf16(a32), to_bf16(b32)
        flops = 2.0 * m * n * k
        series = {f"bf16_v{v}": (lambda a, b, v=v: c.matmul_bf16(a, b, v), (a16, b16),
                                 repeats if v == 3 or quick else 2) for v in (1, 2, 3)}
        series["bf16_v4"] = (c.backend.linear_forward_bf16, (a32, np.ascontiguousarray(b32.T)), repeats)
        series["fp32_c"] = (c.backend.matmul, (a32, b32), repeats)
        if torch is not None:
            ta, tb = (torch.from_numpy(x).to(torch.bfloat16) for x in (a32, b32))
            series["torch_bf16"] = (torch.matmul, (ta, tb), repeats)
        row = {"M": m, "K": k, "N": n}
        for name, (fn, inputs, reps) in series.items():
            seconds = median_seconds(fn, [inputs], repeats=reps, warmup=1 if reps == 2 else 3)
            row[name] = flops / seconds / 1e9
        row["v4_over_fp32"] = row["bf16_v4"] / row["fp32_c"]
        if torch is not None:
            row["v4_over_torch"] = row["bf16_v4"] / row["torch_bf16"]
        rows.append(row)
    names = [n for n in ("bf16_v1", "bf16_v2", "bf16_v3", "bf16_v4", "fp32_c", "torch_bf16") if n in rows[0]]
    log(f"GFLOP/s, {threads} threads, vdpbf16ps: {'yes' if c.bf16_has_dpbf16() else 'no (portable loop)'}"
        + (" (quick: small shapes, timings mean little)" if quick else ""))
    log("| M×K·K×N | " + " | ".join(names) + " | v4/fp32 | v4/torch |")
    log("|---" * (len(names) + 3) + "|")
    for r in rows:
        log(f"| {r['M']}×{r['K']}·{r['K']}×{r['N']} | " + " | ".join(f"{r[n]:.1f}" for n in names)
            + f" | {r['v4_over_fp32']:.2f} | " + (f"{r['v4_over_torch']:.2f}" if "v4_over_torch" in r else "–") + " |")
    for goal, target in GOALS.items():
        values = [r[goal] for r in rows if goal in r]
        if values:
            verdict = "met at every shape" if min(values) >= target else "not met at every shape"
            log(f"  {goal} ≥ {target}: " + ", ".join(f"{v:.2f}" for v in values) + f" — {verdict}")
    return {"threads": threads, "quick": quick, "goals": GOALS, "rows": rows}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from .timing import flags
    args = flags(argv)
    quick = "quick" in args
    from .timing import machine_info, machine_stem, write_json
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['simd']}")
    results = dict(run(quick), machine=info)
    if "out" in args:
        print(write_json(results, args["out"], f"bf16-gemm-{machine_stem(info)}" + ("-quick" if quick else "")))


if __name__ == "__main__":
    main()
