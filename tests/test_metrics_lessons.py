"""Classification metrics by hand, and the lesson machinery."""
import pytest
from hypothesis import given, strategies as st

from minillm import lessons, metrics


def test_metrics_by_hand():
    predicted, actual = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]   # TP 2, FP 1, FN 1, TN 1
    assert metrics.accuracy(predicted, actual) == 3 / 5
    assert metrics.precision(predicted, actual) == 2 / 3
    assert metrics.recall(predicted, actual) == 2 / 3
    assert metrics.f1(predicted, actual) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.accuracy([1, 0], [1])


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=50))
def test_f1_lies_between_precision_and_recall(pairs):
    predicted, actual = zip(*pairs)
    p, r, f = metrics.precision(predicted, actual), metrics.recall(predicted, actual), metrics.f1(predicted, actual)
    assert min(p, r) - 1e-12 <= f <= max(p, r) + 1e-12


def test_checks_exit_non_zero_on_a_failed_claim(capsys):
    checks = lessons.Checks("demo")
    assert checks.claim(True, "one holds")
    assert not checks.claim(False, "one fails")
    with pytest.raises(SystemExit) as exc:
        checks.finish()
    assert exc.value.code == 1
    assert "[FAIL] one fails" in capsys.readouterr().out


def test_every_lesson_exists():
    for number in range(0, 8):
        assert lessons.find(number).exists()
    with pytest.raises(FileNotFoundError, match="lesson 99"):
        lessons.find(99)
