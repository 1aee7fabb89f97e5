# %% [markdown]
# # Lesson 02 — The CPU's path, told by one matrix product
#
# The documents compare the LLM's rise with the CPU's: from the von Neumann machine
# (冯·诺依曼结构) that fetches every operand from memory, through caches (缓存),
# instruction-set extensions for data parallelism (SIMD, 指令集扩展), pipelines and
# superscalar issue, to many cores (多核) and finally heterogeneous CPU + GPU computing
# (异构计算). One matrix product $C = AB$ ($2n^3$ floating-point operations for $n \times n$) walks the same
# road. Each step below is a real kernel in `kernels/c/matmul/` (one file a version), checked
# against NumPy, and timed here, now:
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
# | — | bf16 mixed precision (`kernels/c/matmul_bf16.c`) | fewer bits per number: half the bytes, twice the products per instruction, float32 sums |
#
# Run: `python lessons/02_cpu_path.py [--quick]` or `minillm lesson 2`.

# %%
import os
import re
import time
from pathlib import Path

import numpy as np

from minillm import backends
from minillm.lessons import SOURCE_TREE, Checks, quick_mode, results_dir, save_figure

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
# ## The machine, and its arithmetic ceiling
#
# The hardware's peak is
#
# $$
# \text{peak} = \text{cores} \times \text{float32 FMAs per cycle per core} \times 2\ \tfrac{\text{flops}}{\text{FMA}} \times \text{clock}.
# $$
#
# None of the three factors is a single number the operating system hands over, so each is
# read from where it is reported, and the page says where:
#
# - **cores**: physical ones. `os.cpu_count()` counts logical CPUs, and two SMT threads
#   (hyper-threads) of one core share its FMA pipes. A core is a distinct ("physical id",
#   "core id") pair in `/proc/cpuinfo`, among the CPUs this process may run on.
# - **the clock**: the rated one where the machine reports it: the "@ x.xxGHz" in the model
#   name (Intel's base clock), else the highest clock the cpufreq driver reports
#   (`cpuinfo_max_freq`), else the "cpu MHz" the kernel shows. On bare metal that is only
#   the clock of the moment; on a virtual machine it is what the hypervisor reports,
#   usually the rate of the time-stamp counter, which on recent CPUs ticks at the nominal
#   clock. Boost (turbo) clocks run above the rated one.
# - **FMAs per cycle**: not reported at all. It is an assumption per CPU family, from the
#   vendors' descriptions of their cores. Every x86 core since Intel's Haswell and AMD's
#   Zen has two FMA pipes; what differs is their width, and so how many float32 FMAs they
#   start a cycle. Zen 1: two 128-bit pipes, 8. Zen 2, 3 and 4: two 256-bit pipes, 16 (Zen 4
#   runs an AVX-512 FMA as two 256-bit halves, so still 16). Zen 5 desktop and server
#   cores: two 512-bit pipes, 32; its mobile parts keep 256-bit ones. Intel's Xeons with
#   AVX-512 (Skylake-SP onwards): two 512-bit pipes, 32 (some Silver, Bronze and Gold 5xxx
#   parts have one). Intel's client cores with AVX-512 (Ice Lake, Tiger Lake, Rocket Lake)
#   join their two 256-bit pipes into one for a 512-bit FMA: 16 either way, as on any AVX2
#   core.

# %%


def cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def field(info, name):
    """The first value of ``name`` in /proc/cpuinfo's text, or ''."""
    match = re.search(rf"^{name}\s*:\s*(.*)$", info, re.M)
    return match.group(1).strip() if match else ""


