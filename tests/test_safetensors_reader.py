"""read_safetensors and the folder around it, against hostile input: the reader returns
exactly what safetensors wrote, and every lie a header, an index or a config.json can
tell is a PretrainedError naming the file (and the tensor or field) — never another
exception, and never memory sized by a claim the file cannot back."""
import contextlib
import json
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from safetensors.numpy import load_file, save_file

from minillm.models import GPT, GPTConfig, Llama, LlamaConfig
from minillm.models.hf_files import PretrainedError, read_safetensors, weight_files
from minillm.models.hf_llama import config_from_hf

ITEMSIZE = {"F32": 4, "F16": 2, "F64": 8, "BF16": 2}
NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
shapes = st.lists(st.sampled_from([1, 2, 3, 5, 7]), max_size=3)  # [] is a scalar: one value
shapes_or_empty = st.lists(st.sampled_from([0, 1, 2, 3, 5, 7]), max_size=3)  # 0: a legal tensor of no values


@contextlib.contextmanager
def memory_bounded_by(size):
    """Fails when the code inside asks np.fromfile for more bytes than the file holds, or
    its traced peak (NumPy reports to tracemalloc too) passes what a file of ``size`` bytes
    can need — a claim of gigabytes shows either way."""
    real = np.fromfile

    def fromfile(file, dtype=float, count=-1, *args, **kwargs):
        assert 0 <= count and count * np.dtype(dtype).itemsize <= size, f"np.fromfile asked for {count} × {dtype}"
        return real(file, dtype, count, *args, **kwargs)
    tracemalloc.start()
    try:
        with mock.patch.object(np, "fromfile", fromfile):
            yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1_000_000 + 100 * size, f"peak {peak:,} bytes to read a {size:,}-byte file"


@contextlib.contextmanager
def file_holding(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(raw)
        yield path


def read(raw):
    """Every tensor of a file holding ``raw``, as a dict."""
    with file_holding(raw) as path, memory_bounded_by(len(raw)):
        return dict(read_safetensors([path]))


def refused(raw):
    """The message of the PretrainedError that reading ``raw`` raises, and the file's path."""
    with file_holding(raw) as path, memory_bounded_by(len(raw)), pytest.raises(PretrainedError) as error:
        dict(read_safetensors([path]))
    return str(error.value), path


class Parts:
    """A valid file's header (name, entry pairs, in order) and data, to be reassembled bent."""

    def __init__(self, raw):
        n = int.from_bytes(raw[:8], "little")
        self.pairs, self.data = list(json.loads(raw[8:8 + n]).items()), raw[8 + n:]

    def entry(self, name):
        return dict(self.pairs)[name]

    def header(self, pairs=None):
        """Written pair by pair, so a name can repeat."""
        pairs = self.pairs if pairs is None else pairs
        return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()

    def file(self, header=None, claimed=None):
        header = self.header() if header is None else header
        return (len(header) if claimed is None else claimed).to_bytes(8, "little") + header + self.data

    def replacing(self, name, entry):
        return self.file(self.header([(k, entry if k == name else v) for k, v in self.pairs]))

    def with_entry(self, name, **changes):
        return self.replacing(name, {**self.entry(name), **changes})


def saved(tensors, metadata=None):
    with tempfile.TemporaryDirectory() as folder:
        save_file(tensors, f"{folder}/x.safetensors", metadata=metadata)
        return Path(f"{folder}/x.safetensors").read_bytes()


# ---- valid files come back exactly -------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(shapes_or_empty, st.sampled_from(list(ITEMSIZE))), min_size=1, max_size=5),
       st.integers(0, 2 ** 32 - 1), st.booleans())
def test_reads_back_exactly_what_safetensors_wrote(specs, seed, metadata):
    rng = np.random.default_rng(seed)
    written, expected, bfloat16 = {}, {}, []
    for i, (shape, dtype) in enumerate(specs):
        values = np.asarray(rng.standard_normal(shape) * 10, np.float32)
        if dtype == "BF16":  # NumPy has no bfloat16: write float32's high halves, relabelled below
            written[f"t{i}"] = np.asarray(values.view(np.uint32) >> 16, np.uint16)
            expected[f"t{i}"] = (values.view(np.uint32) & 0xFFFF0000).view(np.float32).astype(np.float64)
            bfloat16.append(f"t{i}")
        else:
            written[f"t{i}"] = values.astype(NUMPY[dtype])
            expected[f"t{i}"] = written[f"t{i}"].astype(np.float64)
    raw = saved(written, {"format": "pt"} if metadata else None)
    if bfloat16:  # the header rewritten, the data as safetensors wrote it
        parts = Parts(raw)
        parts.pairs = [(k, {**v, "dtype": "BF16"} if k in bfloat16 else v) for k, v in parts.pairs]
        raw = parts.file()
    got = read(raw)
    assert got.keys() == expected.keys()
    for name, values in expected.items():
        assert got[name].dtype == np.float32 and got[name].shape == values.shape
        np.testing.assert_array_equal(got[name].astype(np.float64), values)


