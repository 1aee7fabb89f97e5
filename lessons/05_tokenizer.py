# %% [markdown]
# # Lesson 05 — Tokenizers: from bytes to byte-pair encoding
#
# A language model reads and writes integers. The **tokenizer** (分词器) is the part that
# turns text into those integers (token ids) and back. Lessons 01–04 used the simplest one,
# one id per character. GPT-2 uses **byte-level byte-pair encoding** (字节对编码, BPE):
# start from the 256 byte values, then repeatedly glue the most frequent adjacent pair into
# a new token. This lesson builds it in plain Python, in front of the reader:
#
# 1. text → UTF-8 bytes, and why bytes;
# 2. counting adjacent pairs, one merge, and the loop of merges that learns the
#    **merges table** (合并表) and the vocabulary (id → bytes);
# 3. `encode` (apply the merges in the order they were learned) and `decode`, and the
#    round trip on awkward text;
# 4. GPT-2's **pre-tokenization** (预分词): the regular expression that cuts text into
#    chunks before any merge, and what goes wrong without it;
# 5. the library's `BPETokenizer` against ours — the same merges and ids — then GPT-2's
#    file format (`vocab.json` + `merges.txt`), read back exactly, and Hugging Face's
#    trainer and GPT-2 tokenizer against ours;
# 6. what a tokenizer buys, measured: tokens per byte, and two small GPTs, one on
#    characters and one on BPE tokens, compared in bits per byte.
#
# Run: `python lessons/05_tokenizer.py [--quick]` or `minillm lesson 5`.

# %%
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import regex

import minillm
from minillm import data, optim
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.models import GPT, GPTConfig
from minillm.tokenizers import GPT2_PATTERN, BPETokenizer, CharTokenizer
from minillm.tokenizers import files as gpt2_files

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUICK = quick_mode()
checks = Checks("lesson 05")
minillm.set_backend("c" if minillm.backends.is_available("c") else "numpy")
OUT = results_dir("05_tokenizer")

corpus = data.corpus("python-docs")   # Python's docstrings: plain English about programming
SMALL_TEXT = corpus.train[:20_000]    # steps 2-4: the pure-Python loops learn from this
BPE_TEXT = corpus.train[:40_000]      # step 5 on: the tokenizer the GPT uses learns from this
HELD_OUT = corpus.val[:20_000]        # never learned from: compression and bits per byte are measured here
print(f"corpus: {len(corpus.text):,} characters; the tokenizers learn from its first "
      f"{len(SMALL_TEXT):,} / {len(BPE_TEXT):,}, and are measured on {len(HELD_OUT):,} held-out ones")


def show(piece):
    """A token's bytes as readable text (a cut multi-byte character shows as �)."""
    return repr(piece.decode("utf-8", errors="replace"))


# %% [markdown]
# ## Step 1 — text is bytes
#
# A Python string is a sequence of Unicode code points — about 150,000 of them are
# assigned, and a character tokenizer can only give ids to the ones it saw in training.
# Everything else becomes one *unknown* id, and the text is lost. UTF-8 writes each code
# point as 1 to 4 bytes: ASCII as one byte `0xxxxxxx`, and any other character as a lead
# byte `110xxxxx`, `1110xxxx` or `11110xxx` (2, 3 or 4 bytes) followed by continuation bytes
# `10xxxxxx`. So with the 256 byte values as the base symbols, every string has a spelling,
# and no token is ever unknown. The price is length: "東" is three tokens, "🙂" four. BPE
# will win the length back for whatever is frequent in its training text.

# %%
for ch in ["a", "é", "東", "🙂"]:
    raw = ch.encode("utf-8")
    print(f"{ch!r:5s} U+{ord(ch):05X} → {len(raw)} byte(s) {list(raw)!s:22s} "
          f"{' '.join(f'{b:08b}' for b in raw)}")
sample = "naïve café: 東京 🙂\n\n"
raw = sample.encode("utf-8")
print(f"{sample!r}: {len(sample)} characters, {len(raw)} bytes {list(raw)}")
char_tokenizer = CharTokenizer.train(corpus.text)
char_ids = char_tokenizer.encode(sample)
char_back = char_tokenizer.decode(char_ids)
unknown = char_tokenizer.unseen(sample)
print(f"the character tokenizer ({char_tokenizer.vocab_size} ids, learned from the corpus) decodes it as "
      f"{char_back!r}: {unknown} have no id")
byte_lengths = [len(ch.encode("utf-8")) for ch in "aé東🙂"]
checks.claim(byte_lengths == [1, 2, 3, 4] and bytes(list(raw)).decode("utf-8") == sample,
             f"UTF-8 spends 1, 2, 3 and 4 bytes on 'a', 'é', '東', '🙂', and the {len(raw)} byte values "
             "spell the sample back exactly")
checks.claim(char_back != sample and len(unknown) > 0,
             f"the character tokenizer cannot round-trip it: {len(unknown)} characters become unknown")

