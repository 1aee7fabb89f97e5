# %% [markdown]
# # Lesson 09 — Distributed training: data parallelism over MPI
#
# When one machine is not enough the documents describe three ways to split training
# (分布式训练): **data parallelism** (数据并行) — every worker holds the whole model and a
# different slice of each batch; **model parallelism** (模型并行) — the layers' weights
# are split across workers; **pipeline parallelism** (流水线并行) — consecutive layers
# on consecutive workers, micro-batches flowing through. This lesson runs the first,
# with MPI, the standard engine of parallel computing.
#
# The one idea: with $R$ workers each computing the gradient of its own mean loss over $B$
# examples, the average of the $R$ gradients is the gradient of the mean loss over all
# $R \cdot B$ examples. So if every worker starts from the same weights (broadcast from rank 0),
# averages gradients after backward (gradient synchronisation, 梯度同步, one
# `Allreduce` per bucket of gradients) and takes the same optimizer step, the copies
# stay identical and the result equals one process with batch $R \cdot B$.
#
# Then what the real systems add, each measured here: starting each bucket's all-reduce
# while the backward pass is still running (PyTorch DDP, llm.c), skipping the
# synchronisation on gradient-accumulation micro-steps (nanoGPT), sharding the optimizer's
# state across the ranks (ZeRO-1), and a cost model on paper that predicts the step time
# for hundreds of ranks from two numbers of the network and one of the compute.
#
# Run: `python lessons/09_distributed.py [--quick]` or `minillm lesson 9` — it launches
# `mpiexec -n 2` itself (install the extra: `pip install 'minillm[mpi]'`).

# %%
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np

from minillm.lessons import Checks, quick_mode, results_dir, save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUICK = quick_mode()
checks = Checks("lesson 09")
OUT = results_dir("09_distributed")
mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
try:
    import mpi4py  # noqa: F401
except ImportError:
    mpiexec = None
if mpiexec is None:
    print("mpi4py / mpiexec are not installed: pip install 'minillm[mpi]' (mpich comes from PyPI)")
    checks.claim(False, "MPI is available to run this lesson")
    checks.finish()

# %% [markdown]
# ## The whole algorithm: one SPMD program
#
# SPMD — *single program, multiple data*: `mpiexec -n R` starts $R$ copies of the same
# script; each asks MPI for its rank and takes its own shard of every batch. The four
# steps of data parallelism are the four marked lines. A float64 GPT and SGD with
# momentum keep the comparison about the algorithm, not rounding.

# %%
SPMD = """
import sys
import numpy as np
from mpi4py import MPI
import minillm
from minillm import data, optim
from minillm.models import GPT, GPTConfig

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
minillm.manual_seed(rank)                                   # each rank starts from different weights ...
model = GPT(GPTConfig(13, 16, 2, 2, 16)).to(np.float64)
params = model.parameters()
for p in params:
    comm.Bcast(p.data, root=0)                              # 1. broadcast: ... until all hold rank 0's
opt = optim.SGD(params, lr=0.1, momentum=0.9)
rng = np.random.default_rng(123)                            # every rank draws the same global batches
tokens = rng.integers(0, 13, 5000)
GLOBAL_BATCH = 8
for step in range(4):
    x, y = data.batches(tokens, 16, GLOBAL_BATCH, rng)
    mine = slice(rank * GLOBAL_BATCH // size, (rank + 1) * GLOBAL_BATCH // size)
    _, loss = model(x[mine], y[mine])                       # 2. forward and backward on this rank's shard
    opt.zero_grad()
    loss.backward()
    flat = np.concatenate([p.grad.numpy().ravel() for p in params])
    comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)          # 3. one Allreduce of a flat gradient buffer
    flat /= size                                            #    sum / R = the mean over all ranks' examples
    offset = 0
    for p in params:
        p.grad = minillm.tensor(flat[offset:offset + p.size].reshape(p.shape))
        offset += p.size
    opt.step()                                              # 4. the same step on every rank
weights = np.concatenate([p.numpy().ravel() for p in params])
low, high = weights.copy(), weights.copy()
comm.Allreduce(MPI.IN_PLACE, low, op=MPI.MIN)               # the ranks agree when min = max everywhere
comm.Allreduce(MPI.IN_PLACE, high, op=MPI.MAX)
if rank == 0:
    np.savez(sys.argv[1], weights=weights, identical=np.array_equal(low, high))
"""
scratch = Path(tempfile.mkdtemp(prefix="minillm-lesson09-"))
(scratch / "spmd.py").write_text(SPMD)
env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
runs = {}
for ranks in (1, 2):
    done = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, str(scratch / "spmd.py"),
                           str(scratch / f"ranks{ranks}.npz")], capture_output=True, text=True, env=env, timeout=300)
    checks.claim(done.returncode == 0, f"the {ranks}-rank job finished" + (f": {done.stderr[-300:]}"
                                                                           if done.returncode else ""))
    runs[ranks] = np.load(scratch / f"ranks{ranks}.npz")
