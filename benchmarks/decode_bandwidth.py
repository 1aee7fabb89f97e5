"""Decoding at the memory bound: how close generation with the KV cache comes to reading the
weights as fast as this machine's memory delivers them, in float32 and with int8 weights.

Generating one token runs one row through every layer, so each weight is read once and used
once: a token takes at least (bytes of weights) ÷ (read bandwidth). This benchmark measures

1. the read bandwidth: a streaming sum of a large float32 array (``stream_read``,
   kernels/c/linear_int8.c), on one core and on all, the best of reads taken between the
   rounds below (and NumPy's sum on one core, for comparison);
2. each numbered version of the int8 kernel (linear_int8.c) alone, one row through every
   layer of the int8 model in turn, as GB/s of weights;
3. greedy generation with the KV cache of a GPT-2-small-shaped model (124 M parameters,
   random weights), float32 and with ``quantize_weights`` (int8 weights, float32
   activations), as ``model.generate`` runs it (the array decode step, models/decode.py)
   and on the Tensor path it replaces, rounds taken in turn so that a busy neighbour slows
   all alike (the two paths' tokens are checked equal);
4. the fraction of the bandwidth each reaches: bytes of weights read per token × tokens/s
   ÷ bandwidth (at most 1 when the weights come from memory; the KV cache and the
   activations, a few MB at these contexts, are not counted).

One core and all cores each run in a fresh process (OMP_NUM_THREADS), so each kernel's team
is that size. ``--quick``: a tiny model in this process, to check that the code runs.

    python -m benchmarks.decode_bandwidth [--quick] [--out=benchmarks/results]
    python -m benchmarks.decode_bandwidth run --threads=N [--quick]    one process's measurements (JSON)
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

SMALL = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)   # GPT-2 small
TINY = dict(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=64)           # --quick
PLAN = dict(prompt=16, new_tokens=32, rounds=7, read_mb=1024)
QUICK_PLAN = dict(prompt=4, new_tokens=8, rounds=2, read_mb=32)
GOALS = {"fp32": 0.7, "int8": 0.6, "int8_speedup": 2.5}


def random_gpt(shape, seed=0):
    """A GPT of ``shape`` with N(0, 0.02) weights drawn straight in float32 (GPT.__init__'s
    float64 draws take several seconds at 124 M), layer norms at 1 and biases at 0."""
    from minillm.models import GPT, GPTConfig
    from minillm.nn.module import skip_init
    with skip_init():
        model = GPT(GPTConfig(**shape))
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if p.ndim == 2:
            p.data = rng.standard_normal(p.shape, dtype=np.float32) * np.float32(0.02)
        else:
            p.data = (np.zeros if name.endswith("bias") else np.ones)(p.shape, np.float32)
    return model.eval()


def weight_bytes_per_token(model):
    """Bytes of parameters one token's forward reads: every linear layer's weight (int8 values
    and their scales when quantised) and bias, every layer norm's, one row of each embedding."""
    from minillm.compress.quantize import Int8WeightLinear, QuantizedEmbedding
    from minillm.nn import Embedding, LayerNorm, Linear
    total = 0
    for module in model.modules():
        if isinstance(module, Linear):
            total += module.weight.numpy().nbytes + (0 if module.bias is None else module.bias.numpy().nbytes)
        elif isinstance(module, Int8WeightLinear):
            total += sum(a.nbytes for a in module.state().values())
        elif isinstance(module, LayerNorm):
            total += sum(p.numpy().nbytes for p in (module.weight, module.bias) if p is not None)
        elif isinstance(module, Embedding):
            total += module.weight.numpy()[0].nbytes
        elif isinstance(module, QuantizedEmbedding):
            total += module.qweight[0].nbytes + module.scale.itemsize
    return total


