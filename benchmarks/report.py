"""Markdown from benchmark JSON, and benchmarks/RESULTS.md from the newest full runs.
RESULTS.md holds nothing but what these functions read out of the JSON files."""
import json
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value):
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "—" if value is None else str(value)


def _attention_versions_table(results):
    """kernels.attention_versions: ms per forward + backward of each C attention version."""
    labels = list(dict.fromkeys(k[:-3] for r in results for k in r if k.endswith("_ms")))
    header = ["B·H", "T", "d", "groups"] + [f"{l.replace('c_', '')} ms" for l in labels]
    rows = [[r["BH"], r["T"], r["d"], r["groups"]] + [r.get(f"{l}_ms") for l in labels] for r in results]
    return ("### attention, step by step (causal forward + backward; C numbered versions, the production path, "
            "and grouped-query heads repeated as before)\n\n" + _table(header, rows))


def _rotary_attention_table(results):
    """kernels.rotary_attention: Llama's attention with RoPE as a pass of its own, inside v4, or none."""
    header = ["B", "T", "heads", "kv heads", "d", "RoPE pass + v3 ms", "v4, RoPE inside ms", "no RoPE (v3) ms",
              "v4 ÷ pass + v3"]
    rows = [[r["B"], r["T"], r["heads"], r["kv_heads"], r["d"], r["rope_pass_v3_ms"], r["v4_inside_ms"],
             r["no_rope_v3_ms"], f"{r['v4_inside_ms'] / r['rope_pass_v3_ms']:.2f}"] for r in results]
    return ("### RoPE turned inside attention (v4_rotary.c) or as a pass of its own (causal forward + backward from "
            "one q|k|v projection, C)\n\n" + _table(header, rows))


