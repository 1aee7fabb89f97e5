"""The single-layer language model of document 001 §4, following its formula:

    E = W_e · X                      embedding of the tokens X
    A = softmax(Q Kᵀ / √d_k)         Q = E W_q, K = E W_k, V = E W_v (one head, causal)
    O = A · V
    F = σ(W_f · (O + E))             a sigmoid layer over attention output plus embedding
    Y = W_o · F + b                  logits over the vocabulary

How the document's code listing differs from its formula (we follow the formula): the
listing splits attention into several heads and adds an output projection; it has no
residual O + E; its feed-forward network is Linear → ReLU → Linear, not a single sigmoid
layer; it puts a separate linear output layer after that; it applies no causal mask;
and it divides by ``torch.sqrt(self.head_dim)`` of an int, which PyTorch rejects. The
formula has no position information either, so the only sense of order comes from the
causal mask — exactly what the formula allows.
"""
import math

from .. import functional as F
from ..nn import Embedding, Linear
from ..ops import sigmoid
from .base import LanguageModel, as_ids


class Seed001LM(LanguageModel):
    def __init__(self, vocab_size, n_embd=64, hidden=128, block_size=64):
        super().__init__()
        self.vocab_size, self.n_embd, self.block_size = vocab_size, n_embd, block_size
        self.W_e = Embedding(vocab_size, n_embd)
        self.W_q = Linear(n_embd, n_embd, bias=False)
        self.W_k = Linear(n_embd, n_embd, bias=False)
        self.W_v = Linear(n_embd, n_embd, bias=False)
        self.W_f = Linear(n_embd, hidden, bias=False)
        self.W_o = Linear(hidden, vocab_size)  # its bias is the formula's b

    def forward(self, idx, targets=None):
        idx = as_ids(idx)
        self.check_length(idx.shape[1])
        e = self.W_e(idx)                                                      # (B, T, C)
        q, k, v = self.W_q(e), self.W_k(e), self.W_v(e)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / math.sqrt(self.n_embd))
        f = sigmoid(self.W_f(o + e))                                           # (B, T, hidden)
        logits = self.W_o(f)                                                   # (B, T, vocab)
        return logits, self.loss(logits, targets)