# %% [markdown]
# ## Step 2 — counting pairs, one merge, the loop of merges
#
# BPE learns from text alone. Count how often each pair of adjacent tokens occurs; give the
# most frequent pair a new id (256 for the first, 257 for the next…); replace every
# occurrence, left to right, by that id; repeat. Each merge adds one token to the
# vocabulary, whose bytes are its pair's bytes joined, and makes the text shorter.
#
# We keep the text as `words`: a dictionary {sequence of ids: how often it occurs}. For now
# the whole text is one sequence that occurs once; in step 4 it will be many short chunks,
# and the same code will count each distinct chunk once, times its frequency. The classic
# example first, then our corpus.

# %%
def pair_counts(words):
    """{(a, b): how often id a is followed by id b} over every sequence, times its count."""
    counts = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += count
    return counts


def merge(ids, pair, new_id):
    """``ids`` with every occurrence of ``pair``, scanning left to right, replaced by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return tuple(out)


toy = tuple(b"aaabdaaabac")
toy_counts = pair_counts({toy: 1})
print("aaabdaaabac:", {show(bytes(p)): n for p, n in toy_counts.most_common()})
print("merge ('a', 'a') → 256:", merge(toy, (97, 97), 256))

small = tuple(SMALL_TEXT.encode("utf-8"))
counts = pair_counts({small: 1})
top, top_count = counts.most_common(1)[0]
merged = merge(small, top, 256)
print(f"corpus slice: {len(small):,} bytes; most frequent pair {show(bytes(top))} ({top_count:,} times); "
      f"after one merge {len(merged):,} tokens")

# %% [markdown]
# The toy shows a subtlety. "aaa" holds the pair (a, a) twice, overlapping, but only one
# of them can be merged: `merge` takes the first and moves on. The corpus's most frequent
# pair is two spaces, and runs of spaces (indentation) overlap the same way, so one merge
# shortens the text by the number of *non-overlapping* occurrences — what `bytes.count`
# counts — not by the pair's count.

# %%
shortened = len(small) - len(merged)
print(f"pair count {top_count:,}; non-overlapping occurrences {SMALL_TEXT.encode().count(bytes(top)):,}; "
      f"tokens saved {shortened:,}")
checks.claim(shortened == SMALL_TEXT.encode().count(bytes(top)) < top_count,
             f"one merge of {show(bytes(top))} saves {shortened:,} tokens: its non-overlapping occurrences, "
             f"fewer than its {top_count:,} counted pairs")

# %% [markdown]
# Now the loop. When two pairs are equally frequent we take the one with the smaller ids —
# any fixed rule would do, but a rule there must be, or two runs could learn different
# merges (step 5 meets a library with another rule). The function returns the merges in the
# order they were learned (the merges table), the vocabulary {id: bytes}, and the number of
# tokens the text takes after each merge.

# %%
def smaller_ids_first(pair):
    return (-pair[0], -pair[1])   # max() picks the largest key: the smallest ids win a tie


def train_bpe(words, num_merges, tie_break=smaller_ids_first):
    words = dict(words)
    merges, vocab = [], {b: bytes([b]) for b in range(256)}
    lengths = [sum(len(word) * count for word, count in words.items())]
    for k in range(num_merges):
        counts = pair_counts(words)
        if not counts:
            break                                       # every sequence is down to one token
        best = max(counts, key=lambda p: (counts[p], *tie_break(p)))
        new_id = 256 + k
        merges.append(best)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        words = {(merge(word, best, new_id) if best[0] in word else word): count   # (a word without the
                 for word, count in words.items()}                               # pair's first id keeps)
        lengths.append(sum(len(word) * count for word, count in words.items()))
    return merges, vocab, lengths, words


TOY_MERGES = 200
start = time.perf_counter()
raw_merges, raw_vocab, raw_lengths, raw_words = train_bpe({small: 1}, TOY_MERGES)
raw_seconds = time.perf_counter() - start
print(f"{TOY_MERGES} merges on {len(small):,} bytes as one sequence in {raw_seconds:.1f} s: "
      f"{raw_lengths[0]:,} → {raw_lengths[-1]:,} tokens")
print("the first 24 merges:", " ".join(show(raw_vocab[256 + k]) for k in range(24)))
print("merges 176-199:    ", " ".join(show(raw_vocab[256 + k]) for k in range(176, 200)))
final_sequence = next(iter(raw_words))
checks.claim(b"".join(raw_vocab[i] for i in final_sequence) == SMALL_TEXT.encode("utf-8")
             and raw_lengths == sorted(raw_lengths, reverse=True),
             f"every merge shortened the text ({raw_lengths[0]:,} → {raw_lengths[-1]:,} tokens), and the final "
             "sequence's tokens still spell the text")

# %% [markdown]
# ## Step 3 — encode and decode
#
# **Decoding** looks up each id's bytes, joins them, and decodes UTF-8. An id sequence can
# end in the middle of a multi-byte character (a model generating text one token at a time
# does that), so we decode with `errors="replace"`: an incomplete character becomes U+FFFD,
# "�", instead of an exception.
#
# **Encoding** new text must reproduce what training did. Start from the bytes; among the
# adjacent pairs that have a merge, apply the one learned first (lowest rank), everywhere;
# repeat until no pair has a merge. Applying merges in rank order matters: a later merge
# may be built from an earlier merge's token, and would never find it if it ran first.

# %%
def decode(ids, vocab):
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def encode_bytes(raw, rank):
    """``raw`` bytes → ids, ``rank`` = {pair: its position in the merges table}."""
    ids = tuple(raw)
    while len(ids) > 1:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, math.inf))   # the earliest-learned pair present
        if pair not in rank:
            break                                            # no pair left that has a merge
        ids = merge(ids, pair, 256 + rank[pair])
    return list(ids)


def encode(text, merges, pattern=None):
    """Without a pattern the text is one sequence, as in step 2; step 4 passes GPT-2's."""
    rank, done = {pair: r for r, pair in enumerate(merges)}, {}
    chunks = [text] if pattern is None else regex.findall(pattern, text)
    for chunk in set(chunks):                                # a chunk that repeats is encoded once
        done[chunk] = encode_bytes(chunk.encode("utf-8"), rank)
    return [i for chunk in chunks for i in done[chunk]]


