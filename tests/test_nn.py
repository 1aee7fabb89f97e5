"""Modules: parameter discovery, state dicts (and their errors), train/eval, layers
checked against direct formulas, and a small model learning."""
import numpy as np
import pytest

import minillm
from minillm import nn, functional as F


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.act = nn.Tanh()
        self.out = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.out(self.drop(self.act(self.hidden(x))))


def test_named_parameters_in_definition_order():
    names = [n for n, _ in TwoLayer().named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]


def test_shared_parameter_is_listed_once_and_gets_both_gradients():
    a, b = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    b.weight = a.weight
    model = nn.Sequential(a, b).to(np.float64)
    assert len(model.parameters()) == 1
    x = minillm.tensor(np.random.default_rng(0).standard_normal((3, 2)))
    assert minillm.gradcheck(lambda w: F.linear(F.linear(x, w), w), model.parameters()[0])


def test_state_dict_round_trip_and_errors():
    src, dst = TwoLayer(), TwoLayer()
    dst.load_state_dict(src.state_dict())
    for (_, p), (_, q) in zip(src.named_parameters(), dst.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    state = src.state_dict()
    state.pop("out.bias")
    state["extra.weight"] = np.zeros(1)
    with pytest.raises(RuntimeError, match="missing keys: out.bias; unexpected keys: extra.weight"):
        dst.load_state_dict(state)
    bad = src.state_dict()
    bad["hidden.weight"] = np.zeros((5, 5))
    before = dst.hidden.weight.numpy().copy()
    with pytest.raises(RuntimeError, match=r"hidden.weight: checkpoint shape \(5, 5\) != model shape \(4, 3\)"):
        dst.load_state_dict(bad)
    np.testing.assert_array_equal(dst.hidden.weight.numpy(), before)  # nothing half-loaded


def test_train_eval_switches_dropout():
    model = TwoLayer()
    x = minillm.randn(8, 3)
    model.eval()
    assert not model.drop.training
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    model.train()
    assert model.drop.training
    assert not np.array_equal(model(x).numpy(), model(x).numpy())


def test_repr_is_readable():
    text = repr(TwoLayer())
    assert "(hidden): Linear(in_features=3, out_features=4, bias=True)" in text
    assert "(drop): Dropout(p=0.5)" in text


def test_zero_grad_clears():
    model = TwoLayer()
    model(minillm.randn(2, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_layer_norm_module_matches_formula():
    ln = nn.LayerNorm(5)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(minillm.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_conv1d_matches_direct_loops_and_gradchecks():
    rng = np.random.default_rng(0)
    conv = nn.Conv1d(2, 3, kernel_size=3, stride=2, padding=1).to(np.float64)
    x = rng.standard_normal((2, 2, 7))
    w, b = conv.weight.numpy(), conv.bias.numpy()
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    expected = np.stack([np.einsum("bck,ock->bo", padded[:, :, s:s + 3], w) + b
                         for s in range(0, padded.shape[2] - 2, 2)], axis=-1)
    np.testing.assert_allclose(conv(minillm.tensor(x)).numpy(), expected, rtol=1e-12)
    assert minillm.gradcheck(lambda t: conv(t), minillm.tensor(x, requires_grad=True), verbose=False)


def test_maxpool1d():
    x = minillm.tensor(np.array([[[1.0, 5.0, 2.0, 3.0, 9.0, 0.0, 4.0]]]))
    np.testing.assert_array_equal(nn.MaxPool1d(2)(x).numpy(), [[[5.0, 3.0, 9.0]]])


def test_embedding_and_activations():
    emb = nn.Embedding(10, 4)
    assert emb(np.array([[1, 2], [3, 3]])).shape == (2, 2, 4)
    x = minillm.tensor(np.array([-1.0, 0.5]))
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), [0, 0.5])
    np.testing.assert_allclose(nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp([1.0, -0.5])))
    np.testing.assert_allclose(nn.GELU("tanh")(x).numpy(), F.gelu(x, approximate="tanh").numpy())


def test_mlp_learns_xor_with_plain_gradient_descent():
    minillm.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    x = minillm.tensor(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32))
    y = np.array([[0], [1], [1], [0]], np.float32)
    first = None
    for _ in range(400):
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        first = first if first is not None else loss.item()
        model.zero_grad()
        loss.backward()
        with minillm.no_grad():
            for p in model.parameters():
                p.data -= 0.5 * p.grad.data
    print(f"xor loss {first:.3f} -> {loss.item():.4f}")
    assert loss.item() < 0.05 < first
