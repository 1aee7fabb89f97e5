"""GPT-2's tokenizer files: ``vocab.json`` (token → id) and ``merges.txt`` (one merge per
line, in the order they were learned), written in GPT-2's byte-level alphabet.

That alphabet exists because the files are text: each of the 256 bytes is given a
printable Unicode character — printable ASCII and Latin-1 map to themselves, the other 68
(control bytes, space, …) to U+0100 onwards — so the space byte is written ``Ġ`` and a
token's string is its bytes spelled one character each.
"""
import json
import os
from functools import lru_cache
from pathlib import Path


def atomic_write(path, text):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
    ``vocab.json`` + ``merges.txt``, or a ``tokenizer.json`` of a byte-level BPE."""
    path = Path(path)
    try:
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
            lines = (path / "merges.txt").read_text(encoding="utf-8").split("\n")
            merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
            return vocab, merges, _added_tokens(path)
        if (path / "tokenizer.json").exists():
            spec = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
            model = spec.get("model") or {}
            if model.get("type") != "BPE":
                raise ValueError(f"{path}/tokenizer.json: model type {model.get('type')!r}, expected 'BPE'")
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
            return model["vocab"], merges, added
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"BPETokenizer.from_pretrained: cannot read the tokenizer in {path}: {exc}") from None
    raise FileNotFoundError(f"BPETokenizer.from_pretrained: {path} has neither vocab.json + merges.txt "
                            f"nor tokenizer.json")


def _added_tokens(path):
    config = path / "tokenizer_config.json"
    if not config.exists():
        return {}
    decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
    return {entry["content"]: int(i) for i, entry in decoder.items()}


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
