"""The hostile suite: every command given what a careless or hostile user gives it — bad
options, damaged runs, damaged token folders, damaged Hugging Face folders, crafted
safetensors, a full disk, a diverging run.

Each case has a verdict. ``error``: the command exits non-zero, prints no traceback, and
its last line on stderr names the subject (the option, the file, the field). ``sane``: it
exits 0 and does the right thing. Either way no file the user had is changed: the whole
case folder is hashed before and after (an ``error`` case may not even add a file).
``python tests/test_hostile.py`` prints the cases by verdict."""
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest

TINY = ["--data=python-docs", "--model=gpt", "--batch_size=4", "--block_size=16", "--n_layer=1", "--n_head=2",
        "--n_embd=16", "--eval_interval=4", "--eval_iters=2", "--warmup_iters=2", "--progress=false",
        "--backend=numpy"]


@dataclass
class Case:
    name: str
    verdict: str                          # "error" or "sane"
    argv: Callable                        # world → the command line
    subject: str = ""                     # regex the error line must match
    damage: Callable = None               # world → None: spoils the copies before the command
    check: Callable = None                # (world, stdout) → None: a sane case's extra checks
    outputs: tuple = ()                   # folders (world attributes) a sane case may write into
    tags: tuple = field(default=())


def snapshot(root):
    """Every file's SHA-256 (a FIFO or a link to a folder by its kind), and every folder."""
    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder" if p.is_dir() else "other"
    return {str(p.relative_to(root)): digest(p) for p in sorted(Path(root).rglob("*"))}


def run_cli(argv):
    from minillm import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # `lesson` exits through sys.exit
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 — the verdict "traceback": reported, not raised
            pytest.fail(f"{argv[0]} let {type(exc).__name__} through: {exc}")
    return code, out.getvalue(), err.getvalue()


# ---- damage: each takes the world and spoils one thing --------------------------------------
def edit_json(path, change):
    data = json.loads(Path(path).read_text())
    change(data)  # mutates in place
    Path(path).write_text(json.dumps(data))


def edit_index(world, change):
    edit_json(world.run / "checkpoint.json", change)


def weights_of(folder):
    return folder / json.loads((folder / "checkpoint.json").read_text())["files"]["model"]


def zero_middle(path, count=64):
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + count] = bytes(count)
    path.write_bytes(bytes(raw))


def edit_safetensors_header(path, change):
    """Rewrite the JSON header of a safetensors file, keeping its data bytes."""
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    new = change(header)
    text = new if isinstance(new, bytes) else json.dumps(header if new is None else new).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size:])


def first_tensor(header):
    return next(k for k in header if k != "__metadata__")


def second_tensor(header):
    return [k for k in header if k != "__metadata__"][1]


def set_offsets(header, name, offsets):
    header[name]["data_offsets"] = offsets


def overlap(header):
    a, b = first_tensor(header), second_tensor(header)
    start = header[a]["data_offsets"][0]
    size = header[b]["data_offsets"][1] - header[b]["data_offsets"][0]
    header[b]["data_offsets"] = [start, start + size]


def duplicate_key(header):
    name = first_tensor(header)
    text = json.dumps(header)
    entry = json.dumps({name: header[name]})[1:-1]
    return ("{" + entry + ", " + text[1:]).encode()


def huge_header_size(path):
    raw = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 40 << 30) + raw[8:])


def hostile_pattern(world):
    """The token folder's tokenizer, a BPE whose pattern backtracks catastrophically."""
    from minillm.tokenizers import BPETokenizer
    data = BPETokenizer([]).to_dict()
    data["pattern"] = r"(\w+\s?)*$"
    (world.tokens / "tokenizer-minillm.json").write_text(json.dumps(data))
    edit_json(world.tokens / "tokens.json", lambda m: m.update(vocab_size=256))