def physical_cores(info):
    """(cores, how they were counted): distinct (physical id, core id) pairs among the CPUs
    this process may run on; SMT threads of one core share a pair."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    pairs = set()
    for block in info.split("\n\n"):
        cpu, core = field(block, "processor"), field(block, "core id")
        if cpu.isdigit() and core and int(cpu) in allowed:
            pairs.add((field(block, "physical id"), core))
    if pairs:
        return len(pairs), (f"{len(pairs)} physical cores: distinct (physical id, core id) pairs among the "
                            f"{len(allowed)} logical CPUs this process may use")
    return len(allowed), f"{len(allowed)} logical CPUs (no core ids reported: SMT threads, if any, counted as cores)"


def rated_clock(info):
    """(GHz, where it came from), or (None, why not)."""
    named = re.search(r"@\s*([\d.]+)\s*GHz", field(info, "model name"))
    if named:
        return float(named.group(1)), "the rated (base) clock in the model name"
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.exists():
        return int(max_freq.read_text()) / 1e6, f"the highest clock the cpufreq driver reports ({max_freq})"
    mhz = field(info, "cpu MHz")
    if mhz:
        return float(mhz) / 1000, ("'cpu MHz' in /proc/cpuinfo, the only clock reported here (no rated clock "
                                   "in the model name, no cpufreq driver)")
    return None, "no clock reported"


def fmas_per_cycle(info):
    """(float32 FMAs per cycle per core, the assumption in words), or (None, why not)."""
    flags, vendor = f" {field(info, 'flags')} ", field(info, "vendor_id")
    family, model, name = int(field(info, "cpu family") or 0), int(field(info, "model") or 0), field(info, "model name")
    if vendor == "AuthenticAMD" and family == 0x1A:
        if 0x20 <= model <= 0x2F or 0x60 <= model <= 0x6F:
            return 16, f"Zen 5 mobile (family 26, model {model}): two 256-bit FMA pipes"
        return 32, f"Zen 5 desktop or server (family 26, model {model}): two 512-bit FMA pipes"
    if vendor == "AuthenticAMD" and family == 0x19:
        return 16, (f"Zen 3 or Zen 4 (family 25, model {model}): two 256-bit FMA pipes"
                    + (", an AVX-512 FMA run as two halves" if " avx512f " in flags else ""))
    if vendor == "AuthenticAMD" and family == 0x17:
        return (16, f"Zen 2 (family 23, model {model}): two 256-bit FMA pipes") if model >= 0x30 else \
               (8, f"Zen 1 (family 23, model {model}): two 128-bit FMA pipes")
    if vendor == "GenuineIntel" and " avx512f " in flags:
        return (32, "an Intel Xeon with AVX-512: two 512-bit FMA pipes") if "Xeon" in name else \
               (16, "an Intel client core with AVX-512: two 256-bit FMA pipes, joined into one for AVX-512")
    if " fma " in flags and " avx2 " in flags:
        return 16, "an AVX2 core with FMA: two 256-bit FMA pipes"
    return None, "no assumption for this CPU family"


info = cpuinfo()
cores, cores_from = physical_cores(info)
ghz, clock_from = rated_clock(info)
fmas, fma_from = fmas_per_cycle(info)
flops_per_cycle = 2 * fmas if fmas else None
hardware = cores * flops_per_cycle * ghz if ghz and fmas else None
virtual = " hypervisor " in f" {field(info, 'flags')} "
print(f"CPU: {field(info, 'model name') or 'unknown'}{' (a virtual machine)' if virtual else ''}")
print(f"  cores: {cores_from} (os.cpu_count() says {os.cpu_count()})")
print(f"  clock: {f'{ghz:.2f} GHz' if ghz else 'unknown'}, from {clock_from}")
print(f"  FMAs per cycle per core: {fmas or 'unknown'}, assumed: {fma_from}")
if virtual:
    print("  on a virtual machine the cores are the virtual CPUs the hypervisor presents and the clock is the one "
          "it reports; whether two of them share one host core cannot be seen from inside")
if hardware:
    print(f"hardware peak: {cores} cores × {fmas} FMAs × 2 flops × {ghz:.2f} GHz = {hardware:.0f} GFLOP/s")

# %% [markdown]
# ## The practical peak
# OpenBLAS's SGEMM on this machine is the ceiling we measure against, given its best
# settings. OpenBLAS chooses its kernels for the CPU when it loads, unless the environment
# variable `OPENBLAS_CORETYPE` forces one (some machine images force `Haswell`, the AVX2
# kernels, on AVX-512 CPUs). So the page says which kernel ran, and where an override is set
# it also measures OpenBLAS in a fresh process without it (`minillm/openblas.py`) and takes
# the better of the two as the peak.

# %%
from minillm import openblas  # noqa: E402

in_process = gflops(np.matmul, a, b)
kernel = openblas.core_name() or "unknown (not the OpenBLAS NumPy's wheel bundles)"
print(f"n = {N}: NumPy/OpenBLAS {in_process:.1f} GFLOP/s on {cores} cores, its {kernel} kernels")
peak, peak_kernel = in_process, kernel
if openblas.overrides():
    free_kernel, free = openblas.matmul_gflops_unforced(N, N, N)
    print(f"  this environment sets {openblas.overrides()}; without it OpenBLAS runs its {free_kernel} kernels: "
          f"{free:.1f} GFLOP/s")
    if free > peak:
        peak, peak_kernel = free, free_kernel
print(f"the practical peak here: {peak:.1f} GFLOP/s (OpenBLAS, {peak_kernel})")
steps = {}

# %% [markdown]
# ## The kernels, as written
# The first three steps are plain loops; from v4 on, every version runs the same
# micro-kernel over packed panels and differs in the loops around it. Here they are,
# read from `kernels/c/matmul/` as this run compiled it (`VW` floats per vector register,
# `MR` rows × `NV` vectors of C in registers: 12 × 2 vectors of 16 on AVX-512, 6 × 2 of 8
# on AVX2).

# %%
MATMUL_C = "\n".join(path.read_text() for path in sorted((SOURCE_TREE / "kernels" / "c" / "matmul").glob("*.[ch]")))


def c_function(source, name):
    """The definition of C function ``name`` in ``source``: from its signature (with the lines
    just above it that belong to it: a return type, #defines) to its closing brace."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"(\w.*[\s*])?{name}\(", line)
                 and not line.rstrip().endswith(";"))
    while start and lines[start - 1].strip() and not lines[start - 1].lstrip().startswith(("/*", "*", "}")):
        start -= 1
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start:end + 1])


