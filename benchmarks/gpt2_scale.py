"""GPT-2 small at its real shapes (124M parameters, random weights — no internet here) in
a Hugging Face folder: load time and peak memory, generation with the KV cache, and one
training step, minillm against ``transformers`` (PyTorch eager, float32) on the same
folder. Every measurement runs in a fresh process, so memory is that task's alone and
neither library's threads disturb the other's timing.

    python -m benchmarks.gpt2_scale [--quick] [--backend=c] [--out=benchmarks/results]
    python -m benchmarks.gpt2_scale run --task=load|generate|train --impl=c|numpy|torch --dir=DIR

Generation is greedy (both sides pick the argmax, so both make the same tokens' worth of
work); tokens/s counts new tokens after a prompt of PROMPT tokens. The training step is
forward, backward and AdamW on batch × context tokens, median of the steps after one
warm-up step.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SMALL = dict(vocab_size=50257, n_positions=1024, n_layer=12, n_head=12, n_embd=768)   # GPT-2 small
TINY = dict(vocab_size=257, n_positions=64, n_layer=2, n_head=2, n_embd=32)           # --quick
PLAN = dict(prompt=16, new_tokens=64, batch=4, context=128, steps=5)
QUICK_PLAN = dict(prompt=4, new_tokens=8, batch=2, context=16, steps=2)


def write_folder(path, shape):
    import torch
    import transformers
    torch.manual_seed(0)
    end = shape["vocab_size"] - 1  # GPT-2's <|endoftext|> is its last id
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape, bos_token_id=end, eos_token_id=end))
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def _rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _load(impl, folder):
    """(model, seconds, bytes the load added at its peak)."""
    from .timing import peak_rss_bytes
    before = _rss()
    start = time.perf_counter()
    if impl == "torch":
        import transformers
        model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    else:
        import minillm
        from minillm.models import GPT
        minillm.set_backend(impl)
        model = GPT.from_pretrained(folder)
    return model, time.perf_counter() - start, peak_rss_bytes() - before


def run(task, impl, folder, plan):
    if impl == "torch":
        import torch
        import transformers  # noqa: F401  (imported before the baseline, as minillm is)
        torch.manual_seed(0)
    else:
        import minillm  # noqa: F401
    model, seconds, added = _load(impl, folder)
    out = {"task": task, "impl": impl, "load_s": seconds, "load_peak_added_bytes": added}
    prompt = np.random.default_rng(0).integers(0, 200, (1, plan["prompt"]))
    if task == "generate":
        out.update(_generate(impl, model, prompt, plan["new_tokens"]))
    elif task == "train":
        out.update(_train(impl, model, plan))
    return out


def _generate(impl, model, prompt, new):
    if impl == "torch":
        import torch
        ids = torch.from_numpy(prompt)

        def go(n):
            with torch.no_grad():
                return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, use_cache=True, pad_token_id=0)
    else:
        def go(n):
            return model.generate(prompt, n, temperature=0)
    go(2)  # warm-up: kernels compiled or loaded, buffers touched
    start = time.perf_counter()
    tokens = np.asarray(go(new))[0, prompt.shape[1]:]
    seconds = time.perf_counter() - start
    return {"new_tokens": len(tokens), "generate_s": seconds, "tokens_per_s": len(tokens) / seconds}


def _train(impl, model, plan):
    rng = np.random.default_rng(1)
    vocab = 200
    batches = [rng.integers(0, vocab, (plan["batch"], plan["context"] + 1)) for _ in range(plan["steps"] + 1)]
    times = []
    if impl == "torch":
        import torch
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for b in batches:
            x, y = torch.from_numpy(b[:, :-1]), torch.from_numpy(b[:, 1:])
            start = time.perf_counter()
            logits = model(x).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
    else:
        from minillm import optim
        model.train()
        opt = optim.AdamW(model.parameters(), lr=1e-4)
        for b in batches:
            start = time.perf_counter()
            _, loss = model(b[:, :-1], b[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
    from .timing import peak_rss_bytes
    return {"step_ms": float(np.median(times[1:]) * 1e3), "train_peak_rss_bytes": peak_rss_bytes(),
            "loss": float(loss.item())}


def compare(backend="c", quick=False, log=print):
    from .end_to_end import _root
    shape, plan = (TINY, QUICK_PLAN) if quick else (SMALL, PLAN)
    results = {"shape": shape, "plan": plan, "runs": []}
    with tempfile.TemporaryDirectory() as folder:
        results["parameters"] = write_folder(folder, shape)
        results["weights_bytes"] = (Path(folder) / "model.safetensors").stat().st_size
        log(f"GPT-2 {results['parameters'] / 1e6:.1f}M parameters, model.safetensors "
            f"{results['weights_bytes'] / 2 ** 20:.0f} MiB")
        for task in ("load", "generate", "train"):
            for impl in (backend, "torch"):
                done = subprocess.run([sys.executable, "-m", "benchmarks.gpt2_scale", "run", f"--task={task}",
                                       f"--impl={impl}", f"--dir={folder}"] + (["--quick"] if quick else []),
                                      capture_output=True, text=True, cwd=_root())
                if done.returncode != 0:
                    raise RuntimeError(f"gpt2_scale {task} {impl} failed:\n{done.stderr[-2000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                results["runs"].append(row)
                log("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    results["summary"] = summarise(results)
    for key, value in results["summary"].items():
        log(f"  {key}: {value:.3g}")
    return results


def summarise(results):
    def get(task, impl, key):
        return next(r[key] for r in results["runs"] if r["task"] == task and r["impl"] == impl)
    ours = next(r["impl"] for r in results["runs"] if r["impl"] != "torch")
    return {"load_s": get("load", ours, "load_s"), "torch_load_s": get("load", "torch", "load_s"),
            "load_peak_vs_weights": get("load", ours, "load_peak_added_bytes") / results["weights_bytes"],
            "torch_load_peak_vs_weights": get("load", "torch", "load_peak_added_bytes") / results["weights_bytes"],
            "tokens_per_s": get("generate", ours, "tokens_per_s"),
            "torch_tokens_per_s": get("generate", "torch", "tokens_per_s"),
            "generate_speed_vs_torch": get("generate", ours, "tokens_per_s") / get("generate", "torch", "tokens_per_s"),
            "step_ms": get("train", ours, "step_ms"), "torch_step_ms": get("train", "torch", "step_ms"),
            "step_time_vs_torch": get("train", ours, "step_ms") / get("train", "torch", "step_ms")}


if __name__ == "__main__":
    from .timing import flags
    args = flags(sys.argv[1:])
    quick = "quick" in args
    if sys.argv[1:2] == ["run"]:
        print(json.dumps(run(args["task"], args["impl"], args["dir"], QUICK_PLAN if quick else PLAN)))
    else:
        out = compare(args.get("backend", "c"), quick)
        if "out" in args:
            from .timing import machine_info, machine_stem, write_json
            info = machine_info()
            print(write_json(dict(out, machine=info), args["out"], f"gpt2-124m-{machine_stem(info)}"))