again = encode(SMALL_TEXT, raw_merges)
checks.claim(again == list(final_sequence), f"encoding the training text again gives the training loop's final "
             f"{len(again):,} tokens, token for token")
AWKWARD = ["", "\n\n", "🙂 emoji", "東京 is Tokyo", "naïve café", "tabs\tand  spaces\r\n", "Ünïcödé ‽ 🤖🤖"]
held = HELD_OUT[:5_000]
texts = [held, *AWKWARD]
round_trips = [decode(encode(t, raw_merges), raw_vocab) == t for t in texts]
smile = encode("🙂", raw_merges)
print(f"held-out slice: {len(held.encode()):,} bytes → {len(encode(held, raw_merges)):,} tokens")
for t in AWKWARD:
    ids = encode(t, raw_merges)
    print(f"{t!r:24s} → {len(ids):2d} ids {ids[:12]}{' …' if len(ids) > 12 else ''}")
print(f"'🙂' is {smile}; decoding only its first two ids gives {decode(smile[:2], raw_vocab)!r}")
checks.claim(all(round_trips) and decode(smile[:2], raw_vocab) == "\ufffd",
             f"decode(encode(t)) == t for {len(texts)} texts (held-out prose, emoji, CJK, '\\n\\n', the empty "
             "string…), and a cut character decodes to U+FFFD instead of failing")

# %% [markdown]
# ## Step 4 — GPT-2's pre-split, and what goes wrong without it
#
# Look again at step 2's merges: `'e '`, `'s '`, `'the '`, `', '` — tokens that end with the
# space *after* a word, or glue a word to the punctuation that follows it. Left alone on
# raw bytes, BPE spends vocabulary on every combination of a word with what happens to
# surround it: "dog." "dog!" "dog?" "dog " each become separate tokens, and the model must
# learn each of them separately. GPT-2's paper describes exactly this, and its fix: before
# any counting, cut the text into chunks with a regular expression, and never merge
# across a chunk's edge. GPT-2's pattern (`minillm.tokenizers.GPT2_PATTERN`) takes, in
# order of preference: English contractions (`'s`, `'ll`, …); a run of letters with at
# most one space before it; the same for digits; the same for other symbols; and runs of
# whitespace, leaving a run's last space to the word that follows. So a word carries its
# leading space (" dog"), and punctuation is a chunk of its own.

# %%
print("GPT2_PATTERN =", GPT2_PATTERN)
example = "The dog. The dog! The dog? It's 2024:  x = f(y)\n\n"
print(regex.findall(GPT2_PATTERN, example))

chunk_counts = Counter(tuple(chunk.encode("utf-8")) for chunk in regex.findall(GPT2_PATTERN, SMALL_TEXT))
start = time.perf_counter()
split_merges, split_vocab, split_lengths, _ = train_bpe(chunk_counts, TOY_MERGES)
split_seconds = time.perf_counter() - start
print(f"{len(small):,} bytes → {sum(chunk_counts.values()):,} chunks, {len(chunk_counts):,} of them distinct")
print(f"{'merge':>5s}  {'one sequence':16s} {'pre-split':16s}")
for k in [*range(12), *range(188, 200)]:
    print(f"{k:5d}  {show(raw_vocab[256 + k]):16s} {show(split_vocab[256 + k]):16s}")


def spans_chunks(piece):
    """Whether GPT-2's pattern would cut this token's text into more than one chunk."""
    return len(regex.findall(GPT2_PATTERN, piece.decode("utf-8", errors="replace"))) > 1


