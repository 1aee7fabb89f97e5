"""What every Hugging Face checkpoint folder shares, whatever the model: ``config.json``,
and the weights in ``model.safetensors`` or in shards named by
``model.safetensors.index.json`` — never a pickle."""
import json
import os
from pathlib import Path

import numpy as np


class PretrainedError(ValueError):
    pass


def weight_files(path):
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / shard for shard in shards]
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


_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16}


def read_safetensors(files):
    """(name, float32 array) for every tensor in ``files``, one at a time.

    The format is simple enough to read by hand, which keeps memory in check: an 8-byte
    little-endian header length, a JSON header (name → dtype, shape, byte offsets), then
    the raw data. Each tensor is read with ``np.fromfile`` into memory of its own — no
    memory map whose touched pages would stay resident beside the copy — so the caller
    can turn it into its final layout before the next one is read. NumPy has no bfloat16:
    its 16-bit words are float32's high half, shifted into place."""
    for file in files:
        with open(file, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_size))
            for name, entry in header.items():
                if name == "__metadata__":
                    continue
                if entry["dtype"] not in _DTYPES:
                    raise PretrainedError(f"from_pretrained: {file}: tensor {name} has dtype {entry['dtype']}; "
                                          f"expected one of {', '.join(_DTYPES)}")
                start, end = entry["data_offsets"]  # relative to the end of the header
                dtype = np.dtype(_DTYPES[entry["dtype"]])
                f.seek(8 + header_size + start)
                raw = np.fromfile(f, dtype, (end - start) // dtype.itemsize)
                if raw.size != int(np.prod(entry["shape"])):
                    raise PretrainedError(f"from_pretrained: {file} is truncated: tensor {name} has {raw.size} of "
                                          f"its {int(np.prod(entry['shape']))} values")
                if entry["dtype"] == "BF16":
                    raw = (raw.astype(np.uint32) << 16).view(np.float32)
                yield name, raw.astype(np.float32, copy=False).reshape(entry["shape"])


def write_folder(path, tensors, config):
    """``model.safetensors`` (float32) and ``config.json``, each written atomically."""
    from safetensors.numpy import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "model.safetensors.tmp"
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path / "model.safetensors")
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path / "config.json")
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