def limit_file_size_and_resume(world):
    """A full disk, for real: the process may write no file larger than 2 KB (RLIMIT_FSIZE,
    with SIGXFSZ ignored, so a write fails with EFBIG as it would with ENOSPC)."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); from minillm import cli; "
            "sys.exit(cli.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "train", *TINY, f"--out_dir={world.run}", "--max_iters=8",
                           "--resume=true"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    return done


# ---- the cases --------------------------------------------------------------------------------
def train(*extra, out="fresh"):
    return lambda w: ["train", *TINY, f"--out_dir={getattr(w, out, None) or w.root / out}", "--max_iters=4", *extra]


def sample(*extra, source="run"):
    return lambda w: ["sample", f"--init_from={getattr(w, source)}", "--max_new_tokens=8", *extra]


def evaluate(*extra, source="run"):
    return lambda w: ["eval", f"--init_from={getattr(w, source)}", "--eval_iters=1", "--batch_size=2", *extra]


def loads_again(world, _):
    from minillm.train import load
    model, tokenizer = load(world.run)
    assert model.trained_steps == 4 and tokenizer is not None
    return True


BAD_OPTIONS = [
    Case("lr-inf", "error", train("--lr=inf"), r"--lr: expected a finite number"),
    Case("lr-nan", "error", train("--lr=nan"), r"--lr: expected a finite number"),
    Case("lr-negative", "error", train("--lr=-1"), r"--lr: must be >= 0"),
    Case("lr-text", "error", train("--lr=fast"), r"--lr: expected float, got 'fast'"),
    Case("weight-decay-nan", "error", train("--weight_decay=nan"), r"--weight_decay: expected a finite number"),
    Case("grad-clip-negative", "error", train("--grad_clip=-1"), r"--grad_clip: must be >= 0"),
    Case("n-head-zero", "error", train("--n_head=0"), r"--n_head: must be > 0; got 0"),
    Case("n-embd-indivisible", "error", train("--n_embd=15"), r"n_embd 15 must be divisible by n_head 2"),
    Case("max-iters-zero", "error", lambda w: ["train", *TINY, f"--out_dir={w.root / 'x'}", "--max_iters=0"],
         r"--max_iters: must be > 0"),
    Case("batch-size-negative", "error", train("--batch_size=-1"), r"--batch_size: must be > 0"),
    Case("dropout-above-one", "error", train("--dropout=1.5"), r"--dropout: must be < 1"),
    Case("model-unknown", "error", train("--model=rnn"), r"model must be one of gpt, llama, lstm, seed001"),
    Case("tokenizer-unknown", "error", train("--tokenizer=wordpiece"), r"--tokenizer: expected one of char, bpe"),
    Case("bpe-vocab-too-small", "error", train("--tokenizer=bpe", "--vocab_size=3"), r"--vocab_size: must be >= 257"),
    Case("unknown-option", "error", train("--learning_rate=1"), r"unknown config key learning_rate"),
    Case("bare-argument", "error", train("fast"), r"expected --key=value, got 'fast'"),
    Case("eval-iters-zero", "error", train("--eval_iters=0"), r"--eval_iters: must be > 0"),
    Case("eval-interval-zero", "error", train("--eval_interval=0"), r"--eval_interval: must be > 0"),
    Case("n-kv-head-not-dividing", "error", train("--model=llama", "--n_kv_head=3"), r"n_kv_head 3 must divide"),
    Case("seed-negative", "error", train("--seed=-1"), r"--seed: must be >= 0"),
    Case("block-size-longer-than-corpus", "error",
         lambda w: ["train", *TINY[1:], f"--data={w.small_text}", "--block_size=4096", f"--out_dir={w.root / 'x'}"],
         r"too few for block_size 4096"),
    Case("config-file-missing", "error", train("--config=nowhere.json"), r"--config: cannot read nowhere.json"),
    Case("config-file-a-list", "error", lambda w: train(f"--config={w.list_json}")(w), r"--config: .* JSON object"),
    Case("config-file-nan", "error", lambda w: train(f"--config={w.nan_json}")(w), r"--lr: expected a finite number"),
    Case("backend-unknown", "error", train("--backend=tpu"), r"unknown backend 'tpu'"),
    Case("unknown-command", "error", lambda w: ["fly"], r"unknown command 'fly'"),
    Case("lesson-not-a-number", "error", lambda w: ["lesson", "abc"], r"usage: minillm lesson N"),
]

DATA = [
    Case("data-missing", "error", train("--data=nowhere.txt"), r"nowhere.txt"),
    Case("data-not-utf8", "error", lambda w: train(f"--data={w.binary}")(w), r"not UTF-8|codec can't decode|binary"),
    Case("data-empty", "error", lambda w: train(f"--data={w.empty}")(w), r"empty|too few|no text"),
    Case("data-folder-without-tokens", "error", lambda w: train(f"--data={w.corpus_dir}")(w),
         r"folder without token files"),
    Case("prepare-out-holds-user-files", "error",
         lambda w: ["prepare", f"--data={w.small_text}", f"--out={w.hf}"], r"--out=.* already holds files"),
    Case("prepare-into-its-corpus-folder", "error",
         lambda w: ["prepare", f"--data={w.corpus_dir}", f"--out={w.corpus_dir}"], r"--out=.* already holds files"),
    Case("prepare-val-fraction-zero", "error",
         lambda w: ["prepare", f"--data={w.small_text}", f"--out={w.root / 'p'}", "--val_fraction=0"],
         r"--val_fraction: must be > 0"),
    Case("prepare-tokenizer-missing", "error",
         lambda w: ["prepare", f"--data={w.small_text}", f"--out={w.root / 'p'}", "--tokenizer=nowhere"],
         r"tokenizer 'nowhere' is not char, bpe"),
    Case("prepare-not-utf8", "error", lambda w: ["prepare", f"--data={w.binary}", f"--out={w.root / 'p'}"],
         r"is not UTF-8 text"),
    Case("prepare-again-into-its-own-folder", "sane",
         lambda w: ["prepare", f"--data={w.small_text}", f"--out={w.tokens}"], outputs=("tokens",)),
]

OUTPUT_FOLDERS = [
    Case("out-dir-empty-string", "error", lambda w: ["train", *TINY, "--out_dir="], r"out_dir is empty"),
    Case("out-dir-is-a-file", "error", lambda w: train(out="small_text")(w), r"--out_dir=.* is a file"),
    Case("out-dir-below-a-file", "error", lambda w: ["train", *TINY, f"--out_dir={w.small_text}/run"],
         r"--out_dir=.* is not writable"),
    Case("out-dir-in-proc", "error", lambda w: ["train", *TINY, "--out_dir=/proc/minillm-run"],
         r"--out_dir=/proc/minillm-run is not writable"),
    Case("out-dir-holds-hf-shards", "error", lambda w: train(out="shards")(w),
         r"already holds files that are not a minillm run \(model-00001-of-00002.safetensors"),
    Case("out-dir-is-the-current-folder", "error", lambda w: ["train", *TINY, "--out_dir=."],
         r"--out_dir=\. already holds files"),
    Case("run-keeps-user-files-beside-it", "sane", lambda w: train("--resume=true", "--max_iters=8", out="run")(w),
         damage=lambda w: [(w.run / "model-00001-of-00002.safetensors").write_bytes(b"user's shard"),
                           (w.run / "notes.txt").write_text("mine")],
         check=lambda w, _: [(w.run / n).exists() for n in ("model-00001-of-00002.safetensors", "notes.txt")] == [
             True, True] and len(list(w.run.glob("model-0*.safetensors"))) == 2, outputs=("run",)),
    Case("index-names-a-user-file", "sane", lambda w: train("--resume=true", "--max_iters=8", out="run")(w),
         damage=lambda w: [(w.run / "notes.txt").write_text("mine"),
                           edit_index(w, lambda m: m["files"].update(extra="notes.txt")),
                           edit_index(w, lambda m: m["sha256"].update(extra=hashlib.sha256(b"mine").hexdigest()))],
         check=lambda w, _: (w.run / "notes.txt").read_text() == "mine", outputs=("run",)),
    Case("fresh-run-over-a-run", "sane", lambda w: train(out="run")(w), outputs=("run",),
         check=lambda w, out: "replaces it" in out),
    Case("resume-without-a-run", "error", lambda w: train("--resume=true", out="empty_dir")(w),
         r"cannot resume: no checkpoint.json"),
    Case("resume-other-architecture", "error", lambda w: ["train", *TINY[:5], "--n_layer=2", *TINY[6:],
                                                           f"--out_dir={w.run}", "--max_iters=8", "--resume=true"],
         r"cannot resume: the checkpoint has n_layer=1, this run n_layer=2"),
]

DAMAGED_RUNS = [
    Case("index-not-json", "error", sample(), r"checkpoint.json is corrupt",
         damage=lambda w: (w.run / "checkpoint.json").write_text("{not json")),
    Case("index-a-list", "error", sample(), r"checkpoint.json is corrupt",
         damage=lambda w: (w.run / "checkpoint.json").write_text("[1, 2]")),
    Case("index-names-parent-file", "error", sample(), r"expected a plain file name",
         damage=lambda w: edit_index(w, lambda m: m["files"].update(model="../other/model.safetensors"))),
    Case("index-names-absolute-file", "error", sample(), r"expected a plain file name",
         damage=lambda w: edit_index(w, lambda m: m["files"].update(model="/etc/passwd"))),
    Case("index-step-negative", "error", sample(), r"step -1; expected an integer >= 0",
         damage=lambda w: edit_index(w, lambda m: m.update(step=-1))),
    Case("weights-missing", "error", sample(), r"model-\d+\.safetensors is missing",
         damage=lambda w: weights_of(w.run).unlink()),
    Case("weights-zeroed-bytes", "error", evaluate(), r"is corrupt \(its SHA-256 differs",
         damage=lambda w: zero_middle(weights_of(w.run))),
    Case("weights-truncated", "error", sample(), r"is corrupt",
         damage=lambda w: weights_of(w.run).write_bytes(weights_of(w.run).read_bytes()[:100])),
    Case("weights-swapped-for-another-run", "error", sample(), r"SHA-256 differs",
         damage=lambda w: shutil.copy(weights_of(w.lstm), weights_of(w.run))),
    Case("config-n-head-edited", "error", sample(), r"checkpoint.json says n_head=4 but .* saved with n_head=2",
         damage=lambda w: edit_index(w, lambda m: m["config"].update(n_head=4))),
    Case("config-n-embd-edited", "error", sample(), r"says n_embd=32 but",
         damage=lambda w: edit_index(w, lambda m: m["config"].update(n_embd=32))),
    Case("config-n-head-zero", "error", sample(), r"n_head",
         damage=lambda w: edit_index(w, lambda m: m["config"].update(n_head=0))),
    Case("tokenizer-deleted", "error", sample(), r"tokenizer.json is missing",
         damage=lambda w: (w.run / "tokenizer.json").unlink()),
    Case("tokenizer-damaged", "error", sample(), r"tokenizer.json is corrupt",
         damage=lambda w: (w.run / "tokenizer.json").write_text('{"kind": "wordpiece"}')),
    Case("optimizer-state-damaged", "error", train("--resume=true", "--max_iters=8", out="run"),
         r"checkpoint.json is corrupt: cannot restore",
         damage=lambda w: edit_index(w, lambda m: m.update(optimizer={"type": "AdamW"}))),
    Case("diverging-resume", "error", train("--resume=true", "--max_iters=40", "--lr=1e3", "--grad_clip=0",
                                            "--eval_interval=100", out="run"),
         r"diverged at step \d+: .*the checkpoint of step 4 in .* is kept\. Try: lower --lr .*--grad_clip=1"),
    Case("sample-run", "sane", sample(), check=loads_again),
]

COMMAND_OPTIONS = [
    Case("sample-num-samples-negative", "error", sample("--num_samples=-1"), r"--num_samples: must be >= 1"),
    Case("sample-num-samples-zero", "error", sample("--num_samples=0"), r"--num_samples: must be >= 1"),
    Case("sample-max-new-tokens-zero", "error", sample("--max_new_tokens=0"), r"--max_new_tokens: must be >= 1"),
    Case("sample-temperature-negative", "error", sample("--temperature=-1"), r"--temperature: must be >= 0"),
    Case("sample-temperature-inf", "error", sample("--temperature=inf"), r"--temperature: expected a finite"),
    Case("sample-top-p-zero", "error", sample("--top_p=0"), r"--top_p: must be > 0"),
    Case("sample-top-p-above-one", "error", sample("--top_p=1.5"), r"--top_p: must be <= 1"),
    Case("sample-top-k-negative", "error", sample("--top_k=-3"), r"--top_k: must be >= 0"),
    Case("sample-unseen-characters", "error", sample("--start=日本"), r"never saw in training: '日', '本'"),
    Case("sample-quantize-int4", "error", sample("--quantize=int4"),
         r"--quantize: expected one of none, int8; got 'int4'"),
    Case("sample-quantize-int8", "sane", sample("--quantize=int8"), check=lambda w, out: len(out) > 8),
    Case("hf-sample-quantize-int8", "sane", sample("--quantize=int8", source="hf"), check=lambda w, out: len(out) > 8),
    Case("sample-from-nowhere", "error", lambda w: ["sample", f"--init_from={w.root / 'nowhere'}"],
         r"no checkpoint.json in"),
    Case("sample-from-a-file", "error", lambda w: ["sample", f"--init_from={w.small_text}"], r"no checkpoint.json"),
    Case("eval-iters-zero", "error", evaluate("--eval_iters=0"), r"--eval_iters: must be >= 1"),
    Case("eval-batch-zero", "error", evaluate("--batch_size=0"), r"--batch_size: must be >= 1"),
    Case("eval-data-missing", "error", evaluate("--data=nowhere.txt"), r"nowhere.txt"),
    Case("eval-hf-folder-needs-data", "error", evaluate(source="hf"), r"is not a minillm run, so name the text"),
    Case("eval-run", "sane", evaluate(), check=lambda w, out: re.search(r"val loss \d+\.\d+", out) is not None),
    Case("export-hf-of-lstm", "error", lambda w: ["export", f"--out_dir={w.lstm}", f"--hf={w.root / 'h'}"],
         r"--hf writes GPT-2 or Llama folders; .* holds a LSTMLM"),
    Case("export-hf-into-user-folder", "error", lambda w: ["export", f"--out_dir={w.run}", f"--hf={w.corpus_dir}"],
         r"--hf=.* already holds files minillm did not write"),
    Case("export-onnx-below-a-file", "error", lambda w: ["export", f"--out_dir={w.run}",
                                                          f"--onnx={w.small_text}/model.onnx"],
         r"--onnx=.* is not writable|is a file"),
    Case("finetune-lora-rank-negative", "error", lambda w: ["finetune", f"--init_from={w.hf}", "--lora_rank=-2"],
         r"--lora_rank: must be >= 0; got -2"),
    Case("finetune-over-its-input", "error", lambda w: ["finetune", f"--init_from={w.hf}", f"--out_dir={w.hf}",
                                                         "--lora_rank=0"], r"would overwrite the one it starts from"),
    Case("finetune-into-user-folder", "error", lambda w: ["finetune", f"--init_from={w.hf}",
                                                           f"--out_dir={w.corpus_dir}", "--lora_rank=0"],
         r"--out_dir=.* already holds files minillm did not write"),
    Case("finetune-lstm", "error", lambda w: ["finetune", f"--init_from={w.lstm}", f"--out_dir={w.root / 'f'}",
                                               "--lora_rank=0", "--max_iters=1"], r"holds a LSTMLM"),
    Case("compress-steps-zero", "error", lambda w: ["compress", f"--out_dir={w.run}", "--fine_tune_steps=0"],
         r"--fine_tune_steps: must be >= 1"),
]

TOKEN_FOLDERS = [
    Case("tokens-meta-not-json", "error", train(), r"tokens.json is corrupt",
         damage=lambda w: (w.tokens / "tokens.json").write_text("{oops")),
    Case("tokens-meta-a-list", "error", train(), r"tokens.json has format",
         damage=lambda w: (w.tokens / "tokens.json").write_text("[]")),
    Case("tokens-dtype-float", "error", train(), r"dtype 'float64', expected uint16 or uint32",
         damage=lambda w: edit_json(w.tokens / "tokens.json", lambda m: m.update(dtype="float64"))),
    Case("tokens-count-negative", "error", train(), r"train_tokens -5; expected a non-negative integer",
         damage=lambda w: edit_json(w.tokens / "tokens.json", lambda m: m.update(train_tokens=-5))),
    Case("tokens-tokenizer-outside", "error", train(), r"expected a plain file name",
         damage=lambda w: edit_json(w.tokens / "tokens.json", lambda m: m.update(tokenizer="../run/tokenizer.json"))),
    Case("tokens-tokenizer-missing", "error", train(), r"tokenizer-minillm.json",
         damage=lambda w: (w.tokens / "tokenizer-minillm.json").unlink()),
    Case("tokens-train-truncated", "error", train(), r"train.bin has \d+ bytes, tokens.json says",
         damage=lambda w: (w.tokens / "train.bin").write_bytes((w.tokens / "train.bin").read_bytes()[:-3])),
    Case("tokens-ids-out-of-range", "error", train(), r"holds id 65535, outside the vocabulary",
         damage=lambda w: (w.tokens / "val.bin").write_bytes(b"\xff\xff" * ((w.tokens / "val.bin").stat().st_size // 2))),
    Case("tokens-hostile-pattern", "error", train(), r"pattern",
         damage=hostile_pattern),
]
for case in TOKEN_FOLDERS:
    case.argv = (lambda w: ["train", *TINY[1:], f"--data={w.tokens}", f"--out_dir={w.root / 'x'}", "--max_iters=2"])

HF_FOLDERS = [
    Case("hf-config-missing-field", "error", sample(source="hf"), r"config.json.*n_embd",
         damage=lambda w: edit_json(w.hf / "config.json", lambda c: c.pop("n_embd"))),
    Case("hf-config-not-json", "error", sample(source="hf"), r"config.json",
         damage=lambda w: (w.hf / "config.json").write_text("{oops")),
    Case("hf-config-n-head-zero", "error", sample(source="hf"), r"n_head",
         damage=lambda w: edit_json(w.hf / "config.json", lambda c: c.update(n_head=0))),
    Case("hf-config-wider-model", "error", sample(source="hf"), r"shape|n_embd",
         damage=lambda w: edit_json(w.hf / "config.json", lambda c: c.update(n_embd=32))),
    Case("hf-only-pickle", "error", sample(source="hf"), r"pickle",
         damage=lambda w: (w.hf / "model.safetensors").rename(w.hf / "pytorch_model.bin")),
    Case("hf-index-shard-outside", "error", sample(source="hf"), r"\.\./x\.safetensors",
         damage=lambda w: (w.hf / "model.safetensors.index.json").write_text(
             json.dumps({"weight_map": {"wte.weight": "../x.safetensors"}}))),
    Case("hf-negative-offsets", "error", sample(source="hf"), r"model.safetensors.*offsets|offsets.*model",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors",
                                                  lambda h: set_offsets(h, first_tensor(h), [-64, -64 + (
                                                      h[first_tensor(h)]["data_offsets"][1] -
                                                      h[first_tensor(h)]["data_offsets"][0])]))),
    Case("hf-offsets-past-the-end", "error", sample(source="hf"), r"model.safetensors",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors",
                                                  lambda h: set_offsets(h, first_tensor(h), [0, 10 ** 12]))),
    Case("hf-overlapping-tensors", "error", sample(source="hf"), r"overlap",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors", overlap)),
    Case("hf-duplicate-keys", "error", sample(source="hf"), r"duplicate|twice",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors", duplicate_key)),
    Case("hf-header-size-40-gib", "error", sample(source="hf"), r"model.safetensors",
         damage=lambda w: huge_header_size(w.hf / "model.safetensors")),
    Case("hf-unknown-dtype", "error", sample(source="hf"), r"dtype",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors",
                                                  lambda h: h[first_tensor(h)].update(dtype="Q4"))),
    Case("hf-entry-not-an-object", "error", sample(source="hf"), r"model.safetensors",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors",
                                                  lambda h: h.update({first_tensor(h): "weights"}))),
    Case("hf-header-a-list", "error", sample(source="hf"), r"model.safetensors",
         damage=lambda w: edit_safetensors_header(w.hf / "model.safetensors", lambda h: b"[1, 2, 3]")),
    Case("hf-sample", "sane", sample(source="hf"), check=lambda w, out: len(out) > 8),
    Case("hf-padded-vocabulary", "sane", sample("--temperature=1.5", "--max_new_tokens=64", source="padded"),
         check=lambda w, out: out.count("---") == 1),
]


def fifo(path):
    Path(path).unlink(missing_ok=True)
    os.mkfifo(path)


def same_size_other_alphabet(world):
    """The token folder rewritten with a character tokenizer of the run's size whose
    characters are others (CJK): the ids fit the run's weights but mean other text."""
    from minillm.tokenizers import CharTokenizer
    from minillm.train import load
    _, theirs = load(world.run)
    ours = CharTokenizer([chr(0x4E00 + k) for k in range(theirs.vocab_size - 1)])
    ours.save(world.tokens / "tokenizer-minillm.json")
    for split in ("train", "val"):
        ids = np.fromfile(world.tokens / f"{split}.bin", np.uint16) % ours.vocab_size
        ids.astype(np.uint16).tofile(world.tokens / f"{split}.bin")
    edit_json(world.tokens / "tokens.json", lambda m: m.update(vocab_size=ours.vocab_size))


