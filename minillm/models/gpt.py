"""GPT: a decoder-only transformer language model (nanoGPT's shape, minillm's engine)."""
from dataclasses import dataclass

import numpy as np

from ..nn import Dropout, Embedding, LayerNorm, Linear, ModuleList
from ..nn.module import init_skipped
from ..nn.transformer import CausalSelfAttention, TransformerBlock
from ..rng import generator
from .base import CachedDecoder, as_ids


@dataclass
class GPTConfig:
    vocab_size: int = 96
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5        # GPT-2's layer_norm_epsilon
    tie_word_embeddings: bool = False   # GPT-2 ties: lm_head uses wte's array (gradients add)


def _block(config):
    """A pre-LN TransformerBlock whose attention is GPT-2's, one c_attn for q, k and v."""
    attention = CausalSelfAttention(config.n_embd, config.n_head, config.bias, config.dropout)
    return TransformerBlock(config.n_embd, config.n_head, dropout=config.dropout, bias=config.bias,
                            norm_eps=config.layer_norm_eps, attention=attention)


class GPT(CachedDecoder):
    """GPT-2's shape. Its attention is laid out as GPT-2's checkpoints and nanoGPT have it:
    ``blocks.i.attn.c_attn`` (C → 3C) makes q, k and v in one projection, ``attn.c_proj``
    mixes the heads (``hf_gpt2`` maps the other names)."""

    lora_targets = ("c_attn",)  # add_lora's default: here q, k and v come from one layer

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.wte = Embedding(config.vocab_size, config.n_embd)   # token embeddings
        self.wpe = Embedding(config.block_size, config.n_embd)   # learned positions
        self.drop = Dropout(config.dropout)
        self.blocks = ModuleList(_block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            # one Parameter in two places: the embedding's gradient and the head's add up in
            # it, and named_parameters() lists it once (as wte.weight), so it steps once
            self.lm_head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self):
        """N(0, 0.02) as GPT-2, residual projections scaled by 1/√(2·n_layer) so the residual
        stream's variance does not grow with depth."""
        if init_skipped():
            return
        rng = generator()
        for name, p in self.named_parameters():
            if p.ndim == 2:
                into_residual = name.endswith(("attn.c_proj.weight", "mlp.proj.weight"))
                std = 0.02 / np.sqrt(2 * self.config.n_layer) if into_residual else 0.02
                p.data = rng.normal(0.0, std, p.shape).astype(np.float32)
            elif name.endswith("bias"):
                p.data = np.zeros(p.shape, np.float32)
        from .. import backends
        for p in self.parameters():
            p.data = backends.asarray(p.data)

    def forward(self, idx, targets=None, caches=None):
        """idx (B, T) token ids → logits (B, T, vocab), and the mean cross-entropy if
        ``targets`` (B, T) are given. With ``caches`` (one KVCache per block) ``idx`` holds
        only the new tokens."""
        idx = as_ids(idx)
        b, t = idx.shape
        start = len(caches[0]) if caches else 0
        if start + t > self.config.block_size:
            raise ValueError(f"GPT: sequence of {start + t} tokens exceeds block_size {self.config.block_size}")
        x = self.drop(self.wte(idx) + self.wpe(np.arange(start, start + t)))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, is_causal=True, cache=caches[i] if caches else None)
        logits = self.lm_head(self.ln_f(x))                                 # (B, T, vocab)
        return logits, self.loss(logits, targets)

    def blocks_with_cache(self):
        return self.blocks

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Also loads a state dict saved before the attention was one ``c_attn``."""
        from .gpt_old_checkpoints import from_separate_qkv
        return super().load_state_dict(from_separate_qkv(state_dict), strict, assign)

    @classmethod
    def from_pretrained(cls, path):
        """A GPT from a local Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors``)."""
        from .hf_gpt2 import load_gpt2
        return load_gpt2(path)

    def save_pretrained(self, path, tokenizer=None):
        """Write a folder ``transformers.GPT2LMHeadModel.from_pretrained`` loads (and the
        tokenizer's ``vocab.json``/``merges.txt`` when it is a byte-level BPE)."""
        from .hf_gpt2 import save_gpt2
        return save_gpt2(self, path, tokenizer)
