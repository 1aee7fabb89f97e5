"""GPT's attention as GPT-2 lays it out: one ``c_attn`` (C → 3C) under Hugging Face's name,
the same function as the separate q/k/v projections it replaced, checkpoints saved with
those (q_proj, k_proj, v_proj, out_proj) still loading and resuming bit for bit, and LoRA's
default target per model."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import minillm
from minillm import backends, checkpoint, cli, nn, tokenizers
from minillm.models import GPT, GPTConfig, Llama, LlamaConfig
from minillm.nn.lora import add_lora
from minillm.train import TrainConfig, Trainer, load

CONFIG = GPTConfig(vocab_size=19, block_size=12, n_layer=2, n_head=3, n_embd=12)


def gpt_before_c_attn(config):
    """A GPT whose blocks attend with nn.MultiHeadAttention, as GPT did before c_attn: its
    state_dict is the old layout, parameter order included."""
    model = GPT(config)
    for block in model.blocks:
        block.attn = nn.MultiHeadAttention(config.n_embd, config.n_head, config.bias, config.dropout)
    return model


def test_c_attn_is_one_parameter_with_gpt2s_name(tmp_path):
    minillm.manual_seed(0)
    model = GPT(CONFIG)
    c = CONFIG.n_embd
    params = dict(model.named_parameters())
    assert params["blocks.0.attn.c_attn.weight"].shape == (3 * c, c)  # Linear's (out, in)
    assert params["blocks.0.attn.c_attn.bias"].shape == (3 * c,)
    assert params["blocks.0.attn.c_proj.weight"].shape == (c, c)
    assert not any(part in name for name in params for part in ("q_proj", "k_proj", "v_proj", "out_proj"))
    saved = load_file(model.save_pretrained(tmp_path / "hf") / "model.safetensors")
    # Conv1D's (in, out): the same array transposed, under the same name
    np.testing.assert_array_equal(saved["transformer.h.0.attn.c_attn.weight"],
                                  params["blocks.0.attn.c_attn.weight"].numpy().T)
    assert not any("q_proj" in name for name in saved)


@pytest.mark.parametrize("name", [b for b in ("numpy", "c") if b in backends.available()])
def test_the_fused_and_the_split_road_agree(name):
    """Training reads the heads straight from c_attn's (B, T, 3C) output (ops.attention_qkv);
    the KV cache, dropout and record_weights take them apart first. Same output, same
    gradients."""
    rng = np.random.default_rng(3)
    x0, w = (rng.standard_normal((2, 7, 12)).astype(np.float32) for _ in range(2))
    with minillm.use_backend(name):
        minillm.manual_seed(3)
        attn = nn.CausalSelfAttention(12, 3)
        roads = []
        for split in (False, True):
            attn.record_weights = split
            x = minillm.tensor(x0, requires_grad=True)
            y = attn(x)
            (y * minillm.tensor(w)).sum().backward()
            roads.append([y.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in attn.parameters()])
            for p in attn.parameters():
                p.grad = None
    assert attn.last_weights.shape == (2, 3, 7, 7)
    for fused, split in zip(*roads):
        np.testing.assert_allclose(fused, split, rtol=1e-4, atol=1e-5)


def test_the_old_layout_loads_and_computes_what_it_computed():
    """Separate q/k/v weights, stacked into c_attn, give the logits MultiHeadAttention gave
    with them: q's rows first, then k's, then v's."""
    minillm.manual_seed(1)
    old = gpt_before_c_attn(CONFIG)
    state = old.state_dict()
    assert "blocks.1.attn.k_proj.weight" in state and "blocks.1.attn.out_proj.bias" in state
    idx = np.random.default_rng(0).integers(0, CONFIG.vocab_size, (2, 9))
    with minillm.no_grad():
        expected = old(idx)[0].numpy()
        model = GPT(CONFIG).load_state_dict(state)
        np.testing.assert_allclose(model(idx)[0].numpy(), expected, rtol=1e-5, atol=1e-6)
    w = model.blocks[1].attn.c_attn.weight.numpy()
    np.testing.assert_array_equal(w[12:24], state["blocks.1.attn.k_proj.weight"])  # (3C, C): q | k | v rows
    del state["blocks.0.attn.v_proj.weight"]
    with pytest.raises(RuntimeError, match=r"missing keys: blocks\.0\.attn\.c_attn\.weight"):
        GPT(CONFIG).load_state_dict(state)


