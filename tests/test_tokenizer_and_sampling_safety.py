"""Hostile or broken input stays an error a person can read: a tokenizer file cannot bring a
pattern that hangs the regex engine, a malformed tokenizer file is a ValueError naming what
is wrong, and a model padded wider than its tokenizer never samples an id it cannot decode."""
import json
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minillm import backends, tokenizers
from minillm.models import GPT, GPTConfig, sample
from minillm.tokenizers import bpe, files

TEXT = "def add(a, b):\n    return a + b  # it's 12345 héllo ✓\n" * 8
# each takes the regex engine time exponential in the length of a text it fails on
CATASTROPHIC = [r"(a|a)*$", r"(a+)+$", r"(\w+\s?)*$", r"(a|aa)+$"]


def write(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_file_naming_an_unknown_pattern_is_refused_before_it_is_compiled(pattern, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(bpe.regex, "compile", lambda p, *a, **k: compiled.append(p))
    path = write(tmp_path / "tokenizer.json", {"kind": "bpe", "merges": [], "pattern": pattern})
    with pytest.raises(ValueError, match="is not one minillm knows") as error:
        tokenizers.load(path)
    print(error.value)
    assert str(path) in str(error.value) and "GPT-2's pattern" in str(error.value)
    assert pattern not in compiled  # refused at load, before the engine could run it


def test_each_known_pattern_still_loads_and_cuts_as_before(tmp_path):
    assert set(bpe.KNOWN_PATTERNS) == {bpe.GPT2_PATTERN, bpe.GPT4_PATTERN, bpe.LEGACY_PATTERN}
    for pattern in bpe.KNOWN_PATTERNS:
        trained = tokenizers.BPETokenizer.train(TEXT, 300, pattern=pattern)
        trained.save(tmp_path / "t.json")
        again = tokenizers.load(tmp_path / "t.json")
        assert again.pattern == pattern and again.encode(TEXT) == trained.encode(TEXT)
        assert again.decode(again.encode(TEXT)) == TEXT
    gpt4 = tokenizers.BPETokenizer(pattern=tokenizers.GPT4_PATTERN)
    assert gpt4._chunks.findall("it'S 12345") == ["it", "'S", " ", "123", "45"]  # cl100k's digit groups


def test_a_pattern_given_in_code_stays_free():
    tok = tokenizers.BPETokenizer.train(TEXT, 270, pattern=r"\S+|\s+")
    assert tok.decode(tok.encode(TEXT)) == TEXT


BROKEN_FILES = [  # (the file's JSON, the words its error must contain)
    ([], "expected a JSON object"),
    ({"kind": "char"}, "has no 'chars'"),
    ({"kind": "char", "chars": "abc"}, "chars must be a list"),
    ({"kind": "char", "chars": ["ab", "c"]}, "chars[0] is 'ab', not a single character"),
    ({"kind": "char", "chars": [1, 2]}, "chars[0] is 1, not a single character"),
    ({"kind": "char", "chars": ["a", "b", "a"]}, "chars[2] is 'a' a second time"),
    ({"kind": "bpe"}, "has no 'merges'"),
    ({"kind": "bpe", "merges": 5}, "merges must be a list"),
    ({"kind": "bpe", "merges": [[1]]}, "merges[0] is [1], not a pair of token ids"),
    ({"kind": "bpe", "merges": [[1, 2, 3]]}, "merges[0] is [1, 2, 3], not a pair"),
    ({"kind": "bpe", "merges": [["a", "b"]]}, "merges[0] is ['a', 'b'], not a pair"),
    ({"kind": "bpe", "merges": [[1.5, 2]]}, "merges[0] is [1.5, 2], not a pair"),
    ({"kind": "bpe", "merges": [[-1, 2]]}, "merges[0] is [-1, 2], not a pair"),
    ({"kind": "bpe", "merges": [[True, 2]]}, "merges[0] is [True, 2], not a pair"),
    ({"kind": "bpe", "merges": [[300, 1]]}, "merge 0 (300, 1) uses id 300, which no byte or earlier merge"),
    ({"kind": "bpe", "merges": [[1, 2]], "pattern": 7}, "pattern 7 is not one minillm knows"),
    ({"kind": "bpe", "merges": [], "pattern": ["x"]}, "pattern ['x'] is not one minillm knows"),
    ({"kind": "bpe", "merges": [], "byte_ids": [0, 1]}, "byte_ids must have 256 entries; got 2"),
    ({"kind": "bpe", "merges": [], "byte_ids": [0] * 256}, "byte 1 has id 0, which already stands for"),
    ({"kind": "bpe", "merges": [], "byte_ids": list(range(1, 257))}, "no byte, merge or special token has id 0"),
    ({"kind": "bpe", "merges": [[1, 2]], "merge_ids": [5]}, "merge 0 has id 5, which already stands for"),
    ({"kind": "bpe", "merges": [[1, 2]], "merge_ids": []}, "merge_ids must have 1 entries"),
    ({"kind": "bpe", "merges": [], "special_tokens": ["<|x|>"]}, "special_tokens must map text to an id"),
    ({"kind": "bpe", "merges": [], "special_tokens": {"": 256}}, "each must be non-empty text"),
    ({"kind": "bpe", "merges": [], "special_tokens": {"<|x|>": "a"}}, "has '<|x|>': 'a'; each must be non-empty"),
    ({"kind": "bpe", "merges": [], "special_tokens": {"<|x|>": 65}}, "special token '<|x|>' has id 65, which"),
    ({"kind": "bpe", "merges": [], "special_tokens": {"<|x|>": 1000}}, "no byte, merge or special token has id 256"),
]


@pytest.mark.parametrize("data, problem", BROKEN_FILES)
def test_a_malformed_tokenizer_file_is_a_value_error_naming_the_problem(data, problem, tmp_path):
    path = write(tmp_path / "tokenizer.json", data)
    with pytest.raises(ValueError, match=re.escape(problem)) as error:
        tokenizers.load(path)
    assert str(path) in str(error.value)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 300) | st.floats(allow_nan=False) | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=8)
