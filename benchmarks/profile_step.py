"""Where a training step's time goes: cProfile over steps of the nanoGPT recipe's shape on
one backend, the functions' own time grouped by what they do, in ms per step.

    python -m benchmarks.profile_step --backend=c [--steps=20] [--out=DIR]

Run it on two commits (a git worktree of the old one) to get a before/after breakdown.
"""
import cProfile
import pstats

import numpy as np

# the `recipe` config of end_to_end.py, repeated so this file also runs on older commits
RECIPE = dict(vocab_size=66, block_size=64, n_layer=4, n_head=4, n_embd=128, batch=12)

# function label (file:line(name) or {built-in ...}) → group; first match wins
GROUPS = (
    ("matmul", ("sgemm", "_gemm", "matmul' of 'numpy", "numba_gemm")),
    ("attention", ("attention",)),
    ("optimizer", ("adam", "optim.py")),
    ("layer norm", ("layernorm",)),
    ("GELU", ("gelu",)),
    ("cross-entropy", ("cross_entropy",)),
    ("embedding backward", ("'at' of", "scatter_add", "reduceat", "argsort", "unique")),
    ("NumPy elementwise and reductions", ("numpy", "ufunc", "ndarray")),
    ("autograd and Python", ("",)),
)


def profile(backend, steps):
    import minillm
    from minillm import optim
    from minillm.models import GPT, GPTConfig

    c = RECIPE
    minillm.set_backend(backend)
    minillm.manual_seed(0)
    model = GPT(GPTConfig(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], c["n_embd"]))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)

    def step():
        idx = rng.integers(0, c["vocab_size"], (c["batch"], c["block_size"] + 1))
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
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
    return {"backend": backend, "steps": steps, "ms_per_step": sum(totals.values()), "groups": totals}


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="c")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--label", default="now", help="file name part: profile-<backend>-<label>.json")
    parser.add_argument("--out", help="folder for the JSON (printed only when left out)")
    args = vars(parser.parse_args())
    result = profile(args["backend"], args["steps"])
    for group, ms in result["groups"].items():
        print(f"  {group:34s} {ms:7.2f} ms/step")
    print(f"  {'total (under the profiler)':34s} {result['ms_per_step']:7.2f} ms/step")
    if args["out"]:
        from .timing import machine_info, write_json
        result["machine"] = machine_info()
        print(write_json(result, args["out"], f"profile-{result['backend']}-{args['label']}"))