def test_bfloat16_words_are_float32_high_halves():
    words = np.array([0x3F80, 0xC000, 0x7F80, 0x3E20, 0x0001], np.uint16)
    parts = Parts(saved({"w": words}))
    got = read(parts.with_entry("w", dtype="BF16"))
    np.testing.assert_array_equal(got["w"], [1.0, -2.0, np.inf, 0.15625, 2.0 ** -133])


def test_tensors_of_several_files_and_a_name_in_two_of_them(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"x": np.ones(3, np.float32)}, str(a))
    save_file({"y": np.zeros((2, 2), np.float16)}, str(b))
    assert sorted(name for name, _ in read_safetensors([a, b])) == ["x", "y"]
    save_file({"x": np.zeros(3, np.float32)}, str(b))
    with pytest.raises(PretrainedError, match=f"tensor 'x' is in both {a} and {b}"):
        list(read_safetensors([a, b]))


# ---- every lie a header can tell ----------------------------------------------------------------
# Each mutation takes the valid file's parts, the tensor t to bend, another tensor u (both
# hold values) and draw; it returns the bent file and the names its error must give.

def _range(parts, name):
    return tuple(parts.entry(name)["data_offsets"])


def _moved(parts, t, start):
    """t's bytes claimed from ``start`` on, its length kept: only the place lies."""
    size = _range(parts, t)[1] - _range(parts, t)[0]
    return parts.with_entry(t, data_offsets=[start, start + size]), [t]


def _dimension(parts, t, draw, bend):
    shape = list(parts.entry(t)["shape"]) or [1]
    i = draw(st.integers(0, len(shape) - 1))
    return parts.with_entry(t, shape=shape[:i] + [bend(shape[i])] + shape[i + 1:]), [t]


def _set(parts, t, draw, key, values):
    return parts.with_entry(t, **{key: draw(st.sampled_from(values))}), [t]


def _without_key(parts, t, draw):
    key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    return parts.replacing(t, {k: v for k, v in parts.entry(t).items() if k != key}), [t]


def _bad_utf8(parts, draw):
    header = parts.header()  # the bytes land inside the first name's quotes
    return parts.file(header[:2] + draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82"]))
                      + header[2:]), []


def _too_many_digits(parts, t):
    """Python's json refuses to read (and to write) integers of over 4300 digits."""
    return parts.with_entry(t, data_offsets=[0, "END"]).replace(b'"END"', b"1" + b"0" * 5000), []


def _deep(parts, draw):
    depth = draw(st.integers(1, 100_000))
    return parts.file(b"[" * depth + b"]" * depth), []


def _other_size(parts, t, draw):
    size = ITEMSIZE[parts.entry(t)["dtype"]]
    return _set(parts, t, draw, "dtype", [d for d, other in ITEMSIZE.items() if other != size])


