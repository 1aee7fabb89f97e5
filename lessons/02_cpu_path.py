# %% [markdown]
# # Lesson 02 — The CPU's path, told by one matrix product
#
# The documents compare the LLM's rise with the CPU's: from the von Neumann machine
# (冯·诺依曼结构) that fetches every operand from memory, through caches (缓存),
# instruction-set extensions for data parallelism (SIMD, 指令集扩展), pipelines and
# superscalar issue, to many cores (多核) and finally heterogeneous CPU + GPU computing
# (异构计算). One matrix product C = A·B (2n³ floating-point operations) walks the same
# road. Each step below is a real kernel in `kernels/c/matmul.c`, checked against
# NumPy, and timed here, now:
#
# | step | kernel | the CPU idea it uses |
# |---|---|---|
# | 1 | `matmul_v1_naive` — i, j, k loops | von Neumann: every operand from memory; B read down a column, one cache line per number |
# | 2 | `matmul_v2_reordered` — i, k, j | locality: contiguous rows, and the compiler turns the inner loop into SIMD instructions |
# | 3 | `matmul_v3_blocked` | the cache hierarchy: blocks of B reused while they sit in L2 |
# | 4 | `matmul_v4_packed` | registers and pipelines: packed panels feed a register tile sized to the machine (6×16 on AVX2: 12 fused multiply-adds per step; 12×32 on AVX-512: 24) |
# | 5 | `matmul_v5_threaded` | many cores: the blocks shared out with OpenMP |
# | 6 | `matmul_v6_in_place` | the memory hierarchy again: a small A whose rows lie close together is read where it lies instead of copied (a training step's 768×128 products spent 13–20 % of their time packing A); a big one is still packed |
# | 7 | `matmul_v7_own_rows` | cores that do not wait for each other: each core takes its own rows of C and runs v6 alone, packing the B panels it needs itself, instead of all cores packing shared panels and meeting at a barrier after each; it also zeroes each block of C with `memset` just before the block's tiles, because a tile's stores to lines not yet in the cache each fetch their line (v8 drops this again: row by row, the stores run along the rows, a pattern the prefetchers follow) |
# | 8 | `matmul_v8_sliver_in_l1` | the cache hierarchy once more, with exact sizes: the tiles go row by row, so the rows of A a tile reads (AVX-512: 12 rows × 512 deep, 24 KB) stay in L1 while every sliver of B passes, and B comes in panels narrow enough to stay in L2 (512 columns, 1 MB); until v7 the sliver meant to stay in L1 was B's, 512 × 32 floats = 64 KB, more than a 48 KB L1 holds |
# | — | NumPy / OpenBLAS | years of hand-tuned assembly: our practical peak |
# | — | CUDA SGEMM v1–v5 | the heterogeneous step: the same ladder on a GPU (`kernels/cuda/sgemm.cu`) |
#
# Run: `python lessons/02_cpu_path.py [--quick]` or `minillm lesson 2`.

# %%
import os
import time

import numpy as np

from minillm import backends
from minillm.lessons import Checks, quick_mode, results_dir, save_figure

QUICK = quick_mode()
N = 512 if QUICK else 1024
checks = Checks("lesson 02")


def gflops(fn, a, b, repeats=5):
    """Best of ``repeats`` after a pause: on two cores another library's spinning thread
    pool can steal a timing, and the best run is the kernel's own speed."""
    time.sleep(0.3)
    fn(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - start)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / min(times) / 1e9


rng = np.random.default_rng(0)
a = rng.standard_normal((N, N)).astype(np.float32)
b = rng.standard_normal((N, N)).astype(np.float32)
reference = a.astype(np.float64) @ b.astype(np.float64)

# %% [markdown]
# ## The practical peak
# OpenBLAS's SGEMM on this machine is the ceiling we measure against.

# %%
peak = gflops(np.matmul, a, b)
print(f"n = {N}: NumPy/OpenBLAS {peak:.1f} GFLOP/s on {os.cpu_count()} cores — the practical peak here")
steps = {}

# %% [markdown]
# ## The C steps, one idea at a time

