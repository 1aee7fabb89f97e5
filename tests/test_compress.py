"""Compression and export on a trained GPT: the quantised product against the float
reference, masks that survive fine-tuning, the SVD error equal to the discarded energy,
distillation, ONNX logits against minillm's, and the error cases."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import backends, nn
from minillm.compress import (distill, factorize, factorize_model, prune_heads, prune_magnitude,
                              prune_neurons, quantize_model, quantize_symmetric, quantize_weights)
from minillm.compress.quantize import Int8WeightLinear, QuantizedEmbedding, QuantizedLinear
from minillm.models import GPT, GPTConfig, LSTMLM, Llama, LlamaConfig
from minillm.train import TrainConfig, Trainer, load, perplexity_of


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt")
    config = TrainConfig(out_dir=str(out), max_iters=40, batch_size=8, block_size=32, n_layer=2, n_head=2,
                         n_embd=32, eval_interval=40, eval_iters=2, progress=False, backend="numpy")
    Trainer(config, log=lambda *a: None).run()
    return out


@pytest.mark.parametrize("name", [b for b in ("numpy", "c") if b in backends.available()])
@given(m=st.sampled_from([1, 5, 17]), k=st.sampled_from([1, 7, 64]), n=st.sampled_from([1, 9, 32]),
       seed=st.integers(0, 2 ** 16))
@settings(max_examples=15)
def test_int8_matmul_is_exact_integer_arithmetic(name, m, k, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-127, 128, (m, k)).astype(np.int8), rng.integers(-127, 128, (n, k)).astype(np.int8)
    np.testing.assert_array_equal(backends.get(name).matmul_int8(a, b), a.astype(np.int64) @ b.T.astype(np.int64))


def test_quantised_linear_against_the_float_reference():
    rng = np.random.default_rng(0)
    layer = nn.Linear(64, 32)
    x = rng.standard_normal((10, 64)).astype(np.float32)
    expected = x.astype(np.float64) @ layer.weight.numpy().T.astype(np.float64) + layer.bias.numpy()
    got = QuantizedLinear(layer)(minillm.tensor(x)).numpy()
    error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    print(f"int8 linear relative error {error:.2e}")
    assert error < 0.02  # two 8-bit roundings: ~1/254 each, in quadrature over 64 terms
    q, s = quantize_symmetric(layer.weight.numpy())
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and s.shape == (32,)


def test_quantised_gpt_generates_and_refuses_twice(trained):
    model, tokenizer = load(trained)
    quantize_model(model)
    assert all(not isinstance(m, (nn.Linear, nn.Embedding)) for m in model.modules())
    text = tokenizer.decode(model.generate(np.array([tokenizer.encode("The ")]), 10)[0].tolist())
    assert text.startswith("The ") and len(text) > 4
    with pytest.raises(ValueError, match="is already quantised"):
        quantize_model(model)
    with pytest.raises(ValueError, match="has not been trained"):
        quantize_model(GPT(GPTConfig(10, 8, 1, 1, 8)))


HOST = [b for b in ("numpy", "c") if b in backends.available()]


@pytest.mark.parametrize("name", HOST + ["c-kernel-on-every-row"] * ("c" in HOST))
def test_int8_weights_keep_perplexity_within_one_percent(trained, name, monkeypatch):
    """Weight-only int8 (int8 weights, a scale per output row, float32 activations) on the
    trained model: validation perplexity within 1% of fp32's, on the same batches. The c
    backend multiplies an evaluation batch's 512 rows by dequantised blocks through the GEMM;
    "c-kernel-on-every-row" sends them through the decoding kernel (two-digit activations)."""
    from minillm import data
    if name == "c-kernel-on-every-row":
        from minillm.backends import c as c_backend
        monkeypatch.setattr(c_backend, "INT8_KERNEL_ROWS", 1 << 30)
        name = "c"
    with backends.use_backend(name):
        model, tokenizer = load(trained)
        text = data.corpus("python-docs").val[:20_000]
        fp32 = perplexity_of(model, tokenizer, text, 32, batch_size=16, batches=4)[1]
        quantize_weights(model)
        assert all(not isinstance(m, (nn.Linear, nn.Embedding)) for m in model.modules())
        assert any(isinstance(m, Int8WeightLinear) for m in model.modules())
        int8 = perplexity_of(model, tokenizer, text, 32, batch_size=16, batches=4)[1]
        print(f"{name}: perplexity fp32 {fp32:.4f}, int8 weights {int8:.4f} ({int8 / fp32 - 1:+.3%})")
        assert abs(int8 / fp32 - 1) <= 0.01
        text = tokenizer.decode(model.generate(np.array([tokenizer.encode("The ")]), 10)[0].tolist())
        assert text.startswith("The ") and len(text) > 4


@pytest.mark.parametrize("make", [lambda: GPT(GPTConfig(61, 16, 2, 2, 32, tie_word_embeddings=True)),
                                  lambda: Llama(LlamaConfig(vocab_size=61, block_size=16, n_layer=2, n_head=4,
                                                            n_kv_head=2, n_embd=32))],
                         ids=["gpt-tied", "llama"])
def test_int8_weights_logits_and_cached_decoding(make):
    """GPT (with GPT-2's tied table and output layer, kept as one int8 copy) and Llama: the
    logits of a prompt within int8's rounding of fp32's, and decoding with the KV cache one
    token at a time equal to the full forward of the quantised model."""
    model = make().eval()
    idx = np.random.default_rng(0).integers(0, 61, (2, 9))
    with minillm.no_grad():
        before = model(idx)[0].numpy()
        quantize_weights(model)
        after = model(idx)[0].numpy()
    assert np.linalg.norm(after - before) <= 0.03 * np.linalg.norm(before)
    if isinstance(model, GPT):
        assert isinstance(model.wte, QuantizedEmbedding) and model.lm_head.qweight is model.wte.qweight
    greedy = model.generate(idx[:1, :3], 6, temperature=0)
    with minillm.no_grad():
        full = model(greedy[:, :-1])[0].numpy()
    assert np.array_equal(full[0, 2:].argmax(-1), greedy[0, 3:])


def test_int8_weights_refuse_a_quantised_model_and_take_an_untrained_one():
    model = quantize_weights(GPT(GPTConfig(10, 8, 1, 1, 8)))  # random weights: fine to time
    assert model.quantized == "int8 weights"
    with pytest.raises(ValueError, match="quantize_weights: GPT is already quantised"):
        quantize_weights(model)
    with pytest.raises(ValueError, match="quantize_model: GPT is already quantised"):
        quantize_model(model)


def test_pruned_weights_are_zero_and_stay_zero_through_fine_tuning(trained):
    model, _ = load(trained)
    masks = prune_magnitude(model, 0.5)
    assert 0.49 < masks.sparsity() < 0.51
    pruned = [(p, keep) for p, keep in masks.entries]
    opt = minillm.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        _, loss = model(np.random.default_rng(0).integers(0, 10, (2, 8)), np.zeros((2, 8), np.int64))
        opt.zero_grad()
        loss.backward()
        opt.step()
        masks.apply()
    for p, keep in pruned:
        assert np.all(p.numpy()[~keep] == 0)
        assert np.any(p.numpy()[keep] != 0)


def test_structured_pruning_removes_whole_heads_and_neurons(trained):
    model, _ = load(trained)
    prune_heads(model, 0.5)
    attn = model.blocks[0].attn
    rows = attn.c_attn.weight.numpy().reshape(3, 2, 16, -1)   # (q | k | v, head, row in head, C)
    assert sum(np.all(rows[:, h] == 0) for h in range(2)) == 1
    columns = attn.c_proj.weight.numpy().reshape(-1, 2, 16)   # (C, head, column in head)
    assert sum(np.all(columns[:, h] == 0) for h in range(2)) == 1
    prune_neurons(model, 0.25)
    fc = model.blocks[0].mlp.fc.weight.numpy()
    assert (np.abs(fc).sum(1) == 0).sum() == fc.shape[0] // 4
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        prune_magnitude(model, 1.5)


@given(out_f=st.sampled_from([3, 8, 13]), in_f=st.sampled_from([2, 8, 11]), seed=st.integers(0, 2 ** 16))
@settings(max_examples=15)
def test_svd_error_equals_the_discarded_singular_values(out_f, in_f, seed):
    layer = nn.Linear(in_f, out_f)
    layer.weight.data = np.random.default_rng(seed).standard_normal((out_f, in_f)).astype(np.float32)
    rank = max(1, min(out_f, in_f) // 2)
    factored = factorize(layer, rank=rank)
    w = factored[1].weight.numpy().astype(np.float64) @ factored[0].weight.numpy().astype(np.float64)
    error = ((layer.weight.numpy() - w) ** 2).sum()
    s = np.linalg.svd(layer.weight.numpy().astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(error, (s[rank:] ** 2).sum(), rtol=1e-4, atol=1e-8)
    x = minillm.tensor(np.ones((2, in_f), np.float32))
    assert factored(x).shape == (2, out_f)


def test_factorise_errors_and_whole_models(trained):
    with pytest.raises(ValueError, match=r"rank 9 is outside 1..4 for a 4×6 layer"):
        factorize(nn.Linear(6, 4), rank=9)
    with pytest.raises(ValueError, match="exactly one of rank or energy"):
        factorize(nn.Linear(6, 4))
    model, _ = load(trained)
    ranks = factorize_model(model, energy=0.95, min_features=32)
    assert ranks and all(r < 32 for r in ranks.values())
    assert model(np.zeros((1, 4), np.int64))[0].shape == (1, 4, model.config.vocab_size)


def test_distillation_lowers_the_students_loss(trained):
    teacher, tokenizer = load(trained)
    student = GPT(GPTConfig(tokenizer.vocab_size, 32, 1, 2, 16))
    tokens = np.asarray(tokenizer.encode("def f(x):\n    return x + 1\n" * 50))
    losses = distill(teacher, student, tokens, 40, 32, batch_size=4)
    assert np.mean(losses[-5:]) < losses[0]


def test_onnx_export_matches_minillm(trained, tmp_path):
    pytest.importorskip("onnx", reason="the export extra (pip install 'minillm[export]') is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (pip install 'minillm[export]') is not installed")
    from minillm.export import export_onnx
    model, tokenizer = load(trained)
    path = export_onnx(model, tmp_path / "gpt.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for length in (1, 7, 32):
        idx = np.random.default_rng(length).integers(0, tokenizer.vocab_size, (2, length))
        ours = model(idx)[0].numpy()
        theirs = session.run(["logits"], {"idx": idx})[0]
        error = np.linalg.norm(theirs - ours) / np.linalg.norm(ours)
        print(f"T={length}: ONNX vs minillm relative error {error:.1e}")
        assert error <= 1e-4
    with pytest.raises(ValueError, match="only GPT models can be exported to ONNX; got LSTMLM"):
        export_onnx(LSTMLM(5, 4, 4), tmp_path / "x.onnx")


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 7), cols=st.integers(1, 11), amount=st.floats(0, 0.99), ties=st.booleans())
def test_magnitude_pruning_zeroes_exactly_the_fraction_asked(rows, cols, amount, ties):
    from minillm.nn import Linear
    layer = Linear(cols, rows, bias=False)
    w = np.random.default_rng(rows * 100 + cols).standard_normal((rows, cols)).astype(np.float32)
    layer.weight.data = np.round(w) if ties else w  # rounding makes many magnitudes equal
    before = np.abs(layer.weight.numpy()).copy()
    prune_magnitude(layer, amount)
    pruned = layer.weight.numpy() == 0
    assert pruned.sum() - (before == 0).sum() <= int(amount * before.size) <= pruned.sum()
    assert int(amount * before.size) == 0 or before[pruned].max() <= before[~pruned].min(initial=np.inf)
