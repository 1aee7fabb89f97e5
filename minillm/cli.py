"""The ``minillm`` command (also ``python -m minillm``).

    minillm train  --data=PATH|python-docs|TOKEN_FOLDER --model=gpt|llama|lstm|seed001 --out_dir=DIR --key=value…
    minillm prepare --data=FILE_OR_FOLDER --out=DIR --tokenizer=char|bpe|PATH   token files for --data=DIR
    minillm sample --init_from=RUN_OR_HF_FOLDER --start=TEXT --max_new_tokens=N --temperature=T --top_k=K --top_p=P
                   [--quantize=int8]
    minillm eval   --init_from=RUN_OR_HF_FOLDER --data=TEXT_OR_TOKEN_FOLDER
    minillm demo   the main job: a small GPT on the embedded corpus, losses, plot, a sample
    minillm info   versions, and which backends run here (and why not)
    minillm compress --out_dir=DIR --report     the compression table for a trained GPT
    minillm export --out_dir=DIR --onnx=model.onnx | --hf=DIR   (ONNX, or a Hugging Face folder)
    minillm finetune --init_from=RUN_OR_HF_FOLDER --data=… --lora_rank=8 --out_dir=DIR   LoRA, then merged
    minillm bench  the benchmarks (python -m benchmarks)
    minillm lesson N [--quick]
    minillm exercise N [--solution] [--file=PATH]   grade exercises/NN_*.py (yours, a copy, or the solutions)
    minillm book [--quick] [--out=site] [--lessons=0,3]   every lesson executed as a notebook, rendered to HTML
Every command takes --help.
"""
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from . import config as cfg, fileio
from .config import option
from .fileio import HF_FOLDER_FILES, ensure_output_folder, ensure_writable


@dataclass
class SampleConfig:
    init_from: str = option("", "a minillm run or a Hugging Face GPT-2 or Llama folder (default: out_dir)")
    out_dir: str = option("out", "checkpoint directory written by `minillm train`")
    start: str = option("\n", "the prompt (a character tokenizer refuses characters it never saw)")
    max_new_tokens: int = option(200, "tokens to generate (at least 1)", at_least=1)
    temperature: float = option(0.8, "divides the logits; lower is more conservative, 0 is greedy", at_least=0)
    top_k: int = option(0, "sample among the k most likely tokens (0: no top-k filter)", at_least=0)
    top_p: float = option(1.0, "nucleus sampling: the most likely tokens up to this probability mass (1: all)",
                          above=0, at_most=1)
    seed: int = option(1337, "random seed", at_least=0)
    num_samples: int = option(1, "independent samples", at_least=1)
    quantize: str = option("none", "int8: weights as int8 with a float scale per output row, activations float32 "
                                   "(a quarter of the bytes to read per token)", choices=("none", "int8"))


@dataclass
class EvalConfig:
    init_from: str = option("", "a minillm run or a Hugging Face GPT-2 or Llama folder (default: out_dir)")
    out_dir: str = option("out", "checkpoint directory written by `minillm train`")
    data: str = option("", "text file, 'python-docs' or token folder whose validation split is scored "
                           "(default: the run's own data)")
    eval_iters: int = option(20, "validation batches", at_least=1)
    batch_size: int = option(16, "sequences per batch", at_least=1)


def info(argv):
    import numpy as np
    if argv:
        raise cfg.ConfigError(f"info takes no options; got {' '.join(argv)}")

    from . import __version__, backends, memory
    print(f"minillm {__version__}  python {platform.python_version()}  numpy {np.__version__}")
    print(f"  memory: {memory.state}")
    for name, state in backends.status().items():
        print(f"  backend {name:9s} {state}")
    if backends.is_available("c"):
        from .backends import c as c_backend
        int8 = ("vpdpbusd (AVX512-VNNI)" if c_backend.lib.linear_int8_has_vnni()
                else "widened float products (this build has no AVX512-VNNI)")
        print(f"  c kernels built with: {c_backend.build_flags}, {c_backend.lib.minillm_max_threads()} threads, "
              f"int8 products: {int8}")
        print(f"  c kernels compiled for: {c_backend.build_isa or 'the baseline instruction set'} "
              f"({c_backend.origin}; this CPU has each of them)")
        print(f"  bf16 products (autocast('bfloat16')): {c_backend.bf16_kernel_name()}")
        b = c_backend.gemm_blocking()
        print(f"  fp32 GEMM blocks from the caches (L1d {b['l1'] >> 10} KB, L2 {b['l2'] >> 10} KB, "
              f"L3 {b['l3'] >> 10} KB): tile {b['mr']}×{b['nr']}, KC {b['kc']}, MC {b['mc']}, NC {b['nc']}, "
              f"v8's B panel {b['nc_l2']} columns")
    from .blas_threads import blas_threads
    print(f"  NumPy's BLAS: {blas_threads()} threads now; one while the c or numba backend is current "
          f"(so that two thread pools do not share the cores)")


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

    from .rng import manual_seed
    from .train import load
    config = cfg.parse_args(SampleConfig(), argv)
    source = config.init_from or config.out_dir
    model, tokenizer = load(source)
    if tokenizer is None:
        raise ValueError(f"{source} has no tokenizer (vocab.json + merges.txt, or tokenizer-minillm.json) "
                         f"to read --start and print tokens")
    if config.quantize == "int8":
        from .compress import quantize_weights
        quantize_weights(model)
    unseen = tokenizer.unseen(config.start) if getattr(tokenizer, "fallback", None) == "unknown" else []
    if unseen:
        raise ValueError(f"--start has characters the tokenizer never saw in training: "
                         f"{', '.join(map(repr, unseen))} (its vocabulary is {len(tokenizer.chars)} characters)")
    manual_seed(config.seed)
    prompt = tokenizer.encode(config.start) or [0]
    for _ in range(config.num_samples):
        out = model.generate(np.asarray([prompt]), config.max_new_tokens, temperature=config.temperature,
                             top_k=config.top_k or None, top_p=config.top_p,
                             vocab_size=tokenizer.vocab_size)  # a padded vocabulary: draw only decodable ids
        print(tokenizer.decode(out[0].tolist()))
        print("---")


