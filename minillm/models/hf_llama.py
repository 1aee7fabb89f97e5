"""Llama checkpoints in Hugging Face's layout, in and out.

minillm's Llama names its modules as Hugging Face's does, and both store linear weights
(out, in), so the mapping is the name with ``model.`` in front (``lm_head`` without). The
one thing to know is RoPE's layout: Hugging Face's checkpoints pair dimension i with
i + d/2 (``rotate_half``; their conversion script permuted Meta's original interleaved
q/k rows into that order), and ``minillm.nn.llama_blocks`` uses the same pairing, so the
tensors load unchanged. Variants this Llama does not compute are refused by field name.
"""
import json
from pathlib import Path

from ..nn.module import skip_init
from .hf_files import PretrainedError, read_safetensors, weight_files, write_folder, write_tokenizer
from .llama import Llama, LlamaConfig


def _rope(hf):
    """(theta, rope_type): transformers ≥ 5 nests them in ``rope_parameters``; older
    configs have ``rope_theta`` and ``rope_scaling``."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
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
    theta, kind = _rope(hf)
    need(kind == "default", "rope_scaling", kind, "is not supported (only plain RoPE: no linear, dynamic, yarn or "
         "llama3 scaling)")
    need(hf.get("sliding_window") is None, "sliding_window", hf.get("sliding_window"), "is not supported")
    heads = hf["num_attention_heads"]
    return LlamaConfig(vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
                       n_layer=hf["num_hidden_layers"], n_head=heads,
                       n_kv_head=hf.get("num_key_value_heads") or heads, n_embd=hf["hidden_size"],
                       intermediate_size=hf["intermediate_size"],
                       head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
                       rms_norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=theta,
                       tie_word_embeddings=hf.get("tie_word_embeddings", False))


def load_llama(path):
    path = Path(path)
    if not (path / "config.json").exists():
        raise PretrainedError(f"from_pretrained: {path} has no config.json (expected a Hugging Face Llama folder)")
    config = config_from_hf(json.loads((path / "config.json").read_text()), path)
    with skip_init():
        model = Llama(config)
    expected = set(dict(model.named_parameters()))
    state = {}
    for name, value in read_safetensors(weight_files(path)):
        ours = name.removeprefix("model.")
        if ours == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a tied head saved anyway is embed_tokens' copy
        if ours.endswith("rotary_emb.inv_freq"):
            continue  # old files keep RoPE's frequencies as a buffer; they are computed here
        state[ours] = value
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing:
        raise PretrainedError(f"from_pretrained: {path} is missing {', '.join(missing[:5])}")
    if unexpected:
        raise PretrainedError(f"from_pretrained: {path} has tensors a Llama does not: {', '.join(unexpected[:5])}")
    try:
        model.load_state_dict(state, assign=True)
    except KeyError as exc:
        raise PretrainedError(f"from_pretrained: {path}: {exc.args[0]}") from None
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
