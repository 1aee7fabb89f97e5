"""Token files: `minillm prepare` writes train.bin/val.bin (nanoGPT's layout) that decode
back to the corpus, `train --data=DIR` memory-maps them, and every damaged folder is an
error naming the problem."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm import cli, data, tokenfiles
from minillm.train import Trainer, TrainConfig

CORPUS = data.corpus("python-docs").text[:40_000]


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    """Three documents in a folder (one in a subfolder), and a file that is not text."""
    root = tmp_path_factory.mktemp("docs")
    (root / "sub").mkdir()
    parts = [CORPUS[:15_000], CORPUS[15_000:27_000], CORPUS[27_000:]]
    for path, text in zip([root / "a.txt", root / "b.md", root / "sub" / "c.txt"], parts):
        path.write_text(text, encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG not text")
    return root, parts


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_prepared_tokens_decode_back_to_the_corpus(folder_corpus, tmp_path, kind):
    root, parts = folder_corpus
    meta = tokenfiles.prepare(root, tmp_path, kind, vocab_size=300, progress=False)
    splits, tok, again = tokenfiles.load(tmp_path)
    assert again == meta and meta["files"] == 3 and meta["dtype"] == "uint16"
    assert isinstance(splits["train"], np.memmap) and not splits["train"].flags.writeable
    text = tok.decode(np.concatenate([splits["train"], splits["val"]]).tolist())
    separator = "<|endoftext|>" if kind == "bpe" else ""  # documents are separated where the tokenizer can say so
    assert text == separator.join(parts)
    # the split falls 90 % of the way through the bytes, as data.corpus splits a text
    assert abs(len(tok.decode(splits["val"].tolist())) - 0.1 * len(text)) < 0.01 * len(text)


@settings(max_examples=20, deadline=None)
@given(text=st.text(min_size=60, max_size=400), block=st.integers(1, 50))
def test_blocks_never_change_the_text(tmp_path_factory, text, block):
    path = tmp_path_factory.mktemp("t") / "x.txt"
    path.write_text(text, encoding="utf-8", newline="")
    old, tokenfiles.BLOCK_CHARS = tokenfiles.BLOCK_CHARS, block
    try:
        assert "".join(tokenfiles._read_blocks(path)) == text
    finally:
        tokenfiles.BLOCK_CHARS = old


def test_a_large_vocabulary_is_written_as_uint32():
    assert tokenfiles.dtype_for(50257) == np.uint16 and tokenfiles.dtype_for(65537) == np.uint32


def test_train_memory_maps_the_token_folder_and_the_cli_runs_end_to_end(tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    tokens, run = tmp_path / "tokens", tmp_path / "run"
    assert cli.main(["prepare", f"--data={tmp_path / 'corpus.txt'}", f"--out={tokens}", "--tokenizer=bpe",
                     "--vocab_size=300"]) == 0
    args = [f"--data={tokens}", f"--out_dir={run}", "--max_iters=3", "--eval_interval=3", "--eval_iters=1",
            "--block_size=16", "--batch_size=2", "--n_layer=1", "--n_embd=16", "--progress=false"]
    trainer = Trainer(TrainConfig(**dict(a[2:].split("=", 1) for a in args[:2]), max_iters=3, block_size=16,
                                  batch_size=2, n_layer=1, n_embd=16, progress=False))
    assert isinstance(trainer.splits["train"], np.memmap)  # mapped, not read into memory
    assert trainer.tokenizer.vocab_size == 300
    assert cli.main(["train", *args]) == 0
    assert cli.main(["eval", f"--out_dir={run}", "--eval_iters=1"]) == 0
    hf = tmp_path / "hf"
    assert cli.main(["export", f"--out_dir={run}", f"--hf={hf}"]) == 0
    assert (hf / "vocab.json").exists() and (hf / "model.safetensors").exists()
    assert cli.main(["sample", f"--init_from={hf}", "--start=The ", "--max_new_tokens=4", "--top_p=0.9"]) == 0
    assert cli.main(["eval", f"--init_from={hf}", f"--data={tokens}", "--eval_iters=1"]) == 0
    assert cli.main(["eval", f"--init_from={hf}"]) == 2  # a Hugging Face folder has no data of its own


@pytest.fixture
def prepared(tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "tokens"
    tokenfiles.prepare(tmp_path / "corpus.txt", out, "char", progress=False)
    return out


def test_a_truncated_file_is_refused(prepared):
    raw = (prepared / "val.bin").read_bytes()
    (prepared / "val.bin").write_bytes(raw[:-3])
    with pytest.raises(tokenfiles.TokenFileError, match="val.bin has .* bytes.*truncated"):
        tokenfiles.load(prepared)


def test_ids_outside_the_vocabulary_are_refused(prepared):
    train = np.fromfile(prepared / "train.bin", np.uint16)
    train[123] = 60000
    train.tofile(prepared / "train.bin")
    with pytest.raises(tokenfiles.TokenFileError, match="id 60000, outside the vocabulary"):
        tokenfiles.load(prepared)


def test_a_tokenizer_from_elsewhere_is_refused(prepared):
    (prepared / "tokenizer-minillm.json").write_text(json.dumps({"kind": "char", "chars": list("abc"),
                                                                 "fallback": "unknown"}))
    with pytest.raises(tokenfiles.TokenFileError, match="does not belong"):
        tokenfiles.load(prepared)


def test_missing_or_corrupt_metadata_and_untokenized_folders(prepared, tmp_path):
    (prepared / "tokens.json").write_text("{not json")
    with pytest.raises(tokenfiles.TokenFileError, match="corrupt"):
        tokenfiles.load(prepared)
    (prepared / "tokens.json").unlink()
    with pytest.raises(ValueError, match="minillm prepare"):
        Trainer(TrainConfig(data=str(prepared), out_dir=str(tmp_path / "run")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(tokenfiles.TokenFileError, match="no .txt or .md"):
        tokenfiles.prepare(tmp_path / "empty", tmp_path / "o")
