"""The compression table: for each technique against the fp32 baseline, the size on
disk (bytes of a safetensors file of what the model needs), generation tokens/s (KV
cache, batch 1) and validation perplexity — all measured in this call.

Pruning and low rank are fine-tuned after compressing, and those steps alone would change
the uncompressed model's perplexity too; so the table also fine-tunes the baseline for the
same steps on the same batches, and their change is measured against that row (``against``)."""
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import data, optim
from ..checkpoint import load as load_checkpoint
from ..models import GPT, GPTConfig
from ..nn.utils import clip_grad_norm_
from ..rng import manual_seed
from ..tensor import no_grad
from ..train import load, perplexity_of
from .distill import distill
from .lowrank import factorize_model
from .prune import prune_magnitude
from .quantize import quantize_model, quantize_weights, quantized_state


def size_on_disk(arrays):
    from safetensors.numpy import save_file
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "weights.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))
        return path.stat().st_size


def tokens_per_second(model, prompt, new_tokens=32, repeats=3):
    """The best of ``repeats`` timings: on a shared machine a neighbour slows single runs down."""
    model.generate(prompt, 2)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(prompt, new_tokens)
        best = min(best, time.perf_counter() - start)
    return new_tokens / best


def _fine_tune(model, tokens, steps, block_size, masks=None, lr=1e-3):
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(7)
    model.train()
    for _ in range(steps):
        _, loss = model(*data.batches(tokens, block_size, 16, rng))
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if masks is not None:
            masks.apply()
    model.eval()


def compression_table(out_dir, fine_tune_steps=100, distill_steps=300, log=print):
    """Rows of {technique, size_bytes, size_ratio, tokens_per_s, val_perplexity, …} for a
    trained GPT checkpoint in ``out_dir``, and a list of goal checks."""
    meta, _, _ = load_checkpoint(out_dir)
    if meta["config"]["model"] != "gpt":
        raise ValueError(f"compression_table: needs a GPT checkpoint; {out_dir} holds a {meta['config']['model']}")
    block = meta["config"]["block_size"]
    corpus = data.corpus(meta["config"]["data"])
    teacher, tokenizer = load(out_dir)
    train_ids = np.asarray(tokenizer.encode(corpus.train[:200_000]))
    prompt = np.asarray([tokenizer.encode(corpus.val[:8]) or [0]])

    def measure(name, model, arrays, note="", against="fp32 baseline"):
        manual_seed(0)
        with no_grad():
            ppl = perplexity_of(model, tokenizer, corpus.val, block, batches=10)[1]
        row = {"technique": name, "size_bytes": size_on_disk(arrays), "tokens_per_s": tokens_per_second(model, prompt),
               "val_perplexity": ppl, "note": note, "against": against}
        log(f"  {name:28s} {row['size_bytes'] / 1e6:7.2f} MB  {row['tokens_per_s']:7.1f} tok/s  ppl {ppl:.3f}  {note}")
        return row

    rows = [measure("fp32 baseline", teacher, teacher.state_dict())]

    model, _ = load(out_dir)
    quantize_model(model)
    rows.append(measure("int8 weights + activations", model, quantized_state(model),
                        "per-channel weights, per-row dynamic activations"))

    model, _ = load(out_dir)
    quantize_weights(model)
    rows.append(measure("int8 weights", model, quantized_state(model),
                        "per-channel weights, float32 activations: one kernel call a layer"))

    tuned = f"fp32 + {fine_tune_steps}-step fine-tune"
    model, _ = load(out_dir)
    _fine_tune(model, train_ids, fine_tune_steps, block)
    rows.append(measure(tuned, model, model.state_dict(), "the baseline with the fine-tune pruning and low rank get"))

    model, _ = load(out_dir)
    masks = prune_magnitude(model, 0.5)
    _fine_tune(model, train_ids, fine_tune_steps, block, masks)
    rows.append(measure("50% magnitude pruning", model, model.state_dict(),
                        f"sparsity {masks.sparsity():.0%} after a {fine_tune_steps}-step fine-tune (stored dense)",
                        against=tuned))

    c = meta["config"]
    manual_seed(0)
    student = GPT(GPTConfig(tokenizer.vocab_size, block, max(1, c["n_layer"] // 2), c["n_head"], c["n_embd"]))
    distill(teacher, student, train_ids, distill_steps, block)
    student.eval()
    rows.append(measure("distilled half-depth student", student, student.state_dict(),
                        f"{student.num_parameters():,} vs {teacher.num_parameters():,} parameters, "
                        f"{distill_steps} steps"))

    model, _ = load(out_dir)
    ranks = factorize_model(model, energy=0.9)
    _fine_tune(model, train_ids, fine_tune_steps, block)
    rows.append(measure("low rank (90% energy)", model, model.state_dict(),
                        f"{len(ranks)} layers factorised, then a {fine_tune_steps}-step fine-tune", against=tuned))

    by_name = {row["technique"]: row for row in rows}
    for row in rows:
        row["size_ratio"] = rows[0]["size_bytes"] / row["size_bytes"]
        row["perplexity_change"] = row["val_perplexity"] / by_name[row["against"]]["val_perplexity"] - 1
    int8, pruned, student = rows[1], by_name["50% magnitude pruning"], by_name["distilled half-depth student"]
    weights_only, fp32 = by_name["int8 weights"], rows[0]
    goals = [("int8 ≥ 3.5× smaller", int8["size_ratio"] >= 3.5, f"{int8['size_ratio']:.2f}×"),
             ("int8 perplexity ≤ +2%", int8["perplexity_change"] <= 0.02, f"{int8['perplexity_change']:+.1%}"),
             ("int8 weights perplexity ≤ +1%", weights_only["perplexity_change"] <= 0.01,
              f"{weights_only['perplexity_change']:+.2%}"),
             ("int8 weights generate faster than fp32", weights_only["tokens_per_s"] > fp32["tokens_per_s"],
              f"{weights_only['tokens_per_s'] / fp32['tokens_per_s']:.2f}×"),
             ("50% pruning perplexity ≤ +5% against the same fine-tune", pruned["perplexity_change"] <= 0.05,
              f"{pruned['perplexity_change']:+.1%}"),
             ("distilled student within 10% of the teacher", student["perplexity_change"] <= 0.10,
              f"{student['perplexity_change']:+.1%}")]
    return rows, goals


def format_table(rows, goals):
    lines = ["| technique | size MB | × smaller | tokens/s | val perplexity | change | against | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['technique']} | {r['size_bytes'] / 1e6:.2f} | {r['size_ratio']:.2f} | "
                     f"{r['tokens_per_s']:.1f} | {r['val_perplexity']:.3f} | {r['perplexity_change']:+.1%} | "
                     f"{r['against']} | {r['note']} |")
    lines.append("")
    lines += [f"- {name}: {value} — {'met' if ok else 'not met'}" for name, ok, value in goals]
    return "\n".join(lines)
