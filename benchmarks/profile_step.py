"""Where a training step's time goes: cProfile over steps of one of end_to_end's configs (the
nanoGPT recipe's shape unless --config says otherwise; `llama` and `tiny-llama` profile Llama)
on one backend, the functions' own time grouped by what they do, in ms per step.

    python -m benchmarks.profile_step --backend=c [--config=llama] [--steps=20] [--dtype=bfloat16] [--out=DIR]

Run it on two commits (a git worktree of the old one) to get a before/after breakdown.
"""
import cProfile
import os
import pstats
import resource
import time

import numpy as np

from .end_to_end import CONFIGS

# function label (file:line(name) or {built-in ...}) → group; first match wins
GROUPS = (
    ("matmul", ("sgemm", "_gemm", "matmul' of 'numpy", "numba/gemm", "linear_backward", "matmul_bf16")),  # + a Linear's bias sums
    ("attention", ("attention",)),
    ("optimizer", ("adam", "optim.py")),
    ("layer norm", ("layernorm",)),
    ("RMSNorm", ("rmsnorm",)),
    ("GELU", ("gelu",)),
    ("SwiGLU", ("swiglu",)),
    ("RoPE (outside attention)", ("rope_forward", "(rope)")),
    ("cross-entropy", ("cross_entropy",)),
    ("embedding backward", ("'at' of", "scatter_add", "reduceat", "argsort", "unique", "embedding_backward")),
    ("residual adds (C)", ("add_arrays",)),
    ("NumPy elementwise and reductions", ("numpy", "ufunc", "ndarray")),
    ("autograd and Python", ("",)),
)


def profile(backend, steps, dtype="float32", config="recipe"):
    import contextlib

    import minillm
    from minillm import optim
    from minillm.models import GPT, GPTConfig, Llama, LlamaConfig

    c = CONFIGS[config]
    minillm.set_backend(backend)
    minillm.manual_seed(0)
    if c.get("model") == "llama":
        model = Llama(LlamaConfig(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], c["n_kv_head"],
                                  c["n_embd"]))
    else:
        model = GPT(GPTConfig(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], c["n_embd"]))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)

    precision = (lambda: minillm.amp.autocast(dtype)) if dtype != "float32" else contextlib.nullcontext

    def step():
        idx = rng.integers(0, c["vocab_size"], (c["batch"], c["block_size"] + 1))
        with precision():
            _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    # without the profiler: the step's wall time, and what the kernel did for it (minor page
    # faults: memory handed back by malloc and zero-filled again; see minillm/memory.py)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    memory = {"malloc": minillm.memory.state, "wall_ms_per_step": wall / steps * 1e3,
              "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
              "system_ms_per_step": (after.ru_stime - before.ru_stime) / steps * 1e3}
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    totals = dict.fromkeys((name for name, _ in GROUPS), 0.0)
    for (filename, line, name), (_, _, own, _, _) in pstats.Stats(profiler).stats.items():
        label = f"{filename}:{line}({name})"
        group = next(g for g, keys in GROUPS if any(k in label for k in keys))
        totals[group] += own / steps * 1e3
    return {"backend": backend, "config": config, "dtype": dtype, "steps": steps, "ms_per_step": sum(totals.values()), "groups": totals, **memory}


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="c")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="recipe", help="end_to_end's config to profile")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: the step under minillm.amp.autocast('bfloat16')")
    parser.add_argument("--label", default="now", help="file name part: profile-<backend>[-<config>]-<label>.json")
    parser.add_argument("--out", help="folder for the JSON (printed only when left out)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="MINILLM_MALLOC for this run: minillm's malloc settings, or glibc's own")
    args = vars(parser.parse_args())
    os.environ["MINILLM_MALLOC"] = args["malloc"]  # read when minillm is imported, inside profile()
    result = profile(args["backend"], args["steps"], args["dtype"], args["config"])
    for group, ms in result["groups"].items():
        print(f"  {group:34s} {ms:7.2f} ms/step")
    print(f"  {'total (under the profiler)':34s} {result['ms_per_step']:7.2f} ms/step")
    print(f"  without the profiler: {result['wall_ms_per_step']:.2f} ms/step, {result['minor_faults_per_step']:.0f} "
          f"minor page faults and {result['system_ms_per_step']:.2f} ms of system time per step "
          f"(malloc: {result['malloc']})")
    if args["out"]:
        from .timing import machine_info, write_json
        result["machine"] = machine_info()
        config = "" if args["config"] == "recipe" else f"-{args['config']}"
        print(write_json(result, args["out"], f"profile-{result['backend']}{config}-{args['label']}"))