def cpu_tables(results):
    names = results["backends"]
    out = []
    if results.get("matmul"):
        header = ["shape (M×K×N)", "OpenBLAS GFLOP/s"] + (["PyTorch"] if "torch_gflops" in results["matmul"][0] else [])
        header += [f"{n} GFLOP/s (× OpenBLAS)" for n in names]
        rows = [[r["shape"], r["openblas_gflops"]] + ([r["torch_gflops"]] if "torch_gflops" in r else [])
                + [f"{r[f'{n}_gflops']:.3g} ({r[f'{n}_vs_openblas']:.2f}×)" for n in names]
                for r in results["matmul"]]
        out.append("### matmul (float32)\n\n" + _table(header, rows))
    if results.get("versions"):
        versions = list(dict.fromkeys(k[:-7] for r in results["versions"] for k in r
                                      if k.endswith("_gflops") and k != "openblas_gflops"))
        header = ["n", "OpenBLAS"] + [v.replace("matmul_", "") for v in versions]
        rows = [[r["n"], r["openblas_gflops"]] + [r.get(f"{v}_gflops") for v in versions] for r in results["versions"]]
        out.append("### the matmul, step by step (GFLOP/s; C and Numba numbered versions)\n\n" + _table(header, rows))
    families = {"layernorm": "layer norm", "cross_entropy": "cross-entropy", "gelu": "GELU", "adam": "Adam",
                "grad_norm": "gradient clipping"}
    for family, title in families.items():
        group = [r for r in results.get("ladders", []) if r["family"] == family]
        if group:
            versions = list(dict.fromkeys(k[:-4] for r in group for k in r if k.endswith("_GBs")))
            header = ["op", "shape", "MB moved"] + [f"{v} GB/s (ms)" for v in versions]
            rows = [[r["op"], r["shape"], r["MB"]] + [f"{r[f'{v}_GBs']:.3g} ({r[f'{v}_ms']:.3g})" for v in versions]
                    for r in group]
            out.append(f"### {title}, step by step (C numbered versions, kernels/c/{family}/)\n\n" + _table(header, rows))
    if results.get("attention_versions"):
        out.append(_attention_versions_table(results["attention_versions"]))
    if results.get("rotary_attention"):
        out.append(_rotary_attention_table(results["rotary_attention"]))
    if results.get("attention"):
        attention = results["attention"]
        labels = [l for l in ["composite"] + names + ["numba_v1_rows", "c_v2_rows"] if any(f"{l}_ms" in r for r in attention)]
        torch = any("torch_ms" in r for r in attention)
        for bh, d in dict.fromkeys((r.get("BH", 32), r.get("d", 64)) for r in attention):
            group = [r for r in attention if (r.get("BH", 32), r.get("d", 64)) == (bh, d)]
            header = ["T"] + [f"{l} ms" for l in labels] + (["PyTorch SDPA ms"] if torch else [])
            header += [f"{n} × torch" for n in names if torch] + [f"{l} peak MB" for l in labels]
            rows = [[r["T"]] + [r.get(f"{l}_ms") for l in labels] + ([r.get("torch_ms")] if torch else [])
                    + [r.get(f"{n}_vs_torch") for n in names if torch] + [r.get(f"{l}_peak_mb") for l in labels]
                    for r in group]
            out.append(f"### causal attention forward + backward (B·H = {bh}, d = {d})\n\n" + _table(header, rows))
    if results.get("layernorm"):
        labels = ["composite"] + names
        header = ["rows × d", "copy GB/s"] + [f"{l} GB/s (× copy)" for l in labels]
        rows = [[f"{r['rows']}×{r['d']}", r["copy_GBs"]] + [f"{r[f'{l}_GBs']:.3g} ({r[f'{l}_vs_copy']:.2f}×)"
                                                             for l in labels] for r in results["layernorm"]]
        out.append("### layer norm forward + backward\n\n" + _table(header, rows))
    if results.get("train_step"):
        header = ["config", "backend", "ms/step", "tokens/s", "peak RSS MB", "time × torch", "RSS × torch",
                  "ms/M params", "per param × GPT"]
        rows = [[r["config"], r["backend"], r["ms_per_step"], r["tokens_per_s"], r["peak_rss_mb"],
                 r.get("time_vs_torch"), r.get("rss_vs_torch"), r.get("ms_per_mparam"), r.get("per_param_vs_gpt")]
                for r in results["train_step"]]
        out.append("### training step (forward, backward, AdamW; GPT, and Llama against transformers')\n\n"
                   + _table(header, rows))
    if results.get("generation"):
        header = ["context", "first token ms (the prefill)", "ms/token with KV cache", "ms/token without", "speed-up"]
        rows = [[r["context"], r.get("prefill_ms"), r["cached_ms_per_token"], r["uncached_ms_per_token"],
                 r["cache_speedup"]] for r in results["generation"]]
        out.append(f"### generation ({results['generation'][0]['backend']} backend)\n\n"
                   "Per generated token after the prefill: (time for 1 + n tokens − time for 1) / n.\n\n"
                   + _table(header, rows))
    if results.get("decode_bandwidth"):
        out.append("### " + decode_table(results["decode_bandwidth"]))
    if results.get("thread_pools"):
        from . import thread_pools
        out.append("### two thread pools on two cores: the C GEMM right after a NumPy product "
                   "(`benchmarks/thread_pools.py`)\n\n" + thread_pools.table(results["thread_pools"], _table))
    if results.get("numba_startup"):
        r = results["numba_startup"]
        out.append(f"numba start-up: {r['first_call_s']:.1f} s to first result with an empty JIT cache, "
                   f"{r['cached_startup_s']:.1f} s with the cache filled.")
    return "\n\n".join(out)


def decode_table(d):
    """The decode benchmark's table, under a heading line (without its leading #s)."""
    header = ["threads", "read GB/s", "fp32 tokens/s", "fp32 × bandwidth", "int8 tokens/s", "int8 × bandwidth",
              "int8 / fp32"]
    rows = [[r["threads"], r["read_GBs"], r["fp32"]["tokens_per_s"], r["fp32"]["fraction_of_bandwidth"],
             r["int8"]["tokens_per_s"], r["int8"]["fraction_of_bandwidth"], r["int8_speedup"]] for r in d["rows"]]
    return (f"decoding at the memory bound ({d['shape']['n_layer']} layers, n_embd {d['shape']['n_embd']}, "
            f"vocab {d['shape']['vocab_size']}; `benchmarks/decode_bandwidth.py`)\n\n"
            "× bandwidth: bytes of weights read per token × tokens/s ÷ the streaming read's GB/s.\n\n"
            + _table(header, rows))


