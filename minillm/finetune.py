"""Fine-tuning a trained or downloaded model on new text, with LoRA adapters or in full:
``minillm finetune --init_from=PATH --data=TEXT_OR_TOKENS --lora_rank=8 --out_dir=DIR``.

The model (a minillm run, or a Hugging Face GPT-2 or Llama folder) keeps its tokenizer;
the data is a text file or a token folder written with that same tokenizer. With
``lora_rank > 0`` the base weights are frozen and only the adapters train; at the end
they are merged, and ``out_dir`` receives a plain Hugging Face folder (weights, config,
tokenizer files) that ``transformers`` and ``minillm sample --init_from`` both load.
"""
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data, optim, tokenfiles
from .config import option
from .fileio import HF_FOLDER_FILES, ensure_output_folder, write_atomic
from .nn.utils import clip_grad_norm_
from .rng import manual_seed


@dataclass
class FinetuneConfig:
    init_from: str = option("", "a minillm run or a Hugging Face GPT-2/Llama folder")
    data: str = option("python-docs", "text file, 'python-docs', or a token folder written with the model's tokenizer")
    out_dir: str = option("finetuned", "where the merged model goes (a Hugging Face folder)")
    lora_rank: int = option(8, "LoRA rank (0: train every weight)", at_least=0)
    lora_alpha: float = option(16.0, "LoRA scale α (the update is α/r · B A)", above=0)
    lora_targets: str = option("", "comma-separated names of the Linear layers to adapt (empty: the model's "
                                   "own, c_attn for GPT, q_proj,v_proj for Llama)")
    max_iters: int = option(200, "optimizer steps", at_least=1)
    batch_size: int = option(8, "sequences per step", at_least=1)
    block_size: int = option(0, "context length (0: the model's own)", at_least=0)
    lr: float = option(1e-3, "learning rate (AdamW, no weight decay on adapters)", at_least=0)
    eval_iters: int = option(10, "validation batches before and after", at_least=1)
    seed: int = option(1337, "random seed", at_least=0)
    progress: bool = option(True, "show a progress bar")


def _splits(config, tokenizer):
    if tokenfiles.is_token_folder(config.data):
        splits, theirs, _ = tokenfiles.load(config.data)
        if theirs.to_dict() != tokenizer.to_dict():
            raise ValueError(f"finetune: the token files in {config.data} were written with another tokenizer "
                             f"than {config.init_from}'s")
        return splits
    corpus = data.corpus(config.data)
    return {"train": np.asarray(tokenizer.encode(corpus.train)), "val": np.asarray(tokenizer.encode(corpus.val))}


def finetune(config, log=print):
    from tqdm import tqdm

    from .nn.lora import add_lora, merge_lora
    from .train import load, perplexity_of
    if not config.init_from:
        raise ValueError("finetune: --init_from names the model to start from (a run or a Hugging Face folder)")
    if Path(config.out_dir).resolve() == Path(config.init_from).resolve():
        raise ValueError(f"finetune: --out_dir is the folder of --init_from ({config.init_from}); the model "
                         f"would overwrite the one it starts from: choose another --out_dir")
    ensure_output_folder(config.out_dir, "out_dir", HF_FOLDER_FILES, "finetune.json")
    model, tokenizer = load(config.init_from)
    if tokenizer is None:
        raise ValueError(f"finetune: {config.init_from} has no tokenizer files to read the data with")
    if not hasattr(model, "save_pretrained"):
        raise ValueError(f"finetune: {config.init_from} holds a {type(model).__name__}; fine-tuning writes a "
                         f"Hugging Face folder, which exists for GPT and Llama models only")
    block = config.block_size or model.block_size
    splits = _splits(config, tokenizer)
    manual_seed(config.seed)
    total = model.num_parameters()
    if config.lora_rank > 0:
        targets = tuple(name.strip() for name in config.lora_targets.split(",") if name.strip()) or None
        layers = add_lora(model, config.lora_rank, config.lora_alpha, targets)
        log(f"LoRA rank {config.lora_rank} on {layers} layers")
    trainable = [p for p in model.parameters() if p.requires_grad]
    log(f"training {sum(p.size for p in trainable):,} of {total:,} parameters "
        f"({sum(p.size for p in trainable) / total:.2%})")

    def val_loss():
        loss, _ = perplexity_of(model, tokenizer, splits["val"], block, config.batch_size, config.eval_iters)
        model.train()
        return loss

    before = val_loss()
    opt = optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    model.train()
    for step in tqdm(range(config.max_iters), disable=not config.progress, unit="step"):
        _, loss = model(*data.batches(splits["train"], block, config.batch_size, rng))
        opt.zero_grad()
        loss.backward()
        norm = clip_grad_norm_(trainable, 1.0).item()
        if not (math.isfinite(loss.item()) and math.isfinite(norm)):
            raise RuntimeError(f"finetune: diverged at step {step + 1} (loss {loss.item():.4g}, gradient norm "
                               f"{norm:.4g}); nothing was written. Try a lower --lr (now {config.lr:g})")
        opt.step()
    seconds = time.perf_counter() - start
    if config.lora_rank > 0:
        merge_lora(model)
        model.requires_grad_(True)
    after = val_loss()
    if not math.isfinite(after):
        raise RuntimeError(f"finetune: the fine-tuned model's validation loss is {after}; nothing was written. "
                           f"Try a lower --lr (now {config.lr:g})")
    model.eval()
    out = Path(config.out_dir)
    model.save_pretrained(out, tokenizer)
    metrics = {"val_loss_before": before, "val_loss_after": after, "seconds": seconds,
               "trainable_parameters": sum(p.size for p in trainable), "parameters": total}
    write_atomic(out / "finetune.json", lambda p: p.write_text(json.dumps(metrics, indent=2)))
    log(f"val loss {before:.4f} → {after:.4f} in {seconds:.0f} s; merged model in {out}")
    return metrics
