"""Recurrent layers: both LSTM variants against per-step float64 references written from
the equations, gradchecks through several steps, the document variant's gradient facts,
and (with torch installed) the standard variant against torch.nn.LSTM."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import nn

sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731


def document_reference(p, xs, h, c):
    """The six equations of document 000 §3.1.3, one step at a time, in float64."""
    ys = []
    for x in xs:
        i = sigmoid(x @ p["W_ix"].T + h @ p["W_ih"].T + p["b_i"])
        f = sigmoid(x @ p["W_fx"].T + h @ p["W_fh"].T + p["b_f"])
        sigmoid(x @ p["W_ox"].T + h @ p["W_oh"].T + p["b_o"])  # the output gate: shadowed, feeds nothing
        h = np.tanh(h @ p["W_ih"].T + x @ p["W_hx"].T + p["b_h"])
        c = f * c + i * h
        ys.append(sigmoid(c @ p["W_oh"].T + p["b_o"]))
    return np.stack(ys), h, c


def standard_reference(p, xs, h, c):
    hidden = h.shape[-1]
    ys = []
    for x in xs:
        gates = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys), h, c


REFERENCES = {"document": document_reference, "standard": standard_reference}


@pytest.mark.parametrize("variant", ["document", "standard"])
@given(steps=st.integers(1, 6), batch=st.sampled_from([1, 3]), inp=st.sampled_from([1, 4]),
       hidden=st.sampled_from([1, 5]), seed=st.integers(0, 2 ** 16))
def test_lstm_matches_its_equations(variant, steps, batch, inp, hidden, seed):
    rng = np.random.default_rng(seed)
    cell = nn.LSTMCell(inp, hidden, variant=variant).to(np.float64)
    params = {name: p.numpy() for name, p in cell.named_parameters()}
    xs = rng.standard_normal((steps, batch, inp))
    h0, c0 = rng.standard_normal((batch, hidden)), rng.standard_normal((batch, hidden))
    lstm = nn.LSTM(inp, hidden, variant=variant).to(np.float64)
    lstm.load_state_dict({f"{k}_l0": v for k, v in params.items()})
    out, (h, c) = lstm(minillm.tensor(xs), (minillm.tensor(h0[None]), minillm.tensor(c0[None])))
    ref_y, ref_h, ref_c = REFERENCES[variant](params, xs, h0, c0)
    np.testing.assert_allclose(out.numpy(), ref_y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.numpy()[0], ref_h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c.numpy()[0], ref_c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", ["document", "standard"])
@settings(max_examples=8)
@given(steps=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_lstm_gradcheck_through_steps(variant, steps, seed):
    rng = np.random.default_rng(seed)
    lstm = nn.LSTM(3, 4, num_layers=2, variant=variant).to(np.float64)
    x = minillm.tensor(rng.standard_normal((steps, 2, 3)), requires_grad=True)
    params = lstm.parameters()

    def run(x, *ps):
        return lstm(x)[0]

    assert minillm.gradcheck(run, x, *params, max_elements=20, verbose=False)


def test_document_variant_gradient_facts():
    """W_ih gets the sum of its two uses (input gate + candidate); W_ox gets nothing."""
    rng = np.random.default_rng(0)
    lstm = nn.LSTM(3, 4, variant="document").to(np.float64)
    x = minillm.tensor(rng.standard_normal((5, 2, 3)))
    out, _ = lstm(x)
    out.sum().backward()
    assert lstm.W_ox_l0.grad is None, "the output gate feeds nothing, so W_ox must get no gradient"
    shared = lstm.W_ih_l0.grad.numpy()

    # untie W_ih into two copies, one per use, and add their gradients
    cell = lstm._cells[0]
    gate_copy = nn.Parameter(cell.W_ih.numpy().copy())
    candidate_copy = nn.Parameter(cell.W_ih.numpy().copy())
    original = cell._document

    def untied(x_t, h_prev, c_prev):
        from minillm import functional as F, ops
        i = ops.sigmoid(F.linear(x_t, cell.W_ix) + F.linear(h_prev, gate_copy) + cell.b_i)
        f = ops.sigmoid(F.linear(x_t, cell.W_fx) + F.linear(h_prev, cell.W_fh) + cell.b_f)
        h = ops.tanh(F.linear(h_prev, candidate_copy) + F.linear(x_t, cell.W_hx) + cell.b_h)
        c = f * c_prev + i * h
        return ops.sigmoid(F.linear(c, cell.W_oh) + cell.b_o), (h, c)

    cell._document = untied
    try:
        lstm(x)[0].sum().backward()
    finally:
        cell._document = original
    both = gate_copy.grad.numpy() + candidate_copy.grad.numpy()
    print(f"W_ih grad vs sum of its two uses: max diff {np.abs(shared - both).max():.1e}")
    np.testing.assert_allclose(shared, both, rtol=1e-12, atol=1e-14)
    assert np.abs(gate_copy.grad.numpy()).max() > 0 and np.abs(candidate_copy.grad.numpy()).max() > 0


def test_document_output_gate_changes_nothing():
    rng = np.random.default_rng(1)
    lstm = nn.LSTM(3, 4, variant="document").to(np.float64)
    x = minillm.tensor(rng.standard_normal((4, 2, 3)))
    before = lstm(x)[0].numpy()
    lstm.W_ox_l0.data += 10.0
    np.testing.assert_array_equal(lstm(x)[0].numpy(), before)


@pytest.mark.parametrize("module", [nn.RNN, nn.GRU])
def test_rnn_and_gru_gradcheck(module):
    rng = np.random.default_rng(2)
    layer = module(3, 4, num_layers=2, batch_first=True).to(np.float64)
    x = minillm.tensor(rng.standard_normal((2, 4, 3)), requires_grad=True)
    assert minillm.gradcheck(lambda x, *ps: layer(x)[0], x, *layer.parameters(), max_elements=20, verbose=False)


def test_batch_first_shapes():
    lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True)
    out, (h, c) = lstm(minillm.randn(2, 7, 3))
    assert out.shape == (2, 7, 5) and h.shape == (2, 2, 5) and c.shape == (2, 2, 5)


def test_bad_input():
    with pytest.raises(ValueError, match=r"LSTM: expected input of size 3 in the last dimension, got shape \(4, 2, 5\)"):
        nn.LSTM(3, 4)(minillm.randn(4, 2, 5))
    with pytest.raises(ValueError, match="unknown variant 'textbook'; valid variants: standard, document"):
        nn.LSTM(3, 4, variant="textbook")
    with pytest.raises(ValueError, match=r"LSTM: state has shape \(1, 3, 4\), expected \(1, 2, 4\)"):
        nn.LSTM(3, 4)(minillm.randn(5, 2, 3), (minillm.zeros(1, 3, 4), minillm.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="GRU: expected a 3-D input"):
        nn.GRU(3, 4)(minillm.randn(2, 3))
