"""Tokenizers round-trip any text; the corpora, the Markov source and the CSV reader."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minillm import data, tokenizers

TRAINING_TEXT = "def add(a, b):\n    return a + b  # sum of two numbers\n" * 20 + "héllo wörld ✓ "
BPE = tokenizers.BPETokenizer.train(TRAINING_TEXT, 300)
CHARS = tokenizers.CharTokenizer.train("abcdef \n")


@given(st.text())
def test_bpe_round_trips_any_text(text):
    assert BPE.decode(BPE.encode(text)) == text


@given(st.text())
def test_char_tokenizer_gives_unseen_characters_the_unknown_id(text):
    ids = CHARS.encode(text)
    assert CHARS.vocab_size == 8 + 1 and len(ids) == len(text)
    expected = "".join(ch if ch in "abcdef \n" else "\ufffd" for ch in text)
    assert CHARS.decode(ids) == expected
    assert CHARS.unseen(text) == list(dict.fromkeys(ch for ch in text if ch not in "abcdef \n"))


@given(st.text())
def test_old_char_tokenizers_keep_their_byte_fallback(text):
    old = tokenizers.from_dict({"kind": "char", "chars": list("abcdef \n")})  # a file from before 0.2
    ids = old.encode(text)
    assert old.vocab_size == 8 + 256 and all(0 <= i < old.vocab_size for i in ids)
    assert old.decode(ids) == text


def test_bpe_learns_merges_and_compresses():
    assert BPE.vocab_size == 300
    assert len(BPE.encode(TRAINING_TEXT)) < 0.5 * len(TRAINING_TEXT.encode("utf-8"))


def test_save_and_load(tmp_path):
    for tok in (BPE, CHARS):
        tok.save(tmp_path / "t.json")
        again = tokenizers.load(tmp_path / "t.json")
        assert again.encode("abc ✓ return") == tok.encode("abc ✓ return")
        assert again.vocab_size == tok.vocab_size
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer: cannot read"):
        tokenizers.load(tmp_path / "bad.json")


def test_decode_rejects_unknown_ids():
    with pytest.raises(ValueError, match="decode: id 999 is outside the vocabulary"):
        BPE.decode([999])


def test_python_docs_corpus_is_deterministic():
    first, second = data.corpus("python-docs"), data.corpus("python-docs")
    assert first.text == second.text and len(first.text) > 100_000
    assert first.train + first.val == first.text and len(first.val) == pytest.approx(0.1 * len(first.text), rel=0.01)


def test_corpus_file_errors(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("too short")
    with pytest.raises(ValueError, match="is too small; need at least 1000"):
        data.corpus(str(small))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="0 characters is too small"):
        data.corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(FileNotFoundError, match="neither 'python-docs' nor a readable file"):
        data.corpus(str(tmp_path / "missing.txt"))
    big = tmp_path / "big.txt"
    big.write_text("x" * 2000)
    assert len(data.corpus(str(big)).train) == 1800


def test_markov_entropy_rate_matches_the_empirical_rate():
    source = data.MarkovSource(order=1, vocab_size=4, seed=0)
    tokens = source.sample(200_000)
    counts = np.zeros((4, 4))
    np.add.at(counts, (tokens[:-1], tokens[1:]), 1)
    empirical = -np.mean(np.log(source.table[tokens[:-1], tokens[1:]]))
    print(f"exact entropy rate {source.entropy_rate():.4f}, empirical {empirical:.4f}")
    assert abs(source.entropy_rate() - empirical) < 0.01


def test_markov_source_rejects_bad_sizes():
    with pytest.raises(ValueError, match="MarkovSource: need order >= 1"):
        data.MarkovSource(order=0, vocab_size=4)


def test_sentiment_set_and_csv(tmp_path):
    rows = data.sentiment_dataset(200, seed=1)
    assert {label for _, label in rows} == {0, 1}
    assert any(" not " in text for text, _ in rows)
    path = tmp_path / "labels.csv"
    path.write_text("text,label\ngood stuff,1\nbad stuff,0\n")
    assert data.read_labelled_csv(path) == [("good stuff", 1), ("bad stuff", 0)]
    path.write_text("text,label\nbad,maybe\n")
    with pytest.raises(ValueError, match="line 2: label 'maybe' is not an integer"):
        data.read_labelled_csv(path)
    path.write_text("sentence,score\nx,1\n")
    with pytest.raises(ValueError, match="needs a header with columns text,label"):
        data.read_labelled_csv(path)
