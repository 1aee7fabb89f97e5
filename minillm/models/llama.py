"""Llama: the decoder most models since 2023 share — GPT's shape with RMSNorm, rotary
positions, a SwiGLU MLP, grouped-query attention and no biases (Touvron et al., 2023)."""
from dataclasses import dataclass

import numpy as np

from ..nn import Embedding, Linear, ModuleList
from ..nn.llama_blocks import LlamaBlock, RMSNorm
from ..nn.module import init_skipped
from ..nn.packing import pack
from ..rng import generator
from .base import CachedDecoder, as_ids


def default_hidden(n_embd, multiple_of=32):
    """Llama's MLP width: two thirds of GPT's 4·C (three matrices instead of two keep the
    parameter count), rounded up to a multiple of ``multiple_of``."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass
class LlamaConfig:
    vocab_size: int = 96
    block_size: int = 128           # the longest context it trains on (max_position_embeddings)
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2              # key/value heads: n_head is MHA, 1 is multi-query
    n_embd: int = 128
    intermediate_size: int = 0      # the SwiGLU width; 0: default_hidden(n_embd)
    head_dim: int = 0               # 0: n_embd // n_head
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False


class Llama(CachedDecoder):
    def __init__(self, config):
        super().__init__()
        if config.n_kv_head < 1 or config.n_head % config.n_kv_head:
            raise ValueError(f"Llama: n_kv_head ({config.n_kv_head}) must divide n_head ({config.n_head})")
        self.config = config
        self.block_size = config.block_size
        hidden = config.intermediate_size or default_hidden(config.n_embd)
        self.embed_tokens = Embedding(config.vocab_size, config.n_embd)
        self.layers = ModuleList(LlamaBlock(config.n_embd, config.n_head, config.n_kv_head, hidden,
                                            config.rms_norm_eps, config.rope_theta, config.head_dim or None)
                                 for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self._init_weights()
        self.pack_projections()

    def _init_weights(self):
        """N(0, 0.02) for every matrix, as Llama's initializer_range; norms start at 1."""
        if init_skipped():
            return
        rng = generator()
        from .. import backends
        for _, p in self.named_parameters():
            if p.ndim == 2:
                p.data = backends.asarray(rng.normal(0.0, 0.02, p.shape).astype(np.float32))

    def pack_projections(self):
        """Put each layer's q | k | v weights, and its gate | up weights, back to back in one
        buffer (``nn.packing.pack``), so that training reads each group as one matrix without
        copying it. Done at construction and after ``load_state_dict`` — except with
        ``assign=True``, which keeps the given arrays themselves (a checkpoint in memory once):
        call this afterwards to trade that for the packed layout."""
        for layer in self.layers:
            attention, mlp = layer.self_attn, layer.mlp
            pack([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight])
            pack([mlp.gate_proj.weight, mlp.up_proj.weight])

    def load_state_dict(self, state_dict, strict=True, assign=False):
        super().load_state_dict(state_dict, strict, assign)
        if not assign:  # the weights are copies already: one more, into the packed buffer
            self.pack_projections()
        return self

    def forward(self, idx, targets=None, caches=None):
        """idx (B, T) → logits (B, T, vocab), and the mean cross-entropy given ``targets``.
        With ``caches`` (one KVCache per layer, holding n_kv_head heads) ``idx`` holds only
        the new tokens; their rotary positions continue from the cache's length."""
        idx = as_ids(idx)
        start = len(caches[0]) if caches else 0
        if start + idx.shape[1] > self.config.block_size:
            raise ValueError(f"Llama: sequence of {start + idx.shape[1]} tokens exceeds block_size "
                             f"{self.config.block_size}")
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, caches[i] if caches else None)
        logits = self.lm_head(self.norm(x))
        return logits, self.loss(logits, targets)

    def blocks_with_cache(self):
        return self.layers

    @classmethod
    def from_pretrained(cls, path):
        """A Llama from a local Hugging Face folder (``config.json`` + safetensors)."""
        from .hf_llama import load_llama
        return load_llama(path)

    def save_pretrained(self, path, tokenizer=None):
        """Write a folder ``transformers.LlamaForCausalLM.from_pretrained`` loads (and the
        tokenizer's files, when given)."""
        from .hf_llama import save_llama
        return save_llama(self, path, tokenizer)
