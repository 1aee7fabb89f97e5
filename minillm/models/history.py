"""The earlier language models the documents trace (000 ch.1), small enough to compare on
the same corpus: an n-gram count model, a fixed-window neural LM (Bengio et al. 2003) and
an LSTM LM (either LSTM variant)."""
import math
from collections import Counter, defaultdict

import numpy as np

from ..nn import LSTM, Embedding, Linear
from ..ops import tanh
from ..rng import generator
from .base import LanguageModel, as_ids


class NGramLM:
    """P(x | previous n−1 tokens) from counts, interpolated with the lower orders
    (Jelinek–Mercer) and add-k smoothed at the unigram, so no token has probability 0."""

    def __init__(self, n, vocab_size, k=0.5, weights=None):
        if n < 1:
            raise ValueError(f"NGramLM: n must be >= 1; got {n}")
        self.n, self.vocab_size, self.k = n, vocab_size, k
        self.weights = weights or [0.5 ** (n - j) for j in range(1, n + 1)]  # more weight on longer contexts
        total = sum(self.weights)
        self.weights = [w / total for w in self.weights]
        self.counts = [defaultdict(Counter) for _ in range(n)]  # order j: context of j tokens

    def fit(self, tokens):
        tokens = [int(t) for t in tokens]
        for j in range(self.n):
            table = self.counts[j]
            for i in range(j, len(tokens)):
                table[tuple(tokens[i - j:i])][tokens[i]] += 1
        return self

    def prob(self, context, token):
        p = 0.0
        for j, weight in enumerate(self.weights):
            counts = self.counts[j].get(tuple(context[len(context) - j:]) if j else (), None)
            if j == 0:
                total = sum(counts.values()) if counts else 0
                p += weight * ((counts or {}).get(token, 0) + self.k) / (total + self.k * self.vocab_size)
            elif counts:
                p += weight * counts.get(token, 0) / sum(counts.values())
            else:  # unseen context: its weight goes to the unigram
                total = sum(self.counts[0][()].values())
                p += weight * (self.counts[0][()].get(token, 0) + self.k) / (total + self.k * self.vocab_size)
        return p

    def cross_entropy(self, tokens):
        """Mean −log P(token | context) in nats over ``tokens`` (after the first n−1)."""
        tokens = [int(t) for t in tokens]
        logs = [-math.log(self.prob(tokens[max(0, i - self.n + 1):i], tokens[i]))
                for i in range(self.n - 1, len(tokens))]
        return float(np.mean(logs))

    def generate(self, context, max_new_tokens):
        out = [int(t) for t in context]
        rng = generator()
        for _ in range(max_new_tokens):
            probs = np.array([self.prob(out[len(out) - self.n + 1:] if self.n > 1 else [], t)
                              for t in range(self.vocab_size)])
            out.append(int(rng.choice(self.vocab_size, p=probs / probs.sum())))
        return out


class MLPLM(LanguageModel):
    """Embeddings of the previous ``context`` tokens, concatenated → tanh layer → logits.
    Positions before the start see a padding token of their own."""

    def __init__(self, vocab_size, context=4, n_embd=32, hidden=128, block_size=64):
        super().__init__()
        self.vocab_size, self.context, self.block_size = vocab_size, context, block_size
        self.embed = Embedding(vocab_size + 1, n_embd)  # the last row is the padding token
        self.hidden = Linear(context * n_embd, hidden)
        self.head = Linear(hidden, vocab_size)

    def forward(self, idx, targets=None):
        idx = as_ids(idx)
        b, t = idx.shape
        self.check_length(t)
        padded = np.concatenate([np.full((b, self.context - 1), self.vocab_size), idx], axis=1)
        windows = padded[:, np.arange(t)[:, None] + np.arange(self.context)[None, :]]  # (B, T, context)
        x = self.embed(windows).reshape(b, t, -1)                                       # (B, T, context·C)
        logits = self.head(tanh(self.hidden(x)))
        return logits, self.loss(logits, targets)


class LSTMLM(LanguageModel):
    """Embedding → LSTM (``variant`` "standard" or "document") → linear head."""

    def __init__(self, vocab_size, n_embd=64, hidden=128, num_layers=1, variant="standard", block_size=64):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.embed = Embedding(vocab_size, n_embd)
        self.lstm = LSTM(n_embd, hidden, num_layers=num_layers, batch_first=True, variant=variant)
        self.head = Linear(hidden, vocab_size)

    def forward(self, idx, targets=None):
        idx = as_ids(idx)
        self.check_length(idx.shape[1])
        out, _ = self.lstm(self.embed(idx))  # (B, T, hidden)
        logits = self.head(out)
        return logits, self.loss(logits, targets)
