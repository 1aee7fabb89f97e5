"""``CharTokenizer``: one id per character seen in training, and one *unknown* id."""
import json

from . import validate
from .files import atomic_write


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
        self.chars = validate.chars(chars)
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
        atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))