class ReadBandwidth:
    """Streaming reads of a large float32 array (``stream_read``), timed between the other
    measurements. A busy neighbour on a shared machine slows some reads down and never speeds
    one up, so the best is taken as the memory's bandwidth: the fractions below are, if
    anything, understated."""

    def __init__(self, threads, megabytes):
        from minillm.backends import c as c_backend
        self.stream_read, self.threads = c_backend.stream_read, threads
        self.data = np.ones(megabytes * 2 ** 20 // 4, np.float32)
        self.stream_read(self.data, threads)  # pages touched, team started
        self.times = []

    def sample(self):
        start = time.perf_counter()
        self.stream_read(self.data, self.threads)
        self.times.append(time.perf_counter() - start)

    def summary(self):
        numpy_times = []
        for _ in range(3):
            start = time.perf_counter()
            self.data.sum()
            numpy_times.append(time.perf_counter() - start)
        size = self.data.nbytes
        return {"read_GBs": size / min(self.times) / 1e9, "read_median_GBs": size / np.median(self.times) / 1e9,
                "numpy_sum_GBs": size / min(numpy_times) / 1e9, "read_bytes": size, "reads": len(self.times)}


def kernel_rates(model, threads, rounds, between=lambda: None):
    """GB/s of weights for each numbered int8 kernel: one row through every Int8WeightLinear of
    ``model`` in turn (a token's worth of layers), the median and best of ``rounds`` passes
    taken in turn (``between`` runs before each round)."""
    from minillm.backends import c as c_backend
    from minillm.compress.quantize import Int8WeightLinear
    layers = [m for m in model.modules() if isinstance(m, Int8WeightLinear)]
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, layer.in_features), dtype=np.float32) for layer in layers]
    total = sum(layer.qweight.nbytes for layer in layers)
    times = {version: [] for version in c_backend.LINEAR_INT8}
    for round_ in range(rounds):
        between()
        for version in c_backend.LINEAR_INT8:
            if version.endswith("v1_scalar") and round_ >= 2:
                continue  # the scalar loop is slow; two passes say what it is
            start = time.perf_counter()
            for layer, x in zip(layers, inputs):
                c_backend.linear_int8_numbered(version, x, layer.qweight, layer.scale, layer.bias, threads)
            times[version].append(time.perf_counter() - start)
    return {version.removeprefix("linear_int8_"): {"GBs": total / np.median(t) / 1e9, "best_GBs": total / min(t) / 1e9}
            for version, t in times.items()}


def decode_rates(models, prompt, new_tokens, rounds, between=lambda: None):
    """tokens/s of greedy generation for each model, the rounds taken in turn: ``model.generate``
    as users call it (the array decode step, models/decode.py), and the same model on the
    Tensor path (``<name>_tensor_path``), so that the two are compared under the same load."""
    from minillm.models.decode import ArrayDecoder

    def timed(model, arrays, tokens):
        ArrayDecoder.enabled = arrays
        try:
            start = time.perf_counter()
            out = model.generate(prompt, tokens, temperature=0)
            return tokens / (time.perf_counter() - start), out
        finally:
            ArrayDecoder.enabled = True

    runs = {key: (model, arrays) for name, model in models.items()
            for key, arrays in ((name, True), (f"{name}_tensor_path", False))}
    for model, arrays in runs.values():
        timed(model, arrays, 2)  # warm-up: buffers, teams, caches
    rates = {key: [] for key in runs}
    for _ in range(rounds):
        between()
        tokens = {}
        for key, (model, arrays) in runs.items():
            rate, tokens[key] = timed(model, arrays, new_tokens)
            rates[key].append(rate)
        for name in models:
            if not np.array_equal(tokens[name], tokens[f"{name}_tensor_path"]):
                raise AssertionError(f"decode_bandwidth: {name}: the array and the Tensor path gave different tokens")
    return rates