one, two = runs[1]["weights"], runs[2]["weights"]
difference = np.linalg.norm(two - one) / np.linalg.norm(one)
print(f"relative difference between the weights of 2 ranks × batch 4 and 1 process × batch 8: {difference:.1e}")
checks.claim(bool(runs[2]["identical"]), "the two ranks hold identical weights after training")
checks.claim(difference <= 1e-6, "2 ranks × batch 4 equal 1 process × batch 8 (to 1e-6)")

# %% [markdown]
# `minillm.distributed.Communicator` is this loop made practical, and `minillm train
# --ddp=True` uses it. It averages the gradients in flat **buckets** of about `bucket_mb`
# each, one `Allreduce` per bucket: every `Allreduce` pays a fixed cost (MPI's latency, and
# Python's for the call), so one message per bucket amortises it where one per parameter
# tensor would pay it for each. Below, the same gradients averaged in one bucket and in one
# bucket per tensor, with the blocking `Allreduce` after backward:

# %%
BUCKETS = """
import sys, time
import numpy as np
from mpi4py import MPI
import minillm
from minillm.distributed import Communicator
from minillm.models import GPT, GPTConfig

minillm.manual_seed(0)
model = GPT(GPTConfig(99, 64, 2, 4, 128))
_, loss = model(np.zeros((2, 64), np.int64), np.zeros((2, 64), np.int64))
loss.backward()
grads = [p.grad for p in model.parameters()]
report = {}
for label, bucket_mb in (("one bucket", 4.0), ("a bucket per tensor", 1e-6)):
    comm = Communicator(bucket_mb=bucket_mb)
    calls = len(list(comm.buckets(model.parameters())))
    best = float("inf")
    for _ in range(20):
        for p, g in zip(model.parameters(), grads):
            p.grad = g
        comm.comm.Barrier()
        start = time.perf_counter()
        comm.average_gradients(model)
        best = min(best, time.perf_counter() - start)
    report[label] = (calls, best)
if comm.rank == 0:
    size = sum(p.data.nbytes for p in model.parameters()) / 2 ** 20
    for label, (calls, seconds) in report.items():
        print(f"{label:20s}: {calls:3d} Allreduce calls, {seconds * 1e3:.2f} ms for {size:.1f} MB of gradients")
    np.save(sys.argv[1], np.array([report["one bucket"][1], report["a bucket per tensor"][1],
                                   report["a bucket per tensor"][0]]))
"""
(scratch / "buckets.py").write_text(BUCKETS)
done = subprocess.run([mpiexec, "-n", "2", sys.executable, str(scratch / "buckets.py"), str(scratch / "buckets.npy")],
                      capture_output=True, text=True, env=env, timeout=300)
print(done.stdout.strip())
checks.claim(done.returncode == 0, "the bucket timing job finished" + (f": {done.stderr[-300:]}"
                                                                        if done.returncode else ""))
