"""The benchmarks' --out folder: made when missing, refused with one line (not a traceback after
minutes of measuring) where a file stands in its place; and how long a timing series runs."""
import pytest

from benchmarks.timing import output_folder, write_json


def test_the_folder_is_made_and_a_file_in_its_place_is_refused(tmp_path):
    made = output_folder(tmp_path / "a" / "b")
    assert made.is_dir()
    assert write_json({"x": 1}, made, "run").read_text().strip().startswith("{")
    (tmp_path / "taken").write_text("the user's file")
    with pytest.raises(SystemExit, match=r"--out=.*taken: cannot write results there"):
        output_folder(tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "the user's file"


class _Clock:
    """A stand-in for the time module whose clock moves only when a timed call says so."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        pass


def test_short_calls_are_timed_over_a_longer_series(monkeypatch):
    """The median of five calls of microseconds is noise: a series of short calls runs to
    MIN_SERIES_SECONDS (at most MAX_REPEATS calls), while a long call keeps its repeats."""
    from benchmarks import timing
    clock = _Clock()
    monkeypatch.setattr(timing, "time", clock)
    calls = []

    def call(x, seconds):
        calls.append(x)
        clock.now += seconds

    timing.median_seconds(lambda x: call(x, 1e-6), [(0,), (1,)], repeats=5, warmup=3)  # a microsecond each
    assert len(calls) == 3 + timing.MAX_REPEATS
    assert calls[:6] == [0, 1, 0, 0, 1, 0]  # the inputs still take turns
    calls.clear()
    per_call = timing.MIN_SERIES_SECONDS / 100.5  # a hundred of them (not quite 101) fill the series
    assert timing.median_seconds(lambda x: call(x, per_call), [(0,)], repeats=5, warmup=2) == pytest.approx(per_call)
    assert len(calls) == 2 + 100
    calls.clear()
    timing.median_seconds(lambda x: call(x, timing.MIN_SERIES_SECONDS), [(0,)], repeats=3, warmup=1)
    assert len(calls) == 1 + 3
