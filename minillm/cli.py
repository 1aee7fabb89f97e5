"""The ``minillm`` command (also ``python -m minillm``).

    minillm train  --data=PATH|python-docs --model=gpt|lstm|seed001 --out_dir=DIR --key=value…
    minillm sample --out_dir=DIR --start=TEXT --max_new_tokens=N --temperature=T --top_k=K --seed=S
    minillm eval   --out_dir=DIR
    minillm demo   the main job: a small GPT on the embedded corpus, losses, plot, a sample
    minillm info   versions, and which backends run here (and why not)
    minillm bench  the benchmarks (python -m benchmarks)
    minillm lesson N [--quick]
Every command takes --help.
"""
import platform
import sys
from dataclasses import dataclass, field

from . import config as cfg


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class SampleConfig:
    out_dir: str = _f("out", "checkpoint directory written by `minillm train`")
    start: str = _f("\n", "the prompt (characters outside the vocabulary fall back to their bytes)")
    max_new_tokens: int = _f(200, "tokens to generate")
    temperature: float = _f(0.8, "divides the logits; lower is more conservative")
    top_k: int = _f(0, "sample among the k most likely tokens (0: all)")
    seed: int = _f(1337, "random seed")
    num_samples: int = _f(1, "independent samples")


@dataclass
class EvalConfig:
    out_dir: str = _f("out", "checkpoint directory written by `minillm train`")
    eval_iters: int = _f(20, "validation batches")
    batch_size: int = _f(16, "sequences per batch")


def info(argv):
    import numpy as np

    from . import __version__, backends
    print(f"minillm {__version__}  python {platform.python_version()}  numpy {np.__version__}")
    for name, state in backends.status().items():
        print(f"  backend {name:9s} {state}")
    if backends.status().get("c") == "ok":
        from .backends import c_backend
        print(f"  c kernels built with: {c_backend.build_flags}, {c_backend.lib.minillm_max_threads()} threads")


def train_command(argv):
    from .train import TrainConfig, train
    config = cfg.parse_args(TrainConfig(), argv)
    print("config:", cfg.show(config))
    if config.ddp:
        from .distributed import train_ddp
        return train_ddp(config)
    metrics = train(config)
    print(f"done: val loss {metrics['val_loss']:.4f} (perplexity {metrics['val_perplexity']:.2f}), "
          f"{metrics['tokens_per_second']:,.0f} tokens/s; checkpoint in {config.out_dir}")


def sample_command(argv):
    import numpy as np

    from .random import manual_seed
    from .train import load
    config = cfg.parse_args(SampleConfig(), argv)
    model, tokenizer = load(config.out_dir)
    manual_seed(config.seed)
    prompt = tokenizer.encode(config.start) or [0]
    for _ in range(config.num_samples):
        out = model.generate(np.asarray([prompt]), config.max_new_tokens, temperature=config.temperature,
                             top_k=config.top_k or None)
        print(tokenizer.decode(out[0].tolist()))
        print("---")


def eval_command(argv):
    from . import data
    from .checkpoint import load as load_checkpoint
    from .train import load, perplexity_of
    config = cfg.parse_args(EvalConfig(), argv)
    model, tokenizer = load(config.out_dir)
    meta, _, _ = load_checkpoint(config.out_dir)
    corpus = data.corpus(meta["config"]["data"])
    loss, ppl = perplexity_of(model, tokenizer, corpus.val, meta["config"]["block_size"], config.batch_size,
                              config.eval_iters)
    print(f"val loss {loss:.4f}, perplexity {ppl:.2f} ({meta['config']['data']}, step {meta['step']})")


def demo_command(argv):
    from .demo import run
    run(argv)


def bench_command(argv):
    from benchmarks.__main__ import main
    main(argv)


def lesson_command(argv):
    from .lessons import run_lesson
    if not argv or not argv[0].isdigit():
        raise cfg.ConfigError("usage: minillm lesson N [--quick]")
    sys.exit(run_lesson(int(argv[0]), argv[1:]))


COMMANDS = {"train": (train_command, "TrainConfig"), "sample": (sample_command, SampleConfig),
            "eval": (eval_command, EvalConfig), "demo": (demo_command, None), "info": (info, None),
            "bench": (bench_command, None), "lesson": (lesson_command, None)}


def _help(name):
    if name == "train":
        from .train import TrainConfig
        return f"minillm train --key=value …\n{cfg.describe(TrainConfig())}"
    schema = COMMANDS[name][1]
    return f"minillm {name} --key=value …\n{cfg.describe(schema())}" if schema else __doc__


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"minillm: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if "--help" in rest or "-h" in rest:
        if name in ("bench", "lesson"):
            return COMMANDS[name][0](["--help"]) or 0
        print(_help(name))
        return 0
    try:
        COMMANDS[name][0](rest)
    except (cfg.ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"minillm {name}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
