"""Tokenizers: text ⇄ integer ids.

``CharTokenizer`` gives every character seen in training an id, and one *unknown* id to
any other character. ``BPETokenizer`` starts from the 256 bytes and learns merges of the
most frequent adjacent pair (byte-pair encoding, as GPT-2), so it round-trips any string;
it also reads and writes GPT-2's own ``vocab.json`` + ``merges.txt``. Both save to and
load from JSON (``save``/``load``).
"""
import json
from pathlib import Path

from ..fileio import read_text
from .bpe import GPT2_PATTERN, GPT4_PATTERN, BPETokenizer
from .char import CharTokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "GPT2_PATTERN", "GPT4_PATTERN", "from_dict", "load", "from_pretrained"]


def from_dict(data):
    """The tokenizer a ``to_dict`` described; anything malformed is a ValueError naming it."""
    if not isinstance(data, dict):
        raise ValueError(f"tokenizer: expected a JSON object with a 'kind'; got {type(data).__name__}")
    if data.get("kind") == "char":
        if "chars" not in data:
            raise ValueError("CharTokenizer: the tokenizer has no 'chars'")
        return CharTokenizer(data["chars"], data.get("fallback", "bytes"))
    if data.get("kind") == "bpe":
        return BPETokenizer.from_dict(data)
    raise ValueError(f"tokenizer: unknown kind {data.get('kind')!r} (expected 'char' or 'bpe')")


def load(path):
    """A tokenizer saved with ``save`` (one JSON file)."""
    try:
        data = json.loads(read_text(path, "tokenizer"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"tokenizer: cannot read {path}: {exc}") from None
    try:
        return from_dict(data)
    except ValueError as exc:
        raise ValueError(f"tokenizer: {path}: {exc}") from None


def from_pretrained(path):
    """The tokenizer of a folder: minillm's own JSON (``tokenizer-minillm.json`` beside
    exported weights, ``tokenizer.json`` in a run) or GPT-2's files."""
    path = Path(path)
    if (path / "tokenizer-minillm.json").exists():
        return load(path / "tokenizer-minillm.json")
    own = path / "tokenizer.json"
    if own.exists() and _minillm_kind(own):
        return load(own)
    return BPETokenizer.from_pretrained(path)


def _minillm_kind(path):
    """Whether ``path`` is minillm's own tokenizer JSON rather than Hugging Face's."""
    try:
        data = json.loads(read_text(path, "tokenizer"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"tokenizer: cannot read {path}: {exc}") from None
    return isinstance(data, dict) and data.get("kind") in ("char", "bpe")
