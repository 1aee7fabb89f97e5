"""Training a language model: ``minillm train --key=value …`` or ``train(TrainConfig(…))``.

AdamW with linear warm-up and cosine decay, global-norm gradient clipping, gradient
accumulation, evaluation every ``eval_interval`` steps (train/val loss and perplexity),
a progress bar with tokens/s, checkpoints (``checkpoint.py``), ``resume`` that continues
bit-identically on the same backend, ``loss.png`` and ``metrics.json`` in ``out_dir``.
"""
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import amp, backends, checkpoint, data, optim, rng as minillm_rng, tokenfiles, tokenizers
from .config import apply, check_ranges, option
from .nn.utils import clip_grad_norm_
from .tensor import no_grad

MODELS = ("gpt", "llama", "lstm", "seed001")
# the options that shape the weights: a resume must keep them
ARCHITECTURE = ("model", "n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "variant", "tokenizer")


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainConfig:
    data: str = option("python-docs", "'python-docs' (the embedded corpus), a UTF-8 text file, or a folder "
                                      "of token files written by `minillm prepare` (memory-mapped)")
    model: str = option("gpt", "gpt, llama (RMSNorm, RoPE, SwiGLU, grouped-query attention), lstm or seed001 "
                               "(the 001 document's single-layer model)")
    out_dir: str = option("out", "where checkpoints, loss.png and metrics.json go")
    tokenizer: str = option("char", "char or bpe", choices=("char", "bpe"))
    vocab_size: int = option(512, "BPE vocabulary size (bpe only)", at_least=257, at_most=1 << 20)
    max_iters: int = option(500, "optimizer steps in all (the schedule's length)", above=0)
    stop_after: int = option(0, "stop this run after this step (0: run to max_iters); resume goes on", at_least=0)
    batch_size: int = option(16, "sequences per micro-batch", above=0)
    block_size: int = option(64, "context length in tokens", above=0)
    n_layer: int = option(2, "transformer blocks (gpt) or LSTM layers (lstm)", above=0)
    n_head: int = option(4, "attention heads", above=0)
    n_kv_head: int = option(0, "key/value heads for --model=llama (must divide n_head; 0: n_head, plain MHA)",
                            at_least=0)
    n_embd: int = option(128, "embedding width", above=0)
    dropout: float = option(0.0, "dropout probability", at_least=0, below=1)
    variant: str = option("standard", "LSTM variant for --model=lstm: standard or document",
                          choices=("standard", "document"))
    lr: float = option(3e-3, "peak learning rate", at_least=0)
    min_lr: float = option(3e-4, "learning rate at the end of the cosine", at_least=0)
    warmup_iters: int = option(50, "linear warm-up steps", at_least=0)
    weight_decay: float = option(0.1, "AdamW's decoupled weight decay", at_least=0)
    grad_clip: float = option(1.0, "max global gradient norm (0: no clipping)", at_least=0)
    grad_accum: int = option(1, "micro-batches per optimizer step", above=0)
    eval_interval: int = option(100, "evaluate and checkpoint every this many steps", above=0)
    eval_iters: int = option(10, "batches per evaluation", above=0)
    seed: int = option(1337, "random seed", at_least=0)
    backend: str = option("", "numpy, numba, c, cuda-sim or cupy (default: $MINILLM_BACKEND or numpy)")
    dtype: str = option("float32", "float32, or bfloat16: the Linear layers' products on bf16 inputs with float32 "
                                   "sums (amp.autocast('bfloat16')); weights, gradients, optimizer state, "
                                   "checkpoints and evaluation stay float32", choices=("float32", "bfloat16"))
    resume: bool = option(False, "continue from the checkpoint in out_dir")
    progress: bool = option(True, "show a progress bar")
    ddp: bool = option(False, "data parallel over MPI ranks (launch with mpiexec)")
    ddp_overlap: bool = option(True, "ddp: start each bucket's all-reduce during backward, as soon as its "
                                     "gradients are final (False: all buckets after backward)")
    ddp_bucket_mb: float = option(4.0, "ddp: megabytes of gradients per all-reduce", above=0)
    zero: int = option(0, "ddp: 1 shards AdamW's moments across the ranks (ZeRO-1: reduce-scatter the gradients, "
                          "each rank steps its slice, all-gather the weights); 0: every rank holds them all",
                       choices=(0, 1))

    def validate(self):
        check_ranges(self)
        checks = [(self.model in MODELS, f"model must be one of {', '.join(MODELS)}; got {self.model!r}"),
                  (self.out_dir.strip() != "", "out_dir is empty; name the folder for the run"),
                  (self.n_embd % self.n_head == 0, f"n_embd {self.n_embd} must be divisible by n_head {self.n_head}"),
                  (self.n_kv_head >= 0 and self.n_head % (self.n_kv_head or self.n_head) == 0,
                   f"n_kv_head {self.n_kv_head} must divide n_head {self.n_head}"),
                  (self.model != "llama" or self.dropout == 0, "llama has no dropout; use --dropout=0"),
                  (not self.zero or self.ddp, "--zero=1 shards the optimizer across data-parallel ranks: it needs "
                                              "--ddp=True under mpiexec"),
                  (self.model != "llama" or self.n_embd // self.n_head % 2 == 0,
                   f"llama's rotary embedding needs an even head size; got n_embd/n_head = "
                   f"{self.n_embd // self.n_head}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"train: {message}")
        return self


def parameter_estimate(config, vocab_size):
    """About how many parameters ``build_model`` would make (its dominant terms), so that an
    impossible size is refused before a single layer is built."""
    c, layers, table = config.n_embd, config.n_layer, vocab_size * config.n_embd
    if config.model == "lstm":
        return 2 * table + layers * 8 * c * c
    if config.model == "seed001":
        return 2 * table + 8 * c * c
    return 2 * table + config.block_size * c + layers * 12 * c * c


def check_memory(config, vocab_size):
    """Refuse a model whose weights, gradients and AdamW moments (16 bytes a parameter)
    cannot fit in this machine's memory."""
    import os
    count = parameter_estimate(config, vocab_size)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if 16 * count > total:
        raise ValueError(f"train: this {config.model} would have about {count:,} parameters, "
                         f"{16 * count / 2 ** 30:,.1f} GiB with its gradients and AdamW's moments, more than this "
                         f"machine's {total / 2 ** 30:,.1f} GiB of memory: lower --n_layer or --n_embd")


def build_model(config, vocab_size):
    from .models import GPT, GPTConfig, LSTMLM, Llama, LlamaConfig, Seed001LM
    if config.model == "llama":
        return Llama(LlamaConfig(vocab_size, config.block_size, config.n_layer, config.n_head,
                                 config.n_kv_head or config.n_head, config.n_embd))
    if config.model == "gpt":
        return GPT(GPTConfig(vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd,
                             config.dropout))
    if config.model == "lstm":
        return LSTMLM(vocab_size, config.n_embd, config.n_embd, config.n_layer, config.variant, config.block_size)
    return Seed001LM(vocab_size, config.n_embd, 4 * config.n_embd, config.block_size)


def make_tokenizer(config, text):
    if config.tokenizer == "bpe":
        return tokenizers.BPETokenizer.train(text, config.vocab_size)
    return tokenizers.CharTokenizer.train(text)


def load_splits(config, out_dir, log=print):
    """({"train", "val"} token arrays, tokenizer): a token folder is memory-mapped with its own
    tokenizer; text is tokenized here, by a new tokenizer or, on resume, the saved one. A
    resumed run's data must be written with the run's tokenizer: the same ids must mean
    the same text, or the weights learn another language under the old names."""
    saved = tokenizers.load(Path(out_dir) / checkpoint.TOKENIZER) if config.resume else None
    if tokenfiles.is_token_folder(config.data):
        splits, tokenizer, _ = tokenfiles.load(config.data)
        if saved is not None and saved.to_dict() != tokenizer.to_dict():
            raise ValueError(f"train: cannot resume: the token files in {config.data} were written with another "
                             f"tokenizer than the run's ({Path(out_dir) / checkpoint.TOKENIZER})")
        return splits, tokenizer
    if Path(config.data).is_dir():
        raise ValueError(f"train: {config.data} is a folder without token files; tokenize it first with "
                         f"`minillm prepare --data={config.data} --out=DIR`, then train with --data=DIR")
    corpus = data.corpus(config.data)
    tokenizer = saved or make_tokenizer(config, corpus.train)
    if tokenizer.kind == "bpe" and saved is None and tokenizer.vocab_size < config.vocab_size:
        log(f"note: the corpus has pairs for only {tokenizer.vocab_size} ids, fewer than --vocab_size="
            f"{config.vocab_size}; the vocabulary has {tokenizer.vocab_size}")
    splits = {"train": np.asarray(tokenizer.encode(corpus.train)), "val": np.asarray(tokenizer.encode(corpus.val))}
    warn_unknown(tokenizer, splits["train"], config.data, log)
    return splits, tokenizer


def warn_unknown(tokenizer, ids, name, log=print):
    """Say so when text is mostly characters a character tokenizer never saw: each becomes
    the one unknown id, and a loss on such text measures little."""
    if getattr(tokenizer, "fallback", None) != "unknown" or not len(ids):
        return
    share = float(np.mean(np.asarray(ids) == tokenizer.unk_id))
    if share > 0.01:
        log(f"warning: {share:.0%} of the characters of {name} are unknown to the tokenizer (each becomes its "
            f"one unknown id), so the model sees little of this text")


def estimate_loss(model, splits, config, step):
    """Mean loss over eval_iters batches of each split, drawn from a generator of its own
    (so evaluating never changes the training data order)."""
    model.eval()
    out = {}
    with no_grad():
        for name, ids in splits.items():
            rng = np.random.default_rng([config.seed, step, len(name)])
            losses = [model(*data.batches(ids, config.block_size, config.batch_size, rng))[1].item()
                      for _ in range(config.eval_iters)]
            out[name] = float(np.mean(losses))
    model.train()
    return out


class Trainer:
    def __init__(self, config, log=print, rank=0, world_size=1, communicator=None):
        self.config = config.validate()
        self.log = log if rank == 0 else (lambda *a, **k: None)
        self.rank, self.world_size, self.comm = rank, world_size, communicator
        if config.backend:
            backends.set_backend(config.backend)
        self.out_dir = Path(config.out_dir)
        existing = checkpoint.prepare_folder(self.out_dir, config.resume) if rank == 0 else None
        if existing is not None and not config.resume:
            self.log(f"{self.out_dir} holds a run at step {existing}; this new run replaces it "
                     f"(--resume=true continues it instead)")
        self.splits, self.tokenizer = load_splits(config, self.out_dir, self.log)
        self.from_token_folder = tokenfiles.is_token_folder(config.data)
        self.requested = config
        # the record says what was trained: the data's tokenizer decides kind and size
        self.config = config = replace(config, tokenizer=self.tokenizer.kind, vocab_size=(
            self.tokenizer.vocab_size if self.tokenizer.kind == "bpe" else config.vocab_size))
        check_memory(config, self.tokenizer.vocab_size)
        for name, ids in self.splits.items():
            if len(ids) <= config.block_size:
                raise ValueError(f"train: the {name} split has {len(ids)} tokens, too few for block_size "
                                 f"{config.block_size}; use a larger corpus or a smaller block_size")
        minillm_rng.manual_seed(config.seed)
        self.model = build_model(config, self.tokenizer.vocab_size)
        if communicator is not None:  # every rank starts from rank 0's weights
            communicator.broadcast_parameters(self.model)
        if config.zero and communicator is not None:
            from .zero import ZeroAdamW
            self.optimizer = ZeroAdamW(self.model.parameters(), communicator, lr=config.lr,
                                       weight_decay=config.weight_decay)
        else:
            self.optimizer = optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.schedule = optim.WarmupCosine(self.optimizer, min(config.warmup_iters, config.max_iters),
                                           config.max_iters, config.min_lr)
        # one generator on every rank: each micro-step draws the global batch of world_size·batch_size
        # windows, the very batch one process with that batch size would draw, and takes its slice
        self.data_rng = np.random.default_rng([config.seed, 0])
        self.step, self.history = 0, []
        self.reducer = None
        if communicator is not None:
            communicator.bucket_bytes = int(config.ddp_bucket_mb * 2 ** 20)
            if config.ddp_overlap and not config.zero:
                from .distributed import OverlappedReducer
                self.reducer = OverlappedReducer(communicator, self.model.parameters())
        if config.resume:
            self._restore()

    # ---- checkpoints ----------------------------------------------------------------------
    def _restore(self):
        meta, weights, optimizer_arrays = checkpoint.load(self.out_dir)
        saved = meta.get("config", {})
        for key in ARCHITECTURE:
            if key == "tokenizer" and self.from_token_folder:
                continue  # load_splits compared the folder's tokenizer with the run's, which says more
            old = saved.get(key, TrainConfig.__dataclass_fields__[key].default)  # older runs lack newer keys
            if old != getattr(self.requested, key):
                raise ValueError(f"train: cannot resume: the checkpoint has {key}={old!r}, "
                                 f"this run {key}={getattr(self.requested, key)!r}")
        from .models.gpt import GPT
        from .models.gpt_old_checkpoints import has_separate_qkv, optimizer_arrays_from_separate_qkv
        if isinstance(self.model, GPT) and has_separate_qkv(weights):
            # saved before GPT's attention was one c_attn: the weights map on loading, the moments here
            optimizer_arrays = optimizer_arrays_from_separate_qkv(
                optimizer_arrays, [name for name, _ in self.model.named_parameters()])
        load_weights(self.model, weights, self.out_dir)
        if hasattr(self.optimizer, "adopt_parameters"):  # ZeRO-1's weights live in its flat buffer
            self.optimizer.adopt_parameters()
        try:
            self.optimizer.load_state_dict(dict(meta["optimizer"], arrays=optimizer_arrays))
            self.schedule.last_step = meta["step"]
            self.optimizer.lr = meta["optimizer"]["lr"]
            self.step, self.history = meta["step"], list(meta["history"])
            self.data_rng.bit_generator.state = meta["data_rng"]
            minillm_rng.set_state(meta["minillm_rng"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise checkpoint.CheckpointError(f"checkpoint: {self.out_dir / checkpoint.INDEX} is corrupt: cannot "
                                             f"restore the optimizer and random state ({type(exc).__name__}: "
                                             f"{exc})") from None
        self.log(f"resumed from {self.out_dir} at step {self.step}")

    def save(self):
        state = self.optimizer.state_dict() if self.config.zero else None  # ZeRO-1 gathers: every rank takes part
        if self.rank != 0:
            return
        state = state or self.optimizer.state_dict()
        arrays = state.pop("arrays")
        meta = {"config": asdict(self.config), "optimizer": state, "history": self.history,
                "data_rng": self.data_rng.bit_generator.state, "minillm_rng": minillm_rng.get_state(),
                "backend": backends.current().name, "vocab_size": self.tokenizer.vocab_size}
        checkpoint.save(self.out_dir, self.step, self.model.state_dict(), arrays, meta, self.tokenizer)

    # ---- the loop --------------------------------------------------------------------------
    def train_step(self):
        """One optimizer step over grad_accum micro-batches; returns the mean loss."""
        config = self.config
        total = 0.0
        for micro_step in range(config.grad_accum):
            if self.reducer is not None:  # only the last micro-step's gradients are reduced
                self.reducer.syncing = micro_step == config.grad_accum - 1
            x, y = data.batches(self.splits["train"], config.block_size, config.batch_size * self.world_size,
                                self.data_rng)
            mine = slice(self.rank * config.batch_size, (self.rank + 1) * config.batch_size)
            x, y = x[mine], y[mine]
            with amp.autocast(config.dtype == "bfloat16", dtype="bfloat16"):
                _, loss = self.model(x, y)
            (loss * (1.0 / config.grad_accum)).backward()
            total += loss.item() / config.grad_accum
        if config.zero:
            self.optimizer.reduce_scatter_gradients()
        elif self.reducer is not None:
            self.reducer.finish()
        elif self.comm is not None:
            self.comm.average_gradients(self.model)
        # the global norm is the divergence guard (the same on every rank after averaging);
        # without clipping it is measured with an infinite bound, which scales nothing
        if config.zero:
            norm = self.optimizer.clip_grad_norm_(config.grad_clip or math.inf)
        else:
            norm = clip_grad_norm_(self.optimizer.params, config.grad_clip or math.inf).item()
        if not (math.isfinite(norm) and (self.comm is not None or math.isfinite(total))):
            self.diverged(f"the loss is {total:.4g} and the gradient norm {norm:.4g}")
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.schedule.step()
        self.step += 1
        self.model.trained_steps = self.step
        return total

    def diverged(self, what):
        """Stop training: nothing non-finite is ever saved, so the last checkpoint stays good."""
        config = self.config
        last = self.history[-1]["step"] if self.history else None
        kept = (f"the checkpoint of step {last} in {self.out_dir} is kept" if last is not None
                else "no checkpoint was written")
        hint = (f"lower --lr (now {config.lr:g})" + ("" if config.grad_clip else ", enable clipping (--grad_clip=1)"))
        raise TrainingDiverged(f"train: diverged at step {self.step + 1}: {what}; the weights were not updated "
                               f"and {kept}. Try: {hint}, then --resume=true")

    def evaluate(self):
        losses = estimate_loss(self.model, self.splits, self.config, self.step)
        if not all(math.isfinite(v) for v in losses.values()):
            self.diverged(f"the weights give a non-finite loss (train {losses['train']:.4g}, "
                          f"val {losses['val']:.4g})")
        entry = {"step": self.step, "train_loss": losses["train"], "val_loss": losses["val"],
                 "val_perplexity": data.perplexity(losses["val"])}
        self.history.append(entry)
        self.log(f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                 f"val perplexity {entry['val_perplexity']:.2f}")
        return entry

    def run(self):
        from tqdm import tqdm
        config = self.config
        end = min(config.max_iters, config.stop_after) if config.stop_after else config.max_iters
        if end <= self.step:
            raise ValueError(f"train: the run in {self.out_dir} is at step {self.step} and this run ends at step "
                             f"{end} (--max_iters={config.max_iters}, --stop_after={config.stop_after}): nothing to "
                             f"train; raise --max_iters")
        tokens_per_step = config.batch_size * config.block_size * config.grad_accum * self.world_size
        self.log(f"training {config.model} ({self.model.num_parameters():,} parameters) on {config.data}: "
                 f"{len(self.splits['train']):,} train tokens, vocab {self.tokenizer.vocab_size}, "
                 f"backend {backends.current().name}" + (", bf16 products" if config.dtype == "bfloat16" else ""))
        bar = tqdm(total=end - self.step, disable=not config.progress or self.rank != 0, unit="step",
                   dynamic_ncols=True)
        start, first_step, loss = time.perf_counter(), self.step, float("nan")
        while self.step < end:
            if self.step % config.eval_interval == 0 and (not self.history or self.history[-1]["step"] != self.step):
                self.evaluate()
                self.save()
            loss = self.train_step()
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_step * (self.step - first_step) / elapsed:,.0f}")
            bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - start
        final = self.evaluate() if not self.history or self.history[-1]["step"] != self.step else self.history[-1]
        self.save()
        metrics = {"step": self.step, "train_loss": final["train_loss"], "val_loss": final["val_loss"],
                   "val_perplexity": final["val_perplexity"], "last_batch_loss": loss,
                   "tokens_per_second": tokens_per_step * (self.step - first_step) / max(elapsed, 1e-9),
                   "seconds": elapsed, "parameters": self.model.num_parameters(), "backend": backends.current().name}
        if self.rank == 0:
            checkpoint.write_atomic(self.out_dir / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2)))
            checkpoint.write_atomic(self.out_dir / "loss.png", lambda p: plot_losses(
                self.history, p, title=f"{config.model} on {config.data}"))
        return metrics


def plot_losses(history, path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(steps, [h["val_loss"] for h in history], marker="o", label="val")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def train(config, log=print):
    return Trainer(config, log).run()


def load(path):
    """(model, tokenizer) ready to generate or train on, from a minillm run (``checkpoint.json``)
    or a Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors``, and its tokenizer
    from ``vocab.json`` + ``merges.txt``; None when the folder has none)."""
    path = Path(path)
    if not (path / checkpoint.INDEX).exists() and (path / "config.json").exists():
        from .models import GPT, Llama
        from .models.hf_files import read_config
        kind = read_config(path, "GPT-2 or Llama").get("model_type")
        model = (Llama if kind in ("llama", "mistral") else GPT).from_pretrained(path)
        has_tokenizer = any((path / name).exists() for name in ("tokenizer-minillm.json", "vocab.json",
                                                                "tokenizer.json"))
        return model, tokenizers.from_pretrained(path) if has_tokenizer else None
    meta, weights, _ = checkpoint.load(path)
    try:
        config = apply(TrainConfig(), {k: v for k, v in meta.get("config", {}).items()
                                       if k in TrainConfig.__dataclass_fields__}).validate()
    except ValueError as exc:
        raise checkpoint.CheckpointError(f"checkpoint: {path / checkpoint.INDEX} has a bad config: {exc}") from None
    tokenizer = tokenizers.load(path / checkpoint.TOKENIZER)
    model = build_model(config, tokenizer.vocab_size)
    load_weights(model, weights, path)
    model.trained_steps = meta["step"]
    model.eval()
    return model, tokenizer


def load_weights(model, weights, path):
    """``model.load_state_dict(weights)``, with a mismatch reported as the run's config and
    weights disagreeing (the model was built from checkpoint.json's config). A GPT saved
    before its attention was one c_attn loads too (GPT.load_state_dict maps the names)."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(f"checkpoint: the weights in {path} do not fit the model its config "
                                         f"describes ({exc})") from None


def perplexity_of(model, tokenizer, text, block_size, batch_size=16, batches=10, seed=0):
    """Mean cross-entropy and perplexity of ``model`` on ``text`` (a string, or token ids)."""
    ids = np.asarray(tokenizer.encode(text)) if isinstance(text, str) else text
    rng = np.random.default_rng(seed)
    model.eval()
    with no_grad():
        loss = float(np.mean([model(*data.batches(ids, block_size, batch_size, rng))[1].item()
                              for _ in range(batches)]))
    return loss, data.perplexity(loss)