# %%
if "c" in backends.available():
    from minillm.backends import c_backend
    for version in c_backend.NUMBERED:
        out = c_backend.matmul_numbered(version, a, b)
        error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        steps[version] = gflops(lambda x, y, v=version: c_backend.matmul_numbered(v, x, y), a, b,
                                repeats=2 if version == "matmul_v1_naive" else 5)
        print(f"  {version:22s} {steps[version]:8.1f} GFLOP/s  {steps[version] / peak:6.1%} of peak"
              f"  (error vs float64 {error:.1e})")
        checks.claim(error < 1e-5, f"{version} computes the right product")
    checks.timing(steps["matmul_v2_reordered"] > 3 * steps["matmul_v1_naive"],
                 "reordering the loops for contiguous, vectorised access gives more than 3×")
    checks.timing(steps["matmul_v4_packed"] > 1.5 * steps["matmul_v2_reordered"],
                 "packing + a register-blocked micro-kernel gives more than 1.5× over the reordered loop")
    if (os.cpu_count() or 1) >= 2:
        checks.timing(steps["matmul_v5_threaded"] > 1.2 * steps["matmul_v4_packed"],
                     "a second core adds more than 20%")
    # v6 changes nothing at n = 1024 (rows 4 KB apart: A is packed, as in v5); its case is the
    # small product a Linear layer of nanoGPT's recipe makes, 768 rows of 128
    small_a = rng.standard_normal((768, 128)).astype(np.float32)
    small_b = rng.standard_normal((128, 128)).astype(np.float32)
    small = {v: gflops(lambda x, y, v=v: c_backend.matmul_numbered(v, x, y), small_a, small_b, repeats=20)
             for v in ("matmul_v5_threaded", "matmul_v6_in_place", "matmul_v7_own_rows")}
    print(f"  768×128·128×128: v5 {small['matmul_v5_threaded']:.1f} GFLOP/s, "
          f"v6 {small['matmul_v6_in_place']:.1f} GFLOP/s (A read in place), "
          f"v7 {small['matmul_v7_own_rows']:.1f} GFLOP/s (each core its own rows)")
    checks.timing(small["matmul_v6_in_place"] > small["matmul_v5_threaded"],
                  "reading a small A where it lies beats copying it first")
    if (os.cpu_count() or 1) >= 2:
        checks.timing(small["matmul_v7_own_rows"] > small["matmul_v6_in_place"],
                      "cores that never wait for each other beat cores that share every panel")
else:
    print(f"the c backend is unavailable here: {backends.status()['c']}")

# %% [markdown]
# ## A JIT instead of C: Numba
# The same two ideas written in Python and compiled by LLVM at run time
# (`minillm/backends/numba_gemm.py`): v1 blocks four rows at a time, v2 is the BLIS
# structure with a 6×16 register tile written out as 96 scalar accumulators, which LLVM's
# SLP vectoriser packs into twelve vector registers (Numba leaves SLP off by default).

# %%
if "numba" in backends.available():
    from minillm.backends import numba_backend
    for version in numba_backend.NUMBERED:
        out = numba_backend.matmul_numbered(version, a, b)
        error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        steps[f"numba_{version}"] = gflops(lambda x, y, v=version: numba_backend.matmul_numbered(v, x, y), a, b)
        print(f"  numba {version:16s} {steps[f'numba_{version}']:8.1f} GFLOP/s  "
              f"{steps[f'numba_{version}'] / peak:6.1%} of peak  (error vs float64 {error:.1e})")
        checks.claim(error < 1e-5, f"numba {version} computes the right product")
    checks.timing(steps["numba_v2_packed"] > 2 * steps["numba_v1_rows"],
                  "the packed register tile is more than twice the row-blocked loop")

# %% [markdown]
# ## The heterogeneous step: CUDA
# On a GPU the `cupy` backend runs `kernels/cuda/sgemm.cu`; here, without one, the same
# source runs on the CPU harness (`cuda-sim`) — to check it, not to time it.