for name in ("matmul_v1_naive", "matmul_v2_reordered", "matmul_v3_blocked", "micro_kernel"):
    if name == "matmul_v3_blocked":  # its block sizes
        print("\n".join(line for line in MATMUL_C.splitlines() if line.startswith("#define V3_")))
    print(c_function(MATMUL_C, name), end="\n\n")

# %% [markdown]
# ## The loop nest around the micro-kernel (BLIS)
# From v4 on, the product is cut as Goto and van de Geijn cut it (BLIS's five loops), so that
# each piece is reused while it sits in the cache level that fits it:
#
# - a **panel** of B, $K_C \times N_C$, is packed once and read by every block of A (the outer
#   loops over $N_C$ columns and $K_C$ depth);
# - a **block** of A, $M_C \times K_C$, is packed and read by every sliver of that panel;
# - a **sliver** is the thin strip one micro-kernel call reads: $M_R$ rows of the A block, or
#   $N_R$ columns of the B panel, $K_C$ deep;
# - the **micro-tile** of C, $M_R \times N_R$, lives in vector registers for the whole $K_C$
#   loop: each step loads one value of A's sliver per row and $N_R / VW$ vectors of B's sliver
#   and issues $M_R \cdot N_R / VW$ fused multiply-adds.
#
# The register tile is compiled in (`kernels/c/matmul/blocking.h`, per instruction set); the
# blocks are derived from the caches the machine reports (`kernels/c/matmul/blocking.c`): each
# block fills its share of the cache it is meant for. The rule, in Python, checked against the
# library's own choice, so the bytes the drawing prints are this machine's.

# %%
def compiled_tile(source, avx512):
    """MR, VW, NV and NR as the preprocessor picks them for this CPU (source: blocking.h)."""
    branches = re.findall(r"#if defined\(__AVX512F__\)(.*?)#else(.*?)#endif", source, re.S)
    values = {}
    for wide, narrow in branches:
        for name, value in re.findall(r"#define (\w+) (\d+)", wide if avx512 else narrow):
            values[name] = int(value)
    values["NV"] = int(re.search(r"#define NV (\d+)\n", source).group(1))
    values["NR"] = values["VW"] * values["NV"]
    return values


