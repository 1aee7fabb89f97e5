"""nanoGPT's CPU recipe, end to end: the same model, data, batches, initial weights and
hyper-parameters trained by minillm (one backend) and by PyTorch, each in its own process;
wall time of the training loop and the validation loss it reaches.

The recipe (nanoGPT's README, shakespeare_char on a CPU): 4 layers, 4 heads, 128 wide,
block 64, batch 12, dropout 0, AdamW lr 1e-3 (β₂ 0.99, weight decay 0.1 on matrices),
100 warm-up steps then cosine decay to 1e-4 at max_iters, gradient clipping at 1.0. These
machines have no internet, so the corpus is the embedded python-docs text at character
level (about 100 characters) rather than Shakespeare's 65.

    python -m benchmarks.recipe --iters=2000 [--rounds=2]   (prints a table; JSON with --out;
                                                         rounds: each run again in turn, faster kept)
    python -m benchmarks.recipe run --impl=c --iters=2000   (one run, one JSON line)

An impl with '+bf16' (c+bf16, torch+bf16) runs the forward under bf16 autocast
(minillm.amp.autocast("bfloat16"), torch.autocast("cpu", dtype=torch.bfloat16)): float32
weights and AdamW, bf16 inputs to the matrix products; the validation loss is measured in
float32. Its row is compared with the float32 run of the same impl (time and val loss)
and with torch+bf16.
"""
import contextlib
import json
import math
import sys
import time

import numpy as np

RECIPE = dict(block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128, lr=1e-3, min_lr=1e-4,
              warmup=100, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_batches=20)


def learning_rate(step, iters):
    """nanoGPT's get_lr: linear warm-up, cosine decay to min_lr at the last iteration."""
    r = RECIPE
    if step < r["warmup"]:
        return r["lr"] * (step + 1) / (r["warmup"] + 1)
    progress = (step - r["warmup"]) / max(1, iters - r["warmup"])
    return r["min_lr"] + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (r["lr"] - r["min_lr"])


def data():
    from minillm import data as corpora
    from minillm.tokenizers import CharTokenizer
    corpus = corpora.corpus("python-docs")
    tokenizer = CharTokenizer.train(corpus.text)
    return tokenizer, np.asarray(tokenizer.encode(corpus.train)), np.asarray(tokenizer.encode(corpus.val))


def batches(tokens, count, seed):
    """The same (x, y) batches for every implementation."""
    rng = np.random.default_rng(seed)
    t, b = RECIPE["block_size"], RECIPE["batch_size"]
    for _ in range(count):
        starts = rng.integers(0, len(tokens) - t - 1, b)
        window = np.stack([tokens[s:s + t + 1] for s in starts])
        yield window[:, :-1], window[:, 1:]


def initial_state(vocab_size):
    import minillm
    from minillm.models import GPT, GPTConfig
    minillm.manual_seed(1337)
    r = RECIPE
    model = GPT(GPTConfig(vocab_size, r["block_size"], r["n_layer"], r["n_head"], r["n_embd"]))
    return model, {k: np.asarray(v) for k, v in model.state_dict().items()}


def run_minillm(impl, iters):
    import minillm
    from minillm import optim
    from minillm.nn.utils import clip_grad_norm_
    backend, _, bf16 = impl.partition("+")
    precision = (lambda: minillm.amp.autocast("bfloat16")) if bf16 else contextlib.nullcontext
    minillm.set_backend(backend)
    tokenizer, train, val = data()
    model, _ = initial_state(tokenizer.vocab_size)
    params = list(model.parameters())
    r = RECIPE
    groups = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    decayed = optim.AdamW(groups[0], lr=r["lr"], betas=(r["beta1"], r["beta2"]), weight_decay=r["weight_decay"])
    plain = optim.AdamW(groups[1], lr=r["lr"], betas=(r["beta1"], r["beta2"]), weight_decay=0.0)
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches(train, iters, seed=0)):
        decayed.lr = plain.lr = learning_rate(step, iters)
        with precision():
            _, loss = model(x, y)
        decayed.zero_grad()
        plain.zero_grad()
        loss.backward()
        clip_grad_norm_(params, r["grad_clip"])
        decayed.step()
        plain.step()
    seconds = time.perf_counter() - start
    model.eval()
    with minillm.no_grad():
        val_loss = float(np.mean([model(x, y)[1].item() for x, y in batches(val, r["eval_batches"], seed=1)]))
    return {"impl": impl, "iters": iters, "seconds": seconds, "ms_per_iter": seconds / iters * 1e3,
            "val_loss": val_loss, "train_loss": loss.item()}