def gpu_tables(results):
    out = []
    versions = [k[:-7] for k in results["sgemm"][0] if k.startswith("sgemm_v") and k.endswith("_tflops")]
    header = ["n", "cuBLAS TFLOP/s"] + [v.replace("sgemm_", "") + " (× cuBLAS)" for v in versions]
    rows = [[r["n"], r["cublas_tflops"]] + [f"{r[f'{v}_tflops']:.3g} ({r[f'{v}_vs_cublas']:.2f}×)"
                                            if f"{v}_tflops" in r else None for v in versions] for r in results["sgemm"]]
    out.append("### SGEMM, numbered versions against cuBLAS\n\n" + _table(header, rows))
    header = ["T", "fused ms", "composite ms", "speed-up", "fused peak MB", "composite peak MB"]
    rows = [[r["T"], r["fused_ms"], r["composite_ms"], r["speedup"], r["fused_peak_mb"], r["composite_peak_mb"]]
            for r in results["attention"]]
    out.append("### flash attention forward + backward vs the CuPy composite (B·H = 32, d = 64, causal)\n\n"
               + _table(header, rows))
    header = ["rows × d", "copy GB/s", "forward GB/s (× copy)", "backward GB/s (× copy)"]
    rows = [[f"{r['rows']}×{r['d']}", r["copy_GBs"], f"{r['forward_GBs']:.4g} ({r['forward_vs_copy']:.2f}×)",
             f"{r['backward_GBs']:.4g} ({r['backward_vs_copy']:.2f}×)"] for r in results["layernorm"]]
    out.append("### layer norm vs device-copy bandwidth\n\n" + _table(header, rows))
    g = results["gpt_step"]
    out.append(f"### GPT training step ({g['config']})\n\ncupy {g['cupy_ms']:.1f} ms/step "
               f"({g['cupy_tokens_per_s']:,.0f} tokens/s) vs the numpy backend on the host "
               f"{g['numpy_ms']:.0f} ms/step: {g['speedup']:.0f}× faster.")
    return "\n\n".join(out)


def _run_time(path):
    """When a result file's run happened (runs from before "time" was recorded sort first within their day)."""
    machine = json.loads(path.read_text())["machine"]
    return machine["date"], machine.get("time", "")


def _newest(pattern):
    files = sorted(RESULTS.glob(pattern), key=_run_time)
    files = [f for f in files if not f.stem.endswith(("-quick", "-partial"))]  # only full runs
    return files[-1] if files else None


