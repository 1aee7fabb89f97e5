"""GPT-2 checkpoints in both directions against Hugging Face's own ``GPT2LMHeadModel``
(the real peer, in float32 — the same arithmetic as ours, so 1e-4 relative leaves room
only for summation order), on tiny random configs at awkward sizes, on every backend."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import backends
from minillm.models import GPT, GPTConfig
from minillm.models.hf_gpt2 import PretrainedError

torch = pytest.importorskip("torch", reason="torch is the optional oracle (pip install 'minillm[oracle]')")
transformers = pytest.importorskip("transformers", reason="transformers is an optional oracle (minillm[oracle])")

TOL = 1e-4  # max |ours − theirs| / max |theirs| over the logits


def relative_error(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def hf_logits(model, idx):
    with torch.no_grad():
        return model(torch.tensor(idx)).logits.numpy().astype(np.float64)


configs = st.fixed_dictionaries({
    "vocab_size": st.sampled_from([2, 13, 67, 101]), "n_positions": st.sampled_from([5, 17, 33]),
    "n_layer": st.integers(1, 2), "n_head": st.sampled_from([1, 2, 3]), "head_size": st.sampled_from([1, 7, 16]),
    "tie_word_embeddings": st.booleans(), "layer_norm_epsilon": st.sampled_from([1e-5, 1e-3])})


def hf_model(c, seed):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=c["vocab_size"], n_positions=c["n_positions"], n_layer=c["n_layer"],
                                     n_head=c["n_head"], n_embd=c["n_head"] * c["head_size"],
                                     layer_norm_epsilon=c["layer_norm_epsilon"],
                                     tie_word_embeddings=c["tie_word_embeddings"])
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # GPT-2's init leaves biases and LayerNorms at 0/1: draw them too
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", backends.available())
@settings(max_examples=6, deadline=None)
@given(c=configs, seed=st.integers(0, 2 ** 16), batch=st.integers(1, 3), data=st.data())
def test_logits_equal_transformers_after_from_pretrained(name, c, seed, batch, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    hf = hf_model(c, seed)
    hf.save_pretrained(path)
    t = data.draw(st.integers(1, c["n_positions"]))
    idx = np.random.default_rng(seed).integers(0, c["vocab_size"], (batch, t))
    with minillm.use_backend(name):
        model = GPT.from_pretrained(path)
        assert model.config.tie_word_embeddings == c["tie_word_embeddings"]
        assert (model.lm_head.weight is model.wte.weight) == c["tie_word_embeddings"]
        ours = backends.to_numpy(model(idx)[0].data).astype(np.float64)
    error = relative_error(ours, hf_logits(hf, idx))
    print(f"{name} {c} T={t}: relative error {error:.1e}")
    assert error < TOL


@settings(max_examples=5, deadline=None)
@given(c=configs, seed=st.integers(0, 2 ** 16))
def test_transformers_loads_what_save_pretrained_writes(c, seed, tmp_path_factory):
    path = tmp_path_factory.mktemp("ours")
    minillm.manual_seed(seed)
    model = GPT(GPTConfig(c["vocab_size"], c["n_positions"], c["n_layer"], c["n_head"], c["n_head"] * c["head_size"],
                          layer_norm_eps=c["layer_norm_epsilon"], tie_word_embeddings=c["tie_word_embeddings"]))
    for p in model.parameters():  # biases and norms away from 0 and 1, so a mix-up shows
        p.data = p.data + np.float32(0.1) * np.random.default_rng(seed).standard_normal(p.shape).astype(np.float32)
    model.save_pretrained(path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    idx = np.random.default_rng(seed).integers(0, c["vocab_size"], (2, c["n_positions"]))
    error = relative_error(model(idx)[0].numpy().astype(np.float64), hf_logits(hf, idx))
    assert error < TOL
    if not c["tie_word_embeddings"]:  # an untied head is written as its own tensor
        assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)


def test_a_tied_embedding_gets_the_sum_of_both_gradients(tmp_path):
    c = {"vocab_size": 29, "n_positions": 11, "n_layer": 1, "n_head": 2, "head_size": 4,
         "tie_word_embeddings": True, "layer_norm_epsilon": 1e-5}
    hf = hf_model(c, 0)  # eval(): no dropout, gradients still flow
    hf.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path).train()
    idx = np.random.default_rng(1).integers(0, 29, (2, 11))
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    logits = hf(torch.tensor(idx[:, :-1])).logits.reshape(-1, 29)
    torch.nn.functional.cross_entropy(logits, torch.tensor(idx[:, 1:]).reshape(-1)).backward()
    theirs = hf.transformer.wte.weight.grad.numpy()
    assert len([p for p in model.parameters() if p is model.wte.weight]) == 1  # stepped once
    np.testing.assert_allclose(model.wte.weight.grad, theirs, rtol=1e-4, atol=1e-6)


def test_shards_and_bfloat16_load(tmp_path):
    c = {"vocab_size": 67, "n_positions": 17, "n_layer": 2, "n_head": 2, "head_size": 8,
         "tie_word_embeddings": False, "layer_norm_epsilon": 1e-5}
    hf = hf_model(c, 3)
    hf.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="4KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    hf = hf.to(torch.float32)  # the bfloat16 values, widened: what we must read
    idx = np.random.default_rng(0).integers(0, 67, (2, 17))
    error = relative_error(GPT.from_pretrained(tmp_path)(idx)[0].numpy().astype(np.float64), hf_logits(hf, idx))
    assert error < TOL


def test_a_pickle_checkpoint_is_refused_unread(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 13, "n_positions": 5,
                                                      "n_embd": 4, "n_layer": 1, "n_head": 1}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n.")  # a pickle that would run code
    with pytest.raises(PretrainedError, match="pickle.*model.safetensors"):
        GPT.from_pretrained(tmp_path)


def test_unsupported_configs_name_the_field(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 13, "n_positions": 5,
                                                      "n_embd": 4, "n_layer": 1, "n_head": 1,
                                                      "activation_function": "relu"}))
    with pytest.raises(PretrainedError, match="activation_function='relu'"):
        GPT.from_pretrained(tmp_path)
    with pytest.raises(PretrainedError, match="no config.json"):
        GPT.from_pretrained(tmp_path / "nowhere")


def test_damaged_folders_are_clear_errors(tmp_path):
    c = {"vocab_size": 13, "n_positions": 5, "n_layer": 1, "n_head": 1, "head_size": 4,
         "tie_word_embeddings": True, "layer_norm_epsilon": 1e-5}
    hf_model(c, 0).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, n_positions=7)))
    with pytest.raises(PretrainedError, match=r"wpe.weight: checkpoint shape \(5, 4\) != model shape \(7, 4\)"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    raw = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(raw[:-40])
    with pytest.raises(PretrainedError, match="truncated"):
        GPT.from_pretrained(tmp_path)
