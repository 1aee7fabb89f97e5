"""What every Hugging Face checkpoint folder shares, whatever the model: ``config.json``,
and the weights in ``model.safetensors`` or in shards named by
``model.safetensors.index.json`` — never a pickle.

A folder may come from anywhere, so every claim its files make is checked before it is
used: a header length or byte range against the file's size (nothing is allocated from a
claim alone), a shard's name against the folder, a config field against its type. What
fails is a ``PretrainedError`` naming the file, the tensor or field, and what was expected."""
import json
import math
import os
from pathlib import Path

import numpy as np

from ..fileio import write_atomic


class PretrainedError(ValueError):
    pass


_MAX_JSON = 100_000_000  # bytes; the safetensors crate's own limit for a header (real ones are kilobytes)
_MAX_DIMS = 32  # NumPy 1's limit on an array's dimensions (NumPy 2 allows 64)
_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2"}
_REQUIRED = object()


def weight_files(path):
    index = path / "model.safetensors.index.json"
    if index.exists():
        return _shards(path, index)
    if (path / "model.safetensors").exists():
        return [path / "model.safetensors"]
    pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt*")]
    if pickled:
        raise PretrainedError(
            f"from_pretrained: {path} holds only {', '.join(sorted(pickled))}, a pickle file; minillm never "
            f"unpickles (it can run arbitrary code). Convert it once where you trust it: python -c \"from "
            f"transformers import AutoModelForCausalLM as M; M.from_pretrained('{path}').save_pretrained('{path}')\" "
            f"writes model.safetensors")
    raise PretrainedError(f"from_pretrained: {path} has no model.safetensors (nor an index of shards)")


def _shards(path, index):
    """The files the index's weight_map names. Each must be a plain file name: the index
    came with the download, and ``../x`` or ``/etc/x`` in it must not reach outside."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise PretrainedError(f"from_pretrained: {index}: weight_map is {_short(weight_map)}; expected an object "
                              f"(tensor name → shard file name)")
    for name in weight_map.values():
        if not (isinstance(name, str) and name not in ("", ".", "..") and not set(name) & set("/\\\0")):
            raise PretrainedError(f"from_pretrained: {index} names the shard {_short(name)}; a shard must be a "
                                  f"file name inside {path}")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if not (path / shard).is_file():
            raise PretrainedError(f"from_pretrained: {index} names the shard {shard!r}, which {path} does not hold")
    return [path / shard for shard in shards]


def read_config(path, model):
    """``config.json`` in ``path`` as a dict; ``model`` names the folder expected."""
    if not (path / "config.json").exists():
        raise PretrainedError(f"from_pretrained: {path} has no config.json (expected a Hugging Face {model} folder)")
    return read_json(path / "config.json")


def config_field(config, file, field, kind, default=_REQUIRED):
    """``config[field]`` once it is of its kind: "size" (an integer ≥ 1), "number" (finite,
    > 0) or "flag" (true or false). Without a default the field is required; with one, null
    means the default too (as transformers reads num_key_value_heads and head_dim)."""
    value = config.get(field)
    if value is None and default is not _REQUIRED:
        return default
    if field not in config:
        raise PretrainedError(f"from_pretrained: {file}: {field} is missing")
    ok, expected = {"size": (type(value) is int and value > 0, "a positive integer"),
                    "number": (type(value) is int and value > 0 or type(value) is float and 0 < value < math.inf,
                               "a positive number"),
                    "flag": (type(value) is bool, "true or false")}[kind]
    if not ok:
        raise PretrainedError(f"from_pretrained: {file}: {field}={_short(value)} must be {expected}")
    return value


def check_shapes(model, state, path):
    """Every array in ``state`` has the shape of its parameter in ``model``, which config.json sized."""
    wrong = [f"{name}: checkpoint shape {state[name].shape} != model shape {p.shape}"
             for name, p in model.named_parameters() if name in state and state[name].shape != p.shape]
    if wrong:
        raise PretrainedError(f"from_pretrained: {path}: {'; '.join(wrong[:5])}")


def read_json(file):
    """A JSON object from ``file`` (config.json, the shard index)."""
    with _open(file) as f:
        size = os.fstat(f.fileno()).st_size
        if size > _MAX_JSON:
            raise PretrainedError(f"from_pretrained: {file} is {size:,} bytes; a config or index is at most "
                                  f"{_MAX_JSON:,}")
        return _json_object(f.read(), file)


def _json_object(raw, where):
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a repeated key, nesting or digits beyond limits
        raise PretrainedError(f"from_pretrained: {where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PretrainedError(f"from_pretrained: {where} is {_json_type(value)}; expected a JSON object")
    return value


def _unique_keys(pairs):
    """A dict from JSON pairs, where Python's json would let the last of two equal keys win
    silently — two tensors of one name, two values for one field."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice")
        seen.add(key)
    return dict(pairs)