one_bucket, per_tensor, tensors = np.load(scratch / "buckets.npy")
checks.timing(one_bucket < per_tensor, f"one Allreduce of the whole gradient beats {int(tensors)} small ones "
              f"({one_bucket * 1e3:.2f} vs {per_tensor * 1e3:.2f} ms)")

# %% [markdown]
# ## Overlap: a bucket leaves as soon as its gradients are final
#
# The backward pass produces the gradients in reverse order of use: the output layer's
# first, the embedding's last. A bucket whose gradients are all final can be on the wire
# while the layers below are still being differentiated. The autograd engine tells us the
# moment: `Tensor.register_post_accumulate_grad_hook(fn)` calls `fn(p)` as soon as
# `p.grad` holds everything this backward adds to it. Here is when each parameter's hook
# fires in one backward pass of a 4-layer GPT, as a fraction of the backward's time:

# %%
import time  # noqa: E402

import minillm  # noqa: E402
from minillm.models import GPT, GPTConfig  # noqa: E402

minillm.manual_seed(0)
model = GPT(GPTConfig(99, 64, 4, 4, 128))
x = np.random.default_rng(0).integers(0, 99, (8, 64))
fired = []
for name, p in model.named_parameters():
    p.register_post_accumulate_grad_hook(lambda p, name=name: fired.append((name, time.perf_counter())))
_, loss = model(x, x)
start = time.perf_counter()
loss.backward()
duration = time.perf_counter() - start
names = [name for name, _ in fired]
layer_of = lambda name: int(name.split(".")[1]) if name.startswith("blocks.") else None  # noqa: E731
block_order = [layer_of(n) for n in names if layer_of(n) is not None]
print("first five final gradients:", ", ".join(f"{n} at {(t - start) / duration:.0%}" for n, t in fired[:5]))
print("last three:", ", ".join(f"{n} at {(t - start) / duration:.0%}" for n, t in fired[-3:]))
checks.claim(len(fired) == len(list(model.parameters())), "every parameter's hook fired exactly once")
checks.claim(block_order == sorted(block_order, reverse=True),
             "the blocks' gradients become final from the last block down to the first")
checks.claim(set(names[-2:]) == {"wte.weight", "wpe.weight"},
             f"the embeddings' gradients are the last to be final ({', '.join(names[-2:])}): they are used first "
             f"in the forward pass")
checks.claim(names[0] == "lm_head.weight", "the output layer's gradient is the first to be final")

# %% [markdown]
# `minillm train --ddp=True` does this by default (`--ddp_overlap=True`): the gradients are
# views of flat buckets laid out in reverse order of use; each parameter's hook copies its
# gradient into its slot, and the hook of a bucket's last gradient starts that bucket's
# non-blocking `Iallreduce`. Before the optimizer step, the trainer waits for all of them.
# With `--grad_accum=K` the hooks stay silent on the first $K-1$ micro-steps (the gradients
# add up locally, as nanoGPT skips the sync) and only the last micro-step's are reduced.
#
# ## ZeRO-1: one copy of the optimizer state, spread over the ranks
#
# Plain data parallel keeps AdamW's two moments for every weight on every rank: $2N$ floats,
# $R$ times over. ZeRO stage 1 gives rank $r$ the $r$-th slice of the flattened parameters
# and only that slice's moments. A step becomes a **reduce-scatter** of the gradients (each
# rank receives the sum of its slice only), AdamW on the slice, and an **all-gather** of the
# updated weights. A reduce-scatter and an all-gather are the two halves of a ring
# all-reduce, so the bytes on the wire are the same as plain data parallel's; the optimizer
# memory per rank falls from $2N$ to $2N/R$ floats. `minillm train --ddp=True --zero=1`
# does it (`minillm/zero.py`); its checkpoints gather the whole state, so a run resumes on
# any number of ranks.

