"""BERT's masked-LM loss always has a target: a batch whose draw chose no token masks its
first real token (and hides it from the input), and a batch with no real token is refused."""
import numpy as np
import pytest

from minillm.models import BertConfig, BertEncoder, encode_batch


class ChoosesNothing:
    """An rng whose every uniform draw is 1: mask_tokens then picks no position."""

    def random(self, shape):
        return np.ones(shape)

    def integers(self, low, high, size):
        return np.zeros(size, np.int64)


def test_a_batch_with_no_drawn_target_predicts_its_first_real_token(monkeypatch):
    config = BertConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16)
    encoder = BertEncoder(config)
    ids, padding = encode_batch([[3, 4]], config)
    seen = {}
    forward = BertEncoder.forward

    def watched(self, x, mask=None):  # what the encoder is shown
        seen["x"] = np.array(x)
        return forward(self, x, mask)
    monkeypatch.setattr(BertEncoder, "forward", watched)
    loss = encoder.mlm_loss(ids, ChoosesNothing(), padding)
    assert np.isfinite(loss.item()) and loss.item() > 0
    assert seen["x"][0, 1] == config.mask_id and ids[0, 1] == 3  # the target is hidden from the input


def test_a_batch_without_real_tokens_is_refused():
    config = BertConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match="no real tokens"):
        BertEncoder(config).mlm_loss(encode_batch([[]], config)[0], ChoosesNothing())
