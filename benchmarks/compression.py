"""The compression table (``minillm compress --report``) on a GPT trained here, as lesson 08
trains it: 2 layers, 128 wide, block 64, python-docs at character level, 1,200 AdamW steps on
the c backend. Each technique's size on disk, greedy tokens/s with the KV cache (batch 1) and
validation perplexity, all measured in one process; issue #34 reads two of its rows: int8
weights' perplexity against fp32 (goal within +1 %) and their tokens/s against fp32's.

This model's weights (about 430 thousand floats) sit in the caches, so int8 weights buy little
speed here; where weights stream from memory (GPT-2 124M), ``benchmarks/decode_bandwidth.py``
measures the gain.

    python -m benchmarks.compression [--quick] [--out=benchmarks/results]
"""
import sys
import tempfile
import time

from .timing import flags, machine_info, machine_stem, output_folder, write_json

PLAN = dict(max_iters=1200, fine_tune_steps=150, distill_steps=600)
QUICK_PLAN = dict(max_iters=60, fine_tune_steps=10, distill_steps=20)


def run(quick=False, log=print):
    import minillm
    from minillm.compress import compression_table
    from minillm.compress.report import format_table
    from minillm.train import TrainConfig, Trainer
    plan = QUICK_PLAN if quick else PLAN
    backend = "c" if minillm.backends.is_available("c") else "numpy"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minillm-compression-") as out_dir:
        config = TrainConfig(out_dir=out_dir, max_iters=plan["max_iters"], batch_size=16, block_size=64, n_layer=2,
                             n_head=4, n_embd=128, eval_interval=10_000, eval_iters=4, progress=False, backend=backend)
        Trainer(config, log=lambda *a: None).run()
        with minillm.use_backend(backend):
            rows, goals = compression_table(out_dir, plan["fine_tune_steps"], plan["distill_steps"], log=log)
    log(format_table(rows, goals))
    return {"backend": backend, "plan": plan, "quick": quick, "rows": rows,
            "goals": [{"goal": name, "met": bool(ok), "value": value} for name, ok, value in goals],
            "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    args = flags(sys.argv[1:])
    if "out" in args:
        output_folder(args["out"])  # before the minutes of training, not after
    results = run("quick" in args)
    results["machine"] = machine_info()
    if "out" in args:
        stem = f"compression-{machine_stem(results['machine'])}" + ("-quick" if results["quick"] else "")
        print(write_json(results, args["out"], stem))
