"""Data parallel over MPI (marker ``mpi``): two ranks equal one process with the same
global batch; the ranks stay identical; a failing rank ends the job with its error."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.mpi
pytest.importorskip("mpi4py", reason="mpi4py is the optional extra 'mpi' (pip install 'minillm[mpi]')")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
if MPIEXEC is None:
    pytest.skip("no mpiexec on PATH (pip install 'minillm[mpi]' brings mpich's)", allow_module_level=True)
HERE = Path(__file__).parent


def mpirun(ranks, *args, timeout=120):
    command = [MPIEXEC, "-n", str(ranks), sys.executable, str(HERE / "mpi_equivalence.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_two_ranks_equal_one_process_with_the_same_global_batch(tmp_path):
    sys.path.insert(0, str(HERE))
    import mpi_equivalence as run
    done = mpirun(2, str(tmp_path / "ddp.npz"))
    assert done.returncode == 0, done.stderr
    ddp = np.load(tmp_path / "ddp.npz")
    assert bool(ddp["identical"]), "the ranks' parameters diverged"
    single = run.train(run.make_model(), run.global_batches(2))
    everything = np.concatenate([p.numpy().ravel() for _, p in single.named_parameters()])
    distributed = np.concatenate([ddp[name].ravel() for name, _ in single.named_parameters()])
    overall = np.linalg.norm(distributed - everything) / np.linalg.norm(everything)
    print(f"2 ranks vs 1 process: relative difference {overall:.1e}")
    assert overall <= 1e-6
    for name, p in single.named_parameters():
        # k_proj's bias gets a zero gradient in exact arithmetic (the softmax ignores a
        # constant added to all key scores): it holds only rounding noise (~1e-21), hence
        # the absolute floor
        difference = np.linalg.norm(ddp[name] - p.numpy())
        assert difference <= 1e-6 * np.linalg.norm(p.numpy()) + 1e-12, f"{name}: difference {difference:.2e}"


def test_a_failing_rank_ends_the_whole_job_with_its_error():
    done = mpirun(2, "unused", "--fail-on-rank-1", timeout=60)
    assert done.returncode != 0
    assert "[rank 1] RuntimeError: planted failure on rank 1" in done.stderr


def test_mpiexec_minillm_train_writes_one_checkpoint(tmp_path):
    out = tmp_path / "ddp"
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "minillm", "train", "--ddp=True", f"--out_dir={out}",
               "--max_iters=6", "--batch_size=4", "--block_size=16", "--n_layer=1", "--n_head=2", "--n_embd=16",
               "--eval_interval=3", "--eval_iters=2", "--progress=False", "--backend=numpy"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    assert "parameters identical on every rank: True" in done.stdout
    assert len(list(out.glob("model-*.safetensors"))) == 1 and (out / "checkpoint.json").exists()
