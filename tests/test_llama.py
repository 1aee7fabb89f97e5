"""Llama's blocks: float64 gradchecks of RMSNorm, RoPE, SwiGLU and grouped-query attention
on drawn shapes; the model's KV cache (n_kv_head heads only, same tokens as without it);
LoRA (only adapters learn, merging keeps the function)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm.models import Llama, LlamaConfig
from minillm.nn.llama_blocks import GroupedQueryAttention, RMSNorm, SwiGLU, apply_rope, rope_tables
from minillm.nn.lora import LoRALinear, add_lora, merge_lora


def leaf(rng, *shape):
    return minillm.tensor(rng.standard_normal(shape), requires_grad=True)


@settings(max_examples=10, deadline=None)
@given(rows=st.sampled_from([1, 3, 7]), dim=st.sampled_from([1, 5, 16]), seed=st.integers(0, 999))
def test_rmsnorm_gradcheck_and_formula(rows, dim, seed):
    rng = np.random.default_rng(seed)
    norm = RMSNorm(dim, eps=1e-6).to(np.float64)
    norm.weight.data = rng.standard_normal(dim)
    x = leaf(rng, rows, dim)
    expected = x.numpy() / np.sqrt((x.numpy() ** 2).mean(-1, keepdims=True) + 1e-6) * norm.weight.numpy()
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=1e-12)
    assert minillm.gradcheck(lambda x, w: norm(x), x, norm.weight, verbose=False)


@settings(max_examples=10, deadline=None)
@given(t=st.sampled_from([1, 2, 7]), half=st.sampled_from([1, 3, 8]), seed=st.integers(0, 999))
def test_rope_is_a_rotation_that_depends_on_distance(t, half, seed):
    rng = np.random.default_rng(seed)
    d = 2 * half
    cos, sin = rope_tables(d, t + 5, dtype=np.float64)
    x = leaf(rng, 2, 3, t, d)
    rotated = apply_rope(x, cos[:t], sin[:t]).numpy()
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x.numpy(), axis=-1), rtol=1e-10)
    q, k = rng.standard_normal(d), rng.standard_normal(d)

    def score(i, j):  # q at position i against k at position j
        rq = apply_rope(minillm.tensor(q[None]), cos[i:i + 1], sin[i:i + 1]).numpy()[0]
        rk = apply_rope(minillm.tensor(k[None]), cos[j:j + 1], sin[j:j + 1]).numpy()[0]
        return rq @ rk
    assert score(3, 1) == pytest.approx(score(5, 3), rel=1e-9, abs=1e-12)  # only i − j matters
    assert minillm.gradcheck(lambda x: apply_rope(x, cos[:t], sin[:t]), x, verbose=False)


def test_swiglu_and_grouped_attention_gradcheck():
    rng = np.random.default_rng(0)
    minillm.manual_seed(0)
    mlp = SwiGLU(6, 10).to(np.float64)
    x = leaf(rng, 2, 3, 6)
    assert minillm.gradcheck(lambda x: mlp(x), x, verbose=False)
    for n_kv in (1, 2, 6):
        attn = GroupedQueryAttention(12, 6, n_kv, rope_theta=100.0).to(np.float64)
        x = leaf(rng, 2, 5, 12)
        assert minillm.gradcheck(lambda x, w: attn(x), x, attn.k_proj.weight, verbose=False)


def test_grouped_attention_equals_multi_head_with_repeated_kv_weights():
    """GQA with the key/value projections of each group copied into every head is MHA."""
    minillm.manual_seed(1)
    gqa = GroupedQueryAttention(16, 4, 2).to(np.float64)
    mha = GroupedQueryAttention(16, 4, 4).to(np.float64)
    for name in ("q_proj", "o_proj"):
        getattr(mha, name).weight.data = getattr(gqa, name).weight.data.copy()
    for name in ("k_proj", "v_proj"):
        w = getattr(gqa, name).weight.data.reshape(2, 4, 16)           # (kv head, head dim, in)
        getattr(mha, name).weight.data = np.repeat(w, 2, axis=0).reshape(16, 16)
    x = minillm.tensor(np.random.default_rng(2).standard_normal((2, 7, 16)))
    np.testing.assert_allclose(gqa(x).numpy(), mha(x).numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="n_kv_head \\(3\\) must divide n_head \\(4\\)"):
        GroupedQueryAttention(16, 4, 3)


def test_the_cache_holds_only_the_kv_heads_and_changes_no_token():
    minillm.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=31, block_size=12, n_layer=2, n_head=4, n_kv_head=1, n_embd=32))
    prompt = np.random.default_rng(0).integers(0, 31, (2, 4))
    cached = model.generate(prompt, 15, temperature=0)  # crosses block_size: the cache is rebuilt
    plain = model.generate(prompt, 15, temperature=0, use_cache=False)
    np.testing.assert_array_equal(cached, plain)
    from minillm.nn.transformer import KVCache
    caches = [KVCache(12) for _ in model.layers]
    with minillm.no_grad():
        model(prompt, caches=caches)
    assert caches[0].k.shape == (2, 1, 12, 8)  # (B, n_kv_head, capacity, head_dim)


def test_lora_trains_only_adapters_and_merges_to_the_same_function():
    minillm.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=23, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32))
    idx = np.random.default_rng(0).integers(0, 23, (4, 13))
    base_logits = model(idx)[0].numpy()
    assert add_lora(model, rank=4, alpha=8) == 4
    # B = 0: the base model, to float32 rounding (without adapters q, k and v are one GEMM; with them,
    # three, which BLAS may sum in another order)
    np.testing.assert_allclose(model(idx)[0].numpy(), base_logits, rtol=1e-6, atol=1e-7)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # per layer r·(in + out): q_proj 32 → 32, v_proj 32 → 2 kv heads × 8
    assert len(trainable) == 8 and sum(p.size for p in trainable) == 2 * 4 * ((32 + 32) + (32 + 16))
    frozen = [p.numpy().copy() for p in model.parameters() if not p.requires_grad]
    opt = minillm.optim.AdamW(trainable, lr=1e-2)
    losses = []
    for _ in range(15):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(frozen, [p for p in model.parameters()
                                                                      if not p.requires_grad]))
    adapted = model(idx)[0].numpy()
    assert merge_lora(model) == 4 and not any(isinstance(m, LoRALinear) for m in model.modules())
    np.testing.assert_allclose(model(idx)[0].numpy(), adapted, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no Linear named"):
        add_lora(model, targets=("nothing",))


def test_train_export_and_lora_finetune_from_the_command_line(tmp_path):
    from minillm import cli
    run, hf, tuned = tmp_path / "run", tmp_path / "hf", tmp_path / "tuned"
    assert cli.main(["train", "--model=llama", "--n_kv_head=1", f"--out_dir={run}", "--max_iters=3",
                     "--eval_interval=3", "--eval_iters=1", "--n_layer=1", "--n_embd=16", "--block_size=16",
                     "--batch_size=2", "--progress=false"]) == 0
    assert cli.main(["train", "--model=llama", "--n_kv_head=3", f"--out_dir={run}"]) == 2  # 3 does not divide 4
    assert cli.main(["export", f"--out_dir={run}", f"--hf={hf}"]) == 0
    assert cli.main(["finetune", f"--init_from={hf}", f"--out_dir={tuned}", "--max_iters=3", "--batch_size=2",
                     "--eval_iters=1", "--lora_rank=2", "--progress=false"]) == 0
    import json
    metrics = json.loads((tuned / "finetune.json").read_text())
    assert metrics["trainable_parameters"] == 2 * (16 + 16) + 2 * (16 + 4)  # one layer: q_proj 16→16, v_proj 16→1×4
    tuned_model = Llama.from_pretrained(tuned)
    assert not any(isinstance(m, LoRALinear) for m in tuned_model.modules())  # merged: a plain Llama
    assert cli.main(["sample", f"--init_from={tuned}", "--max_new_tokens=3"]) == 0


@pytest.mark.parametrize("name", minillm.backends.available())
def test_grouped_kernels_train_as_the_repeated_heads_did(name):
    """A Llama whose n_kv_head = 2 heads are read by 4 query heads (the kernels index them)
    against the same model with each key/value projection repeated for its group (n_kv_head =
    4: what repeating the heads computed): same logits and loss, and the grouped model's
    k_proj/v_proj gradients are the sums of the repeated model's over each group."""
    numpy = lambda x: x.numpy() if hasattr(x, "numpy") else minillm.backends.to_numpy(x)  # noqa: E731
    minillm.manual_seed(3)
    config = dict(vocab_size=29, block_size=16, n_layer=2, n_head=4, n_embd=32)
    with minillm.use_backend(name):
        gqa, rep = Llama(LlamaConfig(n_kv_head=2, **config)), Llama(LlamaConfig(n_kv_head=4, **config))
        groups, head_dim = 2, 8
        state = {key: numpy(p) for key, p in gqa.state_dict().items()}
        for key, w in state.items():
            if key.endswith(("k_proj.weight", "v_proj.weight")):  # (kv heads · d, in) → each head twice
                state[key] = np.repeat(w.reshape(2, head_dim, -1), groups, axis=0).reshape(4 * head_dim, -1)
        rep.load_state_dict(state)
        idx = np.random.default_rng(0).integers(0, 29, (3, 13))
        (logits, loss), (rep_logits, rep_loss) = gqa(idx, idx), rep(idx, idx)
        loss.backward()
        rep_loss.backward()
    np.testing.assert_allclose(logits.numpy(), rep_logits.numpy(), rtol=1e-4, atol=1e-5)
    assert abs(loss.item() - rep_loss.item()) < 1e-5
    for (key, p), (_, r) in zip(gqa.named_parameters(), rep.named_parameters()):
        got, want = numpy(p.grad), numpy(r.grad)
        if key.endswith(("k_proj.weight", "v_proj.weight")):
            want = want.reshape(2, groups, head_dim, -1).sum(axis=1).reshape(got.shape)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5, err_msg=key)
