"""python -m benchmarks [--quick] [--backend B …] [--op OP …] [--sizes N …] [--out DIR] [--report]

The numbered matmul versions (lesson 02's ladder, kernels/c/matmul/) alone, at 512³ and 1024³,
then those of the C layer norm, cross-entropy, GELU, Adam and clipping (kernels/c/<family>/), and the
numbered attention versions (kernels/c/attention/) at attn_version_shapes:

    python -m benchmarks --op versions --backend c --sizes 512 1024

Runs the CPU benchmarks on every available CPU backend (numpy, numba, c; cuda-sim is a
correctness harness, not a speed target), the NumPy composite and PyTorch when it is
installed. Writes ``<out>/cpu-<machine>-<date>.json``, PNG plots next to it, and prints
Markdown tables; ``--report`` regenerates benchmarks/RESULTS.md from the JSON files.
The GPU benchmarks are ``python -m benchmarks.cuda_bench`` (on a machine with CUDA).
"""
import argparse
import time

from minillm import backends

from . import decode_bandwidth, end_to_end, kernels, plots, report, thread_pools
from .timing import machine_info, machine_stem, write_json

OPS = ("matmul", "versions", "attention", "layernorm", "train_step", "generation", "decode_bandwidth", "thread_pools", "numba_startup")
CPU_BACKENDS = ("numpy", "numba", "c")

# The matmuls of a GPT step (M×K×N): nanoGPT's CPU recipe (B·T = 768 rows, C = 128, vocab 66),
# forward and the two backward products, then the `base` config's, then base's weight gradients
# gᵀ·x as the backend runs them ("Aᵀ": g is stored rows × out, read transposed).
RECIPE_SHAPES = [(768, 128, 384), (768, 128, 128), (768, 128, 512), (768, 512, 128), (768, 128, 66),
                 (128, 768, 128), (512, 768, 128), (128, 768, 512), (66, 768, 128)]
BASE_SHAPES = [(2048, 256, 768), (2048, 256, 1024), (2048, 1024, 256), (256, 2048, 1024),
               (768, 2048, 256, "Aᵀ"), (1024, 2048, 256, "Aᵀ"), (256, 2048, 1024, "Aᵀ")]

FULL = dict(sizes=[128, 256, 512, 1024, 2048, 4096], gpt_shapes=RECIPE_SHAPES + BASE_SHAPES,
            version_sizes=[256, 512, 1024, 2048], lengths=[64, 256, 1024, 4096], attn_shapes=[(48, 32), (32, 64)],
            ln_shapes=[(2048, 256), (8192, 768), (16384, 1024), (4096, 4096)], ladder_shapes=[(2048, 256), (8192, 768)],
            configs=["recipe", "base", "llama", "large"],
            contexts=[16, 64, 128, 256, 512, 1024], repeats=5, steps=5, new_tokens=16,
            attn_version_shapes=[(48, 64, 32, 1), (64, 128, 64, 1), (64, 128, 64, 4), (16, 1024, 64, 1)],
            rotary_shapes=[(16, 128, 4, 2, 64), (2, 1024, 8, 2, 64)],  # (B, T, heads, kv_heads, d): the llama config's
            rounds=2)  # matmul and train_step: each series twice, in turn, the faster kept (a shared VM)
QUICK = dict(sizes=[128, 256, 512], gpt_shapes=[(768, 128, 384)], version_sizes=[128, 256],
             lengths=[64, 128], attn_shapes=[(8, 32)], ln_shapes=[(2048, 256)], ladder_shapes=[(256, 128)],
             attn_version_shapes=[(16, 64, 32, 1), (16, 128, 64, 4)], rotary_shapes=[(4, 64, 4, 2, 32)],
             configs=["tiny", "tiny-llama"], contexts=[16, 64], repeats=3,
             steps=3, new_tokens=8, rounds=1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute on 2 cores")
    parser.add_argument("--backend", nargs="*", help=f"subset of {', '.join(CPU_BACKENDS)}")
    parser.add_argument("--op", nargs="*", choices=OPS, help="subset of the benchmarks")
    parser.add_argument("--sizes", nargs="*", type=int, help="square matmul sizes / attention lengths")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON and PNG files")
    parser.add_argument("--report", action="store_true", help="rewrite benchmarks/RESULTS.md afterwards")
    args = parser.parse_args(argv)

    plan = dict(QUICK if args.quick else FULL)
    if args.sizes:
        plan.update(sizes=args.sizes, lengths=args.sizes, version_sizes=args.sizes)
    available = backends.available()
    names = [b for b in (args.backend or CPU_BACKENDS) if b in available]
    skipped = [b for b in (args.backend or CPU_BACKENDS) if b not in available]
    ops = args.op or OPS
    kernel_names = [b for b in names if b != "numpy"]  # numpy's kernels are the composite columns
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, BLAS {info['blas']}; backends {', '.join(names)}"
          + (f" (unavailable here: {', '.join(skipped)})" if skipped else ""))
    results = {"machine": info, "quick": args.quick, "backends": kernel_names, "partial": bool(args.op or args.backend
                                                                                                  or args.sizes)}
    started = time.perf_counter()
    steps = {
        "matmul": lambda: kernels.matmul(kernel_names, plan["sizes"], plan["gpt_shapes"], plan["repeats"], print,
                                         plan["rounds"]),
        "versions": lambda: kernels.matmul_versions(plan["version_sizes"], plan["repeats"], print, plan["rounds"],
                                                    kernel_names) if {"c", "numba"} & set(kernel_names) else [],
        "attention": lambda: kernels.attention(kernel_names, plan["lengths"], plan["repeats"], print,
                                               plan["attn_shapes"]),
        "layernorm": lambda: kernels.layernorm(kernel_names, plan["ln_shapes"], plan["repeats"], print),
        "train_step": lambda: end_to_end.train_step(names, plan["configs"], plan["steps"], print, plan["rounds"]),
        "generation": lambda: end_to_end.generation(plan["contexts"], plan["new_tokens"], print,
                                                    backend="c" if "c" in names else "numpy"),
        "decode_bandwidth": lambda: decode_bandwidth.run(args.quick, print) if "c" in available else {},
        "thread_pools": lambda: thread_pools.run(args.quick, print),
        "numba_startup": lambda: end_to_end.numba_startup(print) if "numba" in names else {},
    }
    for op in OPS:
        if op in ops:
            print(f"\n## {op}")
            results[op] = steps[op]()
            if op == "versions" and "c" in kernel_names:  # the other C kernel families' numbered versions
                results["ladders"] = kernels.ladders(plan["ladder_shapes"], plan["repeats"], print, plan["rounds"])
                print("\n## attention versions")  # the attention ladder, kernels/c/attention/
                results["attention_versions"] = kernels.attention_versions(plan["attn_version_shapes"],
                                                                           plan["repeats"], print, plan["rounds"])
                print("\n## RoPE inside attention (v4) or a pass of its own")
                results["rotary_attention"] = kernels.rotary_attention(plan["rotary_shapes"], plan["repeats"], print,
                                                                       plan["rounds"])
    results["seconds"] = time.perf_counter() - started
    stem = f"cpu-{machine_stem(info)}" + ("-quick" if args.quick else "") + ("-partial" if results["partial"] else "")
    path = write_json(results, args.out, stem)
    images = plots.draw(results, args.out, stem)
    print(f"\nwrote {', '.join(str(f) for f in [path, *images])} in {results['seconds']:.0f} s\n")
    print(report.cpu_tables(results))
    if args.report:
        print(f"rewrote {report.write_results_md()}")


if __name__ == "__main__":
    main()
