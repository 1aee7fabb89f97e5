"""End to end: a GPT training step per backend against the same model in PyTorch (each in
a fresh process, so peak RSS is the step's own), generation with and without the KV
cache as the context grows, and Numba's compile and cached start-up times.

    python -m benchmarks.end_to_end step --backend=c --config=base   (prints one JSON line)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .timing import median_seconds, peak_rss_bytes

CONFIGS = {
    # nanoGPT's CPU recipe for shakespeare_char (its README): 65 characters + our unknown id
    "recipe": dict(vocab_size=66, block_size=64, n_layer=4, n_head=4, n_embd=128, batch=12),
    "base": dict(vocab_size=96, block_size=128, n_layer=4, n_head=4, n_embd=256, batch=16),
    "large": dict(vocab_size=96, block_size=256, n_layer=6, n_head=6, n_embd=384, batch=16),
    "tiny": dict(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_embd=128, batch=8),
    # Llama at base's shape (issue #33): RMSNorm, RoPE, SwiGLU (hidden default_hidden(256) = 704),
    # LlamaConfig's default n_kv_head = 2 of 4 heads; the peer is transformers' LlamaForCausalLM
    "llama": dict(vocab_size=96, block_size=128, n_layer=4, n_head=4, n_embd=256, batch=16, model="llama",
                  n_kv_head=2),
    "tiny-llama": dict(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_embd=128, batch=8, model="llama",
                       n_kv_head=2),
}
# the GPT config of the same shape, for the Llama/GPT time per parameter
SAME_SHAPE_GPT = {"llama": "base", "tiny-llama": "tiny"}


def _torch_model(c):
    """The PyTorch peer: our TorchGPT, or transformers' LlamaForCausalLM (eager, its default
    attention: sdpa) with the same sizes as minillm's Llama."""
    if c.get("model") != "llama":
        from .torch_gpt import TorchGPT
        return TorchGPT(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], c["n_embd"])
    import torch
    import transformers

    from minillm.models.llama import default_hidden
    config = transformers.LlamaConfig(vocab_size=c["vocab_size"], hidden_size=c["n_embd"],
                                      intermediate_size=default_hidden(c["n_embd"]), num_hidden_layers=c["n_layer"],
                                      num_attention_heads=c["n_head"], num_key_value_heads=c["n_kv_head"],
                                      max_position_embeddings=c["block_size"], rms_norm_eps=1e-5,
                                      tie_word_embeddings=False)
    llama = transformers.LlamaForCausalLM(config)

    def forward(idx, targets):  # (logits, loss) as TorchGPT; the loss over all T targets, as ours
        logits = llama(input_ids=idx).logits
        return logits, torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    forward.parameters = llama.parameters
    return forward


def _minillm_model(c):
    from minillm.models import GPT, GPTConfig, Llama, LlamaConfig
    if c.get("model") == "llama":
        return Llama(LlamaConfig(vocab_size=c["vocab_size"], block_size=c["block_size"], n_layer=c["n_layer"],
                                 n_head=c["n_head"], n_kv_head=c["n_kv_head"], n_embd=c["n_embd"]))
    return GPT(GPTConfig(c["vocab_size"], c["block_size"], c["n_layer"], c["n_head"], c["n_embd"]))