def write_results_md():
    parts = ["# Benchmark results\n",
             "Every number below was produced by a script in `benchmarks/` and is read out of the JSON file "
             "named with it (regenerate with `python -m benchmarks --report`). Medians of repeats after "
             "warm-up; ratios come from the same run. The machine is a shared VM: in the matmul and training-step tables "
             "each library's series (each backend's process) ran twice, taking turns, and kept the faster "
             "(products over 20 GFLOP, which take seconds, ran once). A slow series that is still left is "
             "most likely OpenMP's idle thread waking late on the VM (benchmarks/timing.py: a 512³ product at "
             "a tenth of its speed for a whole series).\n"]
    cpu = _newest("cpu-*.json")
    if cpu:
        results = json.loads(cpu.read_text())
        m = results["machine"]
        parts.append(f"## CPU — {m['cpu']}, {m.get('simd', 'SIMD not recorded')}, {m['cores']} cores "
                     f"({m['date']}, commit {m['commit']})\n\n"
                     f"`python -m benchmarks --report` → `results/{cpu.name}`; NumPy {m['numpy']} with "
                     f"{m['blas']}" + (f" ({m['blas_kernel']} kernels)" if "blas_kernel" in m else "")
                     + (f", PyTorch {m['torch']}" if "torch" in m else "") + ".\n")
        for image in ("matmul", "attention", "generation"):
            if (RESULTS / f"{cpu.stem}-{image}.png").exists():
                parts.append(f"![{image}](results/{cpu.stem}-{image}.png)\n")
        parts.append(cpu_tables(results) + "\n")
    gpu = _newest("cuda-*.json")
    if gpu:
        results = json.loads(gpu.read_text())
        m = results["machine"]
        parts.append(f"## GPU — {m['gpu']} ({m['date']})\n\n`python -m benchmarks.cuda_bench` on a lent "
                     f"machine → `results/{gpu.name}` (logs and sanitizer output in `results/gpu-h100/`).\n")
        parts.append(gpu_tables(results) + "\n")
    mpi = _newest("mpi-*.json")
    if mpi:
        results = json.loads(mpi.read_text())
        header = ["ranks", "gradients", "tokens/s", "scaling efficiency", "ms a step waiting for the gradients",
                  "AdamW's moments per rank, MB"]

        def how(r):  # older files have no overlap/zero fields: their 2-rank runs reduced after backward
            if r["ranks"] == 1:
                return "—"
            return "ZeRO-1" if r.get("zero") else "overlapped" if r.get("overlap") else "after backward"
        rows = [[r["ranks"], how(r), r["tokens_per_s"], r["efficiency"],
                 "—" if r.get("wait_ms_per_step") is None else r["wait_ms_per_step"],
                 r.get("moments_mb_per_rank", "—")]
                for r in results["runs"]]
        parts.append(f"## Data-parallel training over MPI ({results['machine']['cpu']}, {results['machine']['date']})\n\n"
                     f"`python -m benchmarks.mpi_scaling` → `results/{mpi.name}`\n\n" + _table(header, rows) + "\n")
    decode = _newest("decode-bandwidth-*.json")
    if decode:
        results = json.loads(decode.read_text())
        m = results["machine"]
        parts.append(f"## Decoding GPT-2 124M at the memory bound, fp32 and int8 weights ({m['cpu']}, {m['date']})\n\n"
                     f"`python -m benchmarks.decode_bandwidth --out=benchmarks/results` → `results/{decode.name}`: "
                     + decode_table(results) + "\n")
    parts += _bf16_gemm_section() + _recipe_section() + _compression_section() + _profile_section() + _gpt2_section()
    if cpu:
        parts += _goals_section(json.loads(cpu.read_text()))
        parts += _low_precision_goals(json.loads(cpu.read_text()))
    path = HERE / "RESULTS.md"
    path.write_text("\n".join(parts))
    return path


def _heading(title, m):
    """A section's heading: what ran, on which CPU, when, at which commit."""
    return f"## {title} ({m['cpu']}, {m.get('simd', '')}, {m['date']}, commit {m.get('commit', '?')})\n\n"


def _bf16_gemm_section():
    found = _newest("bf16-gemm-*.json")
    if not found:
        return []
    results = json.loads(found.read_text())
    m, rows = results["machine"], results["rows"]
    names = [n for n in ("bf16_v1", "bf16_v2", "bf16_v3", "bf16_v4", "fp32_c", "torch_bf16") if n in rows[0]]
    ratios = [g for g in results["goals"] if g in rows[0]]
    header = ["M×K·K×N"] + [f"{n} GFLOP/s" for n in names] + [g.replace("_over_", " ÷ ") for g in ratios]
    table = [[f"{r['M']}×{r['K']}·{r['K']}×{r['N']}"] + [r[n] for n in names] + [r[g] for g in ratios] for r in rows]
    return [_heading("bf16 GEMM", m)
            + f"`python -m benchmarks.bf16_gemm --out=benchmarks/results` → `results/{found.name}`, "
            f"{results['threads']} threads: kernels/c/matmul_bf16.c's numbered versions (v4: float32 operands "
            f"rounded to bf16 in the packing, what a Linear layer runs under `amp.autocast(\"bfloat16\")`), the "
            f"float32 C GEMM and torch's bf16 matmul; goals "
            + ", ".join(f"{g.replace('_over_', ' ÷ ')} ≥ {t}" for g, t in results["goals"].items()) + ".\n\n"
            + _table(header, table) + "\n"]


