"""Throughput of data-parallel training on 1 and 2 MPI ranks, one thread each, and the
scaling efficiency: tokens/s(R ranks) / (R · tokens/s(1 rank)); on 2 ranks with the
all-reduce after backward, overlapped with it (--ddp_overlap) and with ZeRO-1 (--zero=1),
with the time per step each spent blocked waiting for the gradients' collectives and the
optimizer memory per rank.

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


def run(ranks, steps, out_dir, overlap=True, zero=False):
    """(tokens/s, ms per step waiting for the gradients' collectives or None on one rank,
    AdamW's moments per rank in MB)."""
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    args = [a.format(steps=steps) for a in TRAIN] + [f"--out_dir={out_dir}"]
    if ranks == 1:
        command = [sys.executable, "-m", "minillm", "train", *args]
    else:
        command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "minillm", "train", "--ddp=True",
                   f"--ddp_overlap={overlap}", f"--zero={int(zero)}", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    waiting = re.search(r"([\d.]+) ms waiting for them", done.stdout)
    sharded = re.search(r"moments ([\d.]+) MB on each rank of ([\d.]+) MB", done.stdout)
    metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
    return (metrics["tokens_per_second"], float(waiting.group(1)) / steps if waiting else None,
            (float(sharded.group(1)), float(sharded.group(2))) if sharded else (None, None))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for ranks, overlap, zero in ((1, None, False), (2, False, False), (2, True, False), (2, False, True)):
            tokens, wait_ms, (moments_mb, whole_mb) = run(ranks, args.steps, Path(scratch) / f"r{ranks}-{overlap}-{zero}",
                                              overlap, zero)
            runs.append({"ranks": ranks, "overlap": overlap, "zero": zero, "tokens_per_s": tokens,
                         "wait_ms_per_step": wait_ms, "zero_moments_mb_per_rank": moments_mb,
                         "unsharded_moments_mb_per_rank": whole_mb})
    whole = next(r["unsharded_moments_mb_per_rank"] for r in runs if r["zero"])
    for r in runs:  # every rank holds all of AdamW's moments, except under ZeRO-1
        r["moments_mb_per_rank"] = r["zero_moments_mb_per_rank"] if r["zero"] else whole
    for r in runs:
        r["efficiency"] = r["tokens_per_s"] / (r["ranks"] * runs[0]["tokens_per_s"])
        how = ("" if r["overlap"] is None else " ZeRO-1" if r["zero"] else
               " overlapped" if r["overlap"] else " after backward")
        wait = "" if r["wait_ms_per_step"] is None else f", {r['wait_ms_per_step']:.2f} ms a step waiting"
        memory = f", AdamW's moments {r['moments_mb_per_rank']:.2f} MB per rank"
        print(f"{r['ranks']} rank(s){how}: {r['tokens_per_s']:,.0f} tokens/s, scaling efficiency "
              f"{r['efficiency']:.0%}{wait}{memory}")
    info = machine_info()
    print("wrote", write_json({"machine": info, "runs": runs, "steps": args.steps}, args.out, f"mpi-{info['date']}"))


if __name__ == "__main__":
    main()