def export_onnx_first(world):
    code, _, err = run_cli(["export", f"--out_dir={world.run}", f"--onnx={world.root / 'model.onnx'}"])
    assert code == 0, err


AUDIT = [  # found by a second hostile reader after the suite above passed
    Case("export-onnx-over-the-index", "error", lambda w: ["export", f"--out_dir={w.run}",
                                                            f"--onnx={w.run / 'checkpoint.json'}"],
         r"--onnx=.*checkpoint.json must name a .onnx file"),
    Case("export-onnx-over-a-user-file", "error", lambda w: ["export", f"--out_dir={w.run}",
                                                              f"--onnx={w.root / 'notes.onnx'}"],
         r"exists and is not an ONNX model", damage=lambda w: (w.root / "notes.onnx").write_text("my notes")),
    Case("export-onnx-into-the-hf-folder", "error", lambda w: ["export", f"--out_dir={w.run}",
                                                                f"--hf={w.root / 'h'}", f"--onnx={w.root / 'h/m.onnx'}"],
         r"lies inside the --hf folder"),
    Case("export-onnx-a-folder-name", "error", lambda w: ["export", f"--out_dir={w.run}", f"--onnx={w.root}/new/"],
         r"must name a .onnx file"),
    Case("export-onnx-again", "sane", lambda w: ["export", f"--out_dir={w.run}", f"--onnx={w.root / 'model.onnx'}"],
         damage=export_onnx_first, outputs=("root",), check=lambda w, out: "wrote" in out),
    Case("out-dir-holds-user-metrics", "error", lambda w: train(out="empty_dir")(w),
         r"not a minillm run \(loss.png, metrics.json\)",
         damage=lambda w: [(w.empty_dir / "metrics.json").write_text("{}"),
                           (w.empty_dir / "loss.png").write_bytes(b"my plot")]),
    Case("temporary-file-is-a-symlink", "error", train("--resume=true", "--max_iters=8", out="run"),
         r"checkpoint.json.tmp is a symbolic link",
         damage=lambda w: [(w.root / "victim.txt").write_text("mine"),
                           (w.run / "checkpoint.json.tmp").symlink_to(w.root / "victim.txt")]),
    Case("index-without-sha256", "error", evaluate(), r"checkpoint.json is corrupt: it has no sha256",
         damage=lambda w: [edit_index(w, lambda m: m.pop("sha256")), zero_middle(weights_of(w.run), 4000)]),
    Case("index-without-sha256-or-format", "error", evaluate(), r"lost the sha256 its files were saved with",
         damage=lambda w: [edit_index(w, lambda m: [m.pop("sha256"), m.pop("format")]),
                           zero_middle(weights_of(w.run), 4000)]),
    Case("index-sha256-a-number", "error", sample(), r"sha256 must give a SHA-256",
         damage=lambda w: edit_index(w, lambda m: m.update(sha256=5))),
    Case("index-config-without-data", "error", evaluate(), r"does not say what data the run trained on",
         damage=lambda w: edit_index(w, lambda m: m["config"].pop("data"))),
    Case("optimizer-lr-text", "error", train("--resume=true", "--max_iters=8", out="run"), r"lr",
         damage=lambda w: edit_index(w, lambda m: m["optimizer"].update(lr="fast"))),
    Case("optimizer-eps-negative", "error", train("--resume=true", "--max_iters=8", out="run"), r"eps",
         damage=lambda w: edit_index(w, lambda m: m["optimizer"]["defaults"].update(eps=-1e9))),
    Case("optimizer-betas-a-number", "error", train("--resume=true", "--max_iters=8", out="run"), r"betas",
         damage=lambda w: edit_index(w, lambda m: m["optimizer"]["defaults"].update(betas=5))),
    Case("index-a-fifo", "error", sample(), r"checkpoint.json is missing or not a regular file|is corrupt",
         damage=lambda w: fifo(w.run / "checkpoint.json")),
    Case("tokens-meta-a-fifo", "error", lambda w: ["train", *TINY[1:], f"--data={w.tokens}",
                                                    f"--out_dir={w.root / 'x'}"], r"tokens.json",
         damage=lambda w: fifo(w.tokens / "tokens.json")),
    Case("config-file-a-fifo", "error", lambda w: train(f"--config={w.root / 'c.json'}")(w), r"--config",
         damage=lambda w: fifo(w.root / "c.json")),
    Case("config-file-null-out-dir", "error", lambda w: train(f"--config={w.root / 'c.json'}")(w),
         r"--out_dir: expected str, got None", damage=lambda w: (w.root / "c.json").write_text('{"out_dir": null}')),
    Case("config-file-fractional-steps", "error", lambda w: train(f"--config={w.root / 'c.json'}")(w),
         r"--max_iters: expected int, got 4.7", damage=lambda w: (w.root / "c.json").write_text('{"max_iters": 4.7}')),
    Case("a-billion-layers", "error", train("--n_layer=1000000000"), r"more than this machine's .* GiB of memory"),
    Case("hf-config-n-layer-huge", "error", sample(source="hf"), r"describes a model with at least",
         damage=lambda w: edit_json(w.hf / "config.json", lambda c: c.update(n_layer=10 ** 8))),
    Case("hf-config-vocab-huge", "error", sample(source="hf"), r"describes a model with at least",
         damage=lambda w: edit_json(w.hf / "config.json", lambda c: c.update(vocab_size=10 ** 12))),
    Case("resume-on-another-alphabet", "error",
         lambda w: ["train", *TINY[1:], f"--data={w.tokens}", f"--out_dir={w.run}", "--max_iters=8", "--resume=true"],
         r"written with another tokenizer than the run's", damage=same_size_other_alphabet),
    Case("eval-on-unknown-characters", "sane", evaluate("--data=cjk.txt"),
         damage=lambda w: (w.root / "cjk.txt").write_text("".join(chr(0x4E00 + k % 500) for k in range(3000))),
         check=lambda w, out: "warning: 100% of the characters of cjk.txt are unknown" in out),
    Case("bpe-vocab-beyond-the-corpus", "sane", lambda w: train("--tokenizer=bpe", "--vocab_size=100000",
                                                                 f"--data={w.small_text}", "--block_size=8")(w),
         outputs=("root",), check=lambda w, out: re.search(r"note: the corpus has pairs for only \d+ ids", out) is not None),
    Case("resume-with-nothing-to-train", "error", train("--resume=true", "--max_iters=2", out="run"),
         r"is at step 4 and this run ends at step 2 .*nothing to train"),
    Case("sample-temperature-denormal", "sane", sample("--temperature=1e-310"), check=lambda w, out: len(out) > 8),
    Case("info-with-an-option", "error", lambda w: ["info", "--bogus=1"], r"info takes no options"),
    Case("lesson-superscript-number", "error", lambda w: ["lesson", "²"], r"usage: minillm lesson N"),
    Case("book-lesson-that-does-not-exist", "error", lambda w: ["book", "--lessons=99", f"--out={w.root / 's'}"],
         r"--lessons names no lesson 99"),
    Case("book-lessons-not-numbers", "error", lambda w: ["book", "--lessons=a", f"--out={w.root / 's'}"],
         r"--lessons: expected comma-separated lesson numbers"),
    Case("book-into-a-folder-of-ones-own", "error", lambda w: ["book", "--lessons=0", f"--out={w.root}"],
         r"--out=.* already holds files minillm did not write"),
]