crossing = {name: [vocab[256 + k] for k in range(TOY_MERGES) if spans_chunks(vocab[256 + k])]
            for name, vocab in (("one sequence", raw_vocab), ("pre-split", split_vocab))}
for name, vocab in (("one sequence", raw_vocab), ("pre-split", split_vocab)):
    print(f"{name:12s}: {len(crossing[name])} of {TOY_MERGES} tokens cross a chunk edge; tokens holding 'the': "
          + " ".join(show(vocab[i]) for i in range(256, 256 + TOY_MERGES) if b"the" in vocab[i]))
for name, merges, pattern in (("one sequence", raw_merges, None), ("pre-split", split_merges, GPT2_PATTERN)):
    vocab = raw_vocab if pattern is None else split_vocab
    pieces = [vocab[i].decode("utf-8", errors="replace") for i in encode(example, merges, pattern)]
    print(f"{name:12s}: {example!r} → {pieces}")
checks.claim(len(crossing["one sequence"]) >= 20 and not crossing["pre-split"],
             f"without the pre-split {len(crossing['one sequence'])} of {TOY_MERGES} learned tokens cross a chunk "
             f"edge (e.g. {', '.join(show(p) for p in crossing['one sequence'][:4])}); with it, none do")

# %% [markdown]
# Those cross-edge tokens are not useless: the one-sequence tokenizer compresses its own
# training text a little better. But part of that is memorised phrases of this slice
# (`'the '`, `' the '`, `'f the '`…); on held-out text the advantage shrinks. The pre-split
# has a second benefit: training counts each distinct chunk once, times its frequency,
# instead of walking the whole text at every merge.

# %%
train_bytes = len(SMALL_TEXT.encode("utf-8"))
held_bytes = len(held.encode("utf-8"))
raw_train, split_train = raw_lengths[-1] / train_bytes, split_lengths[-1] / train_bytes
raw_held = len(encode(held, raw_merges)) / held_bytes
split_held = len(encode(held, split_merges, GPT2_PATTERN)) / held_bytes
print(f"tokens per byte after {TOY_MERGES} merges: training text {raw_train:.3f} (one sequence) vs "
      f"{split_train:.3f} (pre-split); held-out {raw_held:.3f} vs {split_held:.3f}")
checks.claim(raw_train < split_train and split_held / raw_held - 1 < split_train / raw_train - 1,
             f"the one-sequence tokenizer's edge in compression is {split_train / raw_train - 1:.1%} on its "
             f"training text and only {split_held / raw_held - 1:+.1%} on held-out text")
checks.timing(split_seconds < raw_seconds, f"the pre-split training took {split_seconds:.2f} s against "
              f"{raw_seconds:.2f} s for the one sequence")

# %% [markdown]
# ## Step 5 — the library's tokenizer, GPT-2's files, Hugging Face's
#
# `minillm.tokenizers.BPETokenizer.train(text, vocab_size)` is step 4's loop: GPT-2's
# pattern, the same tie rule (smaller ids first), merge r gets id 256 + r, and one special
# token, `<|endoftext|>` (GPT-2's document separator), takes the last id. So a vocabulary
# of 512 means 255 merges. We train both on a larger slice and compare everything: the
# merges, the bytes of every id, and the ids of held-out text.

# %%
VOCAB = 512
lesson_merges, lesson_vocab, lesson_lengths, _ = train_bpe(
    Counter(tuple(c.encode("utf-8")) for c in regex.findall(GPT2_PATTERN, BPE_TEXT)), VOCAB - 257)
bpe = BPETokenizer.train(BPE_TEXT, VOCAB)
lesson_ids = encode(HELD_OUT, lesson_merges, GPT2_PATTERN)
same_pieces = all(bpe.pieces[i] == piece for i, piece in lesson_vocab.items())
print(f"BPETokenizer.train: {len(bpe.merges)} merges, vocab_size {bpe.vocab_size}, "
      f"special tokens {bpe.special_tokens}")
checks.claim(bpe.merges == lesson_merges and same_pieces and bpe.encode(HELD_OUT) == lesson_ids,
             f"BPETokenizer.train learns our {len(lesson_merges)} merges, in our order, with our ids "
             f"(every id's bytes equal), and encodes the held-out text to our {len(lesson_ids):,} ids")

# %% [markdown]
# Training is greedy: merge r is chosen from the counts left by merges 0 … r−1, and
# nothing later changes it. So a smaller vocabulary's merges table is the first part of a
# larger one's, and one training run to 1,024 gives every smaller tokenizer too.

# %%
bpe_1024 = BPETokenizer.train(BPE_TEXT, 1024)
checks.claim(bpe_1024.merges[:len(bpe.merges)] == bpe.merges,
             f"the 1,024-token vocabulary's first {len(bpe.merges)} merges are the 512-token one's")