def eval_command(argv):
    from . import data, tokenfiles
    import numpy as np

    from .checkpoint import INDEX, read_index
    from .train import load, perplexity_of, warn_unknown
    config = cfg.parse_args(EvalConfig(), argv)
    source = config.init_from or config.out_dir
    model, tokenizer = load(source)
    if tokenizer is None:
        raise ValueError(f"eval: {source} has no tokenizer to read the text with")
    run = None
    if not config.data:
        if not (Path(source) / INDEX).exists():
            raise ValueError(f"eval: {source} is not a minillm run, so name the text to score with --data")
        run = read_index(source)
    name = config.data or run.get("config", {}).get("data")
    if not isinstance(name, str) or not name:
        raise ValueError(f"eval: {source}'s checkpoint.json does not say what data the run trained on; name the "
                         f"text to score with --data")
    if tokenfiles.is_token_folder(name):
        splits, their_tokenizer, _ = tokenfiles.load(name)
        if their_tokenizer.to_dict() != tokenizer.to_dict():
            raise ValueError(f"eval: the token files in {name} were written with another tokenizer than {source}'s")
        text = splits["val"]
    else:
        text = np.asarray(tokenizer.encode(data.corpus(name).val))
        warn_unknown(tokenizer, text, name)
    loss, ppl = perplexity_of(model, tokenizer, text, model.block_size, config.batch_size, config.eval_iters)
    where = f", step {run['step']}" if run else ""
    print(f"val loss {loss:.4f}, perplexity {ppl:.2f} ({name}{where})")


@dataclass
class CompressConfig:
    out_dir: str = option("out", "a trained GPT's checkpoint directory")
    report: bool = option(True, "print the table (size, tokens/s, perplexity) for every technique")
    fine_tune_steps: int = option(100, "fine-tuning steps after pruning and factorising", at_least=1)
    distill_steps: int = option(300, "steps to train the distilled student", at_least=1)


@dataclass
class ExportConfig:
    out_dir: str = option("out", "a trained model's checkpoint directory (ONNX: GPT only)")
    onnx: str = option("", "where to write the ONNX file (model.onnx when --hf is not given)")
    hf: str = option("", "write a Hugging Face folder here (GPT-2 or Llama: config.json, model.safetensors, "
                         "tokenizer)")


@dataclass
class PrepareConfig:
    data: str = option("python-docs", "a UTF-8 text file, a folder of .txt/.md files (one corpus), or python-docs")
    out: str = option("data", "folder for train.bin, val.bin, tokens.json and the tokenizer")
    tokenizer: str = option("char", "char, bpe (trained here), or a tokenizer folder/file (e.g. GPT-2's)")
    vocab_size: int = option(512, "BPE vocabulary size (bpe only)", at_least=257, at_most=1 << 20)
    val_fraction: float = option(0.1, "the corpus's last fraction that is validation", above=0, below=1)


def compress_command(argv):
    from .compress import compression_table
    from .compress.report import format_table
    config = cfg.parse_args(CompressConfig(), argv)
    rows, goals = compression_table(config.out_dir, config.fine_tune_steps, config.distill_steps,
                                    log=print if config.report else (lambda *a: None))
    if config.report:
        print(format_table(rows, goals))


def export_command(argv):
    from .export import export_onnx
    from .train import load
    config = cfg.parse_args(ExportConfig(), argv)
    model, tokenizer = load(config.out_dir)
    onnx = config.onnx or ("" if config.hf else "model.onnx")
    if onnx:
        check_onnx_target(onnx)
    if config.hf:
        if not hasattr(model, "save_pretrained"):
            raise ValueError(f"export: --hf writes GPT-2 or Llama folders; {config.out_dir} holds a "
                             f"{type(model).__name__}, which Hugging Face has no class for (try --onnx for a GPT)")
        ensure_output_folder(config.hf, "hf", HF_FOLDER_FILES, "tokenizer-minillm.json")
    if onnx:
        ensure_writable(Path(onnx).parent, "onnx")
        if config.hf and Path(onnx).resolve().parent == Path(config.hf).resolve():
            raise ValueError(f"export: --onnx={onnx} lies inside the --hf folder; write it beside it")
    if config.hf:
        print(f"wrote {model.save_pretrained(config.hf, tokenizer)}")
    if onnx:
        print(f"wrote {export_onnx(model, onnx)}")


