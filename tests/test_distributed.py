"""Data parallel over MPI (marker ``mpi``): two ranks equal one process with the same
global batch; the ranks stay identical; a failing rank ends the job with its error."""
import os
import re
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
        # the keys' third of c_attn's bias gets a zero gradient in exact arithmetic (the
        # softmax ignores a constant added to all key scores): it holds only rounding noise
        # (~1e-21), hence the absolute floor
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


def weights(folder):
    from safetensors.numpy import load_file
    return load_file(str(next(Path(folder).glob("model-*.safetensors"))))


COMMON = ["--block_size=16", "--n_layer=1", "--n_head=2", "--n_embd=16", "--eval_iters=1", "--progress=False",
          "--backend=numpy", "--warmup_iters=1"]


def train(tmp_path, name, ranks, *options):
    """`minillm train` on ``ranks`` MPI ranks (1: a plain process) into tmp_path/name."""
    command = [sys.executable, "-m", "minillm", "train", f"--out_dir={tmp_path / name}", *COMMON, *options]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command, "--ddp=True"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("ranks, grad_accum, mode", [(2, 1, "overlap"), (3, 1, "overlap"), (2, 3, "overlap"),
                                                     (2, 1, "after"), (3, 3, "after"), (2, 1, "zero"),
                                                     (3, 2, "zero")])
def test_mpiexec_train_equals_one_process_with_the_global_batch(tmp_path, ranks, grad_accum, mode):
    """Through the command line: R ranks of batch B train exactly as one process of batch R·B
    (the same seed, data and micro-steps): with the all-reduce overlapped with backward, after
    it, or ZeRO-1's reduce-scatter and all-gather; with --grad_accum=K the ranks reduce once a
    step. Buckets of 0.01 MB: the model's gradients need several, so hooks start them one by one."""
    steps = ["--max_iters=5", "--eval_interval=5", f"--grad_accum={grad_accum}"]
    out = train(tmp_path, "ddp", ranks, *steps, "--batch_size=4", "--ddp_bucket_mb=0.01",
                f"--ddp_overlap={mode == 'overlap'}", f"--zero={int(mode == 'zero')}")
    assert "5 gradient reductions in 5 optimizer steps" in out
    if mode == "overlap":
        started = re.search(r"overlapped with backward: (\d+) of (\d+) buckets", out)
        assert started and int(started.group(2)) >= 3 and int(started.group(1)) >= int(started.group(2)) - 1, \
            out  # every bucket but (at most) the embedding's starts while backward still runs
    elif mode == "after":
        assert "after backward" in out
    else:
        shard, whole = map(float, re.search(r"moments ([\d.]+) MB on each rank of ([\d.]+) MB", out).groups())
        assert shard <= whole / ranks + 0.01, out
    train(tmp_path, "one", 1, *steps, f"--batch_size={4 * ranks}")
    assert_same_weights(tmp_path / "ddp", tmp_path / "one", f"{ranks} ranks ({mode}) vs one process")


def test_a_zero_run_resumes_on_another_number_of_ranks(tmp_path):
    """ZeRO-1 checkpoints hold AdamW's whole state: 2 ranks of 6 stop at step 4, 3 ranks of 4
    go on to step 8, and the weights equal one process of 12 run straight through."""
    train(tmp_path, "zero", 2, "--max_iters=8", "--stop_after=4", "--eval_interval=4", "--batch_size=6", "--zero=1")
    out = train(tmp_path, "zero", 3, "--max_iters=8", "--eval_interval=4", "--batch_size=4", "--zero=1",
                "--resume=true")
    assert "resumed" in out and "4 gradient reductions in 4 optimizer steps" in out
    train(tmp_path, "one", 1, "--max_iters=8", "--eval_interval=4", "--batch_size=12")
    assert_same_weights(tmp_path / "zero", tmp_path / "one", "2 then 3 ZeRO-1 ranks vs one process")


def assert_same_weights(folder, reference, what):
    mine, theirs = weights(folder), weights(reference)
    flat = lambda w: np.concatenate([w[k].ravel() for k in sorted(mine)])  # noqa: E731
    overall = np.linalg.norm(flat(mine) - flat(theirs)) / np.linalg.norm(flat(theirs))
    assert overall <= 1e-6, f"{what}: relative difference {overall:.1e}"
    for name in mine:
        # float32 summation order differs between one batch of R·B and R averaged shards; the keys'
        # third of c_attn's bias has a zero gradient in exact arithmetic, so AdamW turns that
        # rounding into steps of its own: hence the absolute floor
        difference = np.abs(mine[name] - theirs[name]).max()
        assert difference <= 1e-6 * np.abs(theirs[name]).max() + 1e-5, f"{name}: differs by {difference:.2e}"