def _json_type(value):
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _short(value):
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_size(path, files, parameters):
    """Refuse a config.json that describes a model larger than the weight files hold, before
    a model of that size is built: ``parameters`` counts the values its weight matrices
    need, which the files must store at least once."""
    stored = sum((end - start) // np.dtype(_DTYPES[dtype]).itemsize
                 for _, _, tensors in map(_header, files) for _, dtype, _, start, end in tensors)
    if parameters > stored:
        raise PretrainedError(f"from_pretrained: {path}/config.json describes a model with at least {parameters:,} "
                              f"weights, but its files hold {stored:,} values: a size in config.json is wrong "
                              f"(n_layer, n_embd, vocab_size?)")


def read_safetensors(files):
    """(name, float32 array) for every tensor in ``files``, one at a time.

    The format is simple enough to read by hand, which keeps memory in check: an 8-byte
    little-endian header length, a JSON header (name → dtype, shape, byte offsets), then
    the raw data. Every header is checked whole before any data is read, so no array is
    sized by a claim the file cannot back. Each tensor is read with ``np.fromfile`` into
    memory of its own — no memory map whose touched pages would stay resident beside the
    copy — so the caller can turn it into its final layout before the next one is read.
    NumPy has no bfloat16: its 16-bit words are float32's high half, shifted into place."""
    headers = [_header(file) for file in files]
    seen = {}
    for file, _, tensors in headers:
        for name, *_ in tensors:
            if name in seen:
                raise PretrainedError(f"from_pretrained: tensor {name!r} is in both {seen[name]} and {file}")
            seen[name] = file
    for file, data_start, tensors in headers:
        with _open(file) as f:
            for name, dtype, shape, start, end in tensors:
                f.seek(data_start + start)
                raw = np.fromfile(f, _DTYPES[dtype], (end - start) // np.dtype(_DTYPES[dtype]).itemsize)
                if raw.nbytes != end - start:  # the file shrank after its header was read
                    raise PretrainedError(f"from_pretrained: {file} is truncated: tensor {name!r} has {raw.nbytes:,} "
                                          f"of its {end - start:,} bytes")
                if dtype == "BF16":
                    raw = (raw.astype(np.uint32) << 16).view(np.float32)
                yield name, raw.astype(np.float32, copy=False).reshape(shape)


def _open(file):
    if not Path(file).is_file():  # a folder, or a FIFO whose open would wait forever
        raise PretrainedError(f"from_pretrained: {file} is missing or not a regular file")
    try:
        return open(file, "rb")
    except OSError as exc:
        raise PretrainedError(f"from_pretrained: cannot read {file}: {exc.strerror}") from None


def _header(file):
    """(file, where its data starts, [(name, dtype, shape, start, end)]) once every entry
    is well-formed, lies inside the file and overlaps no other."""
    with _open(file) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise PretrainedError(f"from_pretrained: {file} is truncated: {size} bytes, fewer than the 8 that "
                                  f"give the header's length")
        header_size = int.from_bytes(f.read(8), "little")
        if header_size > size - 8:
            raise PretrainedError(f"from_pretrained: {file} is truncated or not safetensors: its header claims "
                                  f"{header_size:,} bytes, and only {size - 8:,} follow")
        if header_size > _MAX_JSON:
            raise PretrainedError(f"from_pretrained: {file}: its header claims {header_size:,} bytes; "
                                  f"a safetensors header is at most {_MAX_JSON:,}")
        header = _json_object(f.read(header_size), f"{file} (its header)")
    metadata = header.pop("__metadata__", None)
    if not (metadata is None or isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise PretrainedError(f"from_pretrained: {file}: __metadata__ is {_short(metadata)}; expected an object "
                              f"of strings")
    tensors = [_entry(file, name, entry, size - 8 - header_size) for name, entry in header.items()]
    ranges = sorted((start, end, name) for name, _, _, start, end in tensors if start < end)
    for (start_a, end_a, a), (start_b, end_b, b) in zip(ranges, ranges[1:]):
        if start_b < end_a:  # sorted by start, any overlap shows between neighbours
            raise PretrainedError(f"from_pretrained: {file}: tensors {a!r} (bytes {start_a}..{end_a}) and {b!r} "
                                  f"(bytes {start_b}..{end_b}) overlap")
    return file, 8 + header_size, tensors


def _entry(file, name, entry, data_size):
    def bad(why):
        return PretrainedError(f"from_pretrained: {file}: tensor {name!r} {why}")
    if not isinstance(entry, dict):
        raise bad(f"is {_json_type(entry)}; expected an object with dtype, shape and data_offsets")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise bad(f"has no {' or '.join(missing)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not (isinstance(dtype, str) and dtype in _DTYPES):
        raise bad(f"has dtype {_short(dtype)}; expected one of {', '.join(_DTYPES)}")
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS and all(_is_int(n) and n >= 0 for n in shape)):
        raise bad(f"has shape {_short(shape)}; expected a list of at most {_MAX_DIMS} non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise bad(f"has data_offsets {_short(offsets)}; expected [start, end], two integers")
    start, end = offsets
    if 0 <= start <= end and end > data_size:
        raise bad(f"ends at byte {end:,} of the data, and the file holds {data_size:,}: it is truncated")
    if not 0 <= start <= end:
        raise bad(f"has data_offsets [{start}, {end}]; expected 0 <= start <= end <= {data_size:,}")
    itemsize, count = np.dtype(_DTYPES[dtype]).itemsize, _count(shape, data_size)
    if end - start != count * itemsize:
        needs = f"more than the file's {data_size:,}" if count > data_size else f"{count * itemsize:,}"
        raise bad(f"of shape {tuple(shape)} in {dtype} needs {needs} bytes; data_offsets [{start}, {end}] hold "
                  f"{end - start:,}")
    return name, dtype, tuple(shape), start, end


def _is_int(value):
    return type(value) is int  # JSON's true and false are Python ints too, and no size


def _count(shape, limit):
    """The number of values, or the first partial product past ``limit``: a hostile shape's
    full product could have millions of digits."""
    if 0 in shape:
        return 0
    count = 1
    for n in shape:
        count *= n
        if count > limit:
            break
    return count


def write_folder(path, tensors, config):
    """``model.safetensors`` (float32) and ``config.json``, each written atomically."""
    from safetensors.numpy import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_atomic(path / "model.safetensors", lambda tmp: save_file(
        {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"}))
    write_atomic(path / "config.json", lambda tmp: tmp.write_text(json.dumps(config, indent=2)))
    return path


def write_tokenizer(path, tokenizer):
    """The tokenizer beside the weights: GPT-2's vocab.json + merges.txt when it is a
    byte-level BPE with GPT-2's pattern (for transformers), and minillm's own JSON always
    (``tokenizer-minillm.json``: a character tokenizer has no Hugging Face form)."""
    if tokenizer is None:
        return
    from ..tokenizers import GPT2_PATTERN
    if hasattr(tokenizer, "save_pretrained") and getattr(tokenizer, "pattern", None) == GPT2_PATTERN:
        tokenizer.save_pretrained(path)
    tokenizer.save(Path(path) / "tokenizer-minillm.json")