MUTATIONS = {
    "negative offsets": lambda p, t, u, draw: _moved(p, t, -draw(st.integers(1, 10 ** 6))),
    "offsets past the end": lambda p, t, u, draw: _moved(p, t, len(p.data) + draw(st.integers(0, 2 ** 70))),
    "offsets inside another tensor": lambda p, t, u, draw: _moved(p, t, draw(st.integers(*_range(p, u)).filter(
        lambda start: start < _range(p, u)[1]))),
    "swapped offsets": lambda p, t, u, draw: (p.with_entry(t, data_offsets=_range(p, t)[::-1]), [t]),
    "offsets not two integers": lambda p, t, u, draw: _set(p, t, draw, "data_offsets", [
        [0], [0, 4, 8], [0.0, 4.0], "0,4", None, {"0": 0}, ["0", "4"], [None, 4], [False, True]]),
    "a negative dimension": lambda p, t, u, draw: _dimension(p, t, draw, lambda n: -draw(st.integers(1, 99))),
    "a true/false dimension": lambda p, t, u, draw: _dimension(p, t, draw, lambda n: draw(st.booleans())),
    "a float dimension": lambda p, t, u, draw: _dimension(p, t, draw, float),
    "a huge dimension": lambda p, t, u, draw: _dimension(p, t, draw, lambda n: 10 ** draw(st.integers(19, 4000))),
    "the wrong count": lambda p, t, u, draw: _dimension(p, t, draw, lambda n: n + draw(st.integers(1, 99))),
    "too many dimensions": lambda p, t, u, draw: (
        p.with_entry(t, shape=[1] * draw(st.integers(33, 80)) + p.entry(t)["shape"]), [t]),
    "a shape not a list": lambda p, t, u, draw: _set(p, t, draw, "shape", ["3", 3, None, {"0": 3}, True]),
    "an unknown dtype": lambda p, t, u, draw: _set(p, t, draw, "dtype",
                                                   ["F8", "I32", "U8", "BOOL", "bf16", "f32", "", "F32 "]),
    "a dtype not a string": lambda p, t, u, draw: _set(p, t, draw, "dtype", [3, None, ["F32"], {"F32": 1}, True]),
    "a dtype of another size": lambda p, t, u, draw: _other_size(p, t, draw),
    "an entry not an object": lambda p, t, u, draw: (
        p.replacing(t, draw(st.sampled_from(["F32", None, 3, [], [1, 2], True]))), [t]),
    "a key missing": lambda p, t, u, draw: _without_key(p, t, draw),
    "a name twice": lambda p, t, u, draw: (
        p.file(p.header(p.pairs + [(t, p.entry(draw(st.sampled_from([t, u]))))])), [t]),
    "an integer of 5000 digits": lambda p, t, u, draw: _too_many_digits(p, t),
    "metadata not an object of strings": lambda p, t, u, draw: (
        p.replacing("__metadata__", draw(st.sampled_from([[1], {"format": 1}, "pt", {"a": None}, 3]))), []),
    "a header not an object": lambda p, t, u, draw: (
        p.file(json.dumps(draw(st.sampled_from([p.pairs, "x", 3, None, [], True]))).encode()), []),
    "a header length past the file": lambda p, t, u, draw: (p.file(claimed=draw(st.one_of(
        st.integers(len(p.header()) + len(p.data) + 1, len(p.header()) + len(p.data) + 99),
        st.integers(2 ** 26, 2 ** 64 - 1)))), []),
    "a header length cutting the JSON": lambda p, t, u, draw: (
        p.file(claimed=draw(st.integers(0, len(p.header()) - 1))), []),
    "invalid UTF-8": lambda p, t, u, draw: _bad_utf8(p, draw),
    "nesting too deep": lambda p, t, u, draw: _deep(p, draw),
    "a truncated file": lambda p, t, u, draw: (p.file()[:draw(st.integers(0, len(p.file()) - 1))], []),
}


@st.composite
def valid_files(draw):
    """a and b hold values; z, when there, holds none."""
    tensors = {name: np.zeros(draw(shapes), draw(st.sampled_from(list(NUMPY.values())))) for name in "ab"}
    if draw(st.booleans()):
        tensors["z"] = np.zeros(draw(shapes_or_empty) + [0], np.float32)
    return saved(tensors, {"format": "pt"})


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@settings(max_examples=12, deadline=None)
@given(raw=valid_files(), names=st.permutations("ab"), data=st.data())
def test_every_lie_in_a_header_is_a_clear_error(mutation, raw, names, data):
    """Each lie, a dozen files apiece: a PretrainedError naming the file and the bent
    tensor, with memory in bounds (see memory_bounded_by) until it is raised."""
    t, u = names
    bent, named = MUTATIONS[mutation](Parts(raw), t, u, data.draw)
    message, path = refused(bent)
    assert str(path) in message
    for name in named:
        assert repr(name) in message, f"{mutation}: {message}"


# ---- the folder around the weights: the shard index and config.json ----------------------------

def test_a_shard_index_names_files_inside_the_folder_only(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"x": np.ones(2, np.float32)}, str(folder / "model-1.safetensors"))
    save_file({"x": np.ones(2, np.float32)}, str(tmp_path / "outside.safetensors"))  # what ../ would reach
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"x": "model-1.safetensors"}}))
    assert weight_files(folder) == [folder / "model-1.safetensors"]
    for shard in ("../outside.safetensors", str(tmp_path / "outside.safetensors"), "sub/model-1.safetensors",
                  "..", ".", "", "a\\b.safetensors", "x\0.safetensors", 3, None, ["model-1.safetensors"]):
        index.write_text(json.dumps({"weight_map": {"x": "model-1.safetensors", "y": shard}}))
        with pytest.raises(PretrainedError) as error:
            weight_files(folder)
        assert str(index) in str(error.value) and repr(shard) in str(error.value)
    index.write_text(json.dumps({"weight_map": {"x": "model-2.safetensors"}}))
    with pytest.raises(PretrainedError, match=f"{index} names the shard 'model-2.safetensors', which"):
        weight_files(folder)
    for text in ("{", "[]", '{"weight_map": []}', '{"metadata": {}}', '{"weight_map": {}, "weight_map": {}}'):
        index.write_text(text)
        with pytest.raises(PretrainedError, match=str(index)):
            weight_files(folder)
    index.write_bytes(b'{"weight_map": {"\xff": "model-1.safetensors"}}')
    with pytest.raises(PretrainedError, match=f"{index} is not valid JSON"):
        weight_files(folder)