def _recipe_section():
    recipe = _newest("recipe-*.json")
    if not recipe:
        return []
    results = json.loads(recipe.read_text())
    m = results["machine"]
    header = ["implementation", "iterations", "wall s", "ms/iter", "val loss", "time × torch", "val loss − torch's",
              "time × its fp32", "val loss − its fp32's"]
    rows = [[r["impl"], r["iters"], r["seconds"], r["ms_per_iter"], r["val_loss"], r.get("time_vs_torch"),
             r.get("val_loss_vs_torch"), r.get("time_vs_fp32"), r.get("val_loss_vs_fp32")] for r in results["runs"]]
    return [_heading("nanoGPT's CPU recipe end to end", m)
            + f"`python -m benchmarks.recipe --iters={results['iters']} "
            f"--impls={','.join(r['impl'] for r in results['runs'])}"
            + (f" --rounds={results['rounds']}" if results.get("rounds", 1) > 1 else "")
            + f" --out=benchmarks/results` → "
            f"`results/{recipe.name}`: the same data (python-docs at character level), batches, initial weights "
            f"and hyper-parameters in each implementation, each in its own process; wall time of the training "
            f"loop, validation loss on the same 20 batches afterwards"
            + (f"; each implementation ran {results['rounds']} times, in turn, the faster kept"
               if results.get("rounds", 1) > 1 else "") + ".\n\n" + _table(header, rows) + "\n"]


def _compression_section():
    found = _newest("compression-*.json")
    if not found:
        return []
    from minillm.compress.report import format_table
    results = json.loads(found.read_text())
    m, plan = results["machine"], results["plan"]
    goals = [(g["goal"], g["met"], g["value"]) for g in results["goals"]]
    return [_heading("The compression table", m)
            + f"`python -m benchmarks.compression --out=benchmarks/results` → `results/{found.name}`: lesson 08's GPT "
            f"(2 layers, 128 wide, python-docs characters) trained {plan['max_iters']} steps on "
            f"`{results['backend']}`, "
            f"then each technique (fine-tunes of {plan['fine_tune_steps']} steps, distillation of "
            f"{plan['distill_steps']}); tokens/s greedy with the KV cache, batch 1, the best of "
            f"{results.get('repeats', 3)}.\n\n"
            + format_table(results["rows"], goals) + "\n"]


def _gpt2_section():
    found = _newest("gpt2-124m-*.json")
    if not found:
        return []
    results = json.loads(found.read_text())
    m, s = results["machine"], results["summary"]
    ours = next(r["impl"] for r in results["runs"] if r["impl"] != "torch")
    p = results["plan"]
    header = ["", f"minillm (`{ours}`)", "transformers (PyTorch eager)", "minillm × transformers", "goal"]
    rows = [["load `from_pretrained` (s)", s["load_s"], s["torch_load_s"], s["load_s"] / s["torch_load_s"], ""],
            ["memory the load adds at its peak × model.safetensors", s["load_peak_vs_weights"],
             s["torch_load_peak_vs_weights"], None, "≤ 1.2" + (" met" if s["load_peak_vs_weights"] <= 1.2 else
                                                               " not met")],
            [f"greedy generation, tokens/s ({p['new_tokens']} after {p['prompt']}, KV cache)", s["tokens_per_s"],
             s["torch_tokens_per_s"], s["generate_speed_vs_torch"],
             "≥ 1.0" + (" met" if s["generate_speed_vs_torch"] >= 1 else " not met")],
            [f"training step, batch {p['batch']} × {p['context']} tokens, AdamW (ms)", s["step_ms"],
             s["torch_step_ms"], s["step_time_vs_torch"], ""]]
    return [_heading("GPT-2 small (124M) from a Hugging Face folder", m)
            + "`python -m benchmarks.gpt2_scale --out=benchmarks/results` → "
            f"`results/{found.name}`: {results['parameters'] / 1e6:.1f}M parameters at GPT-2 small's shapes, random "
            f"weights, one folder loaded by both libraries, each task in a fresh process.\n\n"
            + _table(header, rows) + "\n"]