CASES = BAD_OPTIONS + DATA + OUTPUT_FOLDERS + DAMAGED_RUNS + COMMAND_OPTIONS + TOKEN_FOLDERS + HF_FOLDERS + AUDIT


# ---- the world every case starts from: built once, copied per case ----------------------------
def build_world(root):
    from minillm import cli
    from minillm.models import GPT, GPTConfig
    from minillm.train import load
    root.mkdir(parents=True, exist_ok=True)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet, contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["train", *TINY, f"--out_dir={root / 'run'}", "--max_iters=8", "--stop_after=4"]) == 0
        assert cli.main(["train", *TINY, "--model=lstm", f"--out_dir={root / 'lstm'}", "--max_iters=2"]) == 0
        (root / "corpus").mkdir()
        text = (Path(__file__).parent.parent / "README.md").read_text()
        (root / "corpus" / "readme.txt").write_text(text)
        assert cli.main(["prepare", f"--data={root / 'corpus'}", f"--out={root / 'tokens'}"]) == 0
        assert cli.main(["export", f"--out_dir={root / 'run'}", f"--hf={root / 'hf'}"]) == 0
    model, tokenizer = load(root / "run")
    padded = GPT(GPTConfig(vocab_size=tokenizer.vocab_size + 64, block_size=16, n_layer=1, n_head=2, n_embd=16))
    padded.save_pretrained(root / "padded", tokenizer)
    (root / "shards").mkdir()
    (root / "shards" / "model-00001-of-00002.safetensors").write_bytes(b"a user's shard")
    (root / "empty_dir").mkdir()
    (root / "small.txt").write_text("def f():\n    return 1\n" * 100)
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "empty.txt").write_text("")
    (root / "list.json").write_text("[1, 2]")
    (root / "nan.json").write_text('{"lr": NaN}')
    return root


