"""Checks for chapter 05: pair counting against counts taken by hand, merge against the
library's, and training, encoding and decoding against BPETokenizer on drawn texts (a
small alphabet, so runs like "aaa", ties between pairs and multi-byte characters are
common)."""
from hypothesis import strategies as st

from minillm.exercise import Wrong, exercise, short
from minillm.tokenizers import BPETokenizer
from minillm.tokenizers.bpe import _merge

ALPHABET = "aab b\n\té東🙂"   # repeats, spaces that GPT-2's pattern treats specially, 1- to 4-byte characters


def texts(max_size=40):
    """Characters at random, or words from a small alphabet that repeat (so that merges build on merges)."""
    words = st.lists(st.text("abé", min_size=1, max_size=4), max_size=max_size // 3)
    return st.one_of(st.text(alphabet=ALPHABET, max_size=max_size),
                     st.tuples(words, st.sampled_from([" ", "\n", "  "])).map(lambda w: w[1].join(w[0])))


def expect_same_dict(got, expected, what):
    if not isinstance(got, dict):
        raise Wrong(f"{what}: expected a dict, got {type(got).__name__}")
    for key in sorted(set(expected) | set(got), key=repr):
        if got.get(key, 0) != expected.get(key, 0) or (key in got) != (key in expected):
            raise Wrong(f"{what}: expected {key}: {expected.get(key, '(absent)')}, got {key}: "
                        f"{got.get(key, '(absent)')}")


def expect_same_list(got, expected, what):
    """Two sequences (of ints, or of pairs) equal element for element."""
    if not isinstance(got, (list, tuple)):
        raise Wrong(f"{what}: expected a {type(expected).__name__} of {len(expected)}, got {type(got).__name__}")
    normal = [tuple(x) if isinstance(x, (list, tuple)) else x for x in got]
    for k, (a, b) in enumerate(zip(normal, expected)):
        if a != b:
            raise Wrong(f"{what}: expected {b!r} at position {k}, got {a!r}")
    if len(normal) != len(expected):
        raise Wrong(f"{what}: expected {len(expected)} entries, got {len(normal)} "
                    f"(ending {short(list(expected[-3:]))} vs {short(normal[-3:])})")


@st.composite
def word_counts(draw):
    words = st.lists(st.integers(0, 3), max_size=8).map(tuple)
    return draw(st.dictionaries(words, st.integers(1, 5), min_size=1, max_size=6))


@exercise("pair_counts", words=word_counts())
def check_pair_counts(learner, words):
    expected = {}
    for word, count in words.items():
        for i in range(len(word) - 1):
            expected[word[i], word[i + 1]] = expected.get((word[i], word[i + 1]), 0) + count
    expect_same_dict(learner.pair_counts(dict(words)), expected, "pair_counts(words)")


@st.composite
def merge_case(draw):
    ids = tuple(draw(st.lists(st.integers(0, 2), max_size=20)))   # three ids: runs such as (1, 1, 1) are common
    return ids, (draw(st.integers(0, 2)), draw(st.integers(0, 2)))


@exercise("merge", case=merge_case())
def check_merge(learner, case):
    ids, pair = case
    expect_same_list(learner.merge(ids, pair, 256), _merge(ids, pair, 256), f"merge(ids, {pair}, 256)")


@exercise("train_bpe", text=texts(60), num_merges=st.integers(0, 20))
def check_train_bpe(learner, text, num_merges):
    expected = BPETokenizer.train(text, 257 + num_merges).merges    # 256 bytes, the merges, <|endoftext|>
    expect_same_list(learner.train_bpe(text, num_merges), expected,
                     f"train_bpe(text, {num_merges}), the merges table as BPETokenizer.train learns it")


@exercise("encode", training=texts(60), text=texts(), num_merges=st.integers(0, 20))
def check_encode(learner, training, text, num_merges):
    tokenizer = BPETokenizer.train(training, 257 + num_merges)
    cases = [(text, tokenizer), (training, tokenizer),  # new text (unseen characters, other words), the training text
             ("abc", BPETokenizer([(98, 99), (97, 98)])),   # by rank, not from the left: "a" + "bc", not "ab" + "c"
             ("a  b", BPETokenizer([(32, 32), (32, 98)]))]  # chunks "a", " ", " b": the two spaces never merge
    for piece, library in cases:
        expect_same_list(learner.encode(piece, list(library.merges)), library.encode(piece),
                         f"encode({short(piece)}, {short(library.merges)}), the ids BPETokenizer.encode gives")


@st.composite
def decode_case(draw):
    tokenizer = BPETokenizer.train(draw(texts(60)), 257 + draw(st.integers(0, 12)))
    ids = draw(st.lists(st.integers(0, 255 + len(tokenizer.merges)), max_size=12))   # may cut a character
    return list(tokenizer.merges), ids, draw(texts())


@exercise("decode", case=decode_case())
def check_decode(learner, case):
    merges, ids, text = case
    tokenizer = BPETokenizer(merges)
    for sequence, what in ((ids, f"decode({ids}, merges)"), (tokenizer.encode(text), "decode(encode(text), merges)")):
        got, expected = learner.decode(list(sequence), list(merges)), tokenizer.decode(sequence)
        if not isinstance(got, str):
            raise Wrong(f"{what}: expected a str, got {type(got).__name__}")
        if got != expected:
            raise Wrong(f"{what}: expected {expected!r}, got {got!r}")
