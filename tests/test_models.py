"""The transformer family and the history models: learning to the entropy bound, KV cache
equality, gradchecks, the reverse task, frozen fine-tuning."""
import numpy as np
import pytest

import minillm
from minillm import data, functional as F, optim
from minillm.models import (GPT, LSTMLM, MLPLM, BertClassifier, BertConfig, BertEncoder, EncoderDecoder,
                            EncoderDecoderConfig, GPTConfig, NGramLM, Seed001LM, encode_batch, mask_tokens,
                            teacher_forcing_batch)


def full_context_loss(model, tokens, order, block, rng, batches=20):
    """Mean cross-entropy over positions that see at least ``order`` previous tokens —
    the entropy rate is conditional on a full context, the first positions of a window
    are not."""
    losses = []
    with minillm.no_grad():
        for _ in range(batches):
            x, y = data.batches(tokens, block, 64, rng)
            logp = F.log_softmax(model(x)[0], -1).numpy()
            picked = np.take_along_axis(logp, y[..., None], -1)[..., 0]
            losses.append(-picked[:, order:].mean())
    return float(np.mean(losses))


@pytest.mark.parametrize("kind", ["gpt", "llama"])
def test_decoders_learn_a_markov_source_down_to_its_entropy_rate(kind):
    from minillm.models import Llama, LlamaConfig
    source = data.MarkovSource(order=2, vocab_size=6, seed=1)
    entropy = source.entropy_rate()
    train, val = source.sample(60000), source.sample(20000)
    minillm.manual_seed(0)
    model = GPT(GPTConfig(6, 32, 2, 2, 32)) if kind == "gpt" else Llama(LlamaConfig(6, 32, 2, 2, 1, 32))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    schedule = optim.WarmupCosine(opt, 20, 500, 1e-3)
    rng = np.random.default_rng(0)
    for _ in range(500):
        _, loss = model(*data.batches(train, 32, 32, rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    val_loss = full_context_loss(model, val, 2, 32, np.random.default_rng(1))
    print(f"entropy rate {entropy:.4f} nats/token, {kind} val loss {val_loss:.4f} (gap {val_loss - entropy:+.4f})")
    assert val_loss - entropy <= 0.05


@pytest.mark.parametrize("new_tokens", [6, 20])  # 20 runs past block_size = 16
def test_kv_cache_generation_equals_no_cache(new_tokens):
    minillm.manual_seed(0)
    model = GPT(GPTConfig(11, 16, 2, 2, 16))
    prompt = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    minillm.manual_seed(42)
    cached = model.generate(prompt, new_tokens, temperature=1.0, use_cache=True)
    minillm.manual_seed(42)
    plain = model.generate(prompt, new_tokens, temperature=1.0, use_cache=False)
    np.testing.assert_array_equal(cached, plain)
    assert cached.shape == (2, 4 + new_tokens)


def test_preallocated_kv_cache_writes_in_place_and_refuses_overflow():
    from minillm.nn import KVCache
    cache = KVCache(capacity=5)
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((2, 3, t, 4)).astype(np.float32) for t in (2, 1, 2)]
    with minillm.no_grad():
        for part in parts:
            k, v = cache.append(minillm.tensor(part), minillm.tensor(part * 2))
        buffer = cache.k
        np.testing.assert_array_equal(k.numpy(), np.concatenate(parts, axis=2))
        np.testing.assert_array_equal(v.numpy(), 2 * np.concatenate(parts, axis=2))
        assert len(cache) == 5 and cache.k is buffer  # written in place, never reallocated
        with pytest.raises(ValueError, match="KVCache: 6 positions exceed the capacity of 5"):
            cache.append(minillm.tensor(parts[1]), minillm.tensor(parts[1]))


def test_seed001_and_gpt_gradcheck_in_float64():
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    for model in (Seed001LM(7, n_embd=8, hidden=12, block_size=8), GPT(GPTConfig(7, 8, 1, 2, 8))):
        model.to(np.float64)
        params = model.parameters()
        assert minillm.gradcheck(lambda *ps: model(idx, targets)[1], *params, max_elements=15, verbose=False)


def test_history_models_run_and_learn():
    source = data.MarkovSource(order=1, vocab_size=5, seed=3)
    tokens = source.sample(5000)
    ngram = NGramLM(2, 5).fit(tokens[:4000])
    unigram = NGramLM(1, 5).fit(tokens[:4000])
    assert ngram.cross_entropy(tokens[4000:]) < unigram.cross_entropy(tokens[4000:])
    for model in (MLPLM(5, context=3, n_embd=8, hidden=16, block_size=16),
                  LSTMLM(5, n_embd=8, hidden=16, variant="document", block_size=16)):
        opt = optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(0)
        first = None
        for _ in range(60):
            _, loss = model(*data.batches(tokens, 16, 16, rng))
            first = first if first is not None else loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < first
        assert model.generate(np.array([[0]]), 5).shape == (1, 6)


def test_encoder_decoder_learns_to_reverse():
    rng = np.random.default_rng(0)
    config = EncoderDecoderConfig(vocab_size=8, block_size=12, n_layer=2, n_head=4, n_embd=48)
    minillm.manual_seed(0)
    model = EncoderDecoder(config)
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

    def pairs(n):
        out = []
        for _ in range(n):
            s = list(rng.integers(0, 8, rng.integers(3, 7)))
            out.append((s, s[::-1]))
        return out

    for _ in range(250):
        _, loss = model(*teacher_forcing_batch(pairs(64), config))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = pairs(200)
    predictions = model.generate(teacher_forcing_batch(test, config)[0], max_len=8)
    exact = np.mean([list(p) == list(t) for p, (_, t) in zip(predictions, test)])
    print(f"reversal exact-match accuracy {exact:.1%}")
    assert exact >= 0.95


def test_bert_masking_and_frozen_fine_tuning():
    config = BertConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 20, (400, 10))
    inputs, labels = mask_tokens(idx, config, rng)
    chosen = labels != -100
    assert 0.12 < chosen.mean() < 0.18
    assert 0.75 < (inputs[chosen] == config.mask_id).mean() < 0.85

    minillm.manual_seed(0)
    encoder = BertEncoder(config)
    classifier = BertClassifier(encoder, 2, freeze_encoder=True)
    frozen = {n: p.numpy().copy() for n, p in encoder.named_parameters()}
    trainable = classifier.trainable_parameters()
    assert {id(p) for p in trainable} == {id(p) for p in classifier.head.parameters()}
    opt = optim.AdamW(trainable, lr=1e-2)
    ids, pad = encode_batch([[1, 2, 3], [4, 5], [6]], config)
    for _ in range(5):
        _, loss = classifier(ids, pad, np.array([0, 1, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in encoder.named_parameters():
        np.testing.assert_array_equal(p.numpy(), frozen[name], err_msg=f"frozen {name} moved")
        assert p.grad is None
    assert encoder.mlm_loss(ids, rng, pad).item() > 0


def test_context_longer_than_block_size():
    model = GPT(GPTConfig(5, 8, 1, 1, 8))
    with pytest.raises(ValueError, match="GPT: sequence of 9 tokens exceeds block_size 8"):
        model(np.zeros((1, 9), np.int64))
    assert model.generate(np.zeros((1, 12), np.int64), 2).shape == (1, 14)  # generation crops