def _step_in_this_process(name, config_name, steps):
    """ms/step and peak RSS of forward + backward + AdamW on ``name``: a backend, 'torch' (the
    peer), either with '+bf16' (the forward under minillm.amp.autocast("bfloat16") or
    torch.autocast("cpu", dtype=torch.bfloat16))."""
    import contextlib
    backend, _, bf16 = name.partition("+")
    c = CONFIGS[config_name]
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, c["vocab_size"], (c["batch"], c["block_size"] + 1)) for _ in range(3)]
    if backend == "torch":
        import torch
        torch.manual_seed(0)
        model = _torch_model(c)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        precision = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext)

        def step(idx):
            idx = torch.from_numpy(idx)
            with precision():
                _, loss = model(idx[:, :-1], idx[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()
    else:
        import minillm
        from minillm import optim
        minillm.set_backend(backend)
        minillm.manual_seed(0)
        model = _minillm_model(c)
        opt = optim.AdamW(model.parameters(), lr=1e-3)

        precision = (lambda: minillm.amp.autocast("bfloat16")) if bf16 else contextlib.nullcontext

        def step(idx):
            with precision():
                _, loss = model(idx[:, :-1], idx[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

    seconds = median_seconds(step, [(b,) for b in batches], repeats=steps, warmup=2)
    tokens = c["batch"] * c["block_size"]
    params = sum(int(np.prod(p.shape)) for p in model.parameters())
    return {"backend": name, "config": config_name, "ms_per_step": seconds * 1e3,
            "tokens_per_s": tokens / seconds, "peak_rss_mb": peak_rss_bytes() / 2 ** 20, "params": params,
            "ms_per_mparam": seconds * 1e3 / (params / 1e6)}


def fastest_runs(commands, key, rounds, log, label=""):
    """Each ``python -m <command>`` (one JSON line out) ``rounds`` times, the commands taking
    turns; per name the run with the smallest ``key`` (a failing run is logged and skipped)."""
    best = {}
    for _ in range(rounds):
        for name, command in commands.items():
            done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, cwd=_root())
            if done.returncode != 0:
                log(f"  {name}{label} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            run = json.loads(done.stdout.strip().splitlines()[-1])
            if name not in best or run[key] < best[name][key]:
                best[name] = run
    return best


def train_step(names, config_names, steps, log, rounds=2):
    """One subprocess per (backend, config); ratios against torch from the same run. On a
    shared machine a burst of another tenant's work can slow one process by a tenth: each
    runs ``rounds`` times, the backends taking turns, and the faster run is kept. The c
    backend and torch also run a bf16 step ('c+bf16', 'torch+bf16': autocast to bfloat16),
    compared with each other."""
    rows = []
    for config_name in config_names:
        peers = (["torch", "torch+bf16"] if _has_torch() else [])
        runs = list(names) + (["c+bf16"] if "c" in names else []) + peers
        commands = {name: ["benchmarks.end_to_end", "step", f"--backend={name}", f"--config={config_name}",
                           f"--steps={steps}"] for name in runs}
        results = fastest_runs(commands, "ms_per_step", rounds, log, f"/{config_name}")
        for backend, r in results.items():
            peer = "torch+bf16" if backend.endswith("+bf16") else "torch"
            if peer in results and not backend.startswith("torch"):
                r["time_vs_torch"] = r["ms_per_step"] / results[peer]["ms_per_step"]
                r["rss_vs_torch"] = r["peak_rss_mb"] / results[peer]["peak_rss_mb"]
            gpt = next((g for g in rows if g["config"] == SAME_SHAPE_GPT.get(config_name)
                        and g["backend"] == backend), None)
            if gpt:  # Llama's time per parameter against GPT's at the same shape, backend by backend
                r["per_param_vs_gpt"] = r["ms_per_mparam"] / gpt["ms_per_mparam"]
            r["config_detail"] = CONFIGS[config_name]
            log("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in r.items() if k != "config_detail"))
            rows.append(r)
    return rows


def generation(contexts, new_tokens, log, backend="numpy"):
    """Milliseconds per generated token with and without the KV cache, after prompts of
    growing length. A generation is a prefill (the prompt through the model once, to fill
    the cache) and then one decoding step per token; the per-token cost is the decoding
    step's: (time for 1 + new_tokens tokens − time for 1 token) / new_tokens, so the
    one-off prefill — reported on its own as ``prefill_ms`` — is not spread over the
    tokens. With the cache the per-token cost stays nearly flat in the context; without
    it every token re-reads the whole context."""
    import minillm
    from minillm.models import GPT, GPTConfig
    rows = []
    with minillm.use_backend(backend):
        minillm.manual_seed(0)
        block = max(contexts) + new_tokens + 1
        model = GPT(GPTConfig(96, block, 4, 4, 256))
        for context in contexts:
            prompt = np.random.default_rng(context).integers(0, 96, (1, context))
            row = {"context": context, "backend": backend}
            for use_cache in (True, False):
                model.generate(prompt, 2, use_cache=use_cache)  # warm-up
                runs = []
                for _ in range(3):  # best of three: the difference of two timings is noisier than either
                    start = time.perf_counter()
                    model.generate(prompt, 1, use_cache=use_cache)
                    middle = time.perf_counter()
                    model.generate(prompt, 1 + new_tokens, use_cache=use_cache)
                    end = time.perf_counter()
                    runs.append((middle - start, (end - middle - (middle - start)) / new_tokens))
                first, per_token = min(r[0] for r in runs), min(r[1] for r in runs)
                if use_cache:
                    row["prefill_ms"] = first * 1e3
                row["cached_ms_per_token" if use_cache else "uncached_ms_per_token"] = per_token * 1e3
            row["cache_speedup"] = row["uncached_ms_per_token"] / row["cached_ms_per_token"]
            log(f"  context {context}: {row['cached_ms_per_token']:.2f} ms/token with the cache "
                f"(prefill {row['prefill_ms']:.1f} ms), {row['uncached_ms_per_token']:.2f} without")
            rows.append(row)
    return rows


def numba_startup(log):
    """Seconds to first result of a fresh process on the numba backend: with an empty JIT
    cache (compilation) and again with the cache filled."""
    script = ("import time; t=time.perf_counter(); import numpy as np, minillm; "
              "from minillm import backends; nb=backends.get(\"numba\"); x=np.ones((64,64),np.float32); "
              "nb.matmul(x,x); q=np.ones((2,16,16),np.float32); o,l=nb.attention_forward(q,q,q,True,0.25); "
              "nb.attention_backward(q,q,q,o,l,q,True,0.25); y,m,r=nb.layernorm_forward(x,x[0],x[0],1e-5); "
              "nb.layernorm_backward(x,x,x[0],m,r); print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        times = [float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                      cwd=_root()).stdout.strip() or "nan") for _ in range(2)]
    row = {"first_call_s": times[0], "cached_startup_s": times[1]}
    log(f"  numba: {times[0]:.1f} s to first result with an empty cache, {times[1]:.1f} s with it filled")
    return row


def _has_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    args = dict(a[2:].split("=", 1) for a in sys.argv[2:])
    print(json.dumps(_step_in_this_process(args["backend"], args.get("config", "base"), int(args.get("steps", 5)))))
