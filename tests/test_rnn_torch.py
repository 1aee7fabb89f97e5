"""The standard LSTM and the GRU against torch.nn (torch is the oracle; the equations and
gradchecks that need no torch are in test_rnn.py)."""
import numpy as np
import pytest

import minillm
from minillm import nn

torch = pytest.importorskip("torch", reason="torch is the optional oracle (pip install 'minillm[oracle]')")


@pytest.mark.parametrize("layers", [1, 2])
def test_standard_lstm_matches_torch(layers):
    rng = np.random.default_rng(3)
    ours = nn.LSTM(4, 6, num_layers=layers, batch_first=True)
    theirs = torch.nn.LSTM(4, 6, num_layers=layers, batch_first=True)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    out, (h, c) = ours(minillm.tensor(x, requires_grad=True))
    (out.sum() + h.sum() * 2).backward()
    tx = torch.tensor(x)
    t_out, (t_h, t_c) = theirs(tx)
    (t_out.sum() + t_h.sum() * 2).backward()
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.numpy(), t_c.detach().numpy(), rtol=1e-5, atol=1e-6)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), getattr(theirs, name).grad.numpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_gru_matches_torch():
    rng = np.random.default_rng(4)
    ours, theirs = nn.GRU(3, 5), torch.nn.GRU(3, 5)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(minillm.tensor(x))[0].numpy(), theirs(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)
