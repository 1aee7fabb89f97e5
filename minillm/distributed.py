"""Data-parallel training over MPI (document 003 §2: 数据并行, gradient synchronisation).

Every rank holds a full copy of the model. Rank 0's initial parameters are broadcast so
all copies start equal; each rank computes gradients on its own shard of the data; after
the backward pass the gradients are averaged across ranks with ``Allreduce`` — packed
into flat float buffers of ``bucket_mb`` megabytes, one collective per bucket, on the
NumPy memory directly (no pickling) — so every rank takes the same optimizer step and
the copies stay identical. Only rank 0 writes checkpoints, logs and plots.

    mpiexec -n 2 minillm train --ddp=True --out_dir=out/ddp …

With a global batch of R·B, R ranks of batch B compute exactly what one process with
batch R·B computes (equal shards: the mean of the ranks' mean gradients is the mean
gradient): every rank draws the same global batch from the seed and takes its own slice.
With ``--grad_accum=K`` the micro-steps accumulate locally and only the last one's
gradients are reduced, so a step costs one reduction whatever K is (as nanoGPT skips the
sync on the others). A rank that raises aborts the whole job (MPI_Abort) instead of leaving the
others waiting in a collective forever.
"""
import sys
import time
import traceback

import numpy as np


def _mpi():
    try:
        from mpi4py import MPI
        return MPI
    except ImportError:
        raise RuntimeError("distributed: mpi4py is not installed (pip install 'minillm[mpi]')") from None


class Communicator:
    def __init__(self, comm=None, bucket_mb=4.0):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = comm or MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.bucket_bytes = int(bucket_mb * 2 ** 20)
        self.reductions = 0  # gradient reductions: one per optimizer step, however many micro-steps
        self.wait_seconds = 0.0  # time spent blocked in the gradients' collectives

    def broadcast_parameters(self, model):
        """Every rank's parameters become rank 0's."""
        for p in model.parameters():
            buffer = np.ascontiguousarray(p.data)
            self.comm.Bcast(buffer, root=0)
            p.data = buffer

    def buckets(self, params):
        """Consecutive groups of same-dtype parameters of about bucket_mb each."""
        bucket, size = [], 0
        for p in params:
            if bucket and (size + p.data.nbytes > self.bucket_bytes or p.dtype != bucket[0].dtype):
                yield bucket
                bucket, size = [], 0
            bucket.append(p)
            size += p.data.nbytes
        if bucket:
            yield bucket

    def average_gradients(self, model):
        """Replace each gradient by its mean over the ranks. A parameter without a
        gradient on this rank contributes zeros (every rank calls the same collectives)."""
        from .tensor import Tensor
        self.reductions += 1
        for bucket in self.buckets([p for p in model.parameters() if p.requires_grad]):
            flat = np.concatenate([(p.grad.data if p.grad is not None else np.zeros_like(p.data)).ravel()
                                   for p in bucket])
            start = time.perf_counter()
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
            self.wait_seconds += time.perf_counter() - start
            flat /= self.size
            offset = 0
            for p in bucket:
                p.grad = Tensor(flat[offset:offset + p.data.size].reshape(p.shape).copy())
                offset += p.data.size

    def identical(self, model):
        """True when every rank holds exactly rank 0's parameters."""
        mine = np.concatenate([p.data.ravel().astype(np.float64) for p in model.parameters()])
        reference = mine.copy()
        self.comm.Bcast(reference, root=0)
        same = np.array([float(np.array_equal(mine, reference))])
        self.comm.Allreduce(self.MPI.IN_PLACE, same, op=self.MPI.MIN)
        return bool(same[0])


