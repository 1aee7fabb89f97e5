"""The book: a lesson becomes an executed notebook and an HTML page with its figure, and
a lesson whose claim fails stops the build instead of publishing a page."""
import os

import pytest

from minillm import book

pytest.importorskip("jupytext", reason="the book extra (pip install 'minillm[book]') is not installed")
pytest.importorskip("nbclient", reason="the book extra (pip install 'minillm[book]') is not installed")


def test_lesson_00_renders_with_its_outputs_and_graph(tmp_path):
    before = os.environ.get("MINILLM_QUICK")
    chapters = book.build(tmp_path, quick=True, numbers=[0], log=lambda *a: None)
    assert os.environ.get("MINILLM_QUICK") == before  # quick mode was for the lessons' kernels only
    assert [c[0] for c in chapters] == ["00_autograd"] and chapters[0][3] == 1  # one figure, inline
    assert chapters[0][2].startswith("Every later lesson trains a model by gradient descent")  # the index's summary
    page = (tmp_path / "00_autograd.html").read_text(encoding="utf-8")
    assert "lesson 00: 12 claims held, 0 failed" in page and "data:image/png;base64" in page
    assert "00_autograd.html" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_a_failing_claim_stops_the_book(tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "01_broken.py").write_text("# %%\nfrom minillm.lessons import Checks\nchecks = Checks('broken')\n"
                                          "checks.claim(1 + 1 == 3, 'planted falsehood')\nchecks.finish()\n")
    with pytest.raises(RuntimeError, match="01_broken.py failed"):
        book.build(tmp_path / "out", source=lessons, log=lambda *a: None)
    assert not (tmp_path / "out" / "01_broken.html").exists()
