"""``BPETokenizer``: byte-pair encoding as GPT-2 does it.

Text is first cut into chunks by a pattern (words with their leading space, numbers, runs
of punctuation, whitespace), so a merge never crosses a word boundary. Each chunk starts as
its UTF-8 bytes, and the learned merges are applied lowest rank first — the order they were
learned — until no adjacent pair has one. Any string round-trips, since every byte has an id.

``train`` learns the merges (that is the lesson); ``from_pretrained`` reads GPT-2's
``vocab.json`` + ``merges.txt`` and then encodes exactly as Hugging Face's GPT-2 tokenizer;
``save_pretrained`` writes those files back.
"""
import json
from collections import Counter

import regex

from . import files, validate

# GPT-2's pre-tokenizer: English contractions, letters, digits, other symbols (each with one
# optional leading space), then whitespace, keeping the last space of a run for the next word
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (tiktoken's cl100k, minbpe's GPT4_SPLIT_PATTERN): contractions in any case, digits
# in groups of at most three, and a newline run kept apart from the spaces before a word
GPT4_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
# the pattern of tokenizers trained before version 0.2 (their JSON has no "pattern" key)
LEGACY_PATTERN = r" ?\w+| ?[^\w\s]+|\s+"
# The only patterns a tokenizer file may name. The regex engine runs a pattern as a program,
# and one with nested alternatives, such as (a|a)*$, takes time exponential in the length of
# the text it fails on, so a pattern read from a file could hang any command that encodes.
KNOWN_PATTERNS = {GPT2_PATTERN: "GPT-2's pattern", GPT4_PATTERN: "GPT-4's pattern (cl100k)",
                  LEGACY_PATTERN: "the pre-0.2 pattern"}