IDS = st.lists(st.integers(-1, 300), max_size=3)
FILES = st.one_of(
    st.fixed_dictionaries({"kind": st.just("bpe"), "merges": JSON | st.lists(IDS, max_size=6)},
                          optional={"pattern": JSON | st.sampled_from([bpe.GPT2_PATTERN, bpe.LEGACY_PATTERN]),
                                    "byte_ids": JSON | st.permutations(range(256)).map(list),
                                    "merge_ids": JSON | st.lists(st.integers(-1, 300), max_size=6),
                                    "special_tokens": JSON | st.dictionaries(st.text(max_size=3), st.integers(-1, 300),
                                                                             max_size=2)}),
    st.fixed_dictionaries({"kind": st.just("char")},
                          optional={"chars": JSON | st.lists(st.text(max_size=2), max_size=6),
                                    "fallback": JSON | st.sampled_from(["unknown", "bytes"])}),
    JSON)


@given(FILES)
def test_any_tokenizer_json_loads_or_is_a_value_error(data):
    try:
        tok = tokenizers.from_dict(data)
    except ValueError:
        return
    tok.decode(range(tok.vocab_size))  # every id below vocab_size decodes
    if tok.kind == "bpe":
        assert tok.decode(tok.encode(TEXT[:60])) == TEXT[:60]


VOCAB = {files.spell(bytes([b])): b for b in range(256)} | {"Ġt": 256}  # the bytes, and " t" from one merge


def gpt2_files(path, vocab_edit=None, merges="#version: 0.2\nĠ t\n", config=None):
    """GPT-2's files for VOCAB (vocab.json + merges.txt), broken by the caller."""
    path.mkdir(exist_ok=True)
    write(path / "vocab.json", vocab_edit(VOCAB) if vocab_edit else VOCAB)
    (path / "merges.txt").write_text(merges, encoding="utf-8")
    if config is not None:
        write(path / "tokenizer_config.json", config)
    return path


def hf_tokenizer_json(path, model_edit=None, added=()):
    """Hugging Face's tokenizer.json for VOCAB, broken by the caller."""
    model = {"type": "BPE", "vocab": VOCAB, "merges": ["Ġ t"]}
    path.mkdir(exist_ok=True)
    write(path / "tokenizer.json", {"model": model_edit(model) if model_edit else model, "added_tokens": list(added)})
    return path


PRETRAINED_BROKEN = [  # (a function making the folder, the words its error must contain)
    (lambda p: gpt2_files(p, vocab_edit=lambda v: list(v)), "vocabulary in vocab.json must map tokens to ids"),
    (lambda p: gpt2_files(p, vocab_edit=lambda v: v | {"Ġt": "x"}), "vocab.json has 'Ġt': 'x'"),
    (lambda p: gpt2_files(p, merges="Ġ t x\n"), "merge 0 in merges.txt is ['Ġ', 't', 'x'], not two tokens"),
    (lambda p: gpt2_files(p, merges="Ġt\n"), "merge 0 in merges.txt is ['Ġt'], not two tokens"),
    (lambda p: gpt2_files(p, merges="Ġ q\n"), "token 'Ġq' is used by a merge or is a byte, but vocab.json has no id"),
    (lambda p: gpt2_files(p, vocab_edit=lambda v: v | {"Ġt": 300}), "no byte, merge or special token has id 256"),
    (lambda p: gpt2_files(p, config={"added_tokens_decoder": []}), "added_tokens_decoder must map ids to tokens"),
    (lambda p: gpt2_files(p, config={"added_tokens_decoder": {"x": {"content": "<|e|>"}}}),
     "the added tokens has '<|e|>': 'x'"),
    (lambda p: gpt2_files(p, config=[1]), "added_tokens_decoder must map ids to tokens"),
    (lambda p: hf_tokenizer_json(p, lambda m: m | {"merges": [[1, 2]]}), "merge 0 in tokenizer.json is [1, 2]"),
    (lambda p: hf_tokenizer_json(p, lambda m: m | {"merges": None}), "merges must be a list"),
    (lambda p: hf_tokenizer_json(p, lambda m: m | {"vocab": None}), "must map tokens to ids; got NoneType"),
    (lambda p: hf_tokenizer_json(p, added=[{"content": "<|e|>"}]), "the added tokens has '<|e|>': None"),
    (lambda p: hf_tokenizer_json(p, added=["<|e|>"]), "the added tokens has '<|e|>': None"),
    (lambda p: hf_tokenizer_json(p, lambda m: "BPE"), "expected 'BPE'"),
]


