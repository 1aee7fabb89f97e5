"""Tokenizers: text ⇄ integer ids.

``CharTokenizer`` gives every character seen in training an id, and one *unknown* id to
any other character. ``BPETokenizer`` starts from the 256 bytes and learns merges of the
most frequent adjacent pair (byte-pair encoding, as GPT-2), so it round-trips any string.
Both save to and load from JSON.
"""
import json
import os
import re
from collections import Counter
from pathlib import Path

_CHUNKS = re.compile(r" ?\w+| ?[^\w\s]+|\s+")  # merges never cross word boundaries


def _atomic_write(path, text):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class CharTokenizer:
    """One id per character seen in training, plus one *unknown* id (``unk_id``) for any
    other character, which decodes to U+FFFD (the Unicode replacement character). The
    softmax is then as wide as the corpus needs (66 outputs for Shakespeare's 65
    characters). Use ``unseen(text)`` to find the characters that would become unknown.

    Checkpoints written before version 0.2 spelled unseen characters as their UTF-8 bytes
    (256 extra ids); their tokenizer files have no ``fallback`` key and still load that way
    (``fallback="bytes"``), so old models keep their output width.
    """
    kind = "char"
    UNKNOWN = "\ufffd"

    def __init__(self, chars, fallback="unknown"):
        if fallback not in ("unknown", "bytes"):
            raise ValueError(f"CharTokenizer: fallback must be 'unknown' or 'bytes'; got {fallback!r}")
        self.chars = list(chars)
        self.index = {ch: i for i, ch in enumerate(self.chars)}
        self.fallback = fallback
        self.unk_id = len(self.chars)       # fallback "unknown": the one id after the characters
        self.byte_offset = len(self.chars)  # fallback "bytes": ids byte_offset .. +255 are raw bytes

    @classmethod
    def train(cls, text, vocab_size=None):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars) + (256 if self.fallback == "bytes" else 1)

    def unseen(self, text):
        """The distinct characters of ``text`` that have no id of their own, in order."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text):
        ids = []
        for ch in text:
            if ch in self.index:
                ids.append(self.index[ch])
            elif self.fallback == "unknown":
                ids.append(self.unk_id)
            else:
                ids.extend(self.byte_offset + b for b in ch.encode("utf-8"))
        return ids

    def decode(self, ids):
        out, pending = [], bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"decode: id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
            if i >= len(self.chars) and self.fallback == "bytes":
                pending.append(i - self.byte_offset)
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            out.append(self.chars[i] if i < len(self.chars) else self.UNKNOWN)
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def to_dict(self):
        return {"kind": self.kind, "chars": self.chars, "fallback": self.fallback}

    def save(self, path):
        _atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))


class BPETokenizer:
    kind = "bpe"

    def __init__(self, merges=()):
        self.merges = [tuple(pair) for pair in merges]          # in the order they were learned
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.pieces = {i: bytes([i]) for i in range(256)}     # id → the bytes it stands for
        for rank, (a, b) in enumerate(self.merges):
            self.pieces[256 + rank] = self.pieces[a] + self.pieces[b]
        self._cache = {}

    @classmethod
    def train(cls, text, vocab_size):
        """Learn ``vocab_size − 256`` merges from ``text``."""
        if vocab_size < 256:
            raise ValueError(f"BPETokenizer.train: vocab_size must be at least 256 (the bytes); got {vocab_size}")
        words = Counter(tuple(chunk.encode("utf-8")) for chunk in _CHUNKS.findall(text))
        merges = []
        for new_id in range(256, vocab_size):
            pairs = Counter()
            for word, count in words.items():
                for pair in zip(word, word[1:]):
                    pairs[pair] += count
            if not pairs:
                break
            best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))  # ties: smallest ids, deterministic
            merges.append(best)
            words = Counter({_merge(word, best, new_id): count for word, count in words.items()})
        return cls(merges)

    @property
    def vocab_size(self):
        return 256 + len(self.merges)

    def _encode_chunk(self, chunk):
        if chunk in self._cache:
            return self._cache[chunk]
        ids = list(chunk.encode("utf-8"))
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = list(_merge(ids, pair, 256 + self.ranks[pair]))
        self._cache[chunk] = ids
        return ids

    def encode(self, text):
        return [i for chunk in _CHUNKS.findall(text) for i in self._encode_chunk(chunk)]

    def decode(self, ids):
        try:
            raw = b"".join(self.pieces[int(i)] for i in ids)
        except KeyError as exc:
            raise ValueError(f"decode: id {exc.args[0]} is outside the vocabulary (0..{self.vocab_size - 1})") from None
        return raw.decode("utf-8", errors="replace")

    def to_dict(self):
        return {"kind": self.kind, "merges": [list(pair) for pair in self.merges]}

    def save(self, path):
        _atomic_write(path, json.dumps(self.to_dict()))


def _merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return tuple(out)


def from_dict(data):
    if data.get("kind") == "char":
        return CharTokenizer(data["chars"], data.get("fallback", "bytes"))
    if data.get("kind") == "bpe":
        return BPETokenizer(data["merges"])
    raise ValueError(f"tokenizer: unknown kind {data.get('kind')!r} (expected 'char' or 'bpe')")


def load(path):
    try:
        return from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"tokenizer: cannot read {path}: {exc}") from None
