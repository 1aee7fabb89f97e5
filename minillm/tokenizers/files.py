"""GPT-2's tokenizer files: ``vocab.json`` (token → id) and ``merges.txt`` (one merge per
line, in the order they were learned), written in GPT-2's byte-level alphabet.

That alphabet exists because the files are text: each of the 256 bytes is given a
printable Unicode character — printable ASCII and Latin-1 map to themselves, the other 68
(control bytes, space, …) to U+0100 onwards — so the space byte is written ``Ġ`` and a
token's string is its bytes spelled one character each.
"""
import json
from functools import lru_cache
from pathlib import Path

from . import validate
from ..fileio import read_text, write_atomic


def atomic_write(path, text):
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@lru_cache(maxsize=None)
def byte_to_unicode():
    """byte → the character that spells it (GPT-2's ``bytes_to_unicode``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=None)
def unicode_to_byte():
    return {ch: b for b, ch in byte_to_unicode().items()}


def spell(piece):
    """bytes → the token's string in the byte-level alphabet."""
    table = byte_to_unicode()
    return "".join(table[b] for b in piece)


def unspell(token):
    """The byte-level string → its bytes, or None when ``token`` is not one (a special token)."""
    table = unicode_to_byte()
    try:
        return bytes(table[ch] for ch in token)
    except KeyError:
        return None


def read_vocab_and_merges(path):
    """(vocab {token: id}, merges [(a, b)], added {text: id}) from a folder holding
    ``vocab.json`` + ``merges.txt``, or a ``tokenizer.json`` of a byte-level BPE. Its
    pre-tokenizer is not read: the tokenizer cuts text with GPT-2's pattern, one it knows."""
    path = Path(path)
    try:
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            vocab = json.loads(read_text(path / "vocab.json", "tokenizer"))
            lines = read_text(path / "merges.txt", "tokenizer").split("\n")
            merges = [line.split(" ") for line in lines if line and not line.startswith("#version")]
            return _checked(path, "vocab.json", vocab, "merges.txt", merges, _added_tokens(path))
        if (path / "tokenizer.json").exists():
            spec = json.loads(read_text(path / "tokenizer.json", "tokenizer"))
            model = spec.get("model") if isinstance(spec, dict) else None
            kind = model.get("type") if isinstance(model, dict) else None
            if kind != "BPE":
                raise ValueError(f"{path}/tokenizer.json: model type {kind!r}, expected 'BPE'")
            merges = [m.split(" ") if isinstance(m, str) else m for m in _entries(model.get("merges"), "merges")]
            added = [(t.get("content"), t.get("id")) if isinstance(t, dict) else (t, None)
                     for t in _entries(spec.get("added_tokens", []), "added_tokens")]
            return _checked(path, "tokenizer.json", model.get("vocab"), "tokenizer.json", merges, added)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"BPETokenizer.from_pretrained: cannot read the tokenizer in {path}: {exc}") from None
    raise FileNotFoundError(f"BPETokenizer.from_pretrained: {path} has neither vocab.json + merges.txt "
                            f"nor tokenizer.json")


def _entries(value, name):
    if not isinstance(value, list):
        raise ValueError(f"BPETokenizer.from_pretrained: {name} must be a list; got {type(value).__name__}")
    return value


def _checked(path, vocab_file, vocab, merges_file, merges, added):
    """(vocab, merges, added as a dict), once each is known to hold what its name says."""
    where = f"BPETokenizer.from_pretrained: {path}"
    if not isinstance(vocab, dict):
        raise ValueError(f"{where}: the vocabulary in {vocab_file} must map tokens to ids; got {type(vocab).__name__}")
    for entries, name in ((vocab.items(), vocab_file), (added, "the added tokens")):
        for token, i in entries:
            if not isinstance(token, str) or not validate.is_id(i):
                raise ValueError(f"{where}: {name} has {token!r}: {i!r}; each must be a token with an id >= 0")
    for k, merge in enumerate(merges):
        if not (isinstance(merge, (list, tuple)) and len(merge) == 2 and all(isinstance(t, str) for t in merge)):
            raise ValueError(f"{where}: merge {k} in {merges_file} is {merge!r}, not two tokens")
    return vocab, [tuple(merge) for merge in merges], dict(added)


def _added_tokens(path):
    """[(text, id)] from ``tokenizer_config.json``'s added_tokens_decoder {"id": {"content": text}}."""
    config = path / "tokenizer_config.json"
    if not config.exists():
        return []
    spec = json.loads(read_text(config, "tokenizer"))
    decoder = spec.get("added_tokens_decoder", {}) if isinstance(spec, dict) else None
    if not isinstance(decoder, dict):
        raise ValueError(f"BPETokenizer.from_pretrained: {config}: added_tokens_decoder must map ids to tokens")
    return [(entry.get("content") if isinstance(entry, dict) else entry, int(i) if i.isdecimal() else i)
            for i, entry in decoder.items()]


def write_vocab_and_merges(path, vocab, merges, special):
    """Write ``vocab.json``, ``merges.txt`` and a ``tokenizer_config.json`` naming the
    special tokens, as ``GPT2TokenizerFast.from_pretrained`` reads them."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic_write(path / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "model_max_length": 1024,
              "added_tokens_decoder": {str(i): {"content": text, "special": True, "lstrip": False, "rstrip": False,
                                                "normalized": False, "single_word": False}
                                       for text, i in special.items()}}
    if "<|endoftext|>" in special:
        config.update(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    atomic_write(path / "tokenizer_config.json", json.dumps(config, ensure_ascii=False, indent=2))