def world_in(root):
    return SimpleNamespace(root=root, run=root / "run", lstm=root / "lstm", tokens=root / "tokens", hf=root / "hf",
                           padded=root / "padded", shards=root / "shards", corpus_dir=root / "corpus",
                           empty_dir=root / "empty_dir", small_text=root / "small.txt", binary=root / "binary.txt",
                           empty=root / "empty.txt", list_json=root / "list.json", nan_json=root / "nan.json")


@pytest.fixture(scope="module")
def base_world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("hostile") / "world")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case, base_world, tmp_path, monkeypatch):
    root = tmp_path / "world"
    shutil.copytree(base_world, root)
    world = world_in(root)
    if case.damage:
        case.damage(world)
    monkeypatch.chdir(root)
    argv = case.argv(world)
    before = snapshot(root)
    code, out, err = run_cli(argv)
    after = snapshot(root)
    assert "Traceback" not in err, err
    if case.verdict == "error":
        lines = err.strip().splitlines()
        assert code not in (0, None), f"{argv[0]} exited 0 on hostile input; stdout: {out[-500:]}"
        assert lines and re.match(rf"minillm( {argv[0]})?: ", lines[-1]), err
        assert re.search(case.subject, lines[-1]), f"the error line does not name {case.subject!r}: {lines[-1]}"
        assert after == before, f"a failed command changed files: {sorted(set(after.items()) ^ set(before.items()))}"
    else:
        assert code == 0, err
        writable = tuple(str(getattr(world, name).relative_to(root)) for name in case.outputs)
        changed = {k for k in before if after.get(k) != before[k] and not k.startswith(writable)}
        gone = {k for k in before if k not in after and k.startswith(writable) and not _own(k)}
        assert not changed and not gone, f"user files changed: {sorted(changed | gone)}"
        if case.check:
            assert case.check(world, out) is True, f"{case.name}: its check did not hold"