class OverlappedReducer:
    """Gradients averaged while the backward pass is still running (PyTorch DDP's design).

    The gradients live in a few flat buffers, one per bucket of about ``bucket_mb``, filled in
    reverse order of the parameters' use, which is the order the backward pass finishes them.
    A hook on each parameter (``register_post_accumulate_grad_hook``) copies its finished
    gradient into its slot and makes ``.grad`` a view of that slot; when a bucket's last
    gradient arrives, its non-blocking ``Iallreduce`` starts and the backward goes on with
    the layers below. ``finish()`` waits for the buckets and divides by the number of ranks;
    the gradients are already where the optimizer reads them (no copy out).

    ``syncing = False`` for the micro-steps of gradient accumulation before the last: the
    hooks then do nothing and the gradients add up locally, as nanoGPT skips the sync."""

    def __init__(self, communicator, params):
        self.communicator = communicator
        self.syncing = True
        self.buckets, self.slot = [], {}
        self.started_early = self.started_early_last_step = 0  # buckets the backward's hooks started
        for index, group in enumerate(communicator.buckets(list(reversed([p for p in params if p.requires_grad])))):
            flat = np.zeros(sum(p.data.size for p in group), dtype=group[0].dtype)
            offset = 0
            for p in group:
                self.slot[id(p)] = (index, flat[offset:offset + p.data.size].reshape(p.shape))
                offset += p.data.size
                p.register_post_accumulate_grad_hook(self._gradient_ready)
            self.buckets.append({"params": group, "flat": flat, "waiting": len(group), "request": None})

    def _gradient_ready(self, p):
        if not self.syncing:
            return
        from .tensor import Tensor
        index, view = self.slot[id(p)]
        view[...] = p.grad.data
        p.grad = Tensor(view)
        bucket = self.buckets[index]
        bucket["waiting"] -= 1
        if bucket["waiting"] == 0:
            self._start(bucket)
            self.started_early += 1

    def _start(self, bucket):
        MPI = self.communicator.MPI
        bucket["request"] = self.communicator.comm.Iallreduce(MPI.IN_PLACE, bucket["flat"], op=MPI.SUM)
        for other in self.buckets:  # MPI progresses non-blocking collectives inside its calls
            if other["request"] is not None:
                other["request"].Test()

    def finish(self):
        """Wait for every bucket; each gradient is then the mean over the ranks. A parameter
        that got no gradient this step contributes zeros (every rank starts the same buckets,
        in the same order: the graph is the same on every rank)."""
        from .tensor import Tensor
        for bucket in self.buckets:
            if bucket["request"] is None:
                for p in bucket["params"]:
                    if p.grad is None or p.grad.data is not self.slot[id(p)][1]:
                        view = self.slot[id(p)][1]
                        view[...] = 0 if p.grad is None else p.grad.data
                        p.grad = Tensor(view)
                self._start(bucket)
        start = time.perf_counter()
        self.communicator.MPI.Request.Waitall([b["request"] for b in self.buckets])
        self.communicator.wait_seconds += time.perf_counter() - start
        for bucket in self.buckets:
            bucket["flat"] /= self.communicator.size
            bucket["waiting"], bucket["request"] = len(bucket["params"]), None
        self.communicator.reductions += 1
        self.started_early_last_step, self.started_early = self.started_early, 0


def run_or_abort(fn, *args, **kwargs):
    """Call fn; if it raises on this rank, print the error with the rank and abort the job
    (every rank exits non-zero) rather than let the others hang."""
    MPI = _mpi()
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:  # noqa: B902 — SystemExit and KeyboardInterrupt must abort too
        if isinstance(exc, SystemExit) and not exc.code:
            raise
        rank = MPI.COMM_WORLD.Get_rank()
        print(f"[rank {rank}] {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)


def train_ddp(config):
    """The trainer on every rank with its own data shard, gradients averaged."""
    from .train import Trainer

    def work():
        communicator = Communicator()
        trainer = Trainer(config, rank=communicator.rank, world_size=communicator.size, communicator=communicator)
        first_step = trainer.step
        reducer = trainer.reducer
        metrics = trainer.run()
        in_step = communicator.identical(trainer.model)
        overlap = (f"overlapped with backward: {reducer.started_early_last_step} of {len(reducer.buckets)} buckets "
                   f"started by it in the last step" if reducer else "after backward")
        if config.zero:
            whole = 2 * sum(p.data.nbytes for p in trainer.optimizer.params)
            overlap = (f"ZeRO-1: reduce-scatter after backward, all-gather after the step, both timed; AdamW's moments "
                       f"{trainer.optimizer.state_bytes() / 2**20:.2f} MB on each rank of {whole / 2**20:.2f} MB")
        if communicator.rank == 0:
            print(f"ddp over {communicator.size} ranks: val loss {metrics['val_loss']:.4f}, "
                  f"{metrics['tokens_per_second']:,.0f} tokens/s; parameters identical on every rank: {in_step}; "
                  f"{communicator.reductions} gradient reductions in {trainer.step - first_step} optimizer steps "
                  f"of {config.grad_accum} micro-batches, {communicator.wait_seconds * 1e3:.1f} ms waiting for them "
                  f"({overlap})")
        return metrics

    return run_or_abort(work)
