"""GPT-2 checkpoints in Hugging Face's layout, in and out: a folder with ``config.json``
and ``model.safetensors`` (single file, or shards named by ``model.safetensors.index.json``).

One difference of layout separates GPT-2's tensors from ``minillm.GPT``'s: GPT-2's
linear layers are ``Conv1D``, y = x W + b with W stored (in, out), where ``Linear`` stores
W (out, in) as PyTorch does, so every matrix is transposed (``c_attn``'s (C, 3C) is our
(3C, C)). The rest is renaming (``h.0.mlp.c_fc`` is ``blocks.0.mlp.fc``). GPT-2 ties the output
head to the token embedding (``tie_word_embeddings``); minillm then uses one array for
both, as GPT-2 does. Nothing is ever unpickled: a folder with only ``pytorch_model.bin``
is refused with the command that converts it.
"""
from functools import partial
from pathlib import Path

import numpy as np

from ..nn.module import skip_init
from .gpt import GPT, GPTConfig
from .hf_files import (PretrainedError, check_size, config_field, read_config, read_safetensors,
                       weight_files, write_folder, write_tokenizer)

# GPT-2 block tensor → (minillm name, transpose?): Conv1D weights are (in, out), Linear's (out, in)
_BLOCK = {"ln_1.weight": ("ln_1.weight", False), "ln_1.bias": ("ln_1.bias", False),
          "ln_2.weight": ("ln_2.weight", False), "ln_2.bias": ("ln_2.bias", False),
          "attn.c_attn.weight": ("attn.c_attn.weight", True), "attn.c_attn.bias": ("attn.c_attn.bias", False),
          "attn.c_proj.weight": ("attn.c_proj.weight", True), "attn.c_proj.bias": ("attn.c_proj.bias", False),
          "mlp.c_fc.weight": ("mlp.fc.weight", True), "mlp.c_fc.bias": ("mlp.fc.bias", False),
          "mlp.c_proj.weight": ("mlp.proj.weight", True), "mlp.c_proj.bias": ("mlp.proj.bias", False)}
_TOP = {"wte.weight": "wte.weight", "wpe.weight": "wpe.weight", "ln_f.weight": "ln_f.weight",
        "ln_f.bias": "ln_f.bias"}
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all three are the tanh approximation


def _config_from_hf(hf, path):
    def need(ok, field, why):
        if not ok:
            raise PretrainedError(f"from_pretrained: {path}/config.json: {field}={hf.get(field)!r} {why}")
    need(hf.get("model_type", "gpt2") == "gpt2", "model_type", "is not a GPT-2 model (expected 'gpt2')")
    need(hf.get("activation_function", "gelu_new") in _TANH_GELUS, "activation_function",
         f"is not supported (minillm's GPT uses the tanh GELU: {', '.join(_TANH_GELUS)})")
    field = partial(config_field, hf, path / "config.json")
    vocab, positions, layers, heads, c = (field(name, "size") for name in
                                          ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd"))
    need(hf.get("n_inner") in (None, 4 * c), "n_inner", f"must be null or 4·n_embd = {4 * c}")
    need(hf.get("scale_attn_weights", True), "scale_attn_weights", "is not supported (attention is scaled by 1/√d)")
    need(not hf.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx", "is not supported")
    need(c % heads == 0, "n_head", f"does not divide n_embd={c}")
    return GPTConfig(vocab_size=vocab, block_size=positions, n_layer=layers, n_head=heads, n_embd=c, dropout=0.0,
                     bias=True, layer_norm_eps=field("layer_norm_epsilon", "number", 1e-5),
                     tie_word_embeddings=field("tie_word_embeddings", "flag", True))


def load_gpt2(path):
    path = Path(path)
    config = _config_from_hf(read_config(path, "GPT-2"), path)
    state, c = {}, config.n_embd
    files = weight_files(path)
    check_size(path, files, config.vocab_size * c + config.n_layer * 12 * c * c)  # wte and the blocks' matrices
    with skip_init():
        model = GPT(config)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    wrong = {}  # minillm name → the file's tensor and shape, reported in the model's order
    for name, value in read_safetensors(files):
        # GPT2LMHeadModel saves under "transformer.", GPT2Model (the original gpt2 files) without
        short = name.removeprefix("transformer.")
        found = _minillm_name(short, config.tie_word_embeddings)
        if found is None:
            continue
        target, transpose = found
        if target in state:  # h.0.ln_1.weight beside transformer.h.0.ln_1.weight: which one is meant?
            raise PretrainedError(f"from_pretrained: {path} holds two tensors for {target} (the second is {name})")
        ours = shapes.get(target, value.shape)  # an unknown tensor is reported below, as left over
        expected = ours[::-1] if transpose else ours  # in the file's layout
        if value.shape != expected:
            wrong[target] = (f"{short}: checkpoint shape {value.shape} != model shape {expected}"
                             + (" (Conv1D's (in, out))" if transpose else ""))
        state[target] = np.ascontiguousarray(value.T if transpose else value)  # final layout: the original is freed
    if wrong:
        raise PretrainedError(f"from_pretrained: {path}: {'; '.join([wrong[n] for n in shapes if n in wrong][:5])}")
    missing = sorted(shapes.keys() - state.keys())
    if missing:
        raise PretrainedError(f"from_pretrained: {path} is missing the tensors for {', '.join(missing[:5])}")
    leftover = sorted(state.keys() - shapes.keys())
    if leftover:
        raise PretrainedError(f"from_pretrained: {path} has tensors a GPT-2 does not: "
                              f"{', '.join(n.removeprefix('unknown:') for n in leftover[:5])}")
    model.load_state_dict(state, assign=True)
    model.eval()
    return model


def _minillm_name(name, tied):
    """(minillm name, transposed?) of one GPT-2 tensor, or None for one minillm does not keep."""
    if name in _TOP:
        return _TOP[name], False
    if name == "lm_head.weight":
        return None if tied else (name, False)  # a tied head may be saved too: it is wte's copy
    if not name.startswith("h."):
        return f"unknown:{name}", False
    layer, _, rest = name[2:].partition(".")
    if rest in ("attn.bias", "attn.masked_bias"):  # old files keep the causal mask as a buffer
        return None
    if rest in _BLOCK:
        target, transpose = _BLOCK[rest]
        return f"blocks.{layer}.{target}", transpose
    return f"unknown:{name}", False


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
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    path = write_folder(path, out, hf_config(config))
    write_tokenizer(path, tokenizer)
    return path
