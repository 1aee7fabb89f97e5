"""The lessons as a book: each ``lessons/NN_topic.py`` (percent-cell format) becomes a
notebook (jupytext), is executed top to bottom in a fresh Jupyter kernel (nbclient), and
is rendered with its outputs and figures to HTML (nbconvert), with an index page.

    minillm book [--quick] [--out=book] [--lessons=0,1,…]      (or: make book)

A lesson whose claim fails stops the build with the lesson's name: a book page is only
written for a lesson that ran and held. Needs the ``book`` extra
(``pip install 'minillm[book]'``: jupytext, nbclient, nbconvert, ipykernel).
"""
import html
import os
import time
from pathlib import Path

from .lessons import LESSONS_DIR


def _title(notebook, path):
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def build(out="book", quick=False, numbers=None, timeout=3600, log=print, source=LESSONS_DIR):
    try:
        import jupytext
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
        from nbconvert import HTMLExporter
    except ImportError as exc:
        raise RuntimeError(f"book: {exc.name} is not installed (pip install 'minillm[book]')") from None
    if not Path(source).is_dir():
        raise FileNotFoundError("book: lessons/ ships with the source tree (git clone), not the installed package")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(source).glob("[0-9][0-9]_*.py"))
    if numbers is not None:
        paths = [p for p in paths if int(p.name[:2]) in numbers]
    if quick:
        os.environ["MINILLM_QUICK"] = "1"  # the kernel inherits it; quick_mode() reads it
    chapters = []
    for path in paths:
        notebook = jupytext.read(path)
        start = time.perf_counter()
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(source)}})
        try:
            client.execute()
        except CellExecutionError as exc:
            raise RuntimeError(f"book: {path.name} failed while executing:\n{str(exc)[-1500:]}") from None
        seconds = time.perf_counter() - start
        nbformat.write(notebook, out / f"{path.stem}.ipynb")
        body, _ = HTMLExporter().from_notebook_node(notebook)
        (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
        figures = sum(1 for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))
        chapters.append((path.stem, _title(notebook, path), figures, seconds))
        log(f"book: {path.name} executed in {seconds:.0f} s, {figures} figure(s) → {out / path.stem}.html")
    items = "\n".join(f'<li><a href="{stem}.html">{html.escape(title)}</a> '
                      f'<small>({figures} figure{"s" if figures != 1 else ""}, ran in {seconds:.0f} s)</small></li>'
                      for stem, title, figures, seconds in chapters)
    mode = " (quick mode: smaller budgets)" if quick else ""
    (out / "index.html").write_text(f"<!doctype html><meta charset='utf-8'><title>minillm — the lessons</title>"
                                    f"<h1>minillm — the lessons</h1><p>Every page was executed on "
                                    f"{time.strftime('%Y-%m-%d')}{mode}; its numbers are that run's.</p>"
                                    f"<ol start='0'>{items}</ol>", encoding="utf-8")
    return chapters
