# %% [markdown]
# # Lesson 07 — Distributed training: data parallelism over MPI
#
# When one machine is not enough the documents describe three ways to split training
# (分布式训练): **data parallelism** (数据并行) — every worker holds the whole model and a
# different slice of each batch; **model parallelism** (模型并行) — the layers' weights
# are split across workers; **pipeline parallelism** (流水线并行) — consecutive layers
# on consecutive workers, micro-batches flowing through. This lesson runs the first,
# with MPI, the standard engine of parallel computing.
#
# The one idea: with R workers each computing the gradient of its own mean loss over B
# examples, the average of the R gradients is the gradient of the mean loss over all
# R·B examples. So if every worker starts from the same weights (broadcast from rank 0),
# averages gradients after backward (gradient synchronisation, 梯度同步, one
# `Allreduce` per bucket of gradients) and takes the same optimizer step, the copies
# stay identical and the result equals one process with batch R·B.
#
# Run: `python lessons/07_distributed.py [--quick]` or `minillm lesson 7` — it launches
# `mpiexec -n 2` itself (install the extra: `pip install 'minillm[mpi]'`).

# %%
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from minillm.lessons import Checks, LESSONS_DIR, quick_mode

QUICK = quick_mode()
checks = Checks("lesson 07")
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
# ## Two ranks against one process
# `tests/mpi_equivalence.py` trains a float64 GPT for a few steps: on 2 ranks with
# batch 4 each, and here in one process with batch 8 — the same global batches.

# %%
sys.path.insert(0, str(LESSONS_DIR.parent / "tests"))
import mpi_equivalence as run  # noqa: E402

scratch = Path(tempfile.mkdtemp(prefix="minillm-lesson07-"))
env = dict(os.environ, OMP_NUM_THREADS="1")
done = subprocess.run([mpiexec, "-n", "2", sys.executable, str(LESSONS_DIR.parent / "tests" / "mpi_equivalence.py"),
                       str(scratch / "ddp.npz")], capture_output=True, text=True, env=env, timeout=300)
checks.claim(done.returncode == 0, "the 2-rank job finished")
ddp = np.load(scratch / "ddp.npz")
single = run.train(run.make_model(), run.global_batches(2))
everything = np.concatenate([p.numpy().ravel() for _, p in single.named_parameters()])
distributed = np.concatenate([ddp[name].ravel() for name, _ in single.named_parameters()])
worst = np.linalg.norm(distributed - everything) / np.linalg.norm(everything)
print(f"relative difference between the parameters of 2 ranks and of 1 process: {worst:.1e}")
checks.claim(bool(ddp["identical"]), "the two ranks hold identical parameters after training")
checks.claim(worst <= 1e-6, "2 ranks × batch 4 equal 1 process × batch 8 (to 1e-6)")

# %% [markdown]
# ## Throughput: one rank against two
# The same training run, each rank with one thread, so the two ranks use the two
# cores. Scaling efficiency = tokens/s(2 ranks) / (2 · tokens/s(1 rank)).

# %%
from benchmarks.mpi_scaling import run as scaling_run  # noqa: E402

steps = 20 if QUICK else 80
one = scaling_run(1, steps, scratch / "one")
two = scaling_run(2, steps, scratch / "two")
efficiency = two / (2 * one)
print(f"1 rank {one:,.0f} tokens/s, 2 ranks {two:,.0f} tokens/s: scaling efficiency {efficiency:.0%}")
checks.timing(two > one, "two ranks process more tokens per second than one")
checks.finish()

# %% [markdown]
# ## Try this
# - Across machines: `mpiexec -n 4 -f hosts minillm train --ddp=True …` with a hostfile
#   listing the machines (MPICH's Hydra launcher; each needs the same Python environment).
# - Make the buckets tiny (`Communicator(bucket_mb=0.01)`) and watch the cost of many
#   small `Allreduce` calls.
# - Give the ranks different seeds without the broadcast and see them drift apart.
