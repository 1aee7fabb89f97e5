"""Throughput of data-parallel training on 1 and 2 MPI ranks, one thread each, and the
scaling efficiency: tokens/s(R ranks) / (R · tokens/s(1 rank)); on 2 ranks with the
all-reduce after backward and overlapped with it (--ddp_overlap), with the time per step
each spent blocked waiting for the gradients' collectives.

    python -m benchmarks.mpi_scaling [--steps N] [--out DIR]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .timing import machine_info, write_json

TRAIN = ["--max_iters={steps}", "--batch_size=8", "--block_size=64", "--n_layer=2", "--n_head=4", "--n_embd=128",
         "--eval_interval=100000", "--eval_iters=1", "--progress=False", "--backend=c"]


def run(ranks, steps, out_dir, overlap=True):
    """(tokens/s, ms per step waiting for the gradients' collectives, or None on one rank)."""
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    args = [a.format(steps=steps) for a in TRAIN] + [f"--out_dir={out_dir}"]
    if ranks == 1:
        command = [sys.executable, "-m", "minillm", "train", *args]
    else:
        command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "minillm", "train", "--ddp=True",
                   f"--ddp_overlap={overlap}", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    waiting = re.search(r"([\d.]+) ms waiting for them", done.stdout)
    return (json.loads((Path(out_dir) / "metrics.json").read_text())["tokens_per_second"],
            float(waiting.group(1)) / steps if waiting else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for ranks, overlap in ((1, None), (2, False), (2, True)):
            tokens, wait_ms = run(ranks, args.steps, Path(scratch) / f"r{ranks}-{overlap}", overlap)
            runs.append({"ranks": ranks, "overlap": overlap, "tokens_per_s": tokens, "wait_ms_per_step": wait_ms})
    for r in runs:
        r["efficiency"] = r["tokens_per_s"] / (r["ranks"] * runs[0]["tokens_per_s"])
        how = "" if r["overlap"] is None else (" overlapped" if r["overlap"] else " after backward")
        wait = "" if r["wait_ms_per_step"] is None else f", {r['wait_ms_per_step']:.2f} ms a step waiting"
        print(f"{r['ranks']} rank(s){how}: {r['tokens_per_s']:,.0f} tokens/s, scaling efficiency "
              f"{r['efficiency']:.0%}{wait}")
    info = machine_info()
    print("wrote", write_json({"machine": info, "runs": runs, "steps": args.steps}, args.out, f"mpi-{info['date']}"))


if __name__ == "__main__":
    main()