def run_torch(iters, bf16=False):
    import torch

    from .torch_gpt import TorchGPT
    tokenizer, train, val = data()
    _, state = initial_state(tokenizer.vocab_size)  # the very same initial weights
    r = RECIPE
    model = TorchGPT(tokenizer.vocab_size, r["block_size"], r["n_layer"], r["n_head"], r["n_embd"])
    model.load_minillm(state)
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": r["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=r["lr"], betas=(r["beta1"], r["beta2"]))  # best settings: foreach default
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches(train, iters, seed=0)):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, iters)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, r["grad_clip"])
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        val_loss = float(np.mean([model(torch.from_numpy(x), torch.from_numpy(y))[1].item()
                                  for x, y in batches(val, r["eval_batches"], seed=1)]))
    return {"impl": "torch+bf16" if bf16 else "torch", "threads": torch.get_num_threads(), "iters": iters, "seconds": seconds,
            "ms_per_iter": seconds / iters * 1e3, "val_loss": val_loss, "train_loss": loss.item()}


def compare(impls, iters, log, rounds=1):
    """Each implementation in a fresh process; ratios against torch from this run. With
    ``rounds`` > 1 each runs that many times, the implementations taking turns, and the
    faster run is kept (on a shared machine a burst of another tenant's work can slow one)."""
    from .end_to_end import fastest_runs
    commands = {impl: ["benchmarks.recipe", "run", f"--impl={impl}", f"--iters={iters}"] for impl in impls}
    rows = list(fastest_runs(commands, "seconds", rounds, log).values())
    by_impl = {r["impl"]: r for r in rows}
    for r in rows:
        impl, _, bf16 = r["impl"].partition("+")
        torch_row, fp32_row = by_impl.get("torch+bf16" if bf16 else "torch"), by_impl.get(impl) if bf16 else None
        if torch_row and impl != "torch":
            r["time_vs_torch"] = r["seconds"] / torch_row["seconds"]
            r["val_loss_vs_torch"] = r["val_loss"] - torch_row["val_loss"]
        if fp32_row:
            r["time_vs_fp32"] = r["seconds"] / fp32_row["seconds"]
            r["val_loss_vs_fp32"] = r["val_loss"] - fp32_row["val_loss"]
        log(f"  {r['impl']}: {r['seconds']:.1f} s for {iters} iterations ({r['ms_per_iter']:.1f} ms/iter), "
            f"val loss {r['val_loss']:.4f}" + (f", {r['time_vs_torch']:.2f}× {'torch+bf16' if bf16 else 'torch'}'s "
                                                f"time, val loss {r['val_loss_vs_torch']:+.3f}"
                                                if "time_vs_torch" in r else "")
            + (f"; {r['time_vs_fp32']:.2f}× its float32 time, val loss {r['val_loss_vs_fp32']:+.3f}"
               if "time_vs_fp32" in r else ""))
    return rows


if __name__ == "__main__":
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    iters = int(args.get("iters", 2000))
    if sys.argv[1:2] == ["run"]:
        impl = args["impl"]
        print(json.dumps(run_torch(iters, impl == "torch+bf16") if impl.startswith("torch")
                         else run_minillm(impl, iters)))
    else:
        impls = args.get("impls", "c,c+bf16,torch,torch+bf16").split(",")
        rounds = int(args.get("rounds", 1))
        results = compare(impls, iters, print, rounds)
        if "out" in args:
            from .timing import machine_info, machine_stem, write_json
            info = machine_info()
            summary = {"machine": info, "iters": iters, "rounds": rounds, "runs": results}
            print(write_json(summary, args["out"], f"recipe-{machine_stem(info)}"))
