"""Token files: a corpus tokenized once into ``train.bin`` and ``val.bin``, then
memory-mapped for training, so a corpus larger than memory trains with flat memory.

The layout is nanoGPT's and llm.c's: the token ids, back to back, as little-endian uint16
(uint32 when the vocabulary has more than 65,536 ids), no header. Beside them,
``tokens.json`` says what they are — dtype, counts, vocabulary size, the tokenizer file —
so a truncated or mismatched file is caught before it trains anything.

``prepare`` streams: text is read, encoded and written a block of lines at a time. The
last ``val_fraction`` of the corpus (by bytes, across the files in order) is validation,
as ``data.corpus`` splits a text. In a folder of text files each file is one document,
and documents are separated by the tokenizer's ``<|endoftext|>`` where it has one.
"""
import json
import os
from pathlib import Path

import numpy as np

from . import tokenizers
from .fileio import check_plain_name, ensure_output_folder, read_text
from .tokenizers.files import atomic_write

META = "tokens.json"
FORMAT = "minillm-tokens/1"
BLOCK_CHARS = 1 << 20          # text encoded per step: bounded memory whatever the corpus size
TOKENIZER_SAMPLE = 2 << 20     # characters a new BPE is trained on (BPE training is Python, O(text·merges))


# what `prepare` writes into its folder
FOLDER_FILES = ("train.bin", "val.bin", META, "tokenizer-minillm.json", "vocab.json", "merges.txt",
                "tokenizer_config.json")


class TokenFileError(ValueError):
    pass


def text_files(source):
    """The UTF-8 files of ``source`` (a file, or a folder's ``*.txt``/``*.md`` files, sorted)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in (".txt", ".md"))
        if found:
            return found
        raise TokenFileError(f"prepare: {source} has no .txt or .md files")
    raise FileNotFoundError(f"prepare: {source} is neither a file nor a folder")


def _read_text(handle, path, size):
    try:
        return handle.read(size)
    except UnicodeDecodeError as exc:
        raise TokenFileError(f"prepare: {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} cannot be "
                             f"decoded: {exc.reason})") from None


def _read_blocks(path):
    """The file's text in blocks of about BLOCK_CHARS, cut after a newline where there is one
    (so a block boundary falls between lines, not inside a word). ``newline=""`` keeps
    the bytes as they are: "\r\n" stays two characters, and byte counts match the file."""
    with open(path, encoding="utf-8", newline="") as handle:
        pending = ""
        while True:
            chunk = _read_text(handle, path, BLOCK_CHARS)
            if not chunk:
                break
            text = pending + chunk
            cut = text.rfind("\n") + 1 or len(text)
            pending = text[cut:]
            yield text[:cut]
        if pending:
            yield pending


def _sample(files, size):
    parts, left = [], size
    for path in files:
        if left <= 0:
            break
        with open(path, encoding="utf-8") as handle:
            parts.append(_read_text(handle, path, left))
        left -= len(parts[-1])
    return "".join(parts)


def make_tokenizer(kind, files, vocab_size=512):
    """``char`` (every character of the corpus, streamed), ``bpe`` (trained on the first
    TOKENIZER_SAMPLE characters) or a folder/file holding a tokenizer."""
    if kind == "char":
        chars = set()
        for path in files:
            for block in _read_blocks(path):
                chars.update(block)
        return tokenizers.CharTokenizer(sorted(chars))
    if kind == "bpe":
        return tokenizers.BPETokenizer.train(_sample(files, TOKENIZER_SAMPLE), vocab_size)
    path = Path(kind)
    if path.is_file():
        return tokenizers.load(path)
    if path.is_dir():
        return tokenizers.from_pretrained(path)
    raise FileNotFoundError(f"prepare: tokenizer {kind!r} is not char, bpe, a tokenizer file or a folder")


def dtype_for(vocab_size):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def prepare(source, out_dir, tokenizer="char", vocab_size=512, val_fraction=0.1, progress=True):
    """Tokenize ``source`` into ``out_dir``/train.bin, val.bin, tokens.json and the
    tokenizer; returns the metadata written."""
    from tqdm import tqdm
    if not 0 < val_fraction < 1:
        raise ValueError(f"prepare: val_fraction must be in (0, 1); got {val_fraction}")
    files = text_files(source)
    out = ensure_output_folder(out_dir, "out", FOLDER_FILES, META)
    tok = make_tokenizer(tokenizer, files, vocab_size)
    dtype = dtype_for(tok.vocab_size)
    eot = getattr(tok, "special_tokens", {}).get("<|endoftext|>")
    total = sum(p.stat().st_size for p in files)
    cut = int(total * (1 - val_fraction))  # the byte where validation starts
    counts, seen = {"train": 0, "val": 0}, 0
    tmp = {name: out / f"{name}.bin.tmp" for name in counts}
    sinks = {name: open(path, "wb") for name, path in tmp.items()}
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc="prepare", disable=not progress) as bar:
            for k, path in enumerate(files):
                if k and eot is not None:
                    _write(sinks, counts, "train" if seen < cut else "val", [eot], dtype)
                for block in _read_blocks(path):
                    size = len(block.encode("utf-8"))
                    if seen < cut < seen + size:  # this block holds the split: divide it by bytes
                        head = block.encode("utf-8")[:cut - seen].decode("utf-8", errors="ignore")
                        _write(sinks, counts, "train", tok.encode(head), dtype)
                        _write(sinks, counts, "val", tok.encode(block[len(head):]), dtype)
                    else:
                        _write(sinks, counts, "train" if seen < cut else "val", tok.encode(block), dtype)
                    seen += size
                    bar.update(size)
    except BaseException:  # a bad byte, a full disk, ^C: no partial token file stays
        for sink in sinks.values():
            sink.close()
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    for sink in sinks.values():
        sink.close()
    for name, path in tmp.items():
        if counts[name] < 2:
            for other in tmp.values():
                other.unlink(missing_ok=True)
            raise TokenFileError(f"prepare: the {name} split has {counts[name]} tokens; the corpus is too small")
    for name, path in tmp.items():
        os.replace(path, out / f"{name}.bin")
    tok.save(out / "tokenizer-minillm.json")  # not "tokenizer.json": Hugging Face reads that name as its own format
    if hasattr(tok, "save_pretrained") and tok.pattern == tokenizers.GPT2_PATTERN:
        tok.save_pretrained(out)  # vocab.json + merges.txt, for other tools
    meta = {"format": FORMAT, "dtype": np.dtype(dtype).name, "vocab_size": tok.vocab_size,
            "train_tokens": counts["train"], "val_tokens": counts["val"], "tokenizer": "tokenizer-minillm.json",
            "eot_id": eot, "source": str(source), "files": len(files)}
    atomic_write(out / META, json.dumps(meta, indent=2))
    return meta


def _write(sinks, counts, split, ids, dtype):
    if ids:
        np.asarray(ids, dtype).tofile(sinks[split])
        counts[split] += len(ids)


def is_token_folder(path):
    return Path(path).is_dir() and (Path(path) / META).exists()


def _check_meta(meta, where):
    """tokens.json's fields, each of the type and range ``load`` relies on."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise TokenFileError(f"token files: {where} has format {found!r}, expected {FORMAT!r}")
    if meta.get("dtype") not in ("uint16", "uint32"):
        raise TokenFileError(f"token files: {where} has dtype {meta.get('dtype')!r}, expected uint16 or uint32")
    for key in ("vocab_size", "train_tokens", "val_tokens"):
        value = meta.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "vocab_size" else 0):
            raise TokenFileError(f"token files: {where} has {key} {value!r}; expected a "
                                 f"{'positive' if key == 'vocab_size' else 'non-negative'} integer")
    try:
        check_plain_name(meta.get("tokenizer"), f"token files: {where}", "the tokenizer file")
    except ValueError as exc:
        raise TokenFileError(str(exc)) from None