# %% [markdown]
#
# ## Throughput: one rank against two, three ways
# The same training run, each rank with one thread, so the two ranks use the two cores:
# one rank; two ranks with the all-reduce after backward; two with it overlapped; two with
# ZeRO-1. Scaling efficiency $= \text{tokens/s}(2 \text{ ranks}) / (2 \cdot \text{tokens/s}(1 \text{ rank}))$.
# Each two-rank run also reports the time per step it spent blocked waiting for the
# gradients' collectives, and ZeRO-1 its optimizer memory per rank.

# %%
import re  # noqa: E402

steps = 20 if QUICK else 80
BATCH, BLOCK = 8, 64
train = [sys.executable, "-m", "minillm", "train", f"--max_iters={steps}", f"--batch_size={BATCH}",
         f"--block_size={BLOCK}", "--n_layer=2", "--n_head=4", "--n_embd=128", "--eval_interval=100000",
         "--eval_iters=1", "--progress=False", "--backend=c"]
variants = {"1 rank": [], "2 ranks, after backward": ["--ddp_overlap=False"], "2 ranks, overlapped": [],
            "2 ranks, ZeRO-1": ["--zero=1"]}
speed, waiting, summary = {}, {}, {}
for label, options in variants.items():
    out = scratch / label.replace(" ", "_").replace(",", "")
    command = train + [f"--out_dir={out}"] if label == "1 rank" else [mpiexec, "-n", "2", *train, "--ddp=True",
                                                                        *options, f"--out_dir={out}"]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    speed[label] = json.loads((out / "metrics.json").read_text())["tokens_per_second"]
    wait = re.search(r"([\d.]+) ms waiting for them", done.stdout)
    waiting[label] = float(wait.group(1)) / steps if wait else 0.0
    summary[label] = done.stdout
    ranks = 1 if label == "1 rank" else 2
    print(f"{label:24s} {speed[label]:9,.0f} tokens/s, efficiency {speed[label] / (ranks * speed['1 rank']):.0%}"
          + (f", {waiting[label]:.2f} ms a step waiting for the gradients" if wait else ""))
memory = re.search(r"moments ([\d.]+) MB on each rank of ([\d.]+) MB", summary["2 ranks, ZeRO-1"])
shard_mb, whole_mb = map(float, memory.groups())
print(f"ZeRO-1: AdamW's moments {shard_mb:.2f} MB on each rank instead of {whole_mb:.2f} MB")
checks.claim(shard_mb <= whole_mb / 2 + 0.01, "ZeRO-1 halves the optimizer memory per rank on 2 ranks")
from safetensors.numpy import load_file  # noqa: E402
final = {label: load_file(str(next((scratch / label.replace(" ", "_").replace(",", "")).glob("model-*.safetensors"))))
         for label in variants if label != "1 rank"}
flat = {label: np.concatenate([w[k].ravel() for k in sorted(w)]) for label, w in final.items()}
apart = max(np.linalg.norm(flat[label] - flat["2 ranks, after backward"]) / np.linalg.norm(flat[label])
            for label in flat)
checks.claim(apart <= 1e-6, f"the three ways train the same weights (they differ by at most {apart:.1e})")
checks.timing(speed["2 ranks, after backward"] > speed["1 rank"], "two ranks process more tokens per second than one")