def _profile_section():
    out = []
    for after in sorted(RESULTS.glob("profile-*-after.json")):
        backend = after.stem.split("-")[1]
        befores = sorted(RESULTS.glob(f"profile-{backend}-before-*.json"), key=_run_time)  # the newest last
        variants = [f for f in sorted(RESULTS.glob(f"profile-{backend}-*.json")) if f not in befores and f != after]
        files = befores[-1:] + [after] + variants  # variants: the same code run another way (--malloc=default)
        runs = [json.loads(f.read_text()) for f in files]
        labels = [f.stem.split(f"profile-{backend}-")[1] for f in files]
        groups = list(runs[-1]["groups"])
        header = ["where the time goes (ms/step)"] + labels
        rows = [[g] + [r["groups"].get(g) for r in runs] for g in groups]
        rows.append(["total under cProfile"] + [r["ms_per_step"] for r in runs])
        for key, label in (("wall_ms_per_step", "wall ms/step without the profiler"),
                           ("minor_faults_per_step", "minor page faults per step"),
                           ("system_ms_per_step", "system (kernel) ms per step")):
            if any(key in r for r in runs):
                rows.append([label] + [r.get(key) for r in runs])
        m = runs[-1]["machine"]
        out.append(f"### step breakdown, `{backend}` backend, recipe shape ({m['cpu']}, {m['date']})\n\n"
                   f"`python -m benchmarks.profile_step --backend={backend} --label=… --out=benchmarks/results`, "
                   f"run on each commit (the old one from a git worktree); cProfile's own time per function, "
                   f"grouped" + ("; `malloc-default` is the code of `after` run with `--malloc=default` (glibc's "
                                 "own policy instead of minillm.memory's)" if "malloc-default" in labels else "")
                   + ".\n\n" + _table(header, rows) + "\n")
    return out