def _own(relative):
    """Files a run replaces on a save (its own weights), which a sane case may remove."""
    from minillm.checkpoint import OWN_WEIGHTS
    return OWN_WEIGHTS.fullmatch(Path(relative).name) is not None


def test_full_disk_loses_nothing(base_world, tmp_path):
    """A checkpoint that cannot be written: a clear error, no partial file, the old one intact."""
    root = tmp_path / "world"
    shutil.copytree(base_world, root)
    world = world_in(root)
    before = snapshot(world.run)
    done = limit_file_size_and_resume(world)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"minillm train: checkpoint: cannot write .*model-0000008\.safetensors: .*File too large",
                     done.stderr.strip().splitlines()[-1]), done.stderr
    assert snapshot(world.run) == before
    assert not list(world.run.glob("*.tmp"))


def test_divergence_keeps_the_last_good_checkpoint(base_world, tmp_path):
    """The issue's recipe for losing a run (resume at a huge lr without clipping): training
    stops, and the checkpoint on disk is the last good one, which still loads and evaluates."""
    root = tmp_path / "world"
    shutil.copytree(base_world, root)
    world = world_in(root)
    code, _, err = run_cli(["train", *TINY, f"--out_dir={world.run}", "--max_iters=40", "--resume=true",
                            "--lr=1e3", "--grad_clip=0", "--eval_interval=100"])
    assert code == 2 and "diverged at step" in err
    from minillm.train import load
    model, tokenizer = load(world.run)
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())
    code, out, _ = run_cli(["eval", f"--init_from={world.run}", "--eval_iters=1", "--batch_size=2"])
    assert code == 0 and "step 4" in out and "nan" not in out



