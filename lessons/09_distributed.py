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
# --ddp=True` uses it. After the backward pass has finished, it packs the gradients into
# flat buckets of about `bucket_mb` (4 MB) each and runs one blocking `Allreduce` per
# bucket; a rank that fails aborts the job instead of leaving the others waiting in a
# collective forever. What the buckets buy is fewer, larger messages: every `Allreduce`
# pays a fixed cost (MPI's latency, and Python's for the call and the copies), so one
# message per bucket amortises it where one per parameter tensor would pay it for each,
# and the flat copy a bucket needs is a few MB, not a second copy of every gradient.
#
# The buckets do *not* overlap communication with the backward pass. Real systems
# (PyTorch's DDP) start a bucket's `Allreduce` as soon as backward has produced all its
# gradients, while the earlier layers' gradients are still being computed; here the
# `Allreduce` calls start only once the whole backward pass has finished, and the cores
# compute nothing while they run. That overlap is not done yet (a separate open issue).
# Below, the same gradients averaged in one bucket and in one bucket per tensor:

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
#
# ## Throughput: one rank against two
# The same training run, each rank with one thread, so the two ranks use the two
# cores. Scaling efficiency $= \text{tokens/s}(2 \text{ ranks}) / (2 \cdot \text{tokens/s}(1 \text{ rank}))$.

# %%
steps = 20 if QUICK else 80
train = [sys.executable, "-m", "minillm", "train", f"--max_iters={steps}", "--batch_size=8", "--block_size=64",
         "--n_layer=2", "--n_head=4", "--n_embd=128", "--eval_interval=100000", "--eval_iters=1",
         "--progress=False", "--backend=c"]
speed = {}
for ranks in (1, 2):
    out = scratch / f"train{ranks}"
    command = train + [f"--out_dir={out}"] if ranks == 1 else [mpiexec, "-n", "2", *train, "--ddp=True",
                                                                 f"--out_dir={out}"]
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    speed[ranks] = json.loads((out / "metrics.json").read_text())["tokens_per_second"]
efficiency = speed[2] / (2 * speed[1])
print(f"1 rank {speed[1]:,.0f} tokens/s, 2 ranks {speed[2]:,.0f} tokens/s: scaling efficiency {efficiency:.0%}")
checks.timing(speed[2] > speed[1], "two ranks process more tokens per second than one")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.bar(["1 rank", "2 ranks"], [speed[1], speed[2]], color=["#8fb3d9", "#3b75af"], label="measured")
ax.plot(["1 rank", "2 ranks"], [speed[1], 2 * speed[1]], "k--", marker="o", label="perfect scaling")
ax.set(ylabel="tokens/s", title=f"data parallel on this machine: {efficiency:.0%} efficiency")
ax.legend()
save_figure(fig, OUT / "scaling.png")
checks.finish()

# %% [markdown]
# ## Try this
# - Across machines: `mpiexec -n 4 -f hosts minillm train --ddp=True …` with a hostfile
#   listing the machines (MPICH's Hydra launcher; each needs the same Python environment).
# - Make the buckets tiny (`Communicator(bucket_mb=0.01)`) and watch the cost of many
#   small `Allreduce` calls.
# - Delete the broadcast line from `SPMD` and run it on 2 ranks: how far apart do the
#   ranks drift, and does the Allreduce alone ever bring them together?