def _goals_section(cpu):
    """The CPU speed goals of issues #15 and #16 (and #33's Llama step), each computed from the
    JSON of the runs above."""
    recipe = _newest("recipe-*.json")
    steps = {(r["config"], r["backend"]): r for r in cpu.get("train_step", [])}
    matmul = {r["shape"]: r for r in cpu.get("matmul", [])}
    square = [f"{n}x{n}x{n}" for n in (1024, 2048, 4096) if f"{n}x{n}x{n}" in matmul]
    gpt = [r["shape"] for r in cpu.get("matmul", []) if len(set(r["shape"].split("x"))) > 1]
    attention = cpu.get("attention", [])
    generation = {r["context"]: r for r in cpu.get("generation", [])}
    rows = []
    best_blas = max((r["openblas_gflops"] for r in cpu.get("matmul", []) if "openblas_gflops" in r), default=None)

    def goal(what, target, value, met, bound=""):
        rows.append([what, target, value, "met" if met else "not met", bound])

    def gemm_floor(config):
        """The step's matmuls alone at OpenBLAS's best rate in this run, as a fraction of torch's
        step: per layer 24·rows·C² flops forward (q, k, v, out, the MLP's two), the head
        2·rows·C·V, all three times over (forward, dX, dW)."""
        torch_step, detail = steps.get((config, "torch")), (steps.get((config, "c")) or {}).get("config_detail")
        if not (torch_step and detail and best_blas):
            return ""
        rows_, c, v = detail["batch"] * detail["block_size"], detail["n_embd"], detail["vocab_size"]
        flops = 3 * (detail["n_layer"] * 24 * rows_ * c * c + 2 * rows_ * c * v)
        ms = flops / best_blas / 1e6
        return (f"its matmuls alone ({flops / 1e9:.1f} GFLOP) at OpenBLAS's best rate here ({best_blas:.0f} GFLOP/s): "
                f"{ms:.0f} ms = {ms / torch_step['ms_per_step']:.2f}× torch's step")

    if recipe:
        c = next((r for r in json.loads(recipe.read_text())["runs"] if r["impl"] == "c"), None)
        if c:
            goal("recipe: c wall time × torch's, same val loss (±0.03)", "≤ 0.7",
                 f"{c['time_vs_torch']:.2f} (Δ loss {c['val_loss_vs_torch']:+.3f})",
                 c["time_vs_torch"] <= 0.7 and abs(c["val_loss_vs_torch"]) <= 0.03, gemm_floor("recipe"))
    for config in ("recipe", "base", "large"):
        if (config, "c") in steps:
            r = steps[(config, "c")]
            goal(f"step `{config}`: c time × torch (RSS × torch)", "≤ 0.8 (≤ 1.0)",
                 f"{r['time_vs_torch']:.2f} ({r['rss_vs_torch']:.2f})", r["time_vs_torch"] <= 0.8 and r["rss_vs_torch"] <= 1,
                 gemm_floor(config))
    if ("llama", "c") in steps and "per_param_vs_gpt" in steps[("llama", "c")]:
        r = steps[("llama", "c")]  # issue #33: Llama's fused blocks
        goal("step `llama`: c time per parameter × GPT's (`base`)", "≤ 1.05", f"{r['per_param_vs_gpt']:.2f}",
             r["per_param_vs_gpt"] <= 1.05)
        if "time_vs_torch" in r:
            goal("step `llama`: c time × transformers' LlamaForCausalLM", "≤ 0.8", f"{r['time_vs_torch']:.2f}",
                 r["time_vs_torch"] <= 0.8)
    for label, shapes in (("1024³–4096³", square), ("the GPT step's shapes", gpt)):
        if shapes:
            worst = min(matmul[s]["c_vs_openblas"] for s in shapes)
            goal(f"SGEMM c × OpenBLAS, {label} (worst)", "≥ 1.0", f"{worst:.2f}", worst >= 1.0)
    if attention and "c_vs_torch" in attention[0]:
        worst = max(r["c_vs_torch"] for r in attention)
        goal("attention fwd+bwd c × torch SDPA (worst of all shapes)", "≤ 1.0", f"{worst:.2f}", worst <= 1.0)
    if 512 in generation:
        speedup = generation[512]["cache_speedup"]
        goal("KV cache speed-up at context 512", "≥ 10×", f"{speedup:.1f}×", speedup >= 10)
    for label, shapes in (("1024³, 2048³", [s for s in square if not s.startswith("4096")]), ("GPT shapes", gpt)):
        if shapes and "numba_vs_openblas" in matmul[shapes[0]]:
            worst = min(matmul[s]["numba_vs_openblas"] for s in shapes)
            goal(f"SGEMM numba × OpenBLAS, {label} (worst)", "≥ 0.5", f"{worst:.2f}", worst >= 0.5)
    for config in ("recipe", "base", "large"):
        if (config, "numba") in steps and (config, "numpy") in steps:
            ratio = steps[(config, "numba")]["ms_per_step"] / steps[(config, "numpy")]["ms_per_step"]
            goal(f"step `{config}`: numba time × numpy's", "≤ 1.0", f"{ratio:.2f}", ratio <= 1.0)
    middle = [r for r in attention if 256 <= r["T"] <= 1024 and "numba_speedup" in r]
    if middle:
        worst = min(r["numba_speedup"] for r in middle)
        goal("attention numba speed-up over the composite, T 256–1024 (worst)", "≥ 2×", f"{worst:.2f}×", worst >= 2)
    if cpu.get("numba_startup"):
        cached = cpu["numba_startup"]["cached_startup_s"]
        goal("numba start-up with the JIT cache filled", "< 1 s", f"{cached:.1f} s", cached < 1)
    return ["## The CPU goals of issues #15 and #16 (and #33's Llama rows), from the runs above\n\n"
            "The last column is a practical floor for the step goals: the step's matrix products alone, at "
            "OpenBLAS's best SGEMM rate in this run (a step cannot beat it without a faster "
            "SGEMM than that).\n\n"
            + _table(["goal", "target", "measured", "", "lower bound"], rows) + "\n"]