class BPETokenizer:
    """``merges``: (id, id) pairs in rank order. The 256 bytes have ids ``byte_ids``
    (0..255 unless given) and merge r produces ``merge_ids[r]`` (256 + r unless given);
    ``special_tokens`` {text: id} are matched whole before the pattern runs. Every id from 0
    to the largest stands for something, so every id below ``vocab_size`` decodes."""
    kind = "bpe"

    def __init__(self, merges=(), pattern=GPT2_PATTERN, byte_ids=None, merge_ids=None, special_tokens=None):
        self.merges = validate.pairs("merges", merges)
        self.pattern = pattern
        self._chunks = regex.compile(pattern)
        self.byte_ids = list(range(256)) if byte_ids is None else validate.ids("byte_ids", byte_ids, 256)
        self.merge_ids = ([256 + r for r in range(len(self.merges))] if merge_ids is None
                          else validate.ids("merge_ids", merge_ids, len(self.merges)))
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.pieces = {}  # id → the bytes it stands for
        for b, i in enumerate(self.byte_ids):
            self._define(i, bytes([b]), f"byte {b}")
        for r, ((a, b), new) in enumerate(zip(self.merges, self.merge_ids)):
            undefined = [i for i in (a, b) if i not in self.pieces]
            if undefined:
                raise ValueError(f"BPETokenizer: merge {r} ({a}, {b}) uses id {undefined[0]}, which no byte "
                                 f"or earlier merge produces")
            self._define(new, self.pieces[a] + self.pieces[b], f"merge {r}")
        self.special_tokens = validate.special_tokens(special_tokens or {})
        for text, i in self.special_tokens.items():
            if self.pieces.get(i, text.encode("utf-8")) != text.encode("utf-8"):
                raise ValueError(f"BPETokenizer: special token {text!r} has id {i}, which already stands "
                                 f"for the bytes {self.pieces[i]!r}")
        validate.dense([*self.pieces, *self.special_tokens.values()])
        self._special_ids = {i: text for text, i in self.special_tokens.items()}
        self._specials = (regex.compile("(" + "|".join(regex.escape(t) for t in
                                                       sorted(self.special_tokens, key=len, reverse=True)) + ")")
                          if self.special_tokens else None)
        self._cache = {}

    @classmethod
    def train(cls, text, vocab_size, pattern=GPT2_PATTERN, special_tokens=("<|endoftext|>",)):
        """Learn merges from ``text`` until the vocabulary — 256 bytes, the merges and the
        ``special_tokens`` (GPT-2's document separator, last, as in GPT-2) — has
        ``vocab_size`` ids: count every adjacent pair inside the chunks, merge the most
        frequent into a new id, repeat."""
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(f"BPETokenizer.train: vocab_size must be at least {256 + len(special_tokens)} "
                             f"(the bytes and {len(special_tokens)} special tokens); got {vocab_size}")
        words = Counter(tuple(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text))
        merges = []
        for new_id in range(256, vocab_size - len(special_tokens)):
            pairs = Counter()
            for word, count in words.items():
                for pair in zip(word, word[1:]):
                    pairs[pair] += count
            if not pairs:
                break
            best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))  # ties: smallest ids, deterministic
            merges.append(best)
            words = Counter({_merge(word, best, new_id): count for word, count in words.items()})
        return cls(merges, pattern, special_tokens={t: 256 + len(merges) + k for k, t in enumerate(special_tokens)})

    @classmethod
    def from_pretrained(cls, path):
        """GPT-2's tokenizer (or any byte-level BPE) from a folder with ``vocab.json`` +
        ``merges.txt``, or ``tokenizer.json``."""
        vocab, merges, added = files.read_vocab_and_merges(path)
        try:
            byte_ids = [vocab[files.spell(bytes([b]))] for b in range(256)]
            pairs = [(vocab[a], vocab[b]) for a, b in merges]
            merge_ids = [vocab[a + b] for a, b in merges]
        except KeyError as exc:
            raise ValueError(f"BPETokenizer.from_pretrained: {path}: token {exc.args[0]!r} is used by a merge "
                             f"or is a byte, but vocab.json has no id for it") from None
        # tokens that are neither a byte nor a merge's result are special (GPT-2: <|endoftext|>)
        known = set(byte_ids) | set(merge_ids)
        special = {token: i for token, i in vocab.items() if i not in known}
        special.update(added)
        try:
            return cls(pairs, GPT2_PATTERN, byte_ids, merge_ids, special)
        except ValueError as exc:
            raise ValueError(f"BPETokenizer.from_pretrained: {path}: {exc}") from None

    def save_pretrained(self, path):
        """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` into ``path``."""
        if self.pattern != GPT2_PATTERN:
            raise ValueError(f"BPETokenizer.save_pretrained: this tokenizer cuts text with "
                             f"{KNOWN_PATTERNS.get(self.pattern, 'a pattern of its own')}, not GPT-2's, so GPT-2's "
                             f"files would encode differently; retrain it with GPT2_PATTERN")
        vocab = {files.spell(piece): i for i, piece in self.pieces.items()}
        vocab.update(self.special_tokens)
        merges = [(files.spell(self.pieces[a]), files.spell(self.pieces[b])) for a, b in self.merges]
        files.write_vocab_and_merges(path, vocab, merges, self.special_tokens)
        return path

    def _define(self, i, piece, what):
        # two merges may make the same token, but one id may not stand for two different ones
        if self.pieces.setdefault(i, piece) != piece:
            raise ValueError(f"BPETokenizer: {what} has id {i}, which already stands for the bytes {self.pieces[i]!r}")

    @property
    def vocab_size(self):
        return 1 + max([*self.pieces, *self._special_ids])

    def _encode_chunk(self, chunk):
        if chunk in self._cache:
            return self._cache[chunk]
        ids = [self.byte_ids[b] for b in chunk.encode("utf-8")]
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = list(_merge(ids, pair, self.merge_ids[self.ranks[pair]]))
        if len(self._cache) < 100_000:  # bounded: a long corpus has unboundedly many distinct words
            self._cache[chunk] = ids
        return ids

    def encode(self, text):
        parts = self._specials.split(text) if self._specials else [text]
        ids = []
        for k, part in enumerate(parts):
            if k % 2:  # split() with a group puts the matched special tokens at odd positions
                ids.append(self.special_tokens[part])
            else:
                ids.extend(i for chunk in self._chunks.findall(part) for i in self._encode_chunk(chunk))
        return ids

    def decode(self, ids):
        out = []
        for i in ids:
            i = int(i)
            if i in self.pieces:
                out.append(self.pieces[i])
            elif i in self._special_ids:
                out.append(self._special_ids[i].encode("utf-8"))
            else:
                raise ValueError(f"decode: id {i} is outside the vocabulary (0..{self.vocab_size - 1})")
        return b"".join(out).decode("utf-8", errors="replace")

    def to_dict(self):
        data = {"kind": self.kind, "merges": [list(pair) for pair in self.merges], "pattern": self.pattern}
        if self.byte_ids != list(range(256)) or self.merge_ids != [256 + r for r in range(len(self.merges))]:
            data.update(byte_ids=self.byte_ids, merge_ids=self.merge_ids)
        if self.special_tokens:
            data["special_tokens"] = self.special_tokens
        return data

    @classmethod
    def from_dict(cls, data):
        """The tokenizer ``to_dict`` described. Its pattern must be one of ``KNOWN_PATTERNS``,
        checked before anything is compiled or matched; a pattern of your own goes in code."""
        if "merges" not in data:
            raise ValueError("BPETokenizer: the tokenizer has no 'merges'")
        pattern = data.get("pattern", LEGACY_PATTERN)
        if not isinstance(pattern, str) or pattern not in KNOWN_PATTERNS:
            shown = repr(pattern) if len(repr(pattern)) <= 80 else repr(pattern)[:77] + "..."
            *others, last = KNOWN_PATTERNS.values()
            raise ValueError(f"BPETokenizer: pattern {shown} is not one minillm knows. A tokenizer file may only "
                             f"name {', '.join(others)} or {last}: the regex engine runs a pattern as a program, "
                             f"and one such as (a|a)*$ takes time exponential in the text's length. A pattern of "
                             f"your own can be passed in code: BPETokenizer(merges, pattern=...)")
        return cls(data["merges"], pattern, data.get("byte_ids"), data.get("merge_ids"), data.get("special_tokens"))

    def save(self, path):
        files.atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))


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