def load(path, check_ids=True):
    """(splits {"train", "val"} as read-only memory maps, tokenizer, metadata) of a folder
    written by ``prepare``; every inconsistency is an error naming the file."""
    path = Path(path)
    if not (path / META).exists():
        raise TokenFileError(f"token files: {path} has no {META} (write the folder with `minillm prepare`)")
    try:
        meta = json.loads(read_text(path / META, "token files"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TokenFileError(f"token files: {path / META} is corrupt ({exc})") from None
    _check_meta(meta, path / META)
    tok = tokenizers.load(path / meta["tokenizer"])
    if tok.vocab_size != meta["vocab_size"]:
        raise TokenFileError(f"token files: {path / meta['tokenizer']} has {tok.vocab_size} ids but {META} says "
                             f"{meta['vocab_size']}: the tokenizer does not belong to these tokens")
    dtype = np.dtype(meta["dtype"])
    splits = {}
    for name in ("train", "val"):
        file = path / f"{name}.bin"
        expected = meta[f"{name}_tokens"] * dtype.itemsize
        size = file.stat().st_size if file.exists() else None
        if size != expected:
            raise TokenFileError(f"token files: {file} has {size} bytes, {META} says {meta[f'{name}_tokens']} "
                                 f"{dtype.name} tokens = {expected} bytes (truncated or from another run)")
        if size < 2 * dtype.itemsize:
            raise TokenFileError(f"token files: {file} holds {size // dtype.itemsize} tokens; a split needs at "
                                 f"least 2")
        tokens = np.memmap(file, dtype=dtype, mode="r")
        if check_ids:
            top = max(int(tokens[i:i + (1 << 24)].max()) for i in range(0, len(tokens), 1 << 24))
            if top >= tok.vocab_size:
                raise TokenFileError(f"token files: {file} holds id {top}, outside the vocabulary of "
                                     f"{tok.vocab_size} (corrupt, or written with another tokenizer)")
        splits[name] = tokens
    return splits, tok, meta