def measure(shape, plan, threads):
    """One process's numbers: bandwidth on ``threads`` threads, then fp32 and int8 decoding."""
    import minillm
    from minillm.compress import quantize_weights
    minillm.set_backend("c")
    bandwidth = ReadBandwidth(threads, plan["read_mb"])
    for _ in range(3):
        bandwidth.sample()
    models = {"fp32": random_gpt(shape), "int8": quantize_weights(random_gpt(shape))}
    kernels = kernel_rates(models["int8"], threads, plan["rounds"], bandwidth.sample)
    prompt = np.random.default_rng(0).integers(0, shape["vocab_size"], (1, plan["prompt"]))
    rates = decode_rates(models, prompt, plan["new_tokens"], plan["rounds"], bandwidth.sample)
    out = {"threads": threads, **bandwidth.summary(), "kernels": kernels}
    for name, model in models.items():
        per_token = weight_bytes_per_token(model)
        median = float(np.median(rates[name]))
        out[name] = {"weight_bytes_per_token": per_token, "tokens_per_s": median,
                     "tokens_per_s_rounds": [float(r) for r in rates[name]],
                     "weights_GBs": per_token * median / 1e9,
                     "fraction_of_bandwidth": per_token * median / 1e9 / out["read_GBs"]}
        tensor = np.array(rates[f"{name}_tensor_path"])
        out[name].update(tensor_path_tokens_per_s=float(np.median(tensor)),
                         array_over_tensor_path=float(np.median(np.array(rates[name]) / tensor)))
    out["int8_speedup"] = out["int8"]["tokens_per_s"] / out["fp32"]["tokens_per_s"]
    return out


def _in_a_process(threads, quick):
    from .end_to_end import _root
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-m", "benchmarks.decode_bandwidth", "run", f"--threads={threads}"]
                          + (["--quick"] if quick else []), capture_output=True, text=True, cwd=_root(), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"decode_bandwidth on {threads} threads failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick=False, log=print):
    """The rows (one per thread count) and the goals; --quick measures a tiny model here."""
    shape, plan = (TINY, QUICK_PLAN) if quick else (SMALL, PLAN)
    cores = os.cpu_count() or 1
    if quick:
        rows = [measure(shape, plan, 0)]
        rows[0]["threads"] = cores
    else:
        rows = [_in_a_process(threads, quick) for threads in dict.fromkeys((1, cores))]
    for row in rows:
        log(f"  {row['threads']} thread(s): read {row['read_GBs']:.1f} GB/s (best of {row['reads']}; median "
            f"{row['read_median_GBs']:.1f}; NumPy's sum on one core {row['numpy_sum_GBs']:.1f})")
        log("    int8 kernels alone, GB/s of weights (best): " + ", ".join(
            f"{name} {k['GBs']:.1f} ({k['best_GBs']:.1f})" for name, k in row["kernels"].items()))
        for name in ("fp32", "int8"):
            r = row[name]
            log(f"    {name}: {r['weight_bytes_per_token'] / 1e6:.1f} MB of weights a token, "
                f"{r['tokens_per_s']:.1f} tokens/s (rounds {min(r['tokens_per_s_rounds']):.1f}–"
                f"{max(r['tokens_per_s_rounds']):.1f}) = {r['weights_GBs']:.1f} GB/s, "
                f"{r['fraction_of_bandwidth']:.2f} of the bandwidth; the Tensor path "
                f"{r['tensor_path_tokens_per_s']:.1f} tokens/s, array / Tensor path per round (median) "
                f"{r['array_over_tensor_path']:.2f}×")
        log(f"    int8 / fp32 tokens/s: {row['int8_speedup']:.2f}×")
    best = rows[-1]
    goals = [(f"fp32 reads ≥ {GOALS['fp32']} of the bandwidth", best["fp32"]["fraction_of_bandwidth"]),
             (f"int8 reads ≥ {GOALS['int8']} of the bandwidth", best["int8"]["fraction_of_bandwidth"]),
             (f"int8 ≥ {GOALS['int8_speedup']}× fp32 tokens/s", best["int8_speedup"])]
    for (text, value), goal in zip(goals, GOALS.values()):
        log(f"  {text} ({best['threads']} threads): {value:.2f} — {'met' if value >= goal else 'not met'}"
            + (" (a tiny model: timings mean nothing)" if quick else ""))
    return {"shape": shape, "plan": plan, "quick": quick, "rows": rows}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from .timing import flags
    args = flags(argv)
    quick = "quick" in args
    if argv[:1] == ["run"]:
        print(json.dumps(measure(TINY if quick else SMALL, QUICK_PLAN if quick else PLAN, int(args["threads"]))))
        return
    from .timing import machine_info, machine_stem, write_json
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores")
    results = dict(run(quick), machine=info)
    if "out" in args:
        print(write_json(results, args["out"], f"decode-bandwidth-{machine_stem(info)}" + ("-quick" if quick else "")))


if __name__ == "__main__":
    main()
