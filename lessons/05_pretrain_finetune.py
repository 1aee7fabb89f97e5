# %% [markdown]
# # Lesson 05 — Pretraining and fine-tuning
#
# A model first learns the language from unlabelled text (预训练, pretraining) — BERT by
# predicting masked tokens — and is then adapted to a task with few labels (微调,
# fine-tuning). Here the task is sentiment: is a short sentence about software positive
# or negative? The labels are binary, so the head has one logit z and the loss is the
# **binary cross-entropy** (二元交叉熵):
#
#     L = −[y log σ(z) + (1 − y) log(1 − σ(z))],     ∂L/∂z = σ(z) − y
#
# trained with **weight decay** (权重衰减) in AdamW's decoupled form,
# θ ← θ − η∇L − ηλθ. We evaluate with accuracy, precision, **recall** (召回率) =
# TP / (TP + FN) and **F1** = 2PR / (P + R).
#
# Two ways to fine-tune: freeze the pretrained encoder and train only the head, or
# train everything. The sentences include negations ("is not bad"), so a model must read
# word order, not just count words.
#
# Run: `python lessons/05_pretrain_finetune.py [--quick]` or `minillm lesson 5`.

# %%
import numpy as np

import minillm
from minillm import data, functional as F, metrics, optim, tokenizers
from minillm.lessons import Checks, quick_mode, results_dir, save_figure
from minillm.models import BertClassifier, BertConfig, BertEncoder, encode_batch

QUICK = quick_mode()
checks = Checks("lesson 05")
minillm.set_backend("c" if minillm.backends.is_available("c") else "numpy")
rng = np.random.default_rng(0)

train_set = data.sentiment_dataset(2000, seed=1)
test_set = data.sentiment_dataset(400, seed=2)
tokenizer = tokenizers.CharTokenizer.train(" ".join(t for t, _ in train_set))
config = BertConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=64)
print(f"{len(train_set)} training sentences, {len(test_set)} test; e.g. {train_set[0]}")

# %% [markdown]
# ## Pretraining: masked language modelling on the text alone

# %%
minillm.manual_seed(0)
encoder = BertEncoder(config)
opt = optim.AdamW(encoder.parameters(), lr=3e-3, weight_decay=0.01)
texts = [tokenizer.encode(t) for t, _ in train_set]
losses = []
for step in range(150 if QUICK else 600):
    pick = rng.integers(0, len(texts), 32)
    ids, pad = encode_batch([texts[i] for i in pick], config)
    loss = encoder.mlm_loss(ids, rng, pad)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(f"masked-LM loss {losses[0]:.2f} → {np.mean(losses[-20:]):.2f}")
checks.claim(np.mean(losses[-20:]) < losses[0] - 0.5, "pretraining learns to fill in masked characters")
pretrained = encoder.state_dict()

# %% [markdown]
# ## Fine-tuning with binary cross-entropy and weight decay

# %%


def fine_tune(freeze, steps):
    encoder = BertEncoder(config)
    encoder.load_state_dict(pretrained)
    model = BertClassifier(encoder, num_classes=1, freeze_encoder=freeze)
    before = {n: p.numpy().copy() for n, p in encoder.named_parameters()}
    opt = optim.AdamW(model.trainable_parameters(), lr=3e-3 if freeze else 1e-3, weight_decay=0.01)
    curve = []
    for _ in range(steps):
        pick = rng.integers(0, len(train_set), 32)
        ids, pad = encode_batch([texts[i] for i in pick], config)
        labels = np.array([train_set[i][1] for i in pick], np.float32)
        logits, _ = model(ids, pad)
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(loss.item())
    model.eval()
    with minillm.no_grad():
        ids, pad = encode_batch([tokenizer.encode(t) for t, _ in test_set], config)
        predicted = (model(ids, pad)[0].numpy()[:, 0] > 0).astype(int)
    actual = np.array([label for _, label in test_set])
    moved = max(np.abs(p.numpy() - before[n]).max() for n, p in encoder.named_parameters())
    scores = {k: fn(predicted, actual) for k, fn in (("accuracy", metrics.accuracy), ("precision", metrics.precision),
                                                     ("recall", metrics.recall), ("f1", metrics.f1))}
    print(f"{'frozen encoder, head only' if freeze else 'everything trained':26s} " +
          ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) +
          f" ({len(model.trainable_parameters())} trainable tensors; encoder moved by {moved:.2g})")
    confusion = np.array([[np.sum((actual == a) & (predicted == p)) for p in (0, 1)] for a in (0, 1)])
    return scores, moved, curve, confusion


frozen, frozen_moved, frozen_curve, frozen_confusion = fine_tune(True, 150 if QUICK else 600)
full, full_moved, full_curve, full_confusion = fine_tune(False, 150 if QUICK else 600)
checks.claim(frozen_moved == 0.0, "freezing really freezes: the encoder's weights did not move")
checks.claim(full_moved > 0.0, "full fine-tuning changes the encoder")
print(f"a coin toss scores 50% ± {np.sqrt(0.25 / len(test_set)):.1%}; the frozen head scores {frozen['accuracy']:.1%}: "
      f"masked-LM pretraining never trains the [CLS] state the head reads, so frozen features carry little "
      f"sentiment here")
checks.claim(full["accuracy"] > frozen["accuracy"] + 0.1,
             f"fine-tuning the whole encoder beats training the head alone by more than 10 points "
             f"({full['accuracy']:.1%} vs {frozen['accuracy']:.1%})")
checks.claim(full["accuracy"] > 0.75, f"full fine-tuning reads the sentiment (accuracy {full['accuracy']:.1%}, "
             f"recall {full['recall']:.3f}, F1 {full['f1']:.3f})")

# %% [markdown]
# Pretraining and the two fine-tunings as curves, and where the fully fine-tuned
# classifier is still wrong (rows: the true label, columns: the prediction).

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (pre, tune, grid) = plt.subplots(1, 3, figsize=(14, 4))
window = 10
smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")  # noqa: E731
pre.plot(smooth(losses))
pre.set(xlabel="step", ylabel="masked-LM loss", title="pretraining")
tune.plot(smooth(frozen_curve), label=f"frozen encoder ({frozen['accuracy']:.0%} test accuracy)")
tune.plot(smooth(full_curve), label=f"everything trained ({full['accuracy']:.0%})")
tune.set(xlabel="step", ylabel="binary cross-entropy", title="fine-tuning")
tune.legend()
grid.imshow(full_confusion, cmap="Blues")
for (a, p), n in np.ndenumerate(full_confusion):
    grid.text(p, a, str(n), ha="center", va="center", color="black")
grid.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["negative", "positive"], yticklabels=["negative", "positive"],
         xlabel="predicted", ylabel="true", title="confusion matrix, full fine-tuning")
save_figure(fig, results_dir("05") / "fine_tuning.png")
checks.claim(full_confusion.sum() == len(test_set) and np.trace(full_confusion) / len(test_set) == full["accuracy"],
             "the confusion matrix counts every test sentence, and its diagonal is the accuracy")
checks.finish()

# %% [markdown]
# ## Try this
# - Skip pretraining (don't load `pretrained`) and compare the frozen head's accuracy.
# - Pool the mean of all positions instead of [CLS] and see whether the frozen head improves.
# - Set `weight_decay=0` and watch the weights' norm during fine-tuning.
# - Bring your own data: `data.read_labelled_csv("reviews.csv")` with columns text,label.