@pytest.mark.parametrize("make, problem", PRETRAINED_BROKEN)
def test_malformed_pretrained_files_are_value_errors_naming_the_problem(make, problem, tmp_path):
    folder = make(tmp_path / "tok")
    with pytest.raises(ValueError, match=re.escape(problem)):
        tokenizers.from_pretrained(folder)


def test_the_well_formed_pretrained_files_above_load(tmp_path):
    for folder in (gpt2_files(tmp_path / "a"), hf_tokenizer_json(tmp_path / "b")):
        assert tokenizers.from_pretrained(folder).encode(" t t") == [256, 256]


def test_decode_of_an_id_outside_the_vocabulary_is_a_value_error():
    for tok in (tokenizers.CharTokenizer.train("abc"), tokenizers.BPETokenizer.train(TEXT, 260)):
        for i in (tok.vocab_size, -1):
            with pytest.raises(ValueError, match=re.escape(f"id {i} is outside the vocabulary (0..{tok.vocab_size - 1})")):
                tok.decode([0, i])


# A model padded to 70 outputs for a tokenizer of 50 ids, its weights set so that every
# padded logit is 40 and every real one about N(0, 8): unmasked, it samples only padding.
TOKENIZER = tokenizers.CharTokenizer([chr(ord("0") + k) for k in range(49)])
HEAD = np.concatenate([np.random.default_rng(0).normal(0, 1, (50, 8)), np.full((20, 8), 5.0)]).astype(np.float32)
SAMPLING = [dict(temperature=0), dict(temperature=1.0), dict(temperature=2.0, top_k=5), dict(top_p=0.9),
            dict(temperature=1.5, top_k=60, top_p=0.99)]


@pytest.fixture(scope="module")
def padded_model():
    model = GPT(GPTConfig(vocab_size=70, block_size=16, n_layer=1, n_head=2, n_embd=8))
    model.ln_f.weight.data = backends.asarray(np.zeros(8, np.float32))  # so every final state is ln_f.bias,
    model.ln_f.bias.data = backends.asarray(np.ones(8, np.float32))     # and the logits are HEAD's row sums
    model.lm_head.weight.data = backends.asarray(HEAD)
    return model


def test_the_padded_model_does_sample_padding_when_nothing_masks_it(padded_model):
    assert TOKENIZER.vocab_size == 50
    out = padded_model.generate(np.array([[1, 2]]), 6, temperature=1.0)
    assert (out[0, 2:] >= 50).all()


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("options", SAMPLING)
def test_generation_draws_only_ids_the_tokenizer_decodes(padded_model, options, use_cache):
    prompt = np.array([TOKENIZER.encode("12"), TOKENIZER.encode("34")])
    out = padded_model.generate(prompt, 12, use_cache=use_cache, vocab_size=TOKENIZER.vocab_size, **options)
    new = out[:, 2:]
    print(options, "use_cache", use_cache, "largest id drawn", new.max())
    assert out.shape == (2, 14) and new.max() < TOKENIZER.vocab_size
    TOKENIZER.decode(out[0].tolist())
    if options.get("temperature", 1.0) == 0:  # greedy: the best real id, whatever the padding says
        assert (new == HEAD[:TOKENIZER.vocab_size].sum(1).argmax()).all()


@pytest.mark.parametrize("options", SAMPLING)
def test_sample_masks_the_padded_ids(options):
    logits = np.concatenate([np.random.default_rng(1).normal(0, 1, (64, 50)), np.full((64, 20), 1e4)], axis=1)
    drawn = sample(logits, vocab_size=50, **options)
    assert drawn.shape == (64,) and drawn.max() < 50


@pytest.mark.parametrize("vocab_size", [0, -3, 2.5])
def test_a_vocab_size_that_is_not_a_positive_integer_is_refused(vocab_size):
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        sample(np.zeros((1, 4)), vocab_size=vocab_size)