# %% [markdown]
# ## A cost model on paper
#
# A ring all-reduce of $N$ bytes over $R$ ranks runs in $2(R-1)$ steps: $R-1$ of
# reduce-scatter, $R-1$ of all-gather. In each, every rank sends one $N/R$ chunk to its
# neighbour, so each rank moves $2\frac{R-1}{R}N$ bytes, almost $2N$ whatever $R$ is. With
# a per-message latency $\alpha$ and a bandwidth $\beta$,
#
# $$
# t_\text{all-reduce}(N, R) = 2(R-1)\,\alpha + 2\,\frac{R-1}{R}\,\frac{N}{\beta}.
# $$
#
# With each rank keeping its batch (weak scaling), a step takes the one-rank compute time
# $t_c$ plus whatever communication is not hidden: all of it after backward, or, overlapped,
# only what outlasts the backward pass (about $\frac{2}{3}t_c$: two of a step's three
# matrix products per weight are the backward's):
#
# $$
# t_\text{after} = t_c + t_\text{all-reduce}, \qquad t_\text{overlap} \approx \tfrac{1}{3}t_c + \max\!\left(\tfrac{2}{3}t_c,\ t_\text{all-reduce}\right).
# $$
#
# On two processes that share memory the all-reduce is a small part of a step (the model
# below puts a number on it), so overlapping it can save at most that much. Most of the wait
# the runs above report is something else: one rank waiting for the other to finish its
# backward pass, which any neighbour on the machine stretches; which way comes out ahead
# changes from run to run. Overlap pays where the all-reduce is long next to the backward
# pass: many ranks, a slow network, a large model, as the predictions below show.
#
# $\alpha$ and $\beta$ of this machine's MPI (two processes, shared memory) are measured
# below from a one-float and a large `Allreduce`; $t_c$ comes from the one-rank run. The
# model then predicts the two-rank step, checked against the run above, and the step for
# 8 to 512 ranks over two stated networks, for this lesson's model and for GPT-2 124M (its
# $t_c$ scaled by $6 \times \text{parameters} \times \text{tokens}$, the FLOPs of a step).

# %%
PINGS = """
import sys, time
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
result = []
for floats in (1, 4 * 2 ** 20):
    buffer = np.ones(floats, np.float32)
    best = float("inf")
    for _ in range(30 if floats == 1 else 8):
        comm.Barrier()
        start = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        best = min(best, time.perf_counter() - start)
    result.append(best)
if comm.Get_rank() == 0:
    np.save(sys.argv[1], np.array(result))
"""
(scratch / "pings.py").write_text(PINGS)
subprocess.run([mpiexec, "-n", "2", sys.executable, str(scratch / "pings.py"), str(scratch / "pings.npy")],
               check=True, capture_output=True, text=True, env=env, timeout=300)
small, large = np.load(scratch / "pings.npy")
alpha_here = small / 2                                   # 2(R-1) = 2 latencies at R = 2
beta_here = (4 * 2 ** 22) / (large - 2 * alpha_here)      # 2(R-1)/R · N = N bytes at R = 2
params = sum(v.size for v in final["2 ranks, after backward"].values())
model_bytes = 4 * params
t_c = BATCH * BLOCK / speed["1 rank"]


def all_reduce(n_bytes, ranks, alpha, beta):
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * n_bytes / beta


predicted = t_c + all_reduce(model_bytes, 2, alpha_here, beta_here)
measured = BATCH * BLOCK / (speed["2 ranks, after backward"] / 2)
print(f"this machine's MPI: α = {alpha_here * 1e6:.1f} µs, β = {beta_here / 1e9:.1f} GB/s; the model has "
      f"{params:,} parameters ({model_bytes / 2**20:.2f} MB of gradients); t_c = {t_c * 1e3:.2f} ms")
reduce_here = all_reduce(model_bytes, 2, alpha_here, beta_here)
print(f"2 ranks, after backward: predicted {predicted * 1e3:.2f} ms a step, measured {measured * 1e3:.2f} ms "
      f"(ratio {measured / predicted:.2f}); the all-reduce is {reduce_here * 1e3:.2f} ms of it "
      f"({reduce_here / predicted:.0%}), all that overlap could hide here")
checks.timing(abs(measured / predicted - 1) < 0.25, "the cost model predicts the 2-rank step within 25%")

