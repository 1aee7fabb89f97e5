"""GPT-2 checkpoints in Hugging Face's layout, in and out: a folder with ``config.json``
and ``model.safetensors`` (single file, or shards named by ``model.safetensors.index.json``).

Two differences of layout, and only two, separate GPT-2's tensors from ``minillm.GPT``'s:

* GPT-2's linear layers are ``Conv1D``: y = x W + b with W stored (in, out), where
  ``Linear`` stores W (out, in) as PyTorch does, so every matrix is transposed.
* GPT-2 projects queries, keys and values with one fused ``c_attn`` (C, 3C); minillm has
  ``q_proj``, ``k_proj`` and ``v_proj``, the three column blocks of it.

The rest is renaming (``h.0.mlp.c_fc`` is ``blocks.0.mlp.fc``). GPT-2 ties the output
head to the token embedding (``tie_word_embeddings``); minillm then uses one array for
both, as GPT-2 does. Nothing is ever unpickled: a folder with only ``pytorch_model.bin``
is refused with the command that converts it.
"""
import json
import os
from pathlib import Path

import numpy as np

from ..nn.module import skip_init
from .gpt import GPT, GPTConfig

# GPT-2 block tensor → (minillm name, transpose?) ; c_attn is split separately
_BLOCK = {"ln_1.weight": ("ln_1.weight", False), "ln_1.bias": ("ln_1.bias", False),
          "ln_2.weight": ("ln_2.weight", False), "ln_2.bias": ("ln_2.bias", False),
          "attn.c_proj.weight": ("attn.out_proj.weight", True), "attn.c_proj.bias": ("attn.out_proj.bias", False),
          "mlp.c_fc.weight": ("mlp.fc.weight", True), "mlp.c_fc.bias": ("mlp.fc.bias", False),
          "mlp.c_proj.weight": ("mlp.proj.weight", True), "mlp.c_proj.bias": ("mlp.proj.bias", False)}
_TOP = {"wte.weight": "wte.weight", "wpe.weight": "wpe.weight", "ln_f.weight": "ln_f.weight",
        "ln_f.bias": "ln_f.bias"}
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all three are the tanh approximation


class PretrainedError(ValueError):
    pass


def _config_from_hf(hf, path):
    def need(ok, field, why):
        if not ok:
            raise PretrainedError(f"from_pretrained: {path}/config.json: {field}={hf.get(field)!r} {why}")
    need(hf.get("model_type", "gpt2") == "gpt2", "model_type", "is not a GPT-2 model (expected 'gpt2')")
    need(hf.get("activation_function", "gelu_new") in _TANH_GELUS, "activation_function",
         f"is not supported (minillm's GPT uses the tanh GELU: {', '.join(_TANH_GELUS)})")
    need(hf.get("n_inner") in (None, 4 * hf["n_embd"]), "n_inner", f"must be null or 4·n_embd = {4 * hf['n_embd']}")
    need(hf.get("scale_attn_weights", True), "scale_attn_weights", "is not supported (attention is scaled by 1/√d)")
    need(not hf.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx", "is not supported")
    need(hf["n_embd"] % hf["n_head"] == 0, "n_head", f"does not divide n_embd={hf['n_embd']}")
    return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                     n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0, bias=True,
                     layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                     tie_word_embeddings=hf.get("tie_word_embeddings", True))


def _weight_files(path):
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


def read_safetensors(files):
    """name → float32 array for every tensor in ``files``, one tensor in memory at a time
    beyond the result (float16 and bfloat16 are widened; bfloat16 is float32's top half)."""
    from safetensors import safe_open
    out = {}
    for file in files:
        with safe_open(str(file), "np") as f:
            for name in f.keys():
                if f.get_slice(name).get_dtype() == "BF16":
                    out[name] = _read_bf16(file, name)
                else:
                    out[name] = f.get_tensor(name).astype(np.float32, copy=False)
    return out


