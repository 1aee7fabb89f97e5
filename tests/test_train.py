"""The trainer and the command line: checkpoints, bit-identical resume, metrics and plot,
the config parser's errors, and broken checkpoints."""
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minillm
from minillm import checkpoint, cli
from minillm.config import ConfigError, parse_args
from minillm.train import TrainConfig, Trainer, load

TINY = dict(data="python-docs", model="gpt", max_iters=12, batch_size=4, block_size=16, n_layer=1, n_head=2,
            n_embd=16, eval_interval=4, eval_iters=2, warmup_iters=2, progress=False, backend="numpy")


def run(tmp_path, name, **overrides):
    config = TrainConfig(**dict(TINY, out_dir=str(tmp_path / name), **overrides))
    return Trainer(config, log=lambda *a: None).run()


def test_training_writes_checkpoint_metrics_and_plot(tmp_path):
    metrics = run(tmp_path, "a")
    out = tmp_path / "a"
    assert (out / "loss.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["step"] == 12
    model, tokenizer = minillm.load(out)
    # below the loss of guessing uniformly over the vocabulary: 12 steps learned something
    assert metrics["val_loss"] < np.log(tokenizer.vocab_size)
    assert model.generate(np.array([tokenizer.encode("def ")]), 5).shape == (1, 9)
    assert len(list(out.glob("model-*.safetensors"))) == 1  # old checkpoints are replaced


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_resume_continues_bit_identically(tmp_path, model):
    straight = run(tmp_path, "straight", model=model)
    run(tmp_path, "split", model=model, stop_after=8)
    resumed = run(tmp_path, "split", model=model, resume=True)
    assert resumed["step"] == straight["step"] == 12
    a, _ = load(tmp_path / "straight")
    b, _ = load(tmp_path / "split")
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    assert resumed["val_loss"] == straight["val_loss"]


def test_every_model_kind_trains(tmp_path):
    for kind in ("lstm", "seed001"):
        assert np.isfinite(run(tmp_path, kind, model=kind, max_iters=4)["val_loss"])


def test_config_parser_errors():
    with pytest.raises(ConfigError, match="unknown config key max_iter; valid keys: data, model"):
        parse_args(TrainConfig(), ["--max_iter=3"])
    with pytest.raises(ConfigError, match="--max_iters: expected int, got 'many'"):
        parse_args(TrainConfig(), ["--max_iters=many"])
    with pytest.raises(ConfigError, match="--resume: expected true or false, got 'perhaps'"):
        parse_args(TrainConfig(), ["--resume=perhaps"])
    config = parse_args(TrainConfig(), ["--n_layer=3", "--lr=1e-3", "--resume"])
    assert (config.n_layer, config.lr, config.resume) == (3, 1e-3, True)


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"n_layer": 5, "lr": 0.5}))
    config = parse_args(TrainConfig(), [f"--config={path}", "--lr=0.25"])
    assert (config.n_layer, config.lr) == (5, 0.25)


def test_bad_training_settings(tmp_path):
    with pytest.raises(ValueError, match="model must be one of gpt, llama, lstm, seed001; got 'rnn'"):
        TrainConfig(model="rnn").validate()
    with pytest.raises(ValueError, match="n_embd 10 must be divisible by n_head 4"):
        TrainConfig(n_embd=10).validate()
    small = tmp_path / "small.txt"
    small.write_text("a" * 1000)
    with pytest.raises(ValueError, match="the val split has .* too few for block_size 128"):
        Trainer(TrainConfig(**dict(TINY, data=str(small), block_size=128, out_dir=str(tmp_path / "s"))))


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint.json in"):
        load(tmp_path / "nowhere")
    run(tmp_path, "c", max_iters=4)
    weights = next((tmp_path / "c").glob("model-*.safetensors"))
    weights.write_bytes(b"\x00" * 50)
    with pytest.raises(checkpoint.CheckpointError, match="is corrupt"):
        load(tmp_path / "c")
    weights.unlink()
    with pytest.raises(checkpoint.CheckpointError, match="is missing"):
        load(tmp_path / "c")