def to_layout_before_c_attn(weights, optimizer_arrays, names, old_names, c):
    """A checkpoint's weights and AdamW arrays ("index.key") rewritten by hand in the layout
    minillm saved before c_attn, parameters ``old_names`` in that order: q_proj, k_proj and
    v_proj are c_attn's row blocks (their moments too), out_proj is c_proj."""
    index = {name: i for i, name in enumerate(names)}
    old_weights, old_arrays = {}, {}
    for old_index, old_name in enumerate(old_names):
        source, rows = old_name.replace(".attn.out_proj.", ".attn.c_proj."), slice(None)
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            if f".attn.{proj}." in old_name:
                source, rows = old_name.replace(proj, "c_attn"), slice(j * c, (j + 1) * c)
        old_weights[old_name] = weights[source][rows]
        for key in ("exp_avg", "exp_avg_sq"):
            old_arrays[f"{old_index}.{key}"] = optimizer_arrays[f"{index[source]}.{key}"][rows]
    return old_weights, old_arrays


def test_a_run_saved_before_c_attn_loads_and_resumes_bit_identically(tmp_path):
    tiny = dict(data="python-docs", model="gpt", max_iters=10, batch_size=4, block_size=16, n_layer=2, n_head=2,
                n_embd=16, eval_interval=5, eval_iters=1, warmup_iters=2, progress=False, backend="numpy")

    def run(name, **overrides):
        return Trainer(TrainConfig(**dict(tiny, out_dir=str(tmp_path / name), **overrides)), log=lambda *a: None).run()

    straight = run("straight")
    run("split", stop_after=6)
    split = tmp_path / "split"
    at_six, _ = load(split)
    meta, weights, arrays = checkpoint.load(split)
    names = [name for name, _ in at_six.named_parameters()]
    old_names = [name for name, _ in gpt_before_c_attn(at_six.config).named_parameters()]
    old_weights, old_arrays = to_layout_before_c_attn(weights, arrays, names, old_names, 16)
    kept = {k: v for k, v in meta.items() if k not in ("format", "step", "files", "sha256")}
    checkpoint.save(split, meta["step"], old_weights, old_arrays, kept, tokenizers.load(split / checkpoint.TOKENIZER))
    assert "blocks.0.attn.q_proj.weight" in checkpoint.load(split)[1]

    loaded, _ = load(split)  # sample, evaluate, finetune --init_from: the weights as they were
    for (name, p), (_, q) in zip(at_six.named_parameters(), loaded.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    resumed = run("split", resume=True)
    a, _ = load(tmp_path / "straight")
    b, _ = load(split)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    assert resumed["val_loss"] == straight["val_loss"]


def test_lora_adapts_c_attn_in_gpt_and_q_v_in_llama_by_default():
    minillm.manual_seed(2)
    gpt = GPT(CONFIG)
    assert add_lora(gpt, rank=2) == CONFIG.n_layer
    assert [n for n, p in gpt.named_parameters() if p.requires_grad][:2] == [
        "blocks.0.attn.c_attn.lora_A", "blocks.0.attn.c_attn.lora_B"]
    llama = Llama(LlamaConfig(vocab_size=19, block_size=12, n_layer=1, n_head=2, n_kv_head=1, n_embd=8))
    assert add_lora(llama, rank=2) == 2  # q_proj and v_proj
    fresh = GPT(CONFIG)
    with pytest.raises(ValueError, match=r"no Linear named 'q_proj', 'v_proj' in GPT; its Linear layers are "
                                         r"named c_attn, c_proj, fc, lm_head, proj"):
        add_lora(fresh, targets=("q_proj", "v_proj"))
    assert all(p.requires_grad for p in fresh.parameters())  # refused before anything was frozen


def test_finetune_adapts_c_attn_by_default_and_names_a_wrong_target(tmp_path, capsys):
    run, hf, tuned = tmp_path / "run", tmp_path / "hf", tmp_path / "tuned"
    assert cli.main(["train", "--model=gpt", f"--out_dir={run}", "--max_iters=2", "--eval_interval=2",
                     "--eval_iters=1", "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16",
                     "--batch_size=2", "--progress=false"]) == 0
    assert cli.main(["export", f"--out_dir={run}", f"--hf={hf}"]) == 0
    finetune = ["finetune", f"--init_from={hf}", "--max_iters=2", "--batch_size=2", "--eval_iters=1",
                "--lora_rank=2", "--progress=false"]
    assert cli.main(finetune + [f"--out_dir={tuned}"]) == 0
    metrics = json.loads((tuned / "finetune.json").read_text())
    assert metrics["trainable_parameters"] == 2 * (16 + 3 * 16)  # one layer's c_attn, 16 → 48, rank 2
    capsys.readouterr()
    assert cli.main(finetune + [f"--out_dir={tmp_path / 'again'}", "--lora_targets=q_proj"]) != 0
    assert "no Linear named 'q_proj' in GPT; its Linear layers are named c_attn, c_proj" in capsys.readouterr().err
