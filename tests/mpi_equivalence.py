"""Run under ``mpiexec -n R``: R ranks of batch B for K steps, written by rank 0 to argv[1]
(.npz) with whether all ranks stayed identical. test_distributed.py compares it with one
process of batch R·B. float64 and SGD with momentum, so the comparison measures the
algorithm, not rounding: Adam would divide the rounding noise of a gradient that is zero in
exact arithmetic (the keys' third of c_attn's bias: a constant added to every key score
leaves the softmax unchanged) by its own size and turn it into full-size steps."""
import sys

import numpy as np

import minillm
from minillm import data, optim
from minillm.distributed import Communicator, run_or_abort
from minillm.models import GPT, GPTConfig

STEPS, BATCH, BLOCK = 4, 4, 16


def make_model():
    minillm.manual_seed(0)
    return GPT(GPTConfig(13, BLOCK, 2, 2, 16)).to(np.float64)


def global_batches(ranks):
    rng = np.random.default_rng(123)
    tokens = rng.integers(0, 13, 5000)
    return [data.batches(tokens, BLOCK, BATCH * ranks, rng) for _ in range(STEPS)]


def train(model, batches, communicator=None, shard=slice(None)):
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        _, loss = model(x[shard], y[shard])
        opt.zero_grad()
        loss.backward()
        if communicator is not None:
            communicator.average_gradients(model)
        opt.step()
    return model


def main(path):
    comm = Communicator(bucket_mb=0.01)  # tiny buckets: several Allreduce calls per step
    model = make_model()
    if comm.rank != 0:  # start from different weights: the broadcast must fix it
        for p in model.parameters():
            p.data = p.data + 1.0
    comm.broadcast_parameters(model)
    shard = slice(comm.rank * BATCH, (comm.rank + 1) * BATCH)
    train(model, global_batches(comm.size), comm, shard)
    identical = comm.identical(model)
    if comm.rank == 0:
        np.savez(path, identical=identical, ranks=comm.size,
                 **{name: p.numpy() for name, p in model.named_parameters()})


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--fail-on-rank-1":
        from mpi4py import MPI

        def fail():
            if MPI.COMM_WORLD.Get_rank() == 1:
                raise RuntimeError("planted failure on rank 1")
            MPI.COMM_WORLD.Barrier()  # rank 0 would wait here forever without the abort

        run_or_abort(fail)
    else:
        run_or_abort(main, sys.argv[1])