def check_onnx_target(onnx):
    """An ONNX file name, and never a file that is something else: --onnx=checkpoint.json
    would replace the run's index."""
    path = Path(onnx)
    if onnx.endswith(("/", "\\")) or path.suffix != ".onnx":
        raise ValueError(f"export: --onnx={onnx} must name a .onnx file")
    if path.exists() and (not path.is_file() or not _is_onnx(path)):
        raise ValueError(f"export: --onnx={onnx} exists and is not an ONNX model; it would be overwritten: "
                         f"choose another name")


def _is_onnx(path):
    try:
        import onnx
        onnx.load(str(path), load_external_data=False)
        return True
    except Exception:  # any parse failure: not a model this command wrote
        return False


def prepare_command(argv):
    from . import data, tokenfiles
    config = cfg.parse_args(PrepareConfig(), argv)
    source = data.corpus_file(config.data) if config.data == "python-docs" else config.data
    meta = tokenfiles.prepare(source, config.out, config.tokenizer, config.vocab_size, config.val_fraction)
    print(f"wrote {config.out}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens "
          f"({meta['dtype']}, vocab {meta['vocab_size']}); train with --data={config.out}")


def demo_command(argv):
    from .demo import run
    run(argv)


def bench_command(argv):
    from .lessons import use_source_tree
    use_source_tree("benchmarks")
    from benchmarks.__main__ import main
    main(argv)


@dataclass
class BookConfig:
    out: str = option("site", "folder for the executed notebooks and their HTML pages")
    quick: bool = option(False, "run each lesson with its small --quick budget")
    lessons: str = option("", "comma-separated lesson numbers (default: all)")


def book_command(argv):
    from .book import build
    argv = ["--quick=true" if a == "--quick" else a for a in argv]
    config = cfg.parse_args(BookConfig(), argv)
    try:
        numbers = [int(n) for n in config.lessons.split(",")] if config.lessons else None
    except ValueError:
        raise cfg.ConfigError(f"--lessons: expected comma-separated lesson numbers, got {config.lessons!r}") from None
    build(config.out, config.quick, numbers)
    print(f"book: open {config.out}/index.html")


def finetune_command(argv):
    from .finetune import FinetuneConfig, finetune
    finetune(cfg.parse_args(FinetuneConfig(), argv))


def lesson_command(argv):
    from .lessons import run_lesson
    try:
        number = int(argv[0])
    except (IndexError, ValueError):
        raise cfg.ConfigError("usage: minillm lesson N [--quick]") from None
    sys.exit(run_lesson(number, argv[1:]))


def exercise_command(argv):
    from .exercise import command
    sys.exit(command(argv))


COMMANDS = {"train": (train_command, "TrainConfig"), "sample": (sample_command, SampleConfig),
            "eval": (eval_command, EvalConfig), "demo": (demo_command, None), "info": (info, None),
            "compress": (compress_command, CompressConfig), "export": (export_command, ExportConfig),
            "prepare": (prepare_command, PrepareConfig),
            "bench": (bench_command, None), "lesson": (lesson_command, None), "book": (book_command, BookConfig),
            "finetune": (finetune_command, "FinetuneConfig"), "exercise": (exercise_command, None)}


def _help(name):
    if name == "train":
        from .train import TrainConfig
        return f"minillm train --key=value …\n{cfg.describe(TrainConfig())}"
    if name == "finetune":
        from .finetune import FinetuneConfig
        return f"minillm finetune --key=value …\n{cfg.describe(FinetuneConfig())}"
    if name == "exercise":
        from . import exercise
        return exercise.__doc__
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
    fileio.created_folders.clear()
    previous = _stop_on_sigterm()
    try:
        COMMANDS[name][0](rest)
    except (cfg.ConfigError, ValueError, RuntimeError, OSError, MemoryError) as exc:
        # the one error boundary: a user's mistake is one line naming it, never a traceback
        fileio.remove_created_folders()
        print(f"minillm {name}: {describe_error(exc).removeprefix(f'{name}: ')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        fileio.remove_created_folders()
        print(f"minillm {name}: interrupted (checkpoints are written atomically: the last one is intact)",
              file=sys.stderr)
        return 130
    finally:
        _restore_sigterm(previous)
    return 0


def _stop_on_sigterm():
    """SIGTERM (``kill``, a job scheduler's time limit) stops a command as ^C does, so its
    partial files are removed too. Only the main thread may set a handler."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, interrupt)


def _restore_sigterm(previous):
    import signal
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def describe_error(exc):
    """One line for the user: an OSError names the file and the reason, as the shell does."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, MemoryError):
        return f"out of memory ({str(exc) or 'the model or data is too large for this machine'})"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
