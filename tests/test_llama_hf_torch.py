"""Llama checkpoints both ways against Hugging Face's ``LlamaForCausalLM`` (float32, the
real peer) on tiny random configs with grouped-query attention, on every backend; the
blocks against transformers' own RMSNorm and rotary functions."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import backends
from minillm.models import Llama, LlamaConfig
from minillm.models.hf_files import PretrainedError
from minillm.nn.llama_blocks import RMSNorm, apply_rope, rope_tables

torch = pytest.importorskip("torch", reason="torch is the optional oracle (pip install 'minillm[oracle]')")
transformers = pytest.importorskip("transformers", reason="transformers is an optional oracle (minillm[oracle])")
from transformers.models.llama import modeling_llama  # noqa: E402

TOL = 1e-4  # max |ours − theirs| / max |theirs| over the logits

configs = st.fixed_dictionaries({
    "vocab_size": st.sampled_from([2, 29, 67]), "max_position_embeddings": st.sampled_from([5, 19]),
    "num_hidden_layers": st.integers(1, 2), "heads": st.sampled_from([(1, 1), (4, 2), (6, 3), (4, 1), (3, 3)]),
    "head_dim": st.sampled_from([2, 6, 16]), "intermediate_size": st.sampled_from([7, 32]),
    "tie_word_embeddings": st.booleans(), "rope_theta": st.sampled_from([100.0, 10000.0])})


def hf_model(c, seed):
    torch.manual_seed(seed)
    n_head, n_kv = c["heads"]
    config = transformers.LlamaConfig(
        vocab_size=c["vocab_size"], hidden_size=n_head * c["head_dim"], intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=c["max_position_embeddings"], rms_norm_eps=1e-5, rope_theta=c["rope_theta"],
        tie_word_embeddings=c["tie_word_embeddings"], bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms start at 1: move them too, so a mix-up shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def logits_of(model, idx):
    with torch.no_grad():
        return model(torch.tensor(idx)).logits.numpy().astype(np.float64)


def relative_error(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("name", backends.available())
@settings(max_examples=5, deadline=None)
@given(c=configs, seed=st.integers(0, 2 ** 16), data=st.data())
def test_logits_equal_transformers_after_from_pretrained(name, c, seed, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    hf = hf_model(c, seed)
    hf.save_pretrained(path)
    t = data.draw(st.integers(1, c["max_position_embeddings"]))
    idx = np.random.default_rng(seed).integers(0, c["vocab_size"], (2, t))
    with minillm.use_backend(name):
        model = Llama.from_pretrained(path)
        assert model.config.n_kv_head == c["heads"][1]
        ours = backends.to_numpy(model(idx)[0].data).astype(np.float64)
    assert relative_error(ours, logits_of(hf, idx)) < TOL


@settings(max_examples=5, deadline=None)
@given(c=configs, seed=st.integers(0, 2 ** 16))
def test_transformers_loads_what_save_pretrained_writes_and_generates_the_same(c, seed, tmp_path_factory):
    path = tmp_path_factory.mktemp("ours")
    n_head, n_kv = c["heads"]
    minillm.manual_seed(seed)
    model = Llama(LlamaConfig(c["vocab_size"], c["max_position_embeddings"], c["num_hidden_layers"], n_head, n_kv,
                              n_head * c["head_dim"], c["intermediate_size"], rope_theta=c["rope_theta"],
                              tie_word_embeddings=c["tie_word_embeddings"]))
    model.save_pretrained(path)
    hf = transformers.LlamaForCausalLM.from_pretrained(path).eval()
    idx = np.random.default_rng(seed).integers(0, c["vocab_size"], (2, c["max_position_embeddings"]))
    assert relative_error(model(idx)[0].numpy().astype(np.float64), logits_of(hf, idx)) < TOL
    prompt = idx[:1, :2]
    new = c["max_position_embeddings"] - 2
    with torch.no_grad():
        theirs = hf.generate(torch.tensor(prompt), max_new_tokens=new, min_new_tokens=new, do_sample=False).numpy()
    np.testing.assert_array_equal(model.generate(prompt, new, temperature=0), theirs)  # greedy, KV cache


def test_blocks_equal_transformers_functions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
    ours_norm = RMSNorm(8, eps=1e-5)
    ours_norm.weight.data = rng.standard_normal(8).astype(np.float32)
    theirs_norm = modeling_llama.LlamaRMSNorm(8, eps=1e-5)
    with torch.no_grad():
        theirs_norm.weight.copy_(torch.from_numpy(ours_norm.weight.numpy()))
        expected = theirs_norm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours_norm(minillm.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    cos, sin = rope_tables(8, 5, theta=10000.0)
    q, k = torch.from_numpy(x), torch.from_numpy(x[::-1].copy())
    rq, rk = modeling_llama.apply_rotary_pos_emb(q, k, torch.from_numpy(cos)[None], torch.from_numpy(sin)[None])
    np.testing.assert_allclose(apply_rope(minillm.tensor(x), cos, sin).numpy(), rq.numpy(), rtol=1e-6, atol=1e-6)


def test_unsupported_variants_name_the_field(tmp_path):
    base = {"model_type": "llama", "vocab_size": 11, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}
    for extra, field in (({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling='llama3'"),
                         ({"attention_bias": True}, "attention_bias=True"),
                         ({"hidden_act": "gelu"}, "hidden_act='gelu'")):
        (tmp_path / "config.json").write_text(json.dumps(dict(base, **extra)))
        with pytest.raises(PretrainedError, match=field):
            Llama.from_pretrained(tmp_path)
