"""What every language model here shares: ``forward(idx, targets=None) -> (logits, loss)``
and sampling the next token from the predicted distribution (document 003 §4.2)."""
import numpy as np

from .. import functional as F
from ..nn import Module
from ..rng import generator
from ..tensor import Tensor, no_grad


def sample(logits, temperature=1.0, top_k=None, top_p=None, vocab_size=None):
    """One token per row of ``logits`` (B, V), drawn from softmax(logits / temperature).

    ``temperature=0`` is greedy decoding (the argmax, whatever the seed); ``top_k`` keeps
    the k most likely tokens, and ``None`` or ``0`` keeps them all; ``top_p`` (nucleus
    sampling, Holtzman et al. 2019) keeps the smallest set of most likely tokens whose
    probabilities add up to at least p (the most likely token always stays), and ``None``
    or ``1`` keeps them all. Both filters may be combined: top-k first, as Hugging Face does.
    ``vocab_size`` (the tokenizer's) draws only ids below it, see ``within_vocab``."""
    if temperature < 0:
        raise ValueError(f"sample: temperature must be >= 0 (0 is greedy); got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"sample: top_k must be >= 0 (0 keeps every token); got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"sample: top_p must be in (0, 1] (1 keeps every token); got {top_p}")
    if temperature == 0:
        return within_vocab(logits, vocab_size).argmax(-1)
    probs = next_token_probs(logits, temperature, top_k, top_p, vocab_size)
    rng = generator()
    return np.array([rng.choice(len(p), p=p) for p in probs])


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None, vocab_size=None):
    """The distribution ``sample`` draws from: softmax(logits / temperature) (B, V), with the
    ids from ``vocab_size`` on masked, then the top-k and the top-p filter applied and the
    rest renormalised."""
    logits = within_vocab(logits, vocab_size)
    # shifted before dividing: a tiny temperature then sends the others to -inf, never inf - inf
    with np.errstate(over="ignore"):
        logits = (logits - logits.max(-1, keepdims=True)) / temperature
    if top_k:
        kth = np.sort(logits, axis=-1)[:, -min(top_k, logits.shape[-1])][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-probs, axis=-1, kind="stable")
        ranked = np.take_along_axis(probs, order, -1)
        # a token stays when the mass of the tokens ranked above it is still below p
        keep_ranked = np.cumsum(ranked, -1) - ranked < top_p
        keep = np.zeros_like(keep_ranked)
        np.put_along_axis(keep, order, keep_ranked, -1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(-1, keepdims=True)
    return probs


def within_vocab(logits, vocab_size=None):
    """``logits`` (B, V) in float64, with the ids from ``vocab_size`` on set to -inf. Many
    checkpoints pad the head wider than the tokenizer (llm.c's GPT-2 has 50304 outputs for
    50257 tokens) and the padded ids decode to nothing, so, as llm.c does, they are never
    drawn, not even by the argmax. ``None`` keeps every id."""
    logits = np.array(logits, np.float64)
    if vocab_size is not None:
        if int(vocab_size) != vocab_size or vocab_size < 1:
            raise ValueError(f"sample: vocab_size must be a positive integer (the tokenizer's); got {vocab_size}")
        logits[:, int(vocab_size):] = -np.inf
    return logits


def check_generation(max_new_tokens):
    if int(max_new_tokens) != max_new_tokens or max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be a positive integer; got {max_new_tokens}")


def as_ids(idx):
    return np.asarray(idx.numpy() if isinstance(idx, Tensor) else idx, np.int64)


class LanguageModel(Module):
    """A next-token model over a context of at most ``block_size`` tokens."""

    block_size = None

    def loss(self, logits, targets):
        return None if targets is None else F.cross_entropy(logits, as_ids(targets).reshape(-1))

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, vocab_size=None):
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); the context is cropped
        to the last block_size tokens. Pass the tokenizer's ``vocab_size`` when the model's
        output is wider (padded), so that only ids the tokenizer decodes are drawn."""
        check_generation(max_new_tokens)
        idx = as_ids(idx)
        was_training = self.training
        self.eval()
        with no_grad():
            for _ in range(max_new_tokens):
                context = idx[:, -self.block_size:] if self.block_size else idx
                logits, _ = self(context)
                next_token = sample(logits.numpy()[:, -1, :], temperature, top_k, top_p, vocab_size)
                idx = np.concatenate([idx, next_token[:, None]], axis=1)
        self.train(was_training)
        return idx

    def check_length(self, t):
        if self.block_size and t > self.block_size:
            raise ValueError(f"{type(self).__name__}: sequence of {t} tokens exceeds block_size {self.block_size}")


class CachedDecoder(LanguageModel):
    """A decoder whose blocks take a ``KVCache`` (GPT, Llama): generation reuses the keys and
    values of the prefix. Subclasses name their blocks in ``blocks_with_cache()``."""

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, use_cache=True, top_p=None,
                 vocab_size=None):
        """Sample ``max_new_tokens`` tokens after ``idx`` (B, T), each from
        softmax(logits / temperature) over the top_k most likely (then top_p) of the ids
        below ``vocab_size`` (the tokenizer's; None: all). With the KV cache each new token
        costs one query against the cached keys and values."""
        if not use_cache:
            return super().generate(idx, max_new_tokens, temperature, top_k, top_p, vocab_size)
        return generate_with_cache(self, idx, max_new_tokens, temperature, top_k, top_p, vocab_size)

    def blocks_with_cache(self):
        raise NotImplementedError


def generate_with_cache(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, vocab_size=None):
    """Sampling with one ``KVCache`` per block of ``model.blocks_with_cache()``, preallocated to
    the block size: after the prompt each token is one query against the cache. Past
    block_size the context is cropped to its last block_size tokens and the cache rebuilt
    from that window (absolute positions cannot slide), which gives exactly the tokens
    generation without the cache gives. A model ``ArrayDecoder.fits`` (GPT, float32 or int8
    weights) decodes on arrays with its own caches (models/decode.py): the same logits, without
    a Tensor node around the kernels."""
    from ..nn.transformer import KVCache
    from .decode import ArrayDecoder
    check_generation(max_new_tokens)
    idx = as_ids(idx)
    was_training = model.training
    model.eval()
    # checked once per generation; any other model (LoRA, Llama, autocast, a GPU) runs its forward
    arrays = ArrayDecoder(model) if ArrayDecoder.fits(model) else None
    caches, pending, block = None, idx, model.block_size
    with no_grad():
        for _ in range(max_new_tokens):
            if arrays is not None:
                if len(arrays) + pending.shape[1] > block:
                    arrays.reset()
                    pending = idx[:, -block:]
                last = arrays.step(pending)
            else:
                if caches is None or len(caches[0]) + pending.shape[1] > block:
                    caches = [KVCache(block) for _ in model.blocks_with_cache()]
                    pending = idx[:, -block:]
                logits, _ = model(pending, caches=caches)
                last = logits.numpy()[:, -1, :]
            next_token = sample(last, temperature, top_k, top_p, vocab_size)
            idx = np.concatenate([idx, next_token[:, None]], axis=1)
            pending = next_token[:, None]
    model.train(was_training)
    return idx
