"""Checks of what a tokenizer is built from. A tokenizer file is input from anywhere, so a
malformed field is a ValueError that names it and the first bad entry, never a TypeError or
KeyError from deep inside the tokenizer."""
from numbers import Integral


def is_id(value):
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 0


def ids(name, value, length=None):
    """``value`` as a list of ints, each a token id (>= 0)."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of token ids; got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must have {length} entries; got {len(value)}")
    for k, i in enumerate(value):
        if not is_id(i):
            raise ValueError(f"{name}[{k}] is {i!r}, not a token id (an integer >= 0)")
    return [int(i) for i in value]


def pairs(name, value):
    """``value`` as a list of (id, id) tuples."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of [id, id] pairs; got {type(value).__name__}")
    for k, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(map(is_id, pair))):
            raise ValueError(f"{name}[{k}] is {pair!r}, not a pair of token ids [id, id]")
    return [(int(a), int(b)) for a, b in value]


def special_tokens(value):
    """``value`` as {text: id}, every text non-empty (an empty one would match everywhere)."""
    if not isinstance(value, dict):
        raise ValueError(f"special_tokens must map text to an id; got {type(value).__name__}")
    for text, i in value.items():
        if not isinstance(text, str) or not text or not is_id(i):
            raise ValueError(f"special_tokens has {text!r}: {i!r}; each must be non-empty text with an id >= 0")
    return {text: int(i) for text, i in value.items()}


def dense(all_ids):
    """Every id from 0 to the largest must stand for something: ``vocab_size`` is then the
    number of ids, and every id below it decodes (generation relies on that)."""
    present = set(all_ids)
    if len(present) != 1 + max(present, default=-1):
        missing = min(set(range(len(present) + 1)) - present)
        raise ValueError(f"token ids must run from 0 without gaps, but no byte, merge or special token has "
                         f"id {missing} (the largest is {max(present)})")


def chars(value):
    """A CharTokenizer's characters: a list of distinct one-character strings."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"chars must be a list of characters; got {type(value).__name__}")
    seen = set()
    for k, ch in enumerate(value):
        if not isinstance(ch, str) or len(ch) != 1:
            raise ValueError(f"chars[{k}] is {ch!r}, not a single character")
        if ch in seen:
            raise ValueError(f"chars[{k}] is {ch!r} a second time; each character has one id")
        seen.add(ch)
    return list(value)