def blocks_for_caches(l1, l2, l3, mr, nr, avx512):
    """KC, MC, NC, NC_L2 for caches of l1, l2, l3 bytes (blocking.c's rule)."""
    def whole(n, step):  # whole slivers, at least one
        return max(n // step * step, step)

    f = 4  # bytes a float
    kc = max(l1 // 2 // ((mr if avx512 else nr) * f), 64)      # the L1 sliver in half of L1
    return {"KC": kc, "MC": whole(l2 // 2 // (kc * f), mr),      # the A block in half of L2
            "NC_L2": whole(l2 // 2 // (kc * f), nr),             # v8's B panel in half of L2
            "NC": min(whole(l3 // 4 // (kc * f), nr), 4096)}     # the shared panel, a quarter of L3


avx512 = " avx512f " in f" {field(info, 'flags')} "
blocking = compiled_tile((SOURCE_TREE / "kernels" / "c" / "matmul" / "blocking.h").read_text(), avx512)
caches = (48 << 10, 1 << 20, 32 << 20)  # a Zen 4 core's, when the c backend is not built here
if "c" in backends.available():
    from minillm.backends import c as c_backend
    library = c_backend.gemm_blocking()
    caches = (library["l1"], library["l2"], library["l3"])
blocking.update(blocks_for_caches(*caches, blocking["MR"], blocking["NR"], avx512))
print(f"  caches: L1d {caches[0] >> 10} KB, L2 {caches[1] >> 10} KB, L3 {caches[2] >> 10} KB")
if "c" in backends.available():
    checks.claim([library[k.lower()] for k in ("MR", "NR", "KC", "MC", "NC", "NC_L2")]
                 == [blocking[k] for k in ("MR", "NR", "KC", "MC", "NC", "NC_L2")],
                 "the blocks worked out here are the ones the C library chose for these caches")
MR_, NR_, KC_, MC_, NC_ = (blocking[k] for k in ("MR", "NR", "KC", "MC", "NC"))
for what, rows, cols, where in (("B panel", KC_, NC_, "L3 (shared)"), ("A block", MC_, KC_, "L2"),
                                ("B sliver", KC_, NR_, "L1 or L2"), ("A sliver", MR_, KC_, "L1"),
                                ("C micro-tile", MR_, NR_, "registers")):
    print(f"  {what:13s} {rows:5d} × {cols:<5d} floats = {rows * cols * 4 / 1024:8.1f} KB   meant for {where}")
print(f"  v8 narrows the B panel to {blocking['NC_L2']} columns: {KC_ * blocking['NC_L2'] * 4 / 2**20:.1f} MB, for L2")
checks.claim(MR_ * NR_ // blocking["VW"] + NR_ // blocking["VW"] + 1 <= (32 if blocking["VW"] == 16 else 16),
             f"the {MR_}×{NR_} micro-tile's accumulators, one A broadcast and the B vectors fit the "
             f"{32 if blocking['VW'] == 16 else 16} vector registers")

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def box(ax, x, y, w, h, fill, label=None, alpha=0.35, **text):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=fill, edgecolor="black", alpha=alpha, lw=1))
    if label:
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8, **text)


# not to scale: the shapes are drawn so that every piece is visible; the micro-tile sits where
# the A sliver's rows meet the B sliver's columns
fig, (a_ax, b_ax, c_ax, code_ax) = plt.subplots(1, 4, figsize=(15, 4.2), gridspec_kw={"width_ratios": [3, 3, 3, 3]})
box(a_ax, 0, 0, 2, 6, "white", alpha=1)
box(a_ax, 0, 3, 2, 2, "#4c9a2a", f"A block\n{MC_}×{KC_}\n(L2)")
box(a_ax, 0, 4.6, 2, 0.4, "#c0392b", alpha=0.8)
a_ax.annotate(f"A sliver\n{MR_}×{KC_} (L1)", (2, 4.8), (2.5, 5.6), fontsize=8, arrowprops={"arrowstyle": "->"})
a_ax.set_title("A: M × K (one K_C-wide slice)", fontsize=9)
box(b_ax, 0, 0, 6, 2, "white", alpha=1)
box(b_ax, 1, 0, 4, 2, "#3b75af")
b_ax.text(3.9, 1, f"B panel\n{KC_}×{NC_}\n(L3)", ha="center", va="center", fontsize=8)
box(b_ax, 2.2, 0, 0.5, 2, "#e67e22", alpha=0.8)
b_ax.annotate(f"B sliver\n{KC_}×{NR_}", (2.45, 2), (2.8, 2.8), fontsize=8, arrowprops={"arrowstyle": "->"})
b_ax.set_title("B: K × N (one K_C-deep slice)", fontsize=9)
box(c_ax, 0, 0, 6, 6, "white", alpha=1)
box(c_ax, 1, 3, 4, 2, "#bbbbbb")
c_ax.text(4.9, 3.2, "C block =\nA block · B panel", ha="right", fontsize=8)
box(c_ax, 2.2, 4.6, 0.5, 0.4, "#8e44ad", alpha=0.9)
c_ax.annotate(f"micro-tile {MR_}×{NR_}\nin registers", (2.45, 4.6), (3.2, 1.2), fontsize=8,
              arrowprops={"arrowstyle": "->"})
c_ax.set_title("C: M × N", fontsize=9)
for axis, (width, height) in ((a_ax, (4.5, 6.6)), (b_ax, (6.2, 3.6)), (c_ax, (6.2, 6.4))):
    axis.set(xlim=(-0.2, width), ylim=(-0.2, height))
    axis.set_aspect("equal")
    axis.axis("off")
code_ax.axis("off")
code_ax.text(0, 1, f"for jc in 0..N step {NC_}:      # B panel\n"
                   f"  for pc in 0..K step {KC_}:     # depth\n"
                   f"    pack B[pc:+{KC_}, jc:+{NC_}]\n"
                   f"    for ic in 0..M step {MC_}:   # A block\n"
                   f"      pack A[ic:+{MC_}, pc:+{KC_}]\n"
                   f"      for jr in step {NR_}:      # B sliver\n"
                   f"        for ir in step {MR_}:    # A sliver\n"
                   f"          micro_kernel: {MR_}×{NR_} tile\n"
                   f"            += over {KC_} k", family="monospace", fontsize=9, va="top")
code_ax.set_title("the loops, outer to inner (v4–v7)")
save_figure(fig, results_dir("02_cpu_path") / "blis_loop_nest.png", dpi=90)

# %% [markdown]
# ## The C steps, one idea at a time

# %%
if "c" in backends.available():
    from minillm.backends import c as c_backend
    for version in c_backend.NUMBERED:
        out = c_backend.matmul_numbered(version, a, b)
        error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        steps[version] = gflops(lambda x, y, v=version: c_backend.matmul_numbered(v, x, y), a, b,
                                repeats=2 if version == "matmul_v1_naive" else 5)
        print(f"  {version:22s} {steps[version]:8.1f} GFLOP/s  {steps[version] / peak:6.1%} of OpenBLAS"
              f"  (error vs float64 {error:.1e})")
        checks.claim(error < 1e-5, f"{version} computes the right product")
    checks.timing(steps["matmul_v2_reordered"] > 3 * steps["matmul_v1_naive"],
                 "reordering the loops for contiguous, vectorised access gives more than 3×")
    checks.timing(steps["matmul_v4_packed"] > 1.5 * steps["matmul_v2_reordered"],
                 "packing + a register-blocked micro-kernel gives more than 1.5× over the reordered loop")
    if cores >= 2:
        checks.timing(steps["matmul_v5_threaded"] > 1.2 * steps["matmul_v4_packed"],
                     "a second core adds more than 20%")
    # v6 changes nothing at n = 1024 (rows 4 KB apart: A is packed, as in v5); its case, and
    # v7's and v8's, is the small product a Linear layer of nanoGPT's recipe makes, 768 rows of 128
    small_a = rng.standard_normal((768, 128)).astype(np.float32)
    small_b = rng.standard_normal((128, 128)).astype(np.float32)
    small_versions = ("matmul_v5_threaded", "matmul_v6_in_place", "matmul_v7_own_rows", "matmul_v8_sliver_in_l1")
    layer = {v: gflops(lambda x, y, v=v: c_backend.matmul_numbered(v, x, y), small_a, small_b, repeats=20)
             for v in small_versions}
    layer["OpenBLAS"] = gflops(np.matmul, small_a, small_b, repeats=20)
    if openblas.overrides():  # the peer at its best settings, as above
        layer["OpenBLAS"] = max(layer["OpenBLAS"], openblas.matmul_gflops_unforced(768, 128, 128, repeats=20)[1])
    print("  768×128·128×128: " + ", ".join(f"{v.split('_')[1]} {layer[v]:.1f}" for v in small_versions)
          + f", OpenBLAS {layer['OpenBLAS']:.1f} GFLOP/s")
    checks.timing(layer["matmul_v6_in_place"] > layer["matmul_v5_threaded"],
                  "reading a small A where it lies beats copying it first")
    if cores >= 2:
        checks.timing(layer["matmul_v7_own_rows"] > layer["matmul_v6_in_place"],
                      "cores that never wait for each other beat cores that share every panel")
else:
    print(f"the c backend is unavailable here: {backends.status()['c']}")

# %% [markdown]
# ## A JIT instead of C: Numba
# The same two ideas written in Python and compiled by LLVM at run time
# (`minillm/backends/numba/gemm.py`): v1 blocks four rows at a time, v2 is the BLIS
# structure with a 6×16 register tile written out as 96 scalar accumulators, which LLVM's
# SLP vectoriser packs into twelve vector registers (Numba leaves SLP off by default).

# %%
if "numba" in backends.available():
    from minillm.backends import numba as numba_backend
    for version in numba_backend.NUMBERED:
        out = numba_backend.matmul_numbered(version, a, b)
        error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        steps[f"numba_{version}"] = gflops(lambda x, y, v=version: numba_backend.matmul_numbered(v, x, y), a, b)
        print(f"  numba {version:16s} {steps[f'numba_{version}']:8.1f} GFLOP/s  "
              f"{steps[f'numba_{version}'] / peak:6.1%} of OpenBLAS  (error vs float64 {error:.1e})")
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
    cuda = backends.get(name)
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
# ## Fewer bits per number: bf16 mixed precision
# Half the bytes per operand is half the memory traffic, and with an instruction made for it
# (AVX512_BF16's `vdpbf16ps`: 32 products into 16 float32 sums per instruction, where an
# fp32 FMA does 16) twice the products per instruction. bfloat16 is the top half of a
# float32: the same sign and 8 exponent bits (so the same range: no loss scaling, unlike
# float16's 5), and 7 mantissa bits instead of 23.
# `minillm.amp.autocast("bfloat16")` (`minillm train --dtype=bfloat16`) rounds the inputs of
# every Linear layer's three products to bf16 (and of any other product autograd sees; the
# fused attention kernel stays float32) and keeps everything else float32: the weights, their
# gradients and AdamW's moments, and — the point of the sum below — the sums.

# %%
import warnings  # noqa: E402

from minillm import amp  # noqa: E402
from minillm.bf16 import from_bf16, to_bf16  # noqa: E402

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FORMATS = {"float32": (8, 23), "bfloat16": (8, 7), "float16": (5, 10)}  # exponent, mantissa bits
fig, ax = plt.subplots(figsize=(10, 2.4))
for row, (fmt, (exponent, mantissa)) in enumerate(FORMATS.items()):
    y, x = len(FORMATS) - 1 - row, 0
    for width, color, label in ((1, "#d62728", "sign"), (exponent, "#2ca02c", f"{exponent} exponent"),
                                (mantissa, "#1f77b4", f"{mantissa} mantissa")):
        ax.barh(y, width, left=x, color=color, edgecolor="black", height=0.6)
        ax.text(x + width / 2, y, label if width > 1 else "s", ha="center", va="center", fontsize=8, color="white")
        x += width
    ax.text(-0.5, y, fmt, ha="right", va="center")
ax.set(xlim=(-8, 32), xticks=range(0, 33, 8), yticks=[], xlabel="bits, most significant first",
       title="bf16 is float32's top 16 bits: float32's range, 2 to 3 significant digits")
save_figure(fig, results_dir("02_cpu_path") / "bf16_format.png", dpi=90)

one_plus_half_step = np.float32(1 + 2 ** -8)  # halfway between 1 and the next bf16, 1 + 2⁻⁷
checks.claim(from_bf16(to_bf16(one_plus_half_step)) == 1.0, "1 + 2⁻⁸ rounds to 1 in bf16 (a tie, to even)")
with np.errstate(over="ignore"):  # float16's overflow is the point
    checks.claim(np.isfinite(from_bf16(to_bf16(np.float32(3e38)))) and np.isinf(np.float16(3e38)),
                 "3e38 is a finite bf16 (float32's range) and inf in float16")
values = rng.standard_normal(100_000).astype(np.float32)
relative = np.abs(from_bf16(to_bf16(values)) - values) / np.abs(values)
print(f"  bf16 rounding of 100,000 normal values: largest relative error {relative.max():.2e} (2⁻⁸ = {2 ** -8:.2e})")
checks.claim(relative.max() <= 2 ** -8, "rounding to bf16 moves a value by at most 2⁻⁸ of itself")

# %% [markdown]
# Why the sums stay float32: a running sum held in bf16 stops growing once each new term is
# below half its spacing, 2⁻⁸ of the sum. Summing the 4096 products of a dot product of
# bf16 values (all positive here, so the sum only grows), in bf16 and in float32, against
# float64:

# %%
K_SUM = 4096
x_bf, y_bf = (from_bf16(to_bf16(rng.uniform(0, 1, K_SUM).astype(np.float32))) for _ in range(2))
products = x_bf * y_bf  # exact in float32: two 8-bit significands make at most 16 bits
exact = float(np.sum(products.astype(np.float64)))
in_bf16, in_fp32 = np.float32(0), np.float32(0)
for p in products:
    in_bf16 = from_bf16(to_bf16(in_bf16 + p))[()]
    in_fp32 = np.float32(in_fp32 + p)
error_bf16, error_fp32 = abs(float(in_bf16) - exact) / exact, abs(float(in_fp32) - exact) / exact
print(f"  Σ of {K_SUM} products: float64 {exact:.2f}, bf16 sum {float(in_bf16):.2f} (relative error {error_bf16:.1e}),"
      f" float32 sum {float(in_fp32):.4f} ({error_fp32:.1e})")
checks.claim(error_bf16 > 100 * error_fp32 and error_bf16 > 0.1,
             "a bf16 running sum of 4096 products loses more than a tenth; float32 loses 100× less")

# %% [markdown]
# What the kernel gains (`kernels/c/matmul_bf16.c`, v4 rounds float32 to bf16 as it packs
# the operands, so the conversion is inside the timing), on the forward product of the
# recipe's attention projection, 768 tokens × 128 → 384, against the fp32 GEMM, both as
# the c backend's `linear_forward` and `linear_forward_bf16` run them; then a small GPT trained both ways.

# %%
if "c" in backends.available():
    from minillm.backends import c as c_backend
    xs = rng.standard_normal((768, 128)).astype(np.float32)
    ws = rng.standard_normal((384, 128)).astype(np.float32)
    ref16 = from_bf16(to_bf16(xs)).astype(np.float64) @ from_bf16(to_bf16(ws)).astype(np.float64).T
    bound = 130 * 2.0 ** -24 * (np.abs(xs).astype(np.float64) @ np.abs(ws).T)  # (K + 2)·2⁻²⁴·|x||W|ᵀ
    checks.claim(np.all(np.abs(c_backend.backend.linear_forward_bf16(xs, ws) - ref16) <= bound),
                 "the bf16 product equals float64's on the rounded inputs within (K+2)·2⁻²⁴·|x||W|ᵀ")
    zero_bias = np.zeros(384, np.float32)  # the Linear layer's call, bias added in the stores
    # gflops counts 2·M·K·N from its operands: hand it Wᵀ (K × N), the kernels take W back
    rate32 = gflops(lambda p, q: c_backend.backend.linear_forward(p, q.T, zero_bias), xs, ws.T, repeats=20)
    rate16 = gflops(lambda p, q: c_backend.backend.linear_forward_bf16(p, q.T, zero_bias), xs, ws.T, repeats=20)
    print(f"  768×128 · (384×128)ᵀ: fp32 {rate32:.0f} GFLOP/s, bf16 {rate16:.0f} GFLOP/s ({rate16 / rate32:.2f}×); "
          f"vdpbf16ps: {'yes' if c_backend.bf16_has_dpbf16() else 'no: emulated on the fp32 GEMM'}")
    if c_backend.bf16_has_dpbf16():
        checks.timing(rate16 > 1.2 * rate32, "the bf16 product is more than 1.2× the fp32 one")


def curve(dtype, steps):
    """A small GPT on the embedded corpus: the training losses of ``steps`` AdamW steps, and
    the loss of the trained weights (in float32) on 10 more batches, drawn alike in both runs."""
    import minillm
    from minillm.models import GPT, GPTConfig
    from minillm.tokenizers import CharTokenizer
    from minillm import data as corpora
    text = corpora.corpus("python-docs").train[:200_000]
    tokenizer = CharTokenizer.train(text)
    ids = np.asarray(tokenizer.encode(text))
    minillm.manual_seed(0)
    model = GPT(GPTConfig(tokenizer.vocab_size, 32, 2, 4, 64))
    opt = minillm.optim.AdamW(model.parameters(), lr=3e-3)
    batches = np.random.default_rng(0)

    def batch():
        window = np.stack([ids[s:s + 33] for s in batches.integers(0, len(ids) - 33, 8)])
        return window[:, :-1], window[:, 1:]

    losses = []
    for _ in range(steps):
        with amp.autocast(dtype == "bfloat16", dtype="bfloat16"):
            _, loss = model(*batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with minillm.no_grad():
        after = float(np.mean([model(*batch())[1].item() for _ in range(10)]))
    return np.array(losses), after


with backends.use_backend("c" if "c" in backends.available() else "numpy"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # numpy emulates bf16, and says so
    CURVE_STEPS = 300
    curves = {dtype: curve(dtype, CURVE_STEPS) for dtype in ("float32", "bfloat16")}
(fp32_curve, fp32_final), (bf16_curve, bf16_final) = curves["float32"], curves["bfloat16"]
print(f"  {CURVE_STEPS} steps: loss on 10 batches after training: fp32 {fp32_final:.4f}, bf16 {bf16_final:.4f}; "
      f"largest gap between the curves at any step {np.abs(fp32_curve - bf16_curve).max():.4f}")
checks.claim(abs(fp32_final - bf16_final) < 0.03, "bf16 training ends within 0.03 of fp32's loss")
fig, ax = plt.subplots(figsize=(7, 3.2))
for dtype, (losses, _) in curves.items():
    ax.plot(losses, label=dtype, lw=1.2)
ax.set(xlabel="step", ylabel="training loss", title="the same run in float32 and with bf16 products")
ax.legend()
save_figure(fig, results_dir("02_cpu_path") / "bf16_loss_curves.png", dpi=90)

# %% [markdown]
# ## The whole road in one picture
#
# Against two ceilings: OpenBLAS (the practical one) and the hardware's, counted above
# from the cores, the clock and the FMA pipes, each with where it came from. A kernel
# that beats that line shows the line's clock is not the one the cores ran at (they were
# boosting: $\text{GFLOP/s} / (\text{cores} \times \text{flops per cycle})$ is the clock they must at least have run
# at), or that the FMA assumption is wrong for this CPU. On the right, the small product
# where v5 to v8 differ.

# %%
import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

labels, values = list(steps), list(steps.values())
fig, (ax, right) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 2]})
ax.barh([l.replace("matmul_", "") for l in labels] + [f"OpenBLAS ({peak_kernel})"], values + [peak],
        color=["#3b75af"] * len(labels) + ["#c9a66b"])
if hardware:
    ax.axvline(hardware, color="crimson", ls="--",
               label=f"peak at the reported clock: {hardware:.0f} ({cores} cores × {flops_per_cycle} flops × "
                     f"{ghz:.2f} GHz; boost runs above it)")
    ax.legend(loc="lower right", fontsize=8)
    best = max(values + [peak])
    print(f"hardware peak at {ghz:.2f} GHz: {hardware:.0f} GFLOP/s; OpenBLAS reaches {peak / hardware:.0%} of it, "
          f"our best version {max(values) / hardware:.0%}; {best:.0f} GFLOP/s needs the {cores} cores at "
          f"≥ {best / (cores * flops_per_cycle):.2f} GHz with {flops_per_cycle} flops a cycle")
else:
    print(f"no hardware peak drawn: clock from {clock_from}; FMAs per cycle: {fma_from}")
ax.set(xscale="log", xlabel="GFLOP/s (log scale)", title=f"one {N}×{N} matrix product, step by step")
if "c" in backends.available():
    names = list(layer)
    right.barh([n.replace("matmul_", "") for n in names], [layer[n] for n in names],
               color=["#3b75af"] * (len(names) - 1) + ["#c9a66b"])
    if hardware:
        right.axvline(hardware, color="crimson", ls="--")
    right.set(xlabel="GFLOP/s", title="768×128 · 128×128, where v5–v8 differ")
save_figure(fig, results_dir("02_cpu_path") / "matmul_steps.png", dpi=90)
checks.finish()

# %% [markdown]
# ## Try this
# - Change `MR`/`NV` in `kernels/c/matmul/blocking.h` (the register tile) and reinstall: watch v4 —
#   expect the shipped tile (12 × 2 vectors on AVX-512) to stay the best or tied: on one core
#   of an AVX-512 machine here, 6 × 2 and 8 × 3 lost up to 5–8% (8 × 3 tied at n = 1024),
#   16 × 2 about 7% (it needs 35 vector registers of the 32, so the lesson's register claim
#   fails too), and 4 × 4 about 20–25%.
# - Set `OMP_NUM_THREADS=1` and see v5 fall back to v4 — expect the two within a few percent
#   of each other, where with both cores of this 2-core machine v5 ran 1.6–1.9× faster.
# - Run with `--quick` off to use n = 1024, where the caches matter more. v8's gain grows with
#   n: time `c_backend.matmul_numbered("matmul_v7_own_rows", a, b)` against
#   `"matmul_v8_sliver_in_l1"` at n = 4096 (C is 64 MB, eight k-blocks of 512) — expect the
#   naive v1 to fall about 3× from n = 512 (its column walk down B now misses every cache)
#   while v2–v4 keep their rates, and v8 to tie v7 at n = 512 but lead by about 15% at 4096
#   (a third in some runs here).
# - Ask the compiler what it vectorised: `gcc -O3 -march=native -fopenmp -Ikernels/c -c
#   kernels/c/adam/v4_many.c -fopt-info-vec-optimized -o /dev/null`, then again with `-fno-math-errno`. Without the flag,
#   `sqrtf` keeps a branch to libm (to set `errno`), and Adam's loop ran at a third of its speed —
#   expect the line `v4_many.c:18:29: optimized: loop vectorized using 64 byte vectors` (the Adam
#   loop) only with the flag; without it, `-fopt-info-vec-missed` says "control flow in loop".
#   Built both ways on the 2-core AMD machine here, the gap was larger still: about 10× on one
#   core.
# - Train the recipe both ways, `python -m benchmarks.recipe --impls=c,c+bf16 --iters=2000`: the
#   bf16 row prints its time and val loss against the float32 run. Then profile a bf16 step
#   (`python -m benchmarks.profile_step --dtype=bfloat16`): the GEMMs shrink, attention, layer
#   norm and the Python of autograd do not, and they set how far the step can follow.
#
# Graded exercises for this chapter: `minillm exercise 2` (fill in `exercises/02_cpu_path.py`;
# `--solution` shows ours).
