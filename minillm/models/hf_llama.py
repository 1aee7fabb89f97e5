"""Llama checkpoints in Hugging Face's layout, in and out.

minillm's Llama names its modules as Hugging Face's does, and both store linear weights
(out, in), so the mapping is the name with ``model.`` in front (``lm_head`` without). The
one thing to know is RoPE's layout: Hugging Face's checkpoints pair dimension i with
i + d/2 (``rotate_half``; their conversion script permuted Meta's original interleaved
q/k rows into that order), and ``minillm.nn.llama_blocks`` uses the same pairing, so the
tensors load unchanged. Variants this Llama does not compute are refused by field name.
"""
from functools import partial
from pathlib import Path

from ..nn.module import skip_init
from .hf_files import (PretrainedError, check_shapes, check_size, config_field, read_config, read_safetensors,
                       weight_files, write_folder, write_tokenizer)
from .llama import Llama, LlamaConfig


def _rope(hf, file):
    """(theta, rope_type): transformers ≥ 5 nests them in ``rope_parameters``; older
    configs have ``rope_theta`` and ``rope_scaling``."""
    params, scaling = (hf.get(field) or {} for field in ("rope_parameters", "rope_scaling"))
    for field, value in (("rope_parameters", params), ("rope_scaling", scaling)):
        if not isinstance(value, dict):
            raise PretrainedError(f"from_pretrained: {file}: {field}={value!r} must be an object or null")
    theta = config_field(hf, file, "rope_theta", "number", 10000.0)
    theta = config_field(params, file, "rope_theta", "number", theta)
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    return theta, kind


def config_from_hf(hf, path):
    def need(ok, field, value, why):
        if not ok:
            raise PretrainedError(f"from_pretrained: {path}/config.json: {field}={value!r} {why}")
    need(hf.get("model_type", "llama") in ("llama", "mistral"), "model_type", hf.get("model_type"),
         "is not a Llama-shaped model")
    need(hf.get("hidden_act", "silu") == "silu", "hidden_act", hf.get("hidden_act"), "is not supported (SwiGLU uses silu)")
    need(not hf.get("attention_bias", False), "attention_bias", hf.get("attention_bias"), "is not supported")
    need(not hf.get("mlp_bias", False), "mlp_bias", hf.get("mlp_bias"), "is not supported")
    file = path / "config.json"
    theta, kind = _rope(hf, file)
    need(kind == "default", "rope_scaling", kind, "is not supported (only plain RoPE: no linear, dynamic, yarn or "
         "llama3 scaling)")
    need(hf.get("sliding_window") is None, "sliding_window", hf.get("sliding_window"), "is not supported")
    field = partial(config_field, hf, file)
    hidden, heads = field("hidden_size", "size"), field("num_attention_heads", "size")
    kv_heads, head_dim = field("num_key_value_heads", "size", heads), field("head_dim", "size", hidden // heads)
    need(heads % kv_heads == 0, "num_key_value_heads", kv_heads, f"does not divide num_attention_heads={heads}")
    need(head_dim > 0 and head_dim % 2 == 0, "head_dim", head_dim, "must be even and positive (RoPE rotates pairs "
         "of dimensions; without head_dim it is hidden_size // num_attention_heads)")
    return LlamaConfig(vocab_size=field("vocab_size", "size"),
                       block_size=field("max_position_embeddings", "size", 2048),
                       n_layer=field("num_hidden_layers", "size"), n_head=heads, n_kv_head=kv_heads, n_embd=hidden,
                       intermediate_size=field("intermediate_size", "size"), head_dim=head_dim,
                       rms_norm_eps=field("rms_norm_eps", "number", 1e-6), rope_theta=theta,
                       tie_word_embeddings=field("tie_word_embeddings", "flag", False))


def load_llama(path):
    path = Path(path)
    config = config_from_hf(read_config(path, "Llama"), path)
    files = weight_files(path)
    c, inner, attention = config.n_embd, config.intermediate_size, config.n_head * config.head_dim
    check_size(path, files, config.vocab_size * c + config.n_layer * (  # the embedding and the blocks' matrices
        2 * c * attention + 2 * c * config.n_kv_head * config.head_dim + 3 * c * inner))
    with skip_init():
        model = Llama(config)
    expected = set(dict(model.named_parameters()))
    state = {}
    for name, value in read_safetensors(files):
        ours = name.removeprefix("model.")
        if ours == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a tied head saved anyway is embed_tokens' copy
        if ours.endswith("rotary_emb.inv_freq"):
            continue  # old files keep RoPE's frequencies as a buffer; they are computed here
        if ours in state:  # model.norm.weight beside norm.weight: which one is meant?
            raise PretrainedError(f"from_pretrained: {path} holds two tensors for {ours} (the second is {name})")
        state[ours] = value
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing:
        raise PretrainedError(f"from_pretrained: {path} is missing {', '.join(missing[:5])}")
    if unexpected:
        raise PretrainedError(f"from_pretrained: {path} has tensors a Llama does not: {', '.join(unexpected[:5])}")
    check_shapes(model, state, path)
    model.load_state_dict(state, assign=True)
    model.eval()
    return model


def hf_config(config):
    from .llama import default_hidden
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config.vocab_size,
            "hidden_size": config.n_embd, "intermediate_size": config.intermediate_size or default_hidden(config.n_embd),
            "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
            "num_key_value_heads": config.n_kv_head, "head_dim": config.head_dim or config.n_embd // config.n_head,
            "max_position_embeddings": config.block_size, "rms_norm_eps": config.rms_norm_eps,
            "rope_theta": config.rope_theta, "rope_scaling": None, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": config.tie_word_embeddings,
            "initializer_range": 0.02, "bos_token_id": None, "eos_token_id": None}


def save_llama(model, path, tokenizer=None):
    if not isinstance(model, Llama):
        raise PretrainedError(f"save_pretrained: expected a Llama; got {type(model).__name__}")
    tensors = {(name if name == "lm_head.weight" else f"model.{name}"): value
               for name, value in model.state_dict().items()}
    path = write_folder(path, tensors, hf_config(model.config))
    write_tokenizer(path, tokenizer)
    return path
