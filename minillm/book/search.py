"""The search index: one entry per section (a chapter's heading and the prose under it),
written as search.js, which sets a variable, because pages opened from file:// may not
fetch() a JSON file; assets/book.js searches it in the page."""
import json


def sections(page_html, href, chapter):
    """The sections of a rendered chapter, in order, with the anchors nbconvert gave the headings."""
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(page_html, "html.parser")
    found = [{"c": chapter, "p": href, "h": chapter, "a": "", "x": ""}]
    for cell in soup.select(".jp-MarkdownCell .jp-RenderedMarkdown"):
        for element in cell.find_all(recursive=False):
            if element.name in ("h1", "h2", "h3", "h4"):
                for anchor in element.select("a.anchor-link"):
                    anchor.decompose()  # the "¶" after the heading
                found.append({"c": chapter, "p": href, "h": element.get_text(" ", strip=True),
                              "a": element.get("id", ""), "x": ""})
            else:
                found[-1]["x"] += element.get_text(" ", strip=True) + " "
    return [entry for entry in found if entry["x"].strip() or entry["a"]]


def write(out, entries):
    text = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
    (out / "search.js").write_text(f"window.BOOK_SEARCH = {text};\n", encoding="utf-8")