def gpt2_folder(path):
    GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=4)).save_pretrained(path)
    return path


def llama_folder(path):
    Llama(LlamaConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_kv_head=1, n_embd=8,
                      intermediate_size=12)).save_pretrained(path)
    return path


SIZES = {GPT: ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd"),
         Llama: ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
FOLDERS = {GPT: gpt2_folder, Llama: llama_folder}


def refuses_config(model, folder, config, *named):
    """from_pretrained stops at ``config`` (written as config.json) naming the file and ``named``."""
    file = folder / "config.json"
    file.write_bytes(config if isinstance(config, bytes) else json.dumps(config).encode())
    with pytest.raises(PretrainedError) as error:
        model.from_pretrained(folder)
    assert str(file) in str(error.value) and all(name in str(error.value) for name in named), str(error.value)


@pytest.mark.parametrize("model", [GPT, Llama])
def test_config_json_errors_name_the_field(model, tmp_path):
    folder = FOLDERS[model](tmp_path)
    config = json.loads((folder / "config.json").read_text())
    model.from_pretrained(folder)  # the folder as written loads
    for field in SIZES[model]:
        refuses_config(model, folder, {k: v for k, v in config.items() if k != field}, f"{field} is missing")
        for wrong in ("4", 4.0, True, 0, -2, None, [4], {"n": 4}):
            refuses_config(model, folder, dict(config, **{field: wrong}), f"{field}={wrong!r}")
    eps = "layer_norm_epsilon" if model is GPT else "rms_norm_eps"
    for field, wrong in ((eps, "small"), (eps, -1e-5), (eps, float("nan")), (eps, float("inf")),
                         ("tie_word_embeddings", "false"), ("tie_word_embeddings", 1)):
        refuses_config(model, folder, dict(config, **{field: wrong}), f"{field}={wrong!r}")
    twice = json.dumps(config)[:-1] + f', "{SIZES[model][0]}": 1}}'  # which of the two is meant?
    for text in (b"{", b"[1, 2]", b'"gpt2"', b"\xff\xfe{}", twice.encode()):
        refuses_config(model, folder, text)


def test_llama_config_json_errors_name_the_field(tmp_path):
    folder = llama_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    for changes, named in (({"num_key_value_heads": 3}, "num_key_value_heads=3 does not divide"),
                           ({"num_key_value_heads": 0}, "num_key_value_heads=0"),
                           ({"head_dim": 3}, "head_dim=3 must be even"),
                           ({"head_dim": None, "hidden_size": 1}, "head_dim=0"),
                           ({"rope_scaling": "linear"}, "rope_scaling='linear'"),
                           ({"rope_parameters": [1]}, "rope_parameters=[1]"),
                           ({"rope_theta": "big"}, "rope_theta='big'"),
                           ({"rope_parameters": {"rope_theta": -1.0}}, "rope_theta=-1.0")):
        refuses_config(Llama, folder, dict(config, **changes), *named.split(", "))
    defaults = config_from_hf(dict(config, num_key_value_heads=None, head_dim=None), folder)
    assert (defaults.n_kv_head, defaults.head_dim) == (2, 4)  # null means the default, as in transformers


@pytest.mark.parametrize("model", [GPT, Llama])
def test_weights_that_disagree_with_config_json_name_the_tensor(model, tmp_path):
    folder = FOLDERS[model](tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, vocab_size=12)))
    embedding = "wte.weight" if model is GPT else "embed_tokens.weight"
    with pytest.raises(PretrainedError, match=rf"{folder}: {embedding}: checkpoint shape \(11, \d+\) != model"):
        model.from_pretrained(folder)


@pytest.mark.parametrize("model, extra", [(GPT, {"h.0": np.zeros(2, np.float32)}),
                                          (GPT, {"transformer.h.0.attn.c_attn.weight": np.zeros((), np.float32)}),
                                          (GPT, {"transformer.h.0.attn.c_attn.bias": np.zeros(5, np.float32)}),
                                          (GPT, {"wte.weight": np.zeros((11, 4), np.float32)}),
                                          (Llama, {"norm.weight": np.ones(8, np.float32)})])
def test_odd_tensor_names_are_clear_errors(model, extra, tmp_path):
    """A block without a part, a fused c_attn too small to split, one tensor under two
    names (GPT-2's files exist with and without "transformer.", Llama's with "model.")."""
    folder = FOLDERS[model](tmp_path)
    save_file({**load_file(folder / "model.safetensors"), **extra}, str(folder / "model.safetensors"))
    with pytest.raises(PretrainedError, match=str(folder)) as error:
        model.from_pretrained(folder)
    assert any(name.removeprefix("transformer.") in str(error.value) for name in extra), str(error.value)
