"""Classification metrics (document 004 §4.3.2) for binary labels 0/1."""
import numpy as np


def confusion(predicted, actual):
    predicted, actual = np.asarray(predicted).astype(int), np.asarray(actual).astype(int)
    if predicted.shape != actual.shape:
        raise ValueError(f"metrics: predictions {predicted.shape} and labels {actual.shape} differ in shape")
    tp = int(((predicted == 1) & (actual == 1)).sum())
    fp = int(((predicted == 1) & (actual == 0)).sum())
    fn = int(((predicted == 0) & (actual == 1)).sum())
    tn = int(((predicted == 0) & (actual == 0)).sum())
    return tp, fp, fn, tn


def accuracy(predicted, actual):
    tp, fp, fn, tn = confusion(predicted, actual)
    return (tp + tn) / max(tp + fp + fn + tn, 1)


def precision(predicted, actual):
    tp, fp, _, _ = confusion(predicted, actual)
    return tp / (tp + fp) if tp + fp else 0.0


def recall(predicted, actual):
    """Of the true positives, the fraction found: TP / (TP + FN)."""
    tp, _, fn, _ = confusion(predicted, actual)
    return tp / (tp + fn) if tp + fn else 0.0


def f1(predicted, actual):
    """The harmonic mean of precision and recall: 2PR / (P + R)."""
    p, r = precision(predicted, actual), recall(predicted, actual)
    return 2 * p * r / (p + r) if p + r else 0.0