# %% [markdown]
# ### GPT-2's file format
#
# GPT-2 ships its tokenizer as two text files. `merges.txt` lists the merges in rank
# order, one per line, as two token strings; `vocab.json` maps every token string to its
# id. Being text, they cannot hold raw bytes, so GPT-2 spells each byte as one printable
# character: the 188 printable ASCII and Latin-1 bytes as themselves, the other 68
# (controls, space, …) as U+0100 onwards — which is why a space shows as `Ġ` and a newline
# as `Ċ`. A token's string is its bytes spelled one character each.
# `save_pretrained` writes these files; `from_pretrained` reads them.

# %%
spelled = gpt2_files.byte_to_unicode()
print("byte → character:", {b: spelled[b] for b in (32, 10, 9, 0, 65, 233)})
scratch = tempfile.TemporaryDirectory(prefix="lesson05-")   # removed at the end of step 5
saved = Path(scratch.name) / "ours"
bpe.save_pretrained(saved)
print("files:", sorted(p.name for p in saved.iterdir()))
print("merges.txt begins:", (saved / "merges.txt").read_text(encoding="utf-8").splitlines()[:6])
reread = BPETokenizer.from_pretrained(saved)
print("vocab.json, a few entries:", {gpt2_files.spell(bpe.pieces[i]): i for i in (32, 10, 256, 300, 510)},
      "and", bpe.special_tokens)
checks.claim(reread.merges == bpe.merges and reread.pieces == bpe.pieces and
             reread.special_tokens == bpe.special_tokens and reread.encode(HELD_OUT) == bpe.encode(HELD_OUT),
             "save_pretrained → from_pretrained gives back the same merges, the same bytes for every id, "
             "the same special token and the same ids for the held-out text")

# %% [markdown]
# ### Hugging Face's trainer and GPT-2 tokenizer
#
# Where Hugging Face's `tokenizers` and `transformers` are installed (an optional extra,
# `minillm[oracle]`), we can check against them. Their `ByteLevelBPETokenizer` trains a
# byte-level BPE with GPT-2's pre-split and saves it in GPT-2's format. Two differences in
# convention, found by comparing: it numbers the special token first (id 0) and the 256
# bytes next, **sorted by the character that spells them** (so `!`, byte 33, is id 1, and
# the space, spelled `Ġ`, comes after all of ASCII); and when two pairs are equally
# frequent it takes the pair with the smaller ids *in its own numbering*. Our loop with that
# tie rule must then learn its merges exactly. (We pass `min_frequency=1`: its default, 2,
# never merges a pair seen only once, and ours does.) `from_pretrained` reads its files through the
# vocabulary's strings, whatever the ids, and must then encode exactly as `transformers`'
# `GPT2TokenizerFast`.
#
# The real GPT-2's `vocab.json` and `merges.txt` (50,257 ids, 50,000 merges) are not on
# this machine, which has no network. They are the same two files, and
# `BPETokenizer.from_pretrained` is the reader that loads them.

# %%
try:
    import tokenizers as hf_tokenizers
    import transformers
except ImportError:
    hf_tokenizers = None
    print("Hugging Face's tokenizers/transformers are not installed (pip install minillm[oracle]): "
          "this comparison is skipped")
if hf_tokenizers is not None:
    theirs_dir = saved.parent / "theirs"
    trainer = hf_tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator([BPE_TEXT], vocab_size=VOCAB, min_frequency=1, show_progress=False,
                                special_tokens=["<|endoftext|>"])
    theirs_dir.mkdir()
    trainer.save_model(str(theirs_dir))
    theirs = BPETokenizer.from_pretrained(theirs_dir)
    print(f"their ids: <|endoftext|> {theirs.special_tokens['<|endoftext|>']}, byte 33 '!' → "
          f"{theirs.byte_ids[33]}, byte 32 (space) → {theirs.byte_ids[32]}, byte 0 → {theirs.byte_ids[0]}")
    their_pairs = [(theirs.pieces[a], theirs.pieces[b]) for a, b in theirs.merges]
    our_pairs = [(bpe.pieces[a], bpe.pieces[b]) for a, b in bpe.merges]
    first_gap = next((k for k, (a, b) in enumerate(zip(our_pairs, their_pairs)) if a != b), None)
    if first_gap is not None:
        print(f"merge {first_gap}: ours {b''.join(our_pairs[first_gap])!r}, theirs "
              f"{b''.join(their_pairs[first_gap])!r} — equally frequent pairs, taken in another order")
    by_character = sorted(range(256), key=lambda b: spelled[b])
    their_number = {b: 1 + k for k, b in enumerate(by_character)}       # the bytes in their numbering
    their_ties = lambda p: tuple(-(their_number[i] if i < 256 else i + 1) for i in p)  # noqa: E731
    hf_merges, hf_vocab, _, _ = train_bpe(
        Counter(tuple(c.encode("utf-8")) for c in regex.findall(GPT2_PATTERN, BPE_TEXT)), VOCAB - 257, their_ties)
    checks.claim(set(our_pairs) == set(their_pairs) and
                 [(hf_vocab[a], hf_vocab[b]) for a, b in hf_merges] == their_pairs,
                 f"Hugging Face learns the same {len(their_pairs)} merges (in a different order from merge "
                 f"{first_gap}); our loop with their tie rule reproduces their merges table exactly")
    fast = transformers.GPT2TokenizerFast.from_pretrained(str(theirs_dir))
    probe = corpus.train[200_000:230_000] + "<|endoftext|>" + HELD_OUT
    checks.claim(theirs.encode(probe) == fast.encode(probe) and theirs.vocab_size == len(fast) == VOCAB,
                 f"their files read by BPETokenizer.from_pretrained encode {len(probe):,} characters (and the "
                 f"special token) to exactly GPT2TokenizerFast's {len(fast.encode(probe)):,} ids")