def _low_precision_goals(cpu):
    """Issue #34's goals, each from the newest full run of its benchmark (named in the row), with
    the CPU and the extensions it reports (bf16 and int8 speed depend on them)."""
    rows = []

    def goal(what, target, value, met, source):
        rows.append([what, target, value, "met" if met else "not met", source])

    def loaded(pattern):
        found = _newest(pattern)
        return (json.loads(found.read_text()), found.name) if found else (None, None)

    gemm, gemm_file = loaded("bf16-gemm-*.json")
    if gemm:
        for key, target in gemm["goals"].items():
            worst = min(gemm["rows"], key=lambda r: r[key])
            shape = f"{worst['M']}×{worst['K']}·{worst['K']}×{worst['N']}"
            goal(f"bf16 GEMM {key.replace('_over_', ' ÷ ').replace('fp32', 'the fp32 C GEMM')}, worst shape",
                 f"≥ {target}", f"{worst[key]:.2f} ({shape})", worst[key] >= target, gemm_file)
    recipe, recipe_file = loaded("recipe-*.json")
    bf16_run = next((r for r in (recipe or {}).get("runs", []) if r["impl"] == "c+bf16" and "time_vs_fp32" in r), None)
    if bf16_run:
        goal("recipe under bf16: c wall time × c's fp32, val loss within +0.02", "≤ 0.65",
             f"{bf16_run['time_vs_fp32']:.2f} (Δ loss {bf16_run['val_loss_vs_fp32']:+.4f})",
             bf16_run["time_vs_fp32"] <= 0.65 and bf16_run["val_loss_vs_fp32"] <= 0.02, recipe_file)
    steps = [r for r in cpu.get("train_step", []) if r["backend"] == "c+bf16" and "time_vs_torch" in r]
    if steps:
        worst = max(steps, key=lambda r: r["time_vs_torch"])
        goal("bf16 step: c × torch.autocast(bfloat16)'s, worst config", "≤ 0.8",
             f"{worst['time_vs_torch']:.2f} (`{worst['config']}`)", worst["time_vs_torch"] <= 0.8,
             f"{cpu['machine']['cpu']} run, train_step")
    decode, decode_file = loaded("decode-bandwidth-*.json")
    if decode:
        for r in decode["rows"]:
            n = f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
            goal(f"int8 decoding × fp32 tokens/s, GPT-2 124M, {n}", "≥ 2.5", f"{r['int8_speedup']:.2f}",
                 r["int8_speedup"] >= 2.5, decode_file)
            for kind, target in (("fp32", 0.7), ("int8", 0.6)):
                fraction = r[kind]["fraction_of_bandwidth"]
                goal(f"{kind} decoding × the memory bound, {n}", f"≥ {target}", f"{fraction:.3f}",
                     fraction >= target, decode_file)
    compression, compression_file = loaded("compression-*.json")
    if compression:
        by_name = {r["technique"]: r for r in compression["rows"]}
        weights, fp32 = by_name.get("int8 weights"), by_name.get("fp32 baseline")
        if weights and fp32:
            change = weights["perplexity_change"]
            goal("int8 weights: validation perplexity × fp32's − 1 (lesson 08's GPT)", "≤ +1 %", f"{change:+.3%}",
                 change <= 0.01, compression_file)
            speed = weights["tokens_per_s"] / fp32["tokens_per_s"]
            goal("compression table: int8 weights' tokens/s × fp32's", "> 1", f"{speed:.2f}", speed > 1,
                 compression_file)
    matmul = cpu.get("matmul", [])
    kernel = cpu["machine"].get("blas_kernel", "kernel not recorded")
    for label, keep in (("every square", lambda s: len(set(s.split("x"))) == 1),
                        ("the GPT step's shapes", lambda s: len(set(s.split("x"))) > 1)):
        chosen = [r for r in matmul if keep(r["shape"]) and "c_vs_openblas" in r]
        if chosen:
            worst = min(chosen, key=lambda r: r["c_vs_openblas"])
            goal(f"fp32 SGEMM c × OpenBLAS ({kernel}), {label}, worst", "≥ 0.95",
                 f"{worst['c_vs_openblas']:.2f} ({worst['shape']})", worst["c_vs_openblas"] >= 0.95,
                 f"{cpu['machine']['cpu']} run, matmul")
    fights = [r for r in cpu.get("thread_pools", []) if r["current_backend"] == "c"]
    if fights:
        r = fights[0]
        goal("C GEMM right after a NumPy product × its steady speed (c current)", "≥ 0.9",
             f"{r['after_vs_steady']:.2f}", r["after_vs_steady"] >= 0.9, f"{cpu['machine']['cpu']} run, thread_pools")
    if not rows:
        return []
    m = cpu["machine"]
    features = m.get("features", "not recorded")
    amx = "" if "amx" in features else " (no AMX: no AMX kernel can run or be tested on this CPU)"
    return ["## The low-precision goals of issue #34, from the runs above\n\n"
            f"CPU: {m['cpu']}, {m['cores']} cores; extensions it reports: {features}{amx}.\n\n"
            + _table(["goal", "target", "measured", "", "from"], rows) + "\n"]
