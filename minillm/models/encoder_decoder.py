"""An encoder–decoder transformer in the T5 manner (documents 003 §2.3–2.4, 004 §3.2.1):
text in, text out. The encoder reads the source bidirectionally; the decoder predicts the
target one token at a time with causal self-attention plus cross-attention to the
encoder's states. Trained with teacher forcing; decodes greedily or by sampling.

Ids 0 … vocab_size−1 are the task's; BOS = vocab_size, EOS = vocab_size + 1,
PAD = vocab_size + 2.
"""
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleList
from ..nn.transformer import TransformerBlock
from ..tensor import no_grad
from .base import as_ids, sample


@dataclass
class EncoderDecoderConfig:
    vocab_size: int
    block_size: int = 32
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0

    @property
    def bos_id(self):
        return self.vocab_size

    @property
    def eos_id(self):
        return self.vocab_size + 1

    @property
    def pad_id(self):
        return self.vocab_size + 2


class EncoderDecoder(Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        total = config.vocab_size + 3
        self.tok = Embedding(total, config.n_embd)  # shared by encoder and decoder, as in T5
        self.pos = Embedding(config.block_size, config.n_embd)
        self.encoder = ModuleList(TransformerBlock(config.n_embd, config.n_head, dropout=config.dropout)
                                  for _ in range(config.n_layer))
        self.decoder = ModuleList(TransformerBlock(config.n_embd, config.n_head, dropout=config.dropout,
                                                   cross_attention=True) for _ in range(config.n_layer))
        self.ln_enc, self.ln_dec = LayerNorm(config.n_embd), LayerNorm(config.n_embd)
        self.head = Linear(config.n_embd, total)

    def _embed(self, idx):
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"EncoderDecoder: sequence of {t} tokens exceeds block_size {self.config.block_size}")
        return self.tok(idx) + self.pos(np.arange(t))

    def encode(self, src):
        src = as_ids(src)
        mask = src == self.config.pad_id
        x = self._embed(src)
        for block in self.encoder:
            x = block(x, key_padding_mask=mask)
        return self.ln_enc(x), mask

    def decode(self, tgt_in, memory, memory_mask):
        y = self._embed(as_ids(tgt_in))
        for block in self.decoder:
            y = block(y, is_causal=True, memory=memory, memory_mask=memory_mask)
        return self.head(self.ln_dec(y))

    def forward(self, src, tgt_in, tgt_out=None):
        """Teacher forcing: the decoder sees the true previous target tokens."""
        memory, mask = self.encode(src)
        logits = self.decode(tgt_in, memory, mask)
        loss = None
        if tgt_out is not None:
            targets = np.where(as_ids(tgt_out) == self.config.pad_id, -100, as_ids(tgt_out))
            loss = F.cross_entropy(logits, targets.reshape(-1))
        return logits, loss

    def generate(self, src, max_len, temperature=None, top_k=None):
        """Decode up to ``max_len`` tokens per source: greedy when temperature is None,
        else sampled. Returns a list of id lists, each cut at its EOS."""
        was_training = self.training
        self.eval()
        with no_grad():
            memory, mask = self.encode(src)
            out = np.full((memory.shape[0], 1), self.config.bos_id, np.int64)
            for _ in range(max_len):
                logits = self.decode(out, memory, mask).numpy()[:, -1, :]
                nxt = logits.argmax(-1) if temperature is None else sample(logits, temperature, top_k)
                out = np.concatenate([out, nxt[:, None]], axis=1)
                if (out == self.config.eos_id).any(axis=1).all():
                    break
        self.train(was_training)
        results = []
        for row in out[:, 1:]:
            row = list(row)
            results.append(row[: row.index(self.config.eos_id)] if self.config.eos_id in row else row)
        return results


def teacher_forcing_batch(pairs, config):
    """(source, target) id lists → padded src, decoder input (BOS + target) and decoder
    target (target + EOS) arrays."""
    width_src = max(len(s) for s, _ in pairs)
    width_tgt = max(len(t) for _, t in pairs) + 1
    src = np.full((len(pairs), width_src), config.pad_id, np.int64)
    tgt_in = np.full((len(pairs), width_tgt), config.pad_id, np.int64)
    tgt_out = np.full((len(pairs), width_tgt), config.pad_id, np.int64)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = s
        tgt_in[i, : len(t) + 1] = [config.bos_id] + list(t)
        tgt_out[i, : len(t) + 1] = list(t) + [config.eos_id]
    return src, tgt_in, tgt_out