def test_resume_with_a_different_model_is_refused(tmp_path):
    run(tmp_path, "r", max_iters=4)
    with pytest.raises(ValueError, match="cannot resume: the checkpoint has n_layer=1, this run n_layer=2"):
        Trainer(TrainConfig(**dict(TINY, out_dir=str(tmp_path / "r"), n_layer=2, resume=True)))


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [f"--{k}={v}" for k, v in TINY.items()] + [f"--out_dir={out}", "--max_iters=4"]
    assert cli.main(["train", *args]) == 0
    assert cli.main(["sample", f"--out_dir={out}", "--start=def ", "--max_new_tokens=5"]) == 0
    assert cli.main(["eval", f"--out_dir={out}", "--eval_iters=2"]) == 0
    assert cli.main(["train", "--nonsense=1"]) == 2
    assert cli.main(["sample", f"--out_dir={tmp_path / 'none'}"]) == 2
    assert cli.main(["train", "--help"]) == 0
    text = capsys.readouterr()
    assert "val loss" in text.out and "--max_iters" in text.out
    assert "unknown config key nonsense" in text.err and "no checkpoint.json" in text.err


def test_sampling_edges(tmp_path, capsys):
    run(tmp_path, "s", max_iters=4)
    out = str(tmp_path / "s")

    def sample(*options):
        code = cli.main(["sample", f"--out_dir={out}", "--max_new_tokens=12", *options])
        return code, capsys.readouterr()

    greedy = [sample("--temperature=0", f"--seed={seed}") for seed in (1, 2)]
    assert greedy[0][0] == 0 and greedy[0][1].out == greedy[1][1].out  # argmax: the seed plays no part
    assert sample("--temperature=0", "--top_k=0", "--start=Return ")[1].out.startswith("Return ")
    code, text = sample("--max_new_tokens=-5")
    assert code == 2 and "--max_new_tokens: must be >= 1; got -5" in text.err
    code, text = sample("--start=abc ✓ 日")
    assert code == 2 and "never saw in training: '✓', '日'" in text.err
    code, text = sample("--temperature=-1")
    assert code == 2 and "--temperature: must be >= 0; got -1.0" in text.err


def test_greedy_sampling_is_the_argmax_and_top_k_zero_keeps_all():
    from minillm.models import sample
    logits = np.random.default_rng(0).standard_normal((5, 11))
    np.testing.assert_array_equal(sample(logits, temperature=0), logits.argmax(-1))
    minillm.manual_seed(1)
    unfiltered = sample(logits, top_k=None)
    minillm.manual_seed(1)
    np.testing.assert_array_equal(sample(logits, top_k=0), unfiltered)
    minillm.manual_seed(1)
    assert (sample(np.tile(logits[:1], (200, 1)), top_k=1) == logits[0].argmax()).all()


def test_the_environment_variable_picks_the_backend_with_no_code_change(tmp_path):
    import os
    import subprocess
    import sys
    out = tmp_path / "env"
    args = [f"--{k}={v}" for k, v in TINY.items() if k != "backend"] + [f"--out_dir={out}", "--max_iters=3"]
    done = subprocess.run([sys.executable, "-m", "minillm", "train", *args], capture_output=True, text=True,
                          env=dict(os.environ, MINILLM_BACKEND="numba"), timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["backend"] == "numba"


@given(seed=st.integers(0, 2 ** 16), vocab=st.sampled_from([1, 2, 7, 66]), top_p=st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_most_likely_set_reaching_p(seed, vocab, top_p):
    """Nucleus sampling by its definition, written as a plain loop over one row."""
    from minillm.models.base import next_token_probs
    logits = np.random.default_rng(seed).standard_normal((3, vocab)) * 3
    probs = next_token_probs(logits, top_p=top_p)
    full = next_token_probs(logits)
    for row, p in zip(full, probs):
        kept, mass = [], 0.0
        for token in np.argsort(-row, kind="stable"):
            if mass >= top_p:
                break
            kept.append(token)
            mass += row[token]
        assert set(np.flatnonzero(p)) == set(kept)
        np.testing.assert_allclose(p[kept], row[kept] / row[kept].sum(), rtol=1e-12)


def test_top_p_errors_and_the_command_line(tmp_path, capsys):
    from minillm.models import sample
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\] \(1 keeps every token\); got 0"):
        sample(np.zeros((1, 3)), top_p=0)
    run(tmp_path, "p", max_iters=4)
    assert cli.main(["sample", f"--out_dir={tmp_path / 'p'}", "--max_new_tokens=8", "--top_p=0.5"]) == 0
    assert len(capsys.readouterr().out) > 8
