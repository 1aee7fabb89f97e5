"""The book: a lesson becomes an executed notebook and an HTML page with its figure, and
a lesson whose claim fails stops the build instead of publishing a page. The site works
offline: formulas typeset by a MathJax inside it, chapters linked to each other, a search
index in search.js."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from minillm import book

pytest.importorskip("jupytext", reason="the book extra (pip install 'minillm[book]') is not installed")
pytest.importorskip("nbclient", reason="the book extra (pip install 'minillm[book]') is not installed")
pytest.importorskip("mathjax", reason="the book extra (pip install 'minillm[book]') is not installed")

# two tiny chapters: a display and an inline formula, a section heading to search for
SYNTHETIC = {
    "01_first.py": "# %% [markdown]\n# # Lesson 01 — First steps\n#\n# The chain rule, once:\n#\n"
                   "# $$\\frac{\\partial L}{\\partial x} = \\sum_y \\frac{\\partial L}{\\partial y}"
                   "\\,\\frac{\\partial y}{\\partial x}$$\n#\n# ## Gradients add up\n#\n"
                   "# Where $x$ is used twice its gradient has two terms.\n\n# %%\nprint('hello')\n",
    "02_second.py": "# %% [markdown]\n# # Lesson 02 — Second steps\n#\n# Nothing but text.\n\n# %%\n2 + 2\n",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    lessons = root / "lessons"
    lessons.mkdir()
    for name, text in SYNTHETIC.items():
        (lessons / name).write_text(text, encoding="utf-8")
    book.build(root / "site", source=lessons, log=lambda *a: None)
    return root / "site"


def _pages(site):
    return sorted(site.glob("*.html"))


def _soup(page):
    from bs4 import BeautifulSoup  # nbconvert's own dependency
    return BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")


def _browser():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_lesson_00_renders_with_its_outputs_graph_and_thumbnail(tmp_path):
    from PIL import Image
    before = os.environ.get("MINILLM_QUICK")
    chapters = book.build(tmp_path, quick=True, numbers=[0], log=lambda *a: None)
    assert os.environ.get("MINILLM_QUICK") == before  # quick mode was for the lessons' kernels only
    assert [c[0] for c in chapters] == ["00_autograd"] and chapters[0][3] == 1  # one figure, inline
    assert chapters[0][2].startswith("Every later lesson trains a model by gradient descent")  # the index's summary
    page = (tmp_path / "00_autograd.html").read_text(encoding="utf-8")
    assert "lesson 00: 12 claims held, 0 failed" in page and "data:image/png;base64" in page
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "00_autograd.html" in index and "ran in" in index
    # the index card shows the figure from a small file, not a second copy of the page's base64
    assert 'src="thumbs/00_autograd.png"' in index and "base64" not in index
    with Image.open(tmp_path / "thumbs" / "00_autograd.png") as thumb:
        assert thumb.width <= 480


def test_pages_load_nothing_from_the_network(site):
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', text), page.name
        assert 'src="assets/mathjax/tex-svg-full.js"' in text, page.name
    assert (site / "assets" / "mathjax" / "tex-svg-full.js").stat().st_size > 0
    assert "url(http" not in (site / "assets" / "notebook.css").read_text(encoding="utf-8")


def test_formulas_are_typeset(site, tmp_path):
    page = site / "01_first.html"
    browser = _browser()
    if browser is None:  # without a browser: the TeX is on the page for the MathJax beside it
        assert "$$\\frac{\\partial L}" in page.read_text(encoding="utf-8")
        return
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    containers = re.findall(r"<mjx-container[^>]*>", dom)
    assert len(containers) == 2 and sum('display="true"' in c for c in containers) == 1  # $$…$$ and $x$
    assert "<svg" in dom and not re.search(r'<g[^>]*data-mml-node="merror"', dom)  # drawn, and the TeX parsed


def test_chapters_link_to_each_other_and_every_link_resolves(site):
    first, second = _soup(site / "01_first.html"), _soup(site / "02_second.html")
    assert {a["href"] for a in first.select("a[rel~=next]")} == {"02_second.html"}  # sidebar arrow and footer
    assert {a["href"] for a in second.select("a[rel~=prev]")} == {"01_first.html"}
    assert [a["href"] for a in first.select(".book-toc a")] == ["01_first.html", "02_second.html"]
    for page in _pages(site):
        for tag in _soup(page).select("[href], [src]"):
            link = tag.get("href") or tag.get("src")
            if not link.startswith(("data:", "#")):
                assert (site / link.split("#")[0]).is_file(), f"{page.name} links to missing {link}"
    cards = [a["href"] for a in _soup(site / "index.html").select(".book-card h2 a")]
    assert cards == ["01_first.html", "02_second.html"]


def test_search_index_has_the_sections(site):
    text = (site / "search.js").read_text(encoding="utf-8")
    assert text.startswith("window.BOOK_SEARCH = ")  # a script, since file:// pages cannot fetch() JSON
    entries = json.loads(text[len("window.BOOK_SEARCH = "):].rstrip().rstrip(";"))
    section = next(e for e in entries if e["h"] == "Gradients add up")
    assert section["p"] == "01_first.html" and "used twice" in section["x"]
    assert f'id="{section["a"]}"' in (site / "01_first.html").read_text()  # the result jumps to the heading
    assert {e["p"] for e in entries} == {"01_first.html", "02_second.html"}


def test_a_missing_mathjax_names_the_extra(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mathjax" else real(name, *a))
    with pytest.raises(RuntimeError, match=r"MathJax \(django-static-mathjax\) is not installed \(pip install"):
        book.build(Path("unused"), log=lambda *a: None)


def test_a_failing_claim_stops_the_book(tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "01_broken.py").write_text("# %%\nfrom minillm.lessons import Checks\nchecks = Checks('broken')\n"
                                          "checks.claim(1 + 1 == 3, 'planted falsehood')\nchecks.finish()\n")
    with pytest.raises(RuntimeError, match="01_broken.py failed"):
        book.build(tmp_path / "out", source=lessons, log=lambda *a: None)
    assert not (tmp_path / "out" / "01_broken.html").exists()
