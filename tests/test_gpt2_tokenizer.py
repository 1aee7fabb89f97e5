"""GPT-2's tokenizer: minillm's BPE reads and writes GPT-2's vocab.json + merges.txt and
encodes exactly as Hugging Face's GPT2TokenizerFast (the peer, in Rust), on drawn text
and on a slice of the corpus, in both directions: their files read by us, ours by them."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from minillm import data
from minillm.tokenizers import BPETokenizer, from_pretrained, load

transformers = pytest.importorskip("transformers", reason="transformers is an optional oracle (minillm[oracle])")
hf_tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is an optional oracle (minillm[oracle])")

CORPUS = data.corpus("python-docs").text
# text the drawn strings mix in: contractions, digits, runs of spaces and newlines, non-Latin
# scripts, emoji and the special token, where a pre-tokenizer's corner cases live
PIECES = st.sampled_from(["'s", "'ll", " it's", "  ", "\n\n", " \n", "\t", "123", " 4.5", "東京", "🙂", "é",
                          "<|endoftext|>", " <|endoftext|>x", "Hello", " world"])
TEXT = st.lists(st.one_of(st.text(max_size=12), PIECES), max_size=12).map("".join)


@pytest.fixture(scope="module")
def their_files(tmp_path_factory):
    """A byte-level BPE trained by Hugging Face's tokenizers, saved in GPT-2's format."""
    path = tmp_path_factory.mktemp("their_bpe")
    bpe = hf_tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([CORPUS[:60_000]], vocab_size=700, min_frequency=2, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(path))
    return path


@pytest.fixture(scope="module")
def our_files(tmp_path_factory):
    path = tmp_path_factory.mktemp("our_bpe")
    BPETokenizer.train(CORPUS[:30_000], 400).save_pretrained(path)
    return path


def pair(path):
    return BPETokenizer.from_pretrained(path), transformers.GPT2TokenizerFast.from_pretrained(str(path))


@pytest.mark.parametrize("files", ["their_files", "our_files"])  # theirs read by us, ours read by them
@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_encodes_as_gpt2_tokenizer_fast(files, text, request):
    ours, theirs = pair(request.getfixturevalue(files))
    assert ours.encode(text) == theirs.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_a_corpus_slice_and_the_special_token(their_files):
    ours, theirs = pair(their_files)
    text = CORPUS[200_000:230_000] + "<|endoftext|>" + CORPUS[:2000]
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ids.count(ours.special_tokens["<|endoftext|>"]) == 1
    assert ours.vocab_size == len(theirs) == 700


def test_a_trained_tokenizer_keeps_its_merges_through_every_format(tmp_path):
    trained = BPETokenizer.train(CORPUS[:20_000], 300)
    assert trained.vocab_size == 300 and trained.special_tokens == {"<|endoftext|>": 299}
    trained.save(tmp_path / "tokenizer.json")
    trained.save_pretrained(tmp_path / "gpt2")
    text = CORPUS[50_000:52_000]
    for again in (load(tmp_path / "tokenizer.json"), from_pretrained(tmp_path / "gpt2")):
        assert again.encode(text) == trained.encode(text)


def test_tokenizers_saved_before_the_gpt2_pattern_keep_theirs(tmp_path):
    """A 0.1 tokenizer.json has no pattern: it must still cut text the old way, and must
    not pretend to be GPT-2's."""
    old = {"kind": "bpe", "merges": [[32, 116], [256, 104]]}  # " t", then " t"+"h"
    (tmp_path / "tokenizer.json").write_text(json.dumps(old))
    tok = load(tmp_path / "tokenizer.json")
    assert tok.encode("it's the") == [105, 116, 39, 115, 257, 101]  # "it", "'", "s", " th"+"e"
    with pytest.raises(ValueError, match="pre-0.2 pattern"):
        tok.save_pretrained(tmp_path / "gpt2")


def test_broken_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        BPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match="vocab.json has no id"):
        BPETokenizer.from_pretrained(tmp_path)
