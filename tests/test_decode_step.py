"""The array decode step (models/decode.py) against the Tensor path it replaces: the same
tokens, greedy and sampled from one seed, and the same logits at every step, on every CPU
backend, for GPT in float32 and with int8 weights; the fallback for models it does not know."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import backends
from minillm.compress import quantize_model, quantize_weights
from minillm.models import GPT, GPTConfig, Llama, LlamaConfig
from minillm.models import decode
from minillm.models.decode import ArrayDecoder
from minillm.nn.lora import add_lora
from minillm.nn.transformer import KVCache
from minillm.tensor import no_grad

CPU = [name for name in ("numpy", "numba", "c") if name in backends.available()]
# The step calls the same kernels on the same values: equal bit for bit in practice; the
# tolerance is float32's, so that a harmless change of summation order would not fail it
RTOL, ATOL = 1e-5, 1e-6


def _gpt(vocab, heads, head_size, layers, block, int8, seed, tie=False):
    minillm.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=layers, n_head=heads,
                          n_embd=heads * head_size, tie_word_embeddings=tie)).eval()
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # not N(0, 0.02): distinct, wide logits, so that ties cannot hide a difference
        p.data = backends.asarray(rng.standard_normal(p.shape).astype(np.float32) * np.float32(0.3))
    return quantize_weights(model) if int8 else model


def _tensor_path(monkeypatch):
    monkeypatch.setattr(ArrayDecoder, "enabled", False)


shapes = st.fixed_dictionaries(dict(
    vocab=st.sampled_from([2, 13, 97]),            # primes
    heads=st.integers(1, 3),
    head_size=st.sampled_from([1, 5, 7, 16]),      # n_embd not a multiple of 16 mostly
    layers=st.integers(1, 2),
    block=st.integers(3, 9),                       # new tokens below cross it: the cache is rebuilt
    batch=st.sampled_from([1, 3]),
    prompt=st.integers(1, 11),                     # may itself be longer than the block
    tie=st.booleans(),                             # GPT-2's lm_head reads wte's table
    seed=st.integers(0, 2 ** 16)))


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
@settings(max_examples=6, deadline=None)
@given(shape=shapes)
def test_same_tokens_as_the_tensor_path(backend, int8, shape):
    with backends.use_backend(backend):
        model = _gpt(shape["vocab"], shape["heads"], shape["head_size"], shape["layers"], shape["block"], int8,
                     shape["seed"], shape["tie"])
        assert ArrayDecoder.fits(model)
        prompt = np.random.default_rng(shape["seed"]).integers(0, shape["vocab"], (shape["batch"], shape["prompt"]))
        new = 2 * shape["block"] + 1
        for options in (dict(temperature=0), dict(temperature=0.9, top_k=5, top_p=0.9), dict(temperature=1.3)):
            minillm.manual_seed(7)
            fast = model.generate(prompt, new, **options)
            with pytest.MonkeyPatch.context() as patch:
                _tensor_path(patch)
                minillm.manual_seed(7)
                slow = model.generate(prompt, new, **options)
            np.testing.assert_array_equal(fast, slow, err_msg=f"{backend} {options}")


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_logits_match_at_every_step_across_a_cache_rebuild(backend, int8):
    """Each step's last-position logits against GPT.forward with KVCaches fed the same tokens,
    the context cropped and both caches rebuilt when it passes block_size."""
    with backends.use_backend(backend):
        model = _gpt(31, 3, 5, 2, 6, int8, seed=3)
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, 31, (3, 20))
        arrays, caches, context, pending = ArrayDecoder(model), None, tokens[:, :4], tokens[:, :4]
        with no_grad():
            for step in range(4, 20):
                if caches is None or len(caches[0]) + pending.shape[1] > model.block_size:
                    caches, pending = [KVCache(model.block_size) for _ in model.blocks], context[:, -6:]
                    arrays.reset()
                want = model(pending, caches=caches)[0].numpy()[:, -1]
                got = arrays.step(pending)
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{backend}, step {step}")
                context, pending = tokens[:, :step + 1], tokens[:, step:step + 1]


def test_models_it_does_not_know_keep_the_tensor_path(monkeypatch):
    """A LoRA-wrapped GPT, a Llama, a GPT with int8 activations (``quantize_model``) and a
    model in training mode are not decoded on arrays. A
    fresh LoRA adapter adds zero, so the wrapped model on the Tensor path gives the tokens the
    plain model gave on arrays: the two paths agree."""
    made = []
    monkeypatch.setattr(decode.ArrayDecoder, "__init__",
                        lambda self, model, _init=ArrayDecoder.__init__: (made.append(model), _init(self, model))[1])
    gpt = _gpt(13, 2, 4, 1, 8, False, seed=1)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    plain_tokens = gpt.generate(prompt, 12, temperature=0)
    assert len(made) == 1 and made[0] is gpt
    add_lora(gpt, rank=2)
    assert not ArrayDecoder.fits(gpt)
    np.testing.assert_array_equal(gpt.generate(prompt, 12, temperature=0), plain_tokens)
    llama = Llama(LlamaConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_kv_head=1, n_embd=8)).eval()
    assert not ArrayDecoder.fits(llama)
    llama.generate(prompt, 10, temperature=0)
    assert len(made) == 1  # neither built an ArrayDecoder
    assert not ArrayDecoder.fits(_gpt(13, 2, 4, 1, 8, False, seed=1).train())
    both = _gpt(13, 2, 4, 1, 8, False, seed=1)
    both.trained_steps = 1  # quantize_model refuses an untrained model
    assert not ArrayDecoder.fits(quantize_model(both))
    both.generate(prompt, 10, temperature=0)
    assert len(made) == 1


def test_bad_token_ids_get_a_clear_error():
    model = _gpt(13, 2, 4, 1, 8, False, seed=1)
    for bad in (13, -1):
        with pytest.raises(IndexError, match=f"embedding: index {bad} is out of range for 13"):
            model.generate(np.array([[1, bad]]), 2, temperature=0)


def test_a_float64_model_keeps_float64_caches(monkeypatch):
    """The caches take the model's dtype, as KVCache does: float64 logits are not rounded."""
    model = _gpt(31, 2, 5, 2, 6, False, seed=2)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    arrays = ArrayDecoder(model)
    with no_grad():
        want = model(prompt, caches=[KVCache(6) for _ in model.blocks])[0].numpy()[:, -1]
    got = arrays.step(prompt)
    assert got.dtype == np.float64 and arrays.keys[0].dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    fast = model.generate(prompt, 13, temperature=0)
    _tensor_path(monkeypatch)
    np.testing.assert_array_equal(fast, model.generate(prompt, 13, temperature=0))
