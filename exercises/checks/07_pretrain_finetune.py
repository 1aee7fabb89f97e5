"""Checks for chapter 07, in the lesson's order: AdamW over several steps against
optim.AdamW, BERT's masking against models.bert.mask_tokens from the same seed, binary
cross-entropy against binary_cross_entropy_with_logits and backward(), the scores against
minillm.metrics, and LoRA against nn.lora.LoRALinear; float64 throughout."""
import numpy as np
from hypothesis import strategies as st

import minillm
from minillm import functional as F, metrics, nn, optim
from minillm.exercise import Wrong, arrays, exercise, expect_close, expect_equal, sides
from minillm.models.bert import BertConfig, mask_tokens
from minillm.nn.lora import LoRALinear

TOL = 1e-9


def expect_tuple(answer, n, names):
    if not isinstance(answer, tuple) or len(answer) != n:
        raise Wrong(f"expected a tuple ({', '.join(names)}), got {type(answer).__name__}"
                    + (f" of {len(answer)}" if isinstance(answer, (tuple, list)) else ""))
    return answer


@st.composite
def adamw_case(draw):
    shape = tuple(draw(st.lists(sides(), min_size=1, max_size=2)))
    theta = draw(arrays(shape))
    grads = [draw(arrays(shape, -3, 3)) for _ in range(draw(st.integers(1, 4)))]
    hyper = dict(lr=draw(st.sampled_from([1e-3, 1e-2, 0.1])), betas=draw(st.sampled_from([(0.9, 0.999), (0.8, 0.99)])),
                 eps=draw(st.sampled_from([1e-8, 1e-3])), weight_decay=draw(st.sampled_from([0.0, 0.01, 0.1])))
    return theta, grads, hyper


@exercise("adamw_step", case=adamw_case())
def check_adamw_step(learner, case):
    theta, grads, hyper = case
    weight = nn.Parameter(theta.copy())
    opt = optim.AdamW([weight], **hyper)
    ours, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        weight.grad = minillm.tensor(g.copy())
        opt.step()
        ours, m, v = expect_tuple(learner.adamw_step(ours, g.copy(), m, v, t, **hyper), 3, ("theta", "m", "v"))
        expect_close(ours, weight.numpy(), TOL, f"theta after step {t}, as optim.AdamW leaves it")
        expect_close(m, opt.state[0]["exp_avg"], TOL, f"m after step {t}")
        expect_close(v, opt.state[0]["exp_avg_sq"], TOL, f"v after step {t}")


@st.composite
def masking_case(draw):
    vocab, b, t = draw(sides()), draw(sides()), draw(st.sampled_from([1, 2, 3, 5, 7, 11]))
    ids = draw(st.lists(st.integers(0, vocab + 2), min_size=b * t, max_size=b * t))   # special ids among them
    return np.array(ids, np.int64).reshape(b, t), vocab


@exercise("mask_tokens", case=masking_case(), seed=st.integers(0, 2 ** 16),
          probability=st.sampled_from([0.15, 0.5, 1.0]))
def check_mask_tokens(learner, case, seed, probability):
    idx, vocab = case
    inputs, labels = mask_tokens(idx, BertConfig(vocab_size=vocab), np.random.default_rng(seed), probability)
    answer = learner.mask_tokens(idx.copy(), vocab, np.random.default_rng(seed), probability)
    got_inputs, got_labels = expect_tuple(answer, 2, ("inputs", "labels"))
    expect_equal(got_inputs, inputs, f"inputs (seed {seed}, probability {probability})")
    expect_equal(got_labels, labels, f"labels (seed {seed}, probability {probability})")


@st.composite
def bce_case(draw):
    n = draw(sides())
    z = draw(arrays((n,), -1000, 1000))        # large |z|: σ(z) rounds to 0 or 1
    soft = draw(st.booleans())
    y = draw(arrays((n,), 0, 1)) if soft else np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
                                                       np.float64)
    return z, y


@exercise("bce_with_logits", case=bce_case())
def check_bce_with_logits(learner, case):
    z, y = case
    logits = minillm.tensor(z, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(logits, minillm.tensor(y))
    loss.backward()
    got_loss, got_grad = expect_tuple(learner.bce_with_logits(z.copy(), y.copy()), 2, ("loss", "grad"))
    expect_close(got_loss, loss.item(), TOL, "the loss")
    expect_close(got_grad, logits.grad.numpy(), TOL, "∂L/∂z")


@st.composite
def predictions(draw):
    n = draw(st.sampled_from([1, 2, 3, 5, 7, 11, 13]))
    labels = st.lists(st.integers(0, 1), min_size=n, max_size=n).map(np.array)
    return draw(labels), draw(labels)


@exercise("precision_recall_f1", case=predictions())
def check_precision_recall_f1(learner, case):
    predicted, actual = case
    answer = expect_tuple(learner.precision_recall_f1(predicted.copy(), actual.copy()), 3,
                          ("precision", "recall", "f1"))
    for got, fn in zip(answer, (metrics.precision, metrics.recall, metrics.f1)):
        expect_close(got, fn(predicted, actual), TOL, f"{fn.__name__}({predicted.tolist()}, {actual.tolist()})")


@st.composite
def lora_case(draw):
    n, fan_in, fan_out, rank = draw(sides()), draw(sides()), draw(sides()), draw(sides())
    return draw(arrays((n, fan_in))), draw(arrays((fan_out, rank))), rank, draw(st.sampled_from([1.0, 8.0, 16.0]))


def lora_layer(x, b_matrix, rank, alpha, seed):
    """A LoRALinear in float64 whose B is drawn (it starts at 0, which would hide mistakes)."""
    minillm.manual_seed(seed)
    layer = LoRALinear(nn.Linear(x.shape[1], b_matrix.shape[0]).to(np.float64), rank, alpha)
    layer.lora_B.data = b_matrix.copy()
    return layer, [a.numpy().copy() for a in (layer.base.weight, layer.base.bias, layer.lora_A, layer.lora_B)]


@exercise("lora_forward", case=lora_case(), seed=st.integers(0, 2 ** 16))
def check_lora_forward(learner, case, seed):
    x, b_matrix, rank, alpha = case
    layer, (W, b, A, B) = lora_layer(x, b_matrix, rank, alpha, seed)
    with minillm.no_grad():
        expected = layer(minillm.tensor(x)).numpy()
    expect_close(learner.lora_forward(x.copy(), W, b, A, B, alpha), expected, TOL,
                 f"lora_forward(x, W, b, A, B, {alpha:g}) with r = {rank}")


@exercise("lora_merge", case=lora_case(), seed=st.integers(0, 2 ** 16))
def check_lora_merge(learner, case, seed):
    x, b_matrix, rank, alpha = case
    layer, (W, _, A, B) = lora_layer(x, b_matrix, rank, alpha, seed)
    expect_close(learner.lora_merge(W, A, B, alpha), layer.merged().weight.numpy(), TOL,
                 f"lora_merge(W, A, B, {alpha:g}), the weight LoRALinear.merged() leaves with r = {rank}")
