"""The lessons as a book: each ``lessons/NN_topic.py`` (percent-cell format) becomes a
notebook (jupytext), is executed top to bottom in a fresh Jupyter kernel (nbclient), and
is rendered with its outputs and figures to HTML (nbconvert), with an index page.

    minillm book [--quick] [--out=site] [--lessons=0,1,…]      (or: make book, quick mode)

A lesson whose claim fails stops the build with the lesson's name: a book page is only
written for a lesson that ran and held. Needs the ``book`` extra
(``pip install 'minillm[book]'``: jupytext, nbclient, nbconvert, ipykernel).
"""
import html
import os
import time
from pathlib import Path

from .lessons import LESSONS_DIR


def _title_and_summary(notebook, path):
    """The lesson's "# " heading, and the first sentence of the paragraph under it."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("# "):
                paragraph = []
                for text in lines[i + 1:]:
                    if not text.strip() and paragraph:
                        break
                    if text.strip() and not text.startswith(("#", "    ", "-")):
                        paragraph.append(text.strip())
                sentence = " ".join(paragraph).split(". ")[0].rstrip(".:") + "."
                return line[2:].strip(), sentence.replace("**", "")
    return path.stem, ""


def _drop_check_results(notebook):
    """A cell ending in ``checks.claim(...)`` would show ``Out[n]: True`` under the [ok]
    line that already says so; those bare booleans are dropped from the page."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (
                o.get("output_type") == "execute_result" and o.get("data", {}).get("text/plain") in ("True", "False"))]


def _execute(path, out, timeout, source, log):
    """Run one lesson as a notebook and render it; (stem, title, summary, figures, seconds)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter
    notebook = jupytext.read(path)
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise RuntimeError(f"book: {path.name} failed while executing:\n{str(exc)[-1500:]}") from None
    seconds = time.perf_counter() - start
    _drop_check_results(notebook)
    nbformat.write(notebook, out / f"{path.stem}.ipynb")
    body, _ = HTMLExporter().from_notebook_node(notebook)
    (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    figures = sum(1 for o in outputs if "image/png" in o.get("data", {}))
    if any("Traceback (most recent call last)" in o.get("text", "") for o in outputs):
        raise RuntimeError(f"book: {path.name} printed a traceback (a caught error still shows on the page)")
    title, summary = _title_and_summary(notebook, path)
    log(f"book: {path.name} executed in {seconds:.0f} s, {figures} figure(s) → {out / path.stem}.html")
    return path.stem, title, summary, figures, seconds


def build(out="site", quick=False, numbers=None, timeout=3600, log=print, source=LESSONS_DIR):
    try:
        import jupytext  # noqa: F401  (what the book needs, checked before anything runs)
        import nbclient  # noqa: F401
        import nbconvert  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"book: {exc.name} is not installed (pip install 'minillm[book]')") from None
    if not Path(source).is_dir():
        raise FileNotFoundError("book: lessons/ ships with the source tree (git clone), not the installed package")
    paths = sorted(Path(source).glob("[0-9][0-9]_*.py"))
    if numbers is not None:
        unknown = sorted(set(numbers) - {int(p.name[:2]) for p in paths})
        if unknown:
            raise ValueError(f"book: --lessons names no lesson {', '.join(map(str, unknown))}; the lessons are "
                             f"{', '.join(str(int(p.name[:2])) for p in paths)}")
        paths = [p for p in paths if int(p.name[:2]) in numbers]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("MINILLM_QUICK")
    if quick:
        os.environ["MINILLM_QUICK"] = "1"  # the kernels inherit it; quick_mode() reads it
    try:
        chapters = [_execute(path, out, timeout, source, log) for path in paths]
    finally:  # this process keeps the mode it had
        if saved is None:
            os.environ.pop("MINILLM_QUICK", None)
        else:
            os.environ["MINILLM_QUICK"] = saved

    items = "\n".join(f'<li><a href="{stem}.html">{html.escape(title)}</a><br>{html.escape(summary)} '
                      f'<small>({figures} figure{"s" if figures != 1 else ""}, ran in {seconds:.0f} s)</small></li>'
                      for stem, title, summary, figures, seconds in chapters)
    mode = " (quick mode: smaller budgets)" if quick else ""
    style = "body{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}li{margin:.8em 0}"
    (out / "index.html").write_text(f"<!doctype html><meta charset='utf-8'><title>minillm — the lessons</title>"
                                    f"<style>{style}</style><h1>minillm — the lessons</h1><p>Every page was "
                                    f"executed on {time.strftime('%Y-%m-%d')}{mode}; its numbers are that run's."
                                    f"</p><ol start='0'>{items}</ol>", encoding="utf-8")
    return chapters