scratch.cleanup()

# %% [markdown]
# ## Step 6 — what a tokenizer buys, measured
#
# **Compression.** Count tokens per byte of held-out text (its inverse, bytes per token, is
# how many bytes one prediction covers). Raw bytes are 1 token per byte; characters are
# nearly the same on this almost-ASCII corpus; each merge makes it smaller, quickly at
# first, then more slowly, as the merges left find rarer pairs. The truncated merges table
# gives the tokenizer of every smaller vocabulary (step 5), so one training run draws the
# whole curve.

# %%
SIZES = [256, 288, 320, 384, 448, 512, 640, 768, 1024]
held_bytes = len(HELD_OUT.encode("utf-8"))
char_per_byte = len(char_tokenizer.encode(HELD_OUT)) / held_bytes
per_byte = {size: len(BPETokenizer(bpe_1024.merges[:size - 256]).encode(HELD_OUT)) / held_bytes for size in SIZES}
print(f"held-out tokens per byte: characters ({char_tokenizer.vocab_size} ids) {char_per_byte:.3f}")
for size in SIZES:
    print(f"  BPE, {size:5,d} ids: {per_byte[size]:.3f} tokens per byte = {1 / per_byte[size]:.2f} bytes per token")
checks.claim(per_byte[256] == 1 and all(a > b for a, b in zip(list(per_byte.values()), list(per_byte.values())[1:]))
             and 1 / per_byte[VOCAB] > 1.6 / char_per_byte,
             f"every vocabulary size measured compresses held-out text more than the one before it (1 → "
             f"{per_byte[SIZES[-1]]:.3f} tokens per byte from 256 to {SIZES[-1]:,} ids); at {VOCAB} ids a token "
             f"covers {1 / per_byte[VOCAB]:.2f} bytes, a character {1 / char_per_byte:.3f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.3))
left.plot(SIZES, [per_byte[s] for s in SIZES], "o-", label="BPE, held-out text")
left.plot(np.arange(256, 256 + len(lesson_lengths)), np.array(lesson_lengths) / len(BPE_TEXT.encode()), "-",
          color="#3b75af", alpha=0.5, label="BPE, its own training text (step 5's loop)")
left.plot([char_tokenizer.vocab_size], [char_per_byte], "s", color="#c9a66b", ms=8, label="characters, held-out")
left.axvline(VOCAB, color="grey", ls=":", lw=1)
left.text(VOCAB, 0.95, f" the GPT's BPE: {VOCAB}", fontsize=8, color="grey")
left.set(xlabel="vocabulary size (ids)", ylabel="tokens per byte", ylim=(0, 1.08),
         title="more merges, fewer tokens: fast at first, then slowly")
left.legend(fontsize=8, loc="lower left")
merges_axis = np.arange(TOY_MERGES + 1)
right.plot(merges_axis, np.array(raw_lengths) / train_bytes, label="one sequence (no pre-split), training text")
right.plot(merges_axis, np.array(split_lengths) / train_bytes, label="GPT-2 pre-split, training text")
right.plot([TOY_MERGES], [raw_held], "o", color="C0", ms=10, label="one sequence, held-out")
right.plot([TOY_MERGES], [split_held], "s", color="C1", label="pre-split, held-out")
right.set(xlabel="number of merges", ylabel="tokens per byte",
          title=f"step 4's two tokenizers ({len(SMALL_TEXT) // 1000} KB of text)")
right.legend(fontsize=8)
save_figure(fig, OUT / "tokens_per_byte.png")

# %% [markdown]
# **Modelling.** Fewer tokens is not the goal in itself; a better model is. Two GPTs of
# the same shape (2 blocks, 4 heads, width 64, a context of 64 tokens) learn the same
# training text, one on characters and one on the 512-token BPE above. The only parameters
# that differ are the token embedding and the output layer, whose rows are one per
# vocabulary entry. Both get the same budget: the same steps, each a batch of 16 windows of
# 64 tokens — so the same work inside the blocks per step, and the same seed and learning
# rate schedule (AdamW with warm-up and cosine decay, as lesson 01). The BPE model's 1,024
# tokens per step cover more text, and its 64-token context reaches further back: that is
# what the tokenizer buys.
#
# Their losses cannot be compared as they are: a cross-entropy in nats per token means
# different things when tokens are characters and when they are a couple of bytes each. So
# we convert to **bits per byte** (每字节比特数), the same unit for any tokenizer: the
# total information the model needs for the held-out text, divided by its bytes. With
# $\bar\ell$ the mean loss in nats over the $N_\text{tokens}$ predicted tokens, which spell
# $N_\text{bytes}$ bytes,
#
# $$\text{bits per byte} = \frac{\bar\ell \, N_\text{tokens}}{N_\text{bytes} \ln 2}.$$
#
# The held-out text is cut into consecutive windows of 64 tokens; every token after the
# first is predicted once, from the tokens before it in its window.

# %%
STEPS = 200 if QUICK else 1500
TRAIN_CHARS = 100_000 if QUICK else 300_000
BLOCK, BATCH, WIDTH = 64, 16, 64
EVALS = 10


def held_out_windows(tokenizer, piece_bytes):
    ids = np.asarray(tokenizer.encode(HELD_OUT))
    n = (len(ids) - 1) // BLOCK
    x, y = ids[:n * BLOCK].reshape(n, BLOCK), ids[1:n * BLOCK + 1].reshape(n, BLOCK)
    return x, y, int(piece_bytes[y].sum())


def bits_per_byte(model, x, y, n_bytes):
    model.eval()
    with minillm.no_grad():
        _, loss = model(x, y)                                # mean nats per predicted token
    model.train()
    return loss.item() * y.size / n_bytes / math.log(2), loss.item()


char_bytes = np.array([len(ch.encode("utf-8")) for ch in char_tokenizer.chars] + [3])  # the unknown id: "�"
bpe_bytes = np.array([len(bpe.pieces.get(i, b"")) for i in range(bpe.vocab_size)])      # <|endoftext|>: 0 bytes
runs = {"characters": (char_tokenizer, char_bytes), f"BPE, {VOCAB} ids": (bpe, bpe_bytes)}
results = {}
for name, (tokenizer, piece_bytes) in runs.items():
    train_ids = np.asarray(tokenizer.encode(corpus.train[:TRAIN_CHARS]))
    x_val, y_val, val_bytes = held_out_windows(tokenizer, piece_bytes)
    minillm.manual_seed(0)
    model = GPT(GPTConfig(tokenizer.vocab_size, BLOCK, 2, 4, WIDTH))
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = optim.WarmupCosine(opt, warmup=min(50, STEPS // 10), total=STEPS, min_lr=3e-4)
    rng = np.random.default_rng(0)
    curve, bytes_seen = [(0, 0, *bits_per_byte(model, x_val, y_val, val_bytes))], 0
    start = time.perf_counter()
    for step in range(1, STEPS + 1):
        x, y = data.batches(train_ids, BLOCK, BATCH, rng)
        bytes_seen += int(piece_bytes[y].sum())
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        minillm.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % (STEPS // EVALS) == 0:
            curve.append((step, bytes_seen, *bits_per_byte(model, x_val, y_val, val_bytes)))
    results[name] = {"curve": curve, "bpb": curve[-1][2], "nats": curve[-1][3], "vocab": tokenizer.vocab_size,
                     "parameters": model.num_parameters(), "bytes_per_step": bytes_seen / STEPS,
                     "val_tokens": y_val.size, "val_bytes": val_bytes}
    print(f"{name:14s}: {model.num_parameters():,} parameters, {bytes_seen / STEPS:,.0f} bytes per step of "
          f"{BATCH * BLOCK:,} tokens, {time.perf_counter() - start:.1f} s; held-out: {curve[-1][3]:.3f} nats per "
          f"token over {y_val.size:,} tokens ({val_bytes:,} bytes) = {curve[-1][2]:.3f} bits per byte")

# %% [markdown]
# At step 0 both models guess nearly uniformly, $-\ln p = \ln V$ nats per token, so they
# start at $\log_2 V$ bits per token times tokens per byte: $\log_2 102 \approx 6.7$ for the
# characters, $\log_2 512 \times 0.55 \approx 5.0$ for BPE — already lower, because there
# are fewer predictions to make. Then, at this page's budget (200 steps with `--quick`, 1,500
# on three times the text in the full run), the BPE model stays ahead at every evaluation and
# ends lower. Its loss *per token* is higher: each token is a couple of bytes to guess at
# once. But it makes far fewer predictions for the same text, and the total is smaller.
#
# Part of its advantage is that each of its steps reads about twice the text. The right-hand
# panel plots the same curves against the text read, and BPE still lies below: at half its
# steps, having read less text than the character model's whole run, it is already lower
# than the character model's end point (by a wide margin with `--quick`, narrowly in the full
# run). Its 64-token window also reaches about 120 bytes back, against 64.

# %%
char_run, bpe_run = results["characters"], results[f"BPE, {VOCAB} ids"]
blocks_char = char_run["parameters"] - 2 * char_run["vocab"] * WIDTH
blocks_bpe = bpe_run["parameters"] - 2 * bpe_run["vocab"] * WIDTH
start_bpb = {name: run["curve"][0][2] for name, run in results.items()}
uniform = {name: math.log2(run["vocab"]) * run["val_tokens"] / run["val_bytes"] for name, run in results.items()}
print("step 0, measured vs log2(V) × tokens per byte:",
      ", ".join(f"{name} {start_bpb[name]:.3f} vs {uniform[name]:.3f}" for name in results))
checks.claim(all(abs(start_bpb[n] / uniform[n] - 1) < 0.02 for n in results),
             "untrained, each model scores log2(V) bits per token × tokens per byte, within 2% "
             f"({char_run['curve'][0][2]:.2f} and {bpe_run['curve'][0][2]:.2f} bits per byte)")
checks.claim(blocks_char == blocks_bpe, f"apart from the embedding and the output layer (vocab × {WIDTH} each) "
             f"both models have the same {blocks_char:,} parameters")
checks.claim(bpe_run["bpb"] < char_run["bpb"] and bpe_run["nats"] > char_run["nats"],
             f"after {STEPS:,} steps the BPE model needs {bpe_run['bpb']:.3f} bits per held-out byte against the "
             f"character model's {char_run['bpb']:.3f}, though its loss per token is higher "
             f"({bpe_run['nats']:.2f} vs {char_run['nats']:.2f} nats)")
checks.claim(all(b[2] < c[2] for c, b in zip(char_run["curve"][1:], bpe_run["curve"][1:])),
             f"the BPE model is ahead in bits per byte at every one of the {EVALS} evaluations")

half = bpe_run["curve"][EVALS // 2]
checks.claim(half[1] < char_run["curve"][-1][1] and half[2] < char_run["bpb"],
             f"at step {half[0]} the BPE model has read {half[1]:,} bytes, fewer than the character model's "
             f"{char_run['curve'][-1][1]:,} in {STEPS:,} steps, and is already lower ({half[2]:.3f} vs "
             f"{char_run['bpb']:.3f} bits per byte)")

fig, (by_step, by_bytes) = plt.subplots(1, 2, figsize=(12, 4.3))
for name, run in results.items():
    steps, seen, bpb, _ = zip(*run["curve"])
    label = f"{name} ({run['bytes_per_step']:,.0f} bytes per step)"
    by_step.plot(steps, bpb, "o-", ms=4, label=label)
    by_bytes.plot(np.array(seen) / 1000, bpb, "o-", ms=4, label=label)
by_step.set(xlabel=f"training step ({BATCH} × {BLOCK} tokens each)", ylabel="held-out bits per byte",
            title=f"a GPT on characters vs on BPE tokens, {STEPS:,} steps")
by_bytes.set(xlabel="training text read (thousands of bytes)", ylabel="held-out bits per byte",
             title="the same curves against the text read")
for ax in (by_step, by_bytes):
    ax.legend(fontsize=8)
save_figure(fig, OUT / "bits_per_byte.png")
checks.finish()

# %% [markdown]
# ## Try this
# - Run the full lesson (no `--quick`): 1,500 steps on 300,000 characters. BPE still wins,
#   by less: about 2.86 bits per byte against 3.02 (on a run here).
# - Give the character model the same *bytes* per step as the BPE model rather than the same
#   tokens: `BATCH = 32` for the character run only (twice the work per step). With `--quick`
#   it ends near 4.01 bits per byte instead of 4.07, still far above BPE's 3.39: more text per
#   step is not the main reason BPE wins here.
# - Give the GPT the 1,024-token vocabulary (`bpe_1024`, same text, same budget): with
#   `--quick`, about 3.23 bits per byte against the 512-token model's 3.39.
# - Train the tokenizer with `GPT4_PATTERN` instead of GPT-2's: on this English text the two
#   learn 244 of the same 255 merges, and GPT-4's compresses held-out text a little more
#   (0.549 against 0.554 tokens per byte).
# - Encode Chinese with this tokenizer: `bpe.encode("分词器")`. It learned from English, so no
#   merge applies: 9 ids for 3 characters, their raw UTF-8 bytes.
# - Ask Hugging Face's trainer for 4,096 ids on `BPE_TEXT`. With `min_frequency=2` (its
#   default) it stops at 2,026, as no pair left occurs twice; with `min_frequency=1`, at 3,224,
#   when every chunk of the 40,000 characters has become a single token.
#
# Graded exercises for this chapter: `minillm exercise 5` (fill in `exercises/05_tokenizer.py`;
# `--solution` shows ours).
