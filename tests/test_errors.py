"""Bad input gets an error that names the op and what was expected vs given."""
import numpy as np
import pytest

import minillm
from minillm import functional as F


def t(*shape, **kw):
    return minillm.tensor(np.ones(shape), **kw)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"^matmul: shapes \(3, 4\) and \(5, 2\) do not align \(4 != 5\)$"):
        t(3, 4) @ t(5, 2)


def test_broadcast_mismatch():
    with pytest.raises(ValueError, match=r"add: shapes \(3, 4\) and \(5,\) cannot be broadcast"):
        t(3, 4) + t(5)


def test_integer_or_bool_data_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad; got dtype int64"):
        minillm.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="got dtype bool"):
        minillm.tensor(np.array([True]), requires_grad=True)


def test_index_out_of_range():
    with pytest.raises(IndexError, match=r"index: .*out of bounds.* \(tensor shape \(3, 4\)\)"):
        t(3, 4)[5]
    with pytest.raises(IndexError, match="embedding: index 9 is out of range for 4 embeddings"):
        F.embedding(np.array([1, 9]), t(4, 2))
    with pytest.raises(IndexError, match="cross_entropy: target index 7 is out of range for 3 classes"):
        F.cross_entropy(t(2, 3), np.array([0, 7]))


def test_unknown_dim():
    with pytest.raises(IndexError, match=r"sum: dim 3 is out of range for a tensor of 2 dimension\(s\)"):
        t(3, 4).sum(dim=3)
    with pytest.raises(IndexError, match="softmax: dim -3 is out of range"):
        F.softmax(t(3, 4), dim=-3)


def test_backward_of_non_scalar_needs_grad():
    with pytest.raises(RuntimeError, match=r"backward: grad can be implied only for a scalar output; "
                                           r"this output has shape \(2, 2\)"):
        (t(2, 2, requires_grad=True) * 2).backward()


def test_backward_grad_of_wrong_shape():
    with pytest.raises(ValueError, match=r"backward: grad has shape \(3,\), expected \(2, 2\)"):
        (t(2, 2, requires_grad=True) * 2).backward(np.ones(3))


def test_backward_without_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        t(2).sum().backward()


def test_reshape_and_permute_errors():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(3, 4\) \(12 elements\) into \(5, 2\)"):
        t(3, 4).reshape(5, 2)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 0\) are not a permutation"):
        t(3, 4).permute(0, 0)


def test_cat_and_stack_shape_errors():
    with pytest.raises(ValueError, match=r"cat: shapes \(2, 3\) and \(2, 4\) differ outside dim 0"):
        minillm.cat([t(2, 3), t(2, 4)])
    with pytest.raises(ValueError, match="stack: all tensors need the same shape"):
        minillm.stack([t(2), t(3)])


def test_loss_shape_and_type_errors():
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3,\) and target shape \(4,\) differ"):
        F.mse_loss(t(3), t(4))
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices"):
        F.cross_entropy(t(2, 3), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="cross_entropy: expected logits"):
        F.cross_entropy(t(2, 3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.mse_loss(t(3), t(3), reduction="avg")


def test_linear_and_layer_norm_feature_errors():
    with pytest.raises(ValueError, match=r"linear: input has 3 features but the weight \(2, 4\) expects 4"):
        F.linear(t(5, 3), t(2, 4))
    with pytest.raises(ValueError, match=r"layer_norm: input shape \(2, 3\) does not end in normalized_shape \(4,\)"):
        F.layer_norm(t(2, 3), 4)


def test_attention_shape_errors():
    with pytest.raises(ValueError, match="scaled_dot_product_attention: q"):
        F.scaled_dot_product_attention(t(1, 4, 8), t(1, 4, 6), t(1, 4, 6))
    with pytest.raises(ValueError, match="causal attention needs Tq <= Tk"):
        F.scaled_dot_product_attention(t(1, 5, 8), t(1, 4, 8), t(1, 4, 8), is_causal=True)


def test_dropout_probability():
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\); got 1.5"):
        F.dropout(t(3), 1.5)


def test_unknown_backend():
    with pytest.raises(ValueError, match="set_backend: unknown backend 'tpu'; known backends: numpy"):
        minillm.set_backend("tpu")
