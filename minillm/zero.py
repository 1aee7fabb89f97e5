"""ZeRO stage 1: AdamW's state sharded across data-parallel ranks (Rajbhandari et al., 2020).

Plain data parallel keeps the whole optimizer state on every rank: for AdamW two moments per
weight, twice the model's size, R times over. ZeRO-1 keeps one copy in all: rank r owns the
r-th slice of the flattened parameters and only its moments. A step is then

1. reduce-scatter: the ranks' gradients are summed and each rank receives only its slice
   (the same bytes on the wire as an all-reduce's first half);
2. each rank clips (the global norm from one all-reduce of the slices' sums of squares) and
   runs AdamW on its slice — the same elementwise update as the unsharded optimizer;
3. all-gather: every rank receives every slice of the updated parameters (the all-reduce's
   second half), into the model's own memory.

The parameters are views of one flat buffer, so the all-gather writes straight into them.
``state_dict`` gathers the moments into AdamW's own format, so a checkpoint resumes on any
number of ranks, sharded or not.
"""
import math
import time

import numpy as np

from . import backends
from .optim import AdamW
from .tensor import Tensor, no_grad


class ZeroAdamW:
    def __init__(self, params, communicator, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        self.params = [p for p in params if p.requires_grad]
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"ZeroAdamW: every parameter must share one dtype to be sharded; got {sorted(map(str, dtypes))}")
        self.comm, self.MPI = communicator.comm, communicator.MPI
        self.communicator = communicator
        self.rank, self.ranks = communicator.rank, communicator.size
        self.lr, self.defaults = lr, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.step_count = 0
        total = sum(p.data.size for p in self.params)
        self.shard = -(-total // self.ranks)  # ceil: the last rank's slice ends in padding
        self.flat = np.zeros(self.shard * self.ranks, dtype=self.params[0].dtype)
        self.flat_grad = np.zeros_like(self.flat)
        self.views, offset = [], 0
        for p in self.params:
            self.views.append((offset, p.data.size))
            offset += p.data.size
        self.adopt_parameters()
        mine = slice(self.rank * self.shard, (self.rank + 1) * self.shard)
        self.my_params, self.my_grad = self.flat[mine], np.zeros(self.shard, self.flat.dtype)
        self.exp_avg, self.exp_avg_sq = np.zeros_like(self.my_grad), np.zeros_like(self.my_grad)

    def adopt_parameters(self):
        """Copy the parameters into the flat buffer and make each a view of its place there
        (again after anything replaced a parameter's array, e.g. loading a checkpoint)."""
        for p, (offset, size) in zip(self.params, self.views):
            view = self.flat[offset:offset + size].reshape(p.shape)
            if p.data is not view:
                view[...] = backends.to_numpy(p.data)
                p.data = view

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def reduce_scatter_gradients(self):
        """Sum the ranks' gradients, keep this rank's slice, divide by the ranks: afterwards
        ``my_grad`` is this slice of the mean gradient (a parameter without a gradient
        counts as zeros)."""
        for p, (offset, size) in zip(self.params, self.views):
            self.flat_grad[offset:offset + size] = 0 if p.grad is None else backends.to_numpy(p.grad.data).ravel()
        start = time.perf_counter()
        self.comm.Reduce_scatter_block(self.flat_grad, self.my_grad, op=self.MPI.SUM)
        self.communicator.wait_seconds += time.perf_counter() - start
        self.my_grad /= self.ranks
        self.communicator.reductions += 1

    def clip_grad_norm_(self, max_norm):
        """clip_grad_norm_ over the slices: the global norm from one all-reduce; returns it."""
        backend = backends.current()  # the same sum and scaling as nn.utils.clip_grad_norm_
        squares = np.array([backend.sum_of_squares_many([self.my_grad])], np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, squares, op=self.MPI.SUM)
        norm = math.sqrt(squares[0])
        coefficient = max_norm / (norm + 1e-6)
        if coefficient < 1:
            backend.scale_many([self.my_grad], coefficient)
        return norm

    @no_grad()
    def step(self):
        """AdamW on this rank's slice, then every rank gathers every slice."""
        self.step_count += 1
        d = self.defaults
        backends.current().adam_update_many(
            [self.my_params], [self.my_grad], [self.exp_avg], [self.exp_avg_sq], self.lr, *d["betas"], d["eps"],
            d["weight_decay"], True, self.step_count)
        start = time.perf_counter()
        self.comm.Allgather(self.MPI.IN_PLACE, self.flat)
        self.communicator.wait_seconds += time.perf_counter() - start

    def state_bytes(self):
        """Bytes of optimizer state this rank holds (the two moments of its slice)."""
        return self.exp_avg.nbytes + self.exp_avg_sq.nbytes

    # ---- checkpoints: AdamW's own format, whole -------------------------------------------
    def _gathered(self, moment):
        whole = np.empty_like(self.flat)
        self.comm.Allgather(moment, whole)
        return whole

    def state_dict(self):
        """AdamW's ``state_dict``, the moments gathered from every rank (a collective: every
        rank must call it)."""
        plain = AdamW([Tensor(np.zeros(1, self.flat.dtype), requires_grad=True)], **self.defaults)
        whole_m, whole_v = self._gathered(self.exp_avg), self._gathered(self.exp_avg_sq)
        arrays = {}
        for index, (p, (offset, size)) in enumerate(zip(self.params, self.views)):
            arrays[f"{index}.exp_avg"] = whole_m[offset:offset + size].reshape(p.shape).copy()
            arrays[f"{index}.exp_avg_sq"] = whole_v[offset:offset + size].reshape(p.shape).copy()
        state = plain.state_dict()
        state.update(lr=self.lr, step_count=self.step_count, arrays=arrays)
        return state

    def load_state_dict(self, state_dict):
        """Restore an AdamW ``state_dict`` (from a sharded run on any number of ranks, or not
        sharded): checked by AdamW's own loader, then this rank keeps its slice."""
        plain = AdamW(self.params, **self.defaults)
        plain.load_state_dict(state_dict)
        whole_m, whole_v = np.zeros_like(self.flat), np.zeros_like(self.flat)
        for (offset, size), state in zip(self.views, plain.state):
            if "exp_avg" in state:
                whole_m[offset:offset + size] = backends.to_numpy(state["exp_avg"]).ravel()
                whole_v[offset:offset + size] = backends.to_numpy(state["exp_avg_sq"]).ravel()
        mine = slice(self.rank * self.shard, (self.rank + 1) * self.shard)
        self.exp_avg[...], self.exp_avg_sq[...] = whole_m[mine], whole_v[mine]
        self.lr, self.step_count = plain.lr, plain.step_count
        self.defaults.update(plain.defaults)
