"""Chapter 05 exercises: byte-pair encoding (read lessons/05_tokenizer.py first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 5

Plain Python (and `regex` for the pre-split): the checks compare your answers with
minillm's BPETokenizer (its `train`, `encode` and `decode`) on freshly drawn texts, many
of them runs of one letter, so calling BPETokenizer would only compare it with itself.
Token ids are ints: 0..255 are the bytes, and merge k (counting from 0) makes id 256 + k.
"""
import regex  # noqa: F401  (yours to use: regex.findall(GPT2_PATTERN, text) cuts text into chunks)

from minillm.tokenizers import GPT2_PATTERN  # noqa: F401  (GPT-2's pre-split pattern, a plain string)


def pair_counts(words):
    """How often each pair of adjacent ids occurs.

    words: a dict {tuple of ids: how many times that sequence occurs in the text}.
    Return a dict {(a, b): n}: for every sequence, every adjacent pair (ids[i], ids[i+1]),
    counted once per position and times the sequence's count. Overlapping pairs all
    count: (97, 97, 97) holds the pair (97, 97) twice. Pairs that never occur are
    absent (not 0); a sequence of length 0 or 1 has no pairs.
    """
    raise NotImplementedError


def merge(ids, pair, new_id):
    """``ids`` with ``pair`` replaced by ``new_id``, scanning left to right.

    ids: a tuple of ints; pair: a tuple (a, b); new_id: an int that ids does not hold.
    Return a tuple: walk from the left; where ids[i], ids[i+1] equal the pair, emit new_id
    and skip both; otherwise emit ids[i] and move one on. So overlapping occurrences
    merge only once: merge((7, 7, 7), (7, 7), 256) == (256, 7).
    """
    raise NotImplementedError


def train_bpe(text, num_merges):
    """Learn up to ``num_merges`` merges from ``text``, as BPETokenizer.train does.

    1. Cut the text into chunks with regex.findall(GPT2_PATTERN, text); every chunk is a
       sequence of its UTF-8 bytes (tuple(chunk.encode("utf-8"))); equal chunks are
       counted together, {sequence: how many times}. No merge crosses a chunk's edge.
    2. For k = 0, 1, …: count the pairs over all sequences (pair_counts); stop early if
       there are none. Take the most frequent pair; among equally frequent pairs, the one
       with the smallest first id, then the smallest second id. Merge it everywhere into
       the new id 256 + k.
    Return the merges as a list of (a, b) tuples of ints, in the order they were learned
    (the merges table: at most num_merges of them).
    """
    raise NotImplementedError


def encode(text, merges):
    """``text`` → a list of token ids, with the merges table ``merges`` (merge r, the r-th
    pair of the list, makes id 256 + r).

    Cut the text into chunks with GPT2_PATTERN as train_bpe does, and encode each chunk on
    its own, starting from its UTF-8 bytes: while some adjacent pair has a merge, take the
    pair with the lowest rank r (learned first) and merge all its occurrences into
    256 + r. Return the chunks' ids one after another (a list of ints; [] for "").
    """
    raise NotImplementedError


def decode(ids, merges):
    """Token ids → text, with the merges table ``merges``.

    Every id stands for bytes: id b < 256 for the single byte b, id 256 + r for the bytes of
    merge r's two ids joined (build the table in merge order: a merge may use an earlier
    merge's id). Join the bytes of all the ids and decode them as UTF-8 with
    errors="replace", so a sequence cut in the middle of a character gives "\\ufffd"
    instead of an exception. Return a str.
    """
    raise NotImplementedError
