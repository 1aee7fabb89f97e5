"""Chapter 05 exercises, solved (see exercises/05_tokenizer.py for the tasks)."""
from collections import Counter

import regex

from minillm.tokenizers import GPT2_PATTERN


def pair_counts(words):
    counts = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += count
    return dict(counts)


def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return tuple(out)


def train_bpe(text, num_merges):
    words = Counter(tuple(chunk.encode("utf-8")) for chunk in regex.findall(GPT2_PATTERN, text))
    merges = []
    for k in range(num_merges):
        counts = pair_counts(words)
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))   # ties: the smallest ids
        merges.append(best)
        words = {merge(word, best, 256 + k): count for word, count in words.items()}
    return merges


def encode(text, merges):
    rank = {tuple(pair): r for r, pair in enumerate(merges)}
    out = []
    for chunk in regex.findall(GPT2_PATTERN, text):
        ids = tuple(chunk.encode("utf-8"))
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))   # learned first
            if pair not in rank:
                break
            ids = merge(ids, pair, 256 + rank[pair])
        out.extend(ids)
    return out


def decode(ids, merges):
    pieces = {b: bytes([b]) for b in range(256)}
    for r, (a, b) in enumerate(merges):
        pieces[256 + r] = pieces[a] + pieces[b]
    return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")