def test_an_interrupted_save_leaves_no_orphans(base_world, tmp_path, monkeypatch):
    """^C or SIGTERM after the new weights are written but before the index names them: the
    new files go (this save wrote them and nothing names them), the old checkpoint stays."""
    from minillm import checkpoint
    from minillm.train import TrainConfig, Trainer
    root = tmp_path / "world"
    shutil.copytree(base_world, root)
    run = world_in(root).run
    before = snapshot(run)
    trainer = Trainer(TrainConfig(data="python-docs", batch_size=4, block_size=16, n_layer=1, n_head=2, n_embd=16,
                                  eval_interval=4, eval_iters=2, warmup_iters=2, max_iters=8, progress=False,
                                  backend="numpy", out_dir=str(run), resume=True), log=lambda *a: None)
    trainer.train_step()

    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint, "sha256_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert snapshot(run) == before


def test_sigterm_stops_training_like_ctrl_c(base_world, tmp_path):
    """A job scheduler's SIGTERM: exit 130 with one line, no traceback, no partial file."""
    import signal
    import time
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "minillm", "train", *TINY, f"--out_dir={out}",
                                "--max_iters=100000", "--eval_interval=1"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.json").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the loop, saving every step
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("minillm train: interrupted")
    assert not list(out.glob("*.tmp"))
    files = json.loads((out / "checkpoint.json").read_text())["files"]
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted([files["model"], files["optimizer"]])
    from minillm.train import load
    load(out)  # the index and its files agree


if __name__ == "__main__":
    by_verdict = {}
    for case in CASES:
        by_verdict.setdefault(case.verdict, []).append(case.name)
    by_verdict["error"] += ["test_full_disk_loses_nothing", "test_divergence_keeps_the_last_good_checkpoint",
                            "test_an_interrupted_save_leaves_no_orphans", "test_sigterm_stops_training_like_ctrl_c"]
    for verdict, names in by_verdict.items():
        print(f"{verdict}: {len(names)}")
    print(f"total: {sum(map(len, by_verdict.values()))}")
