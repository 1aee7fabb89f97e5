"""The main job (``make demo``): train a small GPT on the embedded corpus of Python's
docstrings in about two minutes on two CPU cores, print the losses, write the checkpoint
and the loss plot, and print a sample."""
import numpy as np

from . import backends
from .config import parse_args, show
from .rng import manual_seed
from .train import TrainConfig, Trainer

DEMO = dict(data="python-docs", model="gpt", out_dir="out/demo", max_iters=1200, batch_size=16, block_size=64,
            n_layer=2, n_head=4, n_embd=128, lr=3e-3, min_lr=3e-4, warmup_iters=50, eval_interval=200,
            eval_iters=10)


def fastest_cpu_backend():
    """The C kernels when they were built here, else the NumPy reference."""
    return "c" if backends.is_available("c") else "numpy"


def run(argv=()):
    config = parse_args(TrainConfig(**DEMO, backend=fastest_cpu_backend()), list(argv))
    print("config:", show(config))
    trainer = Trainer(config)
    metrics = trainer.run()
    print(f"\nval loss {metrics['val_loss']:.4f} (perplexity {metrics['val_perplexity']:.2f}) after "
          f"{metrics['step']} steps, {metrics['tokens_per_second']:,.0f} tokens/s on backend {metrics['backend']}")
    print(f"checkpoint, loss.png and metrics.json in {config.out_dir}/")
    manual_seed(0)
    prompt = trainer.tokenizer.encode("Return the ")
    sample = trainer.model.generate(np.asarray([prompt]), 300, temperature=0.8)
    print("\nsample:\n" + trainer.tokenizer.decode(sample[0].tolist()))
    return metrics