NETWORKS = {"25 Gb/s Ethernet (α 20 µs)": (20e-6, 25e9 / 8), "400 Gb/s InfiniBand (α 2 µs)": (2e-6, 400e9 / 8)}
GPT2_PARAMS = 124_439_808
ranks_axis = 2 ** np.arange(3, 10)
fig, (model_ax, measured_ax) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [3, 2]})
for (network, (alpha, beta)), color in zip(NETWORKS.items(), ("#c0392b", "#3b75af")):
    for name, n_params, style in (("this model", params, ":"), ("GPT-2 124M", GPT2_PARAMS, "-")):
        compute = t_c * n_params / params
        after = [compute / (compute + all_reduce(4 * n_params, r, alpha, beta)) for r in ranks_axis]
        overlap = [compute / (compute / 3 + max(2 * compute / 3, all_reduce(4 * n_params, r, alpha, beta)))
                   for r in ranks_axis]
        model_ax.plot(ranks_axis, after, style, color=color, alpha=0.5, label=f"{name}, {network}, after backward")
        model_ax.plot(ranks_axis, overlap, style, color=color, marker="o", ms=3,
                      label=f"{name}, {network}, overlapped")
        if name == "GPT-2 124M":
            print(f"GPT-2 124M over {network}: efficiency at 512 ranks {after[-1]:.0%} after backward, "
                  f"{overlap[-1]:.0%} overlapped")
model_ax.set(xscale="log", xlabel="ranks (log scale)", ylabel="predicted scaling efficiency",
             title="the ring all-reduce's cost, on paper (compute at this machine's rate)", ylim=(0, 1.05))
model_ax.set_xticks(ranks_axis, [str(r) for r in ranks_axis])
model_ax.legend(fontsize=6, loc="lower left")
labels = list(variants)
measured_ax.barh(labels, [speed[l] for l in labels], color=["#8fb3d9"] + ["#3b75af"] * 3)
measured_ax.axvline(2 * speed["1 rank"], color="black", ls="--", lw=1, label="2 × one rank")
measured_ax.invert_yaxis()
measured_ax.set(xlabel="tokens/s, measured", title="this machine: 1 rank and 2")
measured_ax.legend(fontsize=8)
save_figure(fig, OUT / "scaling.png")
checks.finish()

# %% [markdown]
# ## Try this
# - Across machines: `mpiexec -n 4 -f hosts minillm train --ddp=True …` with a hostfile
#   listing the machines (MPICH's Hydra launcher; each needs the same Python environment).
#   Expect the same closing line, "parameters identical on every rank: True", and a waiting
#   time per step near the cost model's $t_\text{all-reduce}$ for your network.
# - Make the buckets tiny (`--ddp_bucket_mb=0.01`, one per tensor) with `--ddp_overlap=False`
#   and compare the waiting time the summary line reports with the default 4 MB: on two
#   processes sharing memory it barely moves (157 against 158 ms over 20 steps of the run
#   above), because most of it is one rank waiting for the other to finish its backward;
#   over a network each extra bucket pays the latency $\alpha$ once more.
# - Train with `--grad_accum=4` on 2 ranks and count the reductions in the summary line: 1 per
#   step, not 4.
# - Stop a `--zero=1` run on 2 ranks (`--stop_after=…`) and resume it on 3 with the same
#   global batch (`--batch_size` 6 then 4): the weights match an uninterrupted run to 1e-6.
# - In the cost model, set $\alpha = 0$: how much of the loss of efficiency at 512 ranks was
#   latency? Over the Ethernet, after backward, this lesson's model goes from about 33% to
#   91%: nearly all of it was latency, $2 \cdot 511$ messages a step; GPT-2 124M barely
#   moves (90% to 90.5%), its time is bandwidth.
# - Delete the broadcast line from `SPMD` and run it on 2 ranks: how far apart do the
#   ranks drift, and does the Allreduce alone ever bring them together? Expect the ranks'
#   weights to stay about 22% apart (relative to their norm) after the 4 steps: both take
#   the same averaged step from different starting points, so the gap never closes.
#
# Graded exercises for this chapter: `minillm exercise 9` (fill in `exercises/09_distributed.py`;
# `--solution` shows ours).
