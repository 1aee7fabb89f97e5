"""Chapter 07 exercises: pretraining and fine-tuning (read lessons/07_pretrain_finetune.py
first).

Fill in every function that raises NotImplementedError, then grade your work:

    minillm exercise 7

NumPy and `math` only: the checks compare your answers with minillm's
binary_cross_entropy_with_logits and backward(), optim.AdamW, minillm.metrics,
nn.lora.LoRALinear and models.bert.mask_tokens on freshly drawn inputs (sizes 1 and
primes among them), so calling those would only compare them with themselves. Arrays are
float64 unless a docstring says otherwise.
"""
import math  # noqa: F401  (yours to use)

import numpy as np  # noqa: F401  (yours to use)


def adamw_step(theta, g, m, v, t, lr, betas, eps, weight_decay):
    """One AdamW step (decoupled weight decay), as optim.AdamW takes it.

    theta, g, m, v: arrays of one shape: the weights, their gradient, and Adam's first
    and second moments after t − 1 steps (zeros before the first step); t ≥ 1 is this
    step's number; betas = (β1, β2). With η = lr and λ = weight_decay:
        m ← β1 m + (1 − β1) g,    v ← β2 v + (1 − β2) g²
        m̂ = m / (1 − β1^t),       v̂ = v / (1 − β2^t)
        θ ← θ − η m̂ / (√v̂ + ε) − η λ θ        (the decay uses θ before this step)
    Return (theta, m, v), all new arrays; leave the ones passed in unchanged.
    """
    raise NotImplementedError


def mask_tokens(idx, vocab_size, rng, probability=0.15):
    """BERT's masking for masked-language-model pretraining, as models.bert.mask_tokens.

    idx: an int array (B, T) of token ids. Ids below vocab_size are real tokens; the
    three ids from vocab_size on are special ([CLS] = vocab_size, [MASK] = vocab_size + 1,
    [PAD] = vocab_size + 2) and are never chosen. rng: a np.random.Generator. Draw, in
    this order (so the draws match the library's):
      1. u = rng.random(idx.shape): a real token is chosen as a target where u < probability;
      2. roll = rng.random(idx.shape): a chosen token with roll < 0.8 becomes [MASK];
         with 0.8 ≤ roll < 0.9 it becomes a random real token; with roll ≥ 0.9 it stays;
      3. the random tokens: rng.integers(0, vocab_size, n), n = how many chosen tokens
         have 0.8 ≤ roll < 0.9, given to them in row-major order.
    Return (inputs, labels), int arrays (B, T): inputs is idx with those replacements (a
    copy; leave idx unchanged); labels holds the original id where a token was chosen and
    −100 (ignored by the loss) everywhere else.
    """
    raise NotImplementedError


def bce_with_logits(z, y):
    """Binary cross-entropy on logits, and its gradient.

    z: (N,) logits, as large as ±1000; y: (N,) targets in [0, 1] (labels 0/1, or soft).
    L = mean over i of −[y log σ(z) + (1 − y) log(1 − σ(z))]. Computed as written, σ(z)
    rounds to 0 or 1 for large |z| and the log is −inf: use the equal, stable form
    max(z, 0) − z·y + log(1 + e^(−|z|)) (np.log1p) for each term. Return the pair
    (L as a float, ∂L/∂z (N,)), where ∂L/∂z_i = (σ(z_i) − y_i) / N; compute σ without
    overflow too (e^(−z) overflows for z = −1000).
    """
    raise NotImplementedError


def precision_recall_f1(predicted, actual):
    """Precision, recall and F1 of binary predictions.

    predicted, actual: int arrays (N,) of 0 and 1 (1 = positive). Count TP (predicted 1,
    actually 1), FP (predicted 1, actually 0) and FN (predicted 0, actually 1).
    precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R); a fraction
    whose denominator is 0 counts as 0.0 (no positive predictions: precision 0). Return
    the triple (precision, recall, f1) of floats.
    """
    raise NotImplementedError


def lora_forward(x, W, b, A, B, alpha):
    """A LoRA-adapted linear layer: y = x Wᵀ + b + (α / r) · x Aᵀ Bᵀ.

    x: (N, in); W: (out, in) the frozen weight and b: (out,) its bias; A: (r, in) and
    B: (out, r) the adapter, r = A.shape[0]; alpha: α. Return y (N, out). Multiply x by
    Aᵀ first and then by Bᵀ: (N, r) in between, never an (out, in) matrix.
    """
    raise NotImplementedError


def lora_merge(W, A, B, alpha):
    """Fold a LoRA adapter into its weight: return W + (α / r) · B A, shape (out, in), with
    r = A.shape[0]. The merged layer x W'ᵀ + b computes what lora_forward does."""
    raise NotImplementedError