# %%
name = "cupy" if "cupy" in backends.available() else "cuda-sim"
if name in backends.available():
    import importlib
    cuda = importlib.import_module(f"minillm.backends.{backends.KNOWN[name]}").primitives
    small = 64 if name == "cuda-sim" else N
    sa, sb = np.ascontiguousarray(a[:small, :small]), np.ascontiguousarray(b[:small, :small])  # kernels want rows
    xa, xb = (backends.get(name).xp.asarray(m) for m in (sa, sb))
    expected = sa.astype(np.float64) @ sb.astype(np.float64)
    for version in cuda.SGEMM_VERSIONS:
        out = backends.to_numpy(cuda.sgemm_numbered(version, xa, xb))
        ok = np.linalg.norm(out - expected) / np.linalg.norm(expected) < 1e-5
        checks.claim(ok, f"CUDA {version} on {name} computes the right product")
    print("see benchmarks/RESULTS.md for these kernels timed on an H100 against cuBLAS")

# %% [markdown]
# ## The whole road in one picture
#
# Against two ceilings: OpenBLAS (the practical one) and the hardware's, counted from the
# data sheet: cores × 2 FMA pipes × float32 lanes × 2 flops per FMA × the clock. Zen 3 and
# Zen 4 both issue two 256-bit FMAs a cycle (Zen 4 runs AVX-512 as two halves): 8 lanes,
# 32 flops per cycle per core. An Intel Xeon with AVX-512 (Skylake-SP onwards) has two
# 512-bit FMA pipes: 16 lanes, 64 flops. The clock is the one the kernel reports, the
# *nominal* one: when a kernel beats that line, the core is boosting above it, and
# GFLOP/s ÷ (cores × flops per cycle) is the clock it must at least have run at.

# %%
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def cpuinfo():
    try:
        return open("/proc/cpuinfo").read()
    except OSError:
        return ""


def clock_ghz(info):
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    return max(mhz) / 1000 if mhz else None


def float32_lanes(info):
    """16 on an Intel CPU with AVX-512 (two 512-bit FMA pipes on a Xeon), else 8."""
    return 16 if "GenuineIntel" in info and " avx512f" in info else 8


info = cpuinfo()
ghz, lanes = clock_ghz(info), float32_lanes(info)
flops_per_cycle = 2 * lanes * 2
hardware = os.cpu_count() * flops_per_cycle * ghz if ghz else None
labels, values = list(steps), list(steps.values())
fig, ax = plt.subplots(figsize=(8, 4))
ax.barh([l.replace("matmul_", "") for l in labels] + ["OpenBLAS"], values + [peak],
        color=["#3b75af"] * len(labels) + ["#c9a66b"])
if hardware:
    ax.axvline(hardware, color="crimson", ls="--",
               label=f"peak at the nominal clock: {hardware:.0f} ({os.cpu_count()} cores × {flops_per_cycle} flops "
                     f"× {ghz:.2f} GHz)")
    ax.legend(loc="lower right", fontsize=8)
    best = max(values + [peak])
    print(f"peak at the nominal {ghz:.2f} GHz: {hardware:.0f} GFLOP/s; OpenBLAS reaches {peak / hardware:.0%} of it, "
          f"our best version {max(values) / hardware:.0%}; {best:.0f} GFLOP/s needs the cores at "
          f"≥ {best / (os.cpu_count() * flops_per_cycle):.2f} GHz")
ax.set(xscale="log", xlabel="GFLOP/s (log scale)", title=f"one {N}×{N} matrix product, step by step")
save_figure(fig, results_dir("02") / "matmul_steps.png", dpi=90)
checks.finish()

# %% [markdown]
# ## Try this
# - Change `MR`/`NV` in `kernels/c/matmul.c` (the register tile) and reinstall: watch v4.
# - Set `OMP_NUM_THREADS=1` and see v5 fall back to v4.
# - Run with `--quick` off to use n = 1024, where the caches matter more. v8's gain grows with
#   n: time `c_backend.matmul_numbered("matmul_v7_own_rows", a, b)` against
#   `"matmul_v8_sliver_in_l1"` at n = 4096 (C is 64 MB, eight k-blocks of 512).
# - Ask the compiler what it vectorised: `gcc -O3 -march=native -fopenmp -c kernels/c/adam.c
#   -fopt-info-vec-optimized -o /dev/null`, then again with `-fno-math-errno`. Without the flag,
#   `sqrtf` keeps a branch to libm (to set `errno`), and Adam's loop ran at a third of its speed.
