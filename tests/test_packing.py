"""Llama's q | k | v and gate | up weights lie back to back in one buffer (nn.packing), so that
training reads each group as one matrix without copying it (ops.row_blocks): the same numbers
as the copy, through optimizer steps and checkpoint loads, and nothing moved that another
owner (ZeRO's flat buffer) keeps."""
import numpy as np
import pytest

import minillm
from minillm import ops, optim
from minillm.backends.arrays import back_to_back
from minillm.models import Llama, LlamaConfig
from minillm.nn import Parameter
from minillm.nn.packing import pack

CONFIG = LlamaConfig(vocab_size=29, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


def groups(model):
    for layer in model.layers:
        a, m = layer.self_attn, layer.mlp
        yield [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]
        yield [m.gate_proj.weight, m.up_proj.weight]


def packed(model):
    return all(back_to_back([p.data for p in group]) is not None for group in groups(model))


def unpacked_copy(model):
    """The same model with every weight in an array of its own (training copies each group)."""
    twin = Llama(CONFIG)
    twin.load_state_dict(model.state_dict())
    for p in twin.parameters():
        p.data = p.data.copy()
    assert not any(back_to_back([p.data for p in group]) is not None for group in groups(twin))
    return twin


def train(model, steps=3):
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(steps):
        idx = rng.integers(0, CONFIG.vocab_size, (3, 11))
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_packed_weights_train_as_the_copies_do(backend):
    with minillm.backends.use_backend(backend):
        minillm.manual_seed(0)
        model = Llama(CONFIG)
        assert packed(model)
        for group in groups(model):  # one matrix over the weights' own memory, no copy
            joined = ops.row_blocks(group)
            assert all(np.shares_memory(joined.data, p.data) for p in group)
            np.testing.assert_array_equal(joined.data, np.concatenate([p.data for p in group]))
        twin = unpacked_copy(model)
        assert train(model) == train(twin)
        for (name, p), q in zip(model.named_parameters(), twin.parameters()):
            np.testing.assert_array_equal(p.data, q.data, err_msg=name)
        assert packed(model), "the optimizer's in-place updates kept the groups where they were"


def test_loading_a_checkpoint_packs_again():
    """A copying load packs the weights again; assign=True keeps the given arrays themselves (a
    checkpoint in memory once) until pack_projections is asked for."""
    minillm.manual_seed(0)
    source, model = Llama(CONFIG), Llama(CONFIG)
    state = {name: value.copy() for name, value in source.state_dict().items()}
    model.load_state_dict(state)
    assert packed(model)
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, state[name], err_msg=name)
    model.load_state_dict(state, assign=True)
    assert all(p.data is state[name] for name, p in model.named_parameters())
    model.pack_projections()
    assert packed(model)
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, state[name], err_msg=name)


def test_unpacked_weights_still_work():
    """Module.to gives each weight a new array: the groups are copied each step, same function."""
    minillm.manual_seed(0)
    model = Llama(CONFIG)
    idx = np.random.default_rng(0).integers(0, CONFIG.vocab_size, (2, 9))
    before = model(idx)[0].numpy().astype(np.float64)
    model.to(np.float64)
    assert not packed(model)
    np.testing.assert_allclose(model(idx)[0].numpy(), before, rtol=1e-5, atol=1e-6)


def test_pack_leaves_views_of_another_buffer_where_they_are():
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(200).astype(np.float32)
    adjacent = [Parameter(np.zeros((2, 5), np.float32)), Parameter(np.zeros((3, 5), np.float32))]
    adjacent[0].data, adjacent[1].data = flat[:10].reshape(2, 5), flat[10:25].reshape(3, 5)  # ZeRO's layout
    assert pack(adjacent) and adjacent[0].data.base is not None and np.shares_memory(adjacent[0].data, flat)
    apart = [Parameter(np.zeros((2, 5), np.float32)), Parameter(np.zeros((3, 5), np.float32))]
    apart[0].data, apart[1].data = flat[:10].reshape(2, 5), flat[50:65].reshape(3, 5)
    assert not pack(apart)
    assert np.shares_memory(apart[0].data, flat) and np.shares_memory(apart[1].data, flat)
    joined = ops.row_blocks(apart)  # a copy, the same values
    assert not np.shares_memory(joined.data, flat)
    np.testing.assert_array_equal(joined.data, np.concatenate([flat[:10], flat[50:65]]).reshape(5, 5))


def test_the_joined_view_is_read_only():
    weights = [Parameter(np.ones((2, 3), np.float32)), Parameter(np.ones((1, 3), np.float32))]
    assert pack(weights)
    joined = ops.row_blocks(weights)
    with pytest.raises(ValueError, match="read-only"):
        joined.data[0, 0] = 5.0
    assert weights[0].data[0, 0] == 1.0


def test_a_one_row_block_is_joined_by_its_memory_not_its_strides():
    """A (1, K) block may carry any row stride (NumPy ignores it for a single row); the joined
    view steps K floats a row whatever the first block's strides say."""
    buffer = np.arange(12, dtype=np.float32).reshape(3, 4)
    first, rest = buffer[0][None], buffer[1:3]  # NumPy gives the one-row view a row stride of 0
    assert first.strides[0] == 0
    from minillm.backends.arrays import back_to_back
    joined = back_to_back([first, rest])
    assert joined is not None
    np.testing.assert_array_equal(joined, buffer)
