"""One lesson as a notebook: read it (jupytext), execute it in a fresh kernel (nbclient),
and tidy what the page will show."""
import time


def read(path):
    """The lesson as a notebook, with its title and summary (known before it runs, so every
    page's chapter list can be written as soon as that page is)."""
    import jupytext
    notebook = jupytext.read(path)
    title, summary = title_and_summary(notebook, path)
    return notebook, title, summary


def title_and_summary(notebook, path):
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


def execute(notebook, path, source, timeout):
    """Run every cell top to bottom; the seconds it took. A failing cell stops the book."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise RuntimeError(f"book: {path.name} failed while executing:\n{str(exc)[-1500:]}") from None
    outputs = code_outputs(notebook)
    if any("Traceback (most recent call last)" in o.get("text", "") for o in outputs):
        raise RuntimeError(f"book: {path.name} printed a traceback (a caught error still shows on the page)")
    drop_check_results(notebook)
    return time.perf_counter() - start


def code_outputs(notebook):
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def figures(notebook):
    """The base64 PNGs the lesson showed, in order."""
    return [o["data"]["image/png"] for o in code_outputs(notebook) if "image/png" in o.get("data", {})]


def drop_check_results(notebook):
    """A cell ending in ``checks.claim(...)`` would show ``Out[n]: True`` under the [ok]
    line that already says so; those bare booleans are dropped from the page."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (
                o.get("output_type") == "execute_result" and o.get("data", {}).get("text/plain") in ("True", "False"))]
