"""Llama's training step with grouped-query attention two ways, taking turns in one process:
what GroupedQueryAttention does (q, k and v from one GEMM over weights packed back to back,
``ops.attention_qkv`` turning q and k and reading each key/value head for its group of query
heads where it lies in that product), against the way before (three projections, heads
transposed to (B, H, T, d), each key/value head repeated for its group before the attention:
copies forward, sums of the copies' gradients backward). GPT's step at the same size takes its turn too, for the time per
parameter that issue #33 measures Llama against.

    python -m benchmarks.llama_gqa [--backend=c] [--rounds=15] [--steps=3] [--n_kv_head=1] [--profile]

Each round times ``steps`` steps of each model in turn (median), and the ratios are taken
within the round, so a burst of other work on a shared machine spoils one round, not a side.
``--profile`` prints where the grouped Llama step's time goes (cProfile, own time, top 25).
"""
import cProfile
import pstats
import statistics
import sys
import time

import numpy as np

import minillm
from minillm import functional as F
from minillm import optim
from minillm.models import GPT, GPTConfig, Llama, LlamaConfig
from minillm.nn import llama_blocks

from .timing import flags

SHAPE = dict(vocab_size=96, block_size=128, n_layer=4, n_head=4, n_embd=256, batch=16)  # issue #33's step


class _Repeating:
    """``functional`` as GroupedQueryAttention sees it, except that attention first repeats
    each key/value head for its group of query heads (the way before the kernels took groups)."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def scaled_dot_product_attention(q, k, v, enable_gqa=False, **options):
        groups = q.shape[-3] // k.shape[-3]
        return F.scaled_dot_product_attention(q, F._repeat_heads(k, groups), F._repeat_heads(v, groups), **options)


def _trainer(model):
    opt = optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)

    def step(repeated=False):
        idx = rng.integers(0, SHAPE["vocab_size"], (SHAPE["batch"], SHAPE["block_size"] + 1))
        llama_blocks.F = _Repeating() if repeated else F
        llama_blocks.GroupedQueryAttention.projection_layout = not repeated
        try:
            _, loss = model(idx[:, :-1], idx[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
        finally:
            llama_blocks.F = F
            llama_blocks.GroupedQueryAttention.projection_layout = True
    return step


def _median_ms(step, steps, **options):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(**options)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run(backend="c", rounds=15, steps=3, n_kv_head=1, profile=False, log=print):
    minillm.set_backend(backend)
    minillm.manual_seed(0)
    c = SHAPE
    llama = Llama(LlamaConfig(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], n_kv_head, c["n_embd"]))
    gpt = GPT(GPTConfig(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], c["n_embd"]))
    llama_step, gpt_step = _trainer(llama), _trainer(gpt)
    for _ in range(2):  # warm-up: kernels built, buffers allocated
        llama_step(), llama_step(repeated=True), gpt_step()
    series = {"grouped": [], "repeated": [], "gpt": []}
    for _ in range(rounds):
        series["grouped"].append(_median_ms(llama_step, steps))
        series["repeated"].append(_median_ms(llama_step, steps, repeated=True))
        series["gpt"].append(_median_ms(gpt_step, steps))
    params = {"llama": llama.num_parameters(), "gpt": gpt.num_parameters()}
    ratio = [r / g for r, g in zip(series["repeated"], series["grouped"])]
    per_param = [(g / params["llama"]) / (t / params["gpt"]) for g, t in zip(series["grouped"], series["gpt"])]
    result = {"backend": backend, "shape": c, "n_kv_head": n_kv_head, "rounds": rounds, "steps": steps,
              "params": params, **{f"{k}_ms": statistics.median(v) for k, v in series.items()},
              "repeated_over_grouped": statistics.median(ratio),
              "llama_over_gpt_per_parameter": statistics.median(per_param)}
    log(f"{backend}: Llama step (n_head {c['n_head']}, n_kv_head {n_kv_head}, {c['n_layer']} layers, "
        f"{c['n_embd']} wide, T {c['block_size']}, B {c['batch']}), median of {rounds} rounds of {steps} steps")
    log(f"  grouped, from one q|k|v product {result['grouped_ms']:.1f} ms; repeated heads, transposed "
        f"{result['repeated_ms']:.1f} ms: "
        f"repeated / grouped = {result['repeated_over_grouped']:.3f} (median of per-round ratios)")
    log(f"  GPT {result['gpt_ms']:.1f} ms; per parameter Llama / GPT = {result['llama_over_gpt_per_parameter']:.3f} "
        f"({params['llama']:,} and {params['gpt']:,} parameters)")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            llama_step()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return result


if __name__ == "__main__":
    args = flags(sys.argv[1:])
    run(args.get("backend", "c"), int(args.get("rounds", 15)), int(args.get("steps", 3)),
        int(args.get("n_kv_head", 1)), "profile" in args)