def _read_bf16(file, name):
    """NumPy has no bfloat16, so read the raw 16-bit words and shift them into float32's
    high half (the layout: an 8-byte header length, a JSON header, then the data)."""
    with open(file, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(header_size))[name]
        start, end = entry["data_offsets"]  # relative to the end of the header
        f.seek(8 + header_size + start)
        words = np.frombuffer(f.read(end - start), np.uint16)
    return (words.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def load_gpt2(path):
    path = Path(path)
    if not (path / "config.json").exists():
        raise PretrainedError(f"from_pretrained: {path} has no config.json (expected a Hugging Face GPT-2 folder)")
    hf = json.loads((path / "config.json").read_text())
    config = _config_from_hf(hf, path)
    tensors = read_safetensors(_weight_files(path))
    # GPT2LMHeadModel saves under "transformer.", GPT2Model (the original gpt2 files) without
    tensors = {name.removeprefix("transformer."): value for name, value in tensors.items()}
    state = {}
    for name, target in _TOP.items():
        state[target] = _take(tensors, name, path)
    c = config.n_embd
    for i in range(config.n_layer):
        for name, (target, transpose) in _BLOCK.items():
            value = _take(tensors, f"h.{i}.{name}", path)
            state[f"blocks.{i}.{target}"] = value.T if transpose else value
        w, b = _take(tensors, f"h.{i}.attn.c_attn.weight", path), _take(tensors, f"h.{i}.attn.c_attn.bias", path)
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"blocks.{i}.attn.{proj}.weight"] = w[:, j * c:(j + 1) * c].T
            state[f"blocks.{i}.attn.{proj}.bias"] = b[j * c:(j + 1) * c]
    if not config.tie_word_embeddings:
        state["lm_head.weight"] = _take(tensors, "lm_head.weight", path)
    tensors.pop("lm_head.weight", None)  # a tied head may be saved as well; it is wte's copy
    leftover = [k for k in tensors if not k.endswith((".attn.bias", ".attn.masked_bias"))]  # old causal-mask buffers
    if leftover:
        raise PretrainedError(f"from_pretrained: {path} has tensors a GPT-2 does not: {', '.join(leftover[:5])}")
    with skip_init():
        model = GPT(config)
    model.load_state_dict(state, assign=True)
    model.eval()
    return model


def _take(tensors, name, path):
    try:
        return tensors.pop(name)
    except KeyError:
        raise PretrainedError(f"from_pretrained: {path} is missing the tensor {name!r}") from None


def hf_config(config):
    """The config.json ``transformers`` reads for ``config`` (a GPTConfig)."""
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
            "n_positions": config.block_size, "n_embd": config.n_embd, "n_layer": config.n_layer,
            "n_head": config.n_head, "n_inner": None, "activation_function": "gelu_new",
            "layer_norm_epsilon": config.layer_norm_eps, "tie_word_embeddings": config.tie_word_embeddings,
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
            "scale_attn_weights": True, "initializer_range": 0.02, "bos_token_id": config.vocab_size - 1,
            "eos_token_id": config.vocab_size - 1}


def save_gpt2(model, path, tokenizer=None):
    """Write ``model`` (a GPT) as a Hugging Face GPT-2 folder; returns the folder."""
    from safetensors.numpy import save_file
    if not isinstance(model, GPT):
        raise PretrainedError(f"save_pretrained: only GPT models have a GPT-2 layout; got {type(model).__name__}")
    config = model.config
    if not config.bias:
        raise PretrainedError("save_pretrained: GPT-2 has biases in every layer; this model has bias=False")
    state = model.state_dict()
    out = {f"transformer.{hf}": state[ours] for hf, ours in _TOP.items()}
    for i in range(config.n_layer):
        prefix = f"blocks.{i}."
        for name, (ours, transpose) in _BLOCK.items():
            value = state[prefix + ours]
            out[f"transformer.h.{i}.{name}"] = value.T if transpose else value
        out[f"transformer.h.{i}.attn.c_attn.weight"] = np.concatenate(
            [state[f"{prefix}attn.{p}.weight"].T for p in ("q_proj", "k_proj", "v_proj")], axis=1)
        out[f"transformer.h.{i}.attn.c_attn.bias"] = np.concatenate(
            [state[f"{prefix}attn.{p}.bias"] for p in ("q_proj", "k_proj", "v_proj")])
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "model.safetensors.tmp"
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path / "model.safetensors")
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(hf_config(config), indent=2))
    os.replace(tmp, path / "config.json")
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(path)
    return path
