"""BERT (document 004 §4): a bidirectional transformer encoder pretrained by masked
language modelling, then fine-tuned as a classifier on its first token.

Token ids 0 … vocab_size−1 are the tokenizer's; three special ids follow them:
CLS = vocab_size, MASK = vocab_size + 1, PAD = vocab_size + 2.
"""
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList
from ..nn.transformer import TransformerBlock
from .base import as_ids


@dataclass
class BertConfig:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0

    @property
    def cls_id(self):
        return self.vocab_size

    @property
    def mask_id(self):
        return self.vocab_size + 1

    @property
    def pad_id(self):
        return self.vocab_size + 2

    @property
    def total_vocab(self):
        return self.vocab_size + 3


def mask_tokens(idx, config, rng, probability=0.15):
    """BERT's masking: choose 15% of the real tokens as targets; of those, 80% become
    [MASK], 10% a random token, 10% stay. Returns (inputs, labels) with label −100 where
    nothing is predicted."""
    idx = as_ids(idx)
    real = idx < config.vocab_size
    chosen = (rng.random(idx.shape) < probability) & real
    labels = np.where(chosen, idx, -100)
    roll = rng.random(idx.shape)
    inputs = idx.copy()
    inputs[chosen & (roll < 0.8)] = config.mask_id
    randomise = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[randomise] = rng.integers(0, config.vocab_size, int(randomise.sum()))
    return inputs, labels


def encode_batch(token_lists, config):
    """[CLS] + tokens, cut to block_size and padded with PAD: (B, T) ids and (B, T) padding mask."""
    rows = [[config.cls_id] + list(tokens)[: config.block_size - 1] for tokens in token_lists]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), config.pad_id, np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, ids == config.pad_id


class BertEncoder(Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tok = Embedding(config.total_vocab, config.n_embd)
        self.pos = Embedding(config.block_size, config.n_embd)
        self.drop = Dropout(config.dropout)
        self.blocks = ModuleList(TransformerBlock(config.n_embd, config.n_head, dropout=config.dropout)
                                 for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd)
        self.mlm_head = Linear(config.n_embd, config.vocab_size)

    def forward(self, idx, padding_mask=None):
        """idx (B, T) → hidden states (B, T, C); every position sees every other."""
        idx = as_ids(idx)
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"BertEncoder: sequence of {t} tokens exceeds block_size {self.config.block_size}")
        x = self.drop(self.tok(idx) + self.pos(np.arange(t)))
        for block in self.blocks:
            x = block(x, key_padding_mask=padding_mask)
        return self.ln_f(x)

    def mlm_loss(self, idx, rng, padding_mask=None):
        """Masked-LM loss on a batch: mask, predict the chosen tokens, cross-entropy."""
        inputs, labels = mask_tokens(idx, self.config, rng)
        if (labels != -100).sum() == 0:  # a short batch drew no target: mask its first real token
            real = np.argwhere(as_ids(idx) < self.config.vocab_size)
            if not len(real):
                raise ValueError("mlm_loss: the batch holds no real tokens (only [CLS], [PAD] or [MASK]) to predict")
            row, column = real[0]
            labels[row, column], inputs[row, column] = idx[row, column], self.config.mask_id
        logits = self.mlm_head(self(inputs, padding_mask))
        return F.cross_entropy(logits, labels.reshape(-1))


class BertClassifier(Module):
    """The encoder's [CLS] state → dropout → linear → class logits. With
    ``freeze_encoder`` only the head trains (its parameters are the only ones that
    require grad)."""

    def __init__(self, encoder, num_classes, freeze_encoder=False, dropout=0.1):
        super().__init__()
        self.encoder = encoder
        self.drop = Dropout(dropout)
        self.head = Linear(encoder.config.n_embd, num_classes)
        self.encoder.requires_grad_(not freeze_encoder)

    def forward(self, idx, padding_mask=None, targets=None):
        pooled = self.encoder(idx, padding_mask)[:, 0, :]  # (B, C): the [CLS] position
        logits = self.head(self.drop(pooled))
        return logits, None if targets is None else F.cross_entropy(logits, as_ids(targets))

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]
