"""The site's files: chapter pages (nbconvert's lab template with the book's navigation),
the index with thumbnails, and the assets every page loads by relative path."""
import base64
import io
import re
import shutil
import time
from pathlib import Path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
MATHJAX = "static/mathjax/es5/tex-svg-full.js"  # SVG output: one file, no web fonts to load


def mathjax_file():
    """MathJax 3 as the django-static-mathjax wheel ships it: plain files, no dependencies
    (Django is only its intended user); a clear message when the book extra is missing."""
    import importlib.util
    spec = importlib.util.find_spec("mathjax")
    path = Path(spec.submodule_search_locations[0]) / MATHJAX if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise RuntimeError("book: MathJax (django-static-mathjax) is not installed (pip install 'minillm[book]')")
    return path


def exporter():
    from nbconvert import HTMLExporter
    return HTMLExporter(template_name="lab", extra_template_paths=[str(TEMPLATES)], template_file="book.html.j2")


def write_assets(out, html_exporter):
    """Copy once what every page links to: the book's style and script, MathJax, and the lab
    template's notebook styles (nbconvert would inline them into each page otherwise)."""
    assets = out / "assets"
    (assets / "mathjax").mkdir(parents=True, exist_ok=True)
    for name in ("book.css", "book.js"):
        shutil.copyfile(HERE / "assets" / name, assets / name)
    mathjax = mathjax_file()
    shutil.copyfile(mathjax, assets / "mathjax" / mathjax.name)
    shutil.copyfile(mathjax.parents[1] / "LICENSE", assets / "mathjax" / "LICENSE")  # Apache-2.0 travels with it
    css = []
    for name in ("index.css", "theme-light.css"):
        found = next(Path(p) / "static" / name for p in html_exporter.template_paths
                     if (Path(p) / "static" / name).is_file())
        css.append(found.read_text(encoding="utf-8"))
    (assets / "notebook.css").write_text("\n".join(css), encoding="utf-8")


def short_title(title):
    """"Lesson 00 — Backpropagation" → "Backpropagation"; the number is shown beside it."""
    return re.sub(r"^Lesson\s+\d+\s*[—–:-]\s*", "", title)


def navigation(chapters, current):
    """What the templates need to link chapter `current` (None on the index) to the others."""
    return {"title": "minillm — the lessons", "chapters": chapters, "current": current,
            "prev": chapters[current - 1] if current is not None and current > 0 else None,
            "next": chapters[current + 1] if current is not None and current + 1 < len(chapters) else None}


def chapter_page(notebook, chapters, current, html_exporter):
    notebook.metadata["title"] = chapters[current]["title"]  # the page's <title>
    body, _ = html_exporter.from_notebook_node(notebook, resources={"book": navigation(chapters, current)})
    return body


def thumbnail(png_base64, path, width=480):
    """A chapter's first figure shrunk for its index card (the page keeps the full one)."""
    from PIL import Image
    image = Image.open(io.BytesIO(base64.b64decode(png_base64)))
    image.thumbnail((width, width * 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def index_page(chapters, quick):
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False)
    return env.get_template("home.html.j2").render(
        book=navigation(chapters, None), date=time.strftime("%Y-%m-%d"),
        mode=" (quick mode: smaller budgets)" if quick else "")
