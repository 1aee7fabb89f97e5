"""The lessons as a book: each ``lessons/NN_topic.py`` (percent-cell format) becomes a
notebook (jupytext), is executed top to bottom in a fresh Jupyter kernel (nbclient), and
is rendered with its outputs and figures to HTML (nbconvert), with an index page.

    minillm book [--quick] [--out=site] [--lessons=0,1,…]      (or: make book, quick mode)

The site works offline and from file://: formulas ($…$, $$…$$) are typeset by a MathJax
copied into site/assets/, each chapter links to the previous and next ones and lists them
all, the index shows each chapter's first figure, and search.js indexes every section.

A lesson whose claim fails stops the build with the lesson's name: a book page is only
written for a lesson that ran and held. Needs the ``book`` extra
(``pip install 'minillm[book]'``: jupytext, nbclient, nbconvert, ipykernel, django-static-mathjax).
"""
import os
from collections import namedtuple
from pathlib import Path

from .. import fileio
from ..lessons import LESSONS_DIR
from . import pages, run, search

Chapter = namedtuple("Chapter", "stem title summary figures seconds")
MARKER = ".minillm-book"  # written first, so a build that stopped half-way may still be redone


def _check_extra():
    try:
        import jupytext  # noqa: F401  (what the book needs, checked before anything runs)
        import nbclient  # noqa: F401
        import nbconvert  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"book: {exc.name} is not installed (pip install 'minillm[book]')") from None
    pages.mathjax_file()


def _lesson_paths(source, numbers):
    if not Path(source).is_dir():
        raise FileNotFoundError("book: lessons/ ships with the source tree (git clone), not the installed package")
    paths = sorted(Path(source).glob("[0-9][0-9]_*.py"))
    if numbers is not None:
        unknown = sorted(set(numbers) - {int(p.name[:2]) for p in paths})
        if unknown:
            raise ValueError(f"book: --lessons names no lesson {', '.join(map(str, unknown))}; the lessons are "
                             f"{', '.join(str(int(p.name[:2])) for p in paths)}")
        paths = [p for p in paths if int(p.name[:2]) in numbers]
    return paths


def build(out="site", quick=False, numbers=None, timeout=3600, log=print, source=LESSONS_DIR):
    """Execute and render the lessons into `out`; one Chapter per lesson, in order."""
    import nbformat
    _check_extra()
    paths = _lesson_paths(source, numbers)
    # a folder of the user's own is never written over: new, empty, or a book built before
    every = sorted(Path(source).glob("[0-9][0-9]_*.py"))
    ours = {MARKER, "index.html", "search.js", "assets", "thumbs"} | {f"{p.stem}{suffix}" for p in every
                                                                      for suffix in (".html", ".ipynb")}
    out = Path(out)
    # a book built before the marker existed: its index and a lesson's page, and nothing but ours
    earlier = (out / "index.html").is_file() and any((out / f"{p.stem}.html").is_file() for p in every)
    marker = "index.html" if earlier and not (out / MARKER).exists() else MARKER
    out = fileio.ensure_output_folder(out, "out", ours, marker=marker)
    (out / MARKER).write_text("written by minillm book: it may rewrite this folder\n", encoding="utf-8")
    exporter = pages.exporter()
    pages.write_assets(out, exporter)
    # titles come from the sources, so every page can list all chapters before the later ones ran
    lessons = [run.read(path) for path in paths]
    nav = [{"href": f"{p.stem}.html", "number": p.name[:2], "title": title, "short": pages.short_title(title),
            "summary": summary} for p, (_, title, summary) in zip(paths, lessons)]
    saved = os.environ.get("MINILLM_QUICK")
    if quick:
        os.environ["MINILLM_QUICK"] = "1"  # the kernels inherit it; quick_mode() reads it
    chapters, entries = [], []
    try:
        for i, (path, (notebook, title, summary)) in enumerate(zip(paths, lessons)):
            seconds = run.execute(notebook, path, source, timeout)
            nbformat.write(notebook, out / f"{path.stem}.ipynb")
            figures = run.figures(notebook)
            if figures:
                nav[i]["thumbnail"] = f"thumbs/{path.stem}.png"
                pages.thumbnail(figures[0], out / nav[i]["thumbnail"])
            body = pages.chapter_page(notebook, nav, i, exporter)
            (out / nav[i]["href"]).write_text(body, encoding="utf-8")
            entries += search.sections(body, nav[i]["href"], title)
            nav[i].update(figures=len(figures), seconds=seconds)
            chapters.append(Chapter(path.stem, title, summary, len(figures), seconds))
            log(f"book: {path.name} executed in {seconds:.0f} s, {len(figures)} figure(s) → {out / path.stem}.html")
    finally:  # this process keeps the mode it had
        if saved is None:
            os.environ.pop("MINILLM_QUICK", None)
        else:
            os.environ["MINILLM_QUICK"] = saved
    search.write(out, entries)
    (out / "index.html").write_text(pages.index_page(nav, quick), encoding="utf-8")
    return chapters
