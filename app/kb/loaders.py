"""Plain text, HTML and PDF turned into knowledge documents (Markdown with front matter, then `parse_document`)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import yaml

from app.kb.documents import DocumentError, KnowledgeDocument, parse_document

DROPPED = {"nav", "header", "footer", "aside", "script", "style", "form", "noscript", "template", "svg", "iframe"}
DROPPED_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
_BLOCKS = {"p", "div", "section", "article", "main", "body", "blockquote", "figure", "figcaption", "dl", "details"}
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ([.,;:!?)])")
STAGES_META = "journey-stages"


def _clean_text(text: str) -> str:
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text)).strip()


def _front_matter(meta: dict) -> str:
    return "---\n" + yaml.safe_dump({k: v for k, v in meta.items() if v}, allow_unicode=True, sort_keys=False) + "---\n"


def text_to_markdown(doc_id: str, text: str, *, url: str = "") -> str:
    """Plain text as a document: the first short line is the title, the rest is split by size only."""
    lines = [line for line in text.splitlines()]
    first = next((line.strip() for line in lines if line.strip()), "")
    title = first if 0 < len(first) <= 120 else doc_id.rsplit("/", 1)[-1]
    # '#' at the start of a line is plain text here, not a heading
    body = "\n".join(re.sub(r"^(\s*)#", r"\1\\#", line) for line in lines)
    return _front_matter({"title": title, "url": url}) + body


def html_to_markdown(html: str | bytes, *, url: str = "") -> tuple[str, list[str]]:
    """Clean HTML into Markdown with front matter, and the page's links (absolute hrefs are left to the caller).

    Navigation, headers, footers, asides, scripts, styles and forms are dropped; headings become Markdown headings
    carrying the element's id as `{#id}` so citations link to the exact section.
    """
    from bs4 import BeautifulSoup, Comment

    soup = BeautifulSoup(html, "html.parser")
    links = [a["href"] for a in soup.find_all("a", href=True)]
    meta = _page_meta(soup, url)
    for node in soup.find_all(string=lambda s: isinstance(s, Comment)):
        node.extract()
    for node in soup.find_all(DROPPED):
        node.decompose()
    for node in soup.find_all(attrs={"role": True}):
        if not node.decomposed and str(node.get("role", "")).lower() in DROPPED_ROLES:
            node.decompose()
    for node in soup.find_all(attrs={"hidden": True}):
        if not node.decomposed:
            node.decompose()
    for node in soup.find_all(attrs={"aria-hidden": "true"}):
        if not node.decomposed:
            node.decompose()
    root = soup.find("main") or soup.find("article") or soup.find(attrs={"role": "main"}) or soup.body or soup
    h1 = root.find("h1")
    title = meta["title"] or (_clean_text(h1.get_text(" ")) if h1 else "")
    if not title and soup.title and soup.title.string:
        title = _clean_text(soup.title.string)
    lines: list[str] = []
    _walk(root, lines)
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return _front_matter({"title": title, "url": meta["url"], "stages": meta["stages"]}) + body + "\n", links


def _page_meta(soup, url: str) -> dict:
    """Title, canonical URL and stages the page declares about itself."""
    title = ""
    og = soup.find("meta", attrs={"property": "og:title"})
    if og and og.get("content"):
        title = _clean_text(og["content"])
    canonical = soup.find("link", rel="canonical")
    page_url = url or (canonical["href"] if canonical and canonical.get("href", "").startswith("http") else "")
    stages_tag = soup.find("meta", attrs={"name": STAGES_META})
    stages = [s.strip() for s in (stages_tag.get("content", "") if stages_tag else "").split(",") if s.strip()]
    return {"title": title, "url": page_url, "stages": stages}


def _inline(node) -> str:
    return _clean_text(node.get_text(" "))


def _heading_anchor(node) -> str:
    """The heading's own id, or the id/name of an anchor inside it."""
    if node.get("id"):
        return str(node["id"])
    inner = node.find(lambda t: t.name == "a" and (t.get("id") or t.get("name")))
    return str(inner.get("id") or inner.get("name")) if inner else ""


def _walk(node, lines: list[str]) -> None:
    """Append the Markdown of node's children to lines (block by block)."""
    from bs4 import NavigableString, Tag

    inline: list[str] = []

    def flush() -> None:
        text = _clean_text(" ".join(inline))
        if text:
            lines.extend([text, ""])
        inline.clear()

    for child in node.children:
        if isinstance(child, NavigableString):
            inline.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name
        if name in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            flush()
            text = _inline(child).replace("{", "(").replace("}", ")")
            if text:
                anchor = _heading_anchor(child)
                level = min(int(name[1]), 4)
                suffix = f" {{#{anchor}}}" if anchor and " " not in anchor else ""
                lines.extend([f"{'#' * level} {text}{suffix}", ""])
        elif name in {"ul", "ol"}:
            flush()
            for i, item in enumerate(child.find_all("li", recursive=False), start=1):
                text = _inline(item)
                if text:
                    lines.append(f"{i}. {text}" if name == "ol" else f"- {text}")
            lines.append("")
        elif name == "pre":
            flush()
            lines.extend(["```", child.get_text().strip("\n"), "```", ""])
        elif name == "table":
            flush()
            for row in child.find_all("tr"):
                cells = [_inline(c).replace("|", "/") for c in row.find_all(["th", "td"])]
                if any(cells):
                    lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        elif name == "br":
            inline.append("\n")
        elif name in {"dt", "dd", "li"}:
            flush()
            lines.extend([_inline(child), ""])
        elif name in _BLOCKS or child.find(["p", "div", "h2", "h3", "ul", "ol", "table", "pre"]):
            flush()
            _walk(child, lines)
        else:
            inline.append(child.get_text(" "))
    flush()


def pdf_to_markdown(doc_id: str, data: bytes, *, url: str = "") -> str:
    """A PDF's text, one section per page (`#page=N` anchors, which PDF viewers follow)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{doc_id}: the PDF is encrypted", doc_id)
        title = str((reader.metadata or {}).get("/Title") or "").strip()
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, TypeError, KeyError, OSError, RecursionError) as exc:
        raise DocumentError(f"{doc_id}: not a readable PDF ({exc.__class__.__name__}: {exc})"[:300], doc_id) from exc
    if not title:
        first = next((line.strip() for text in pages for line in text.splitlines() if line.strip()), "")
        title = first if 0 < len(first) <= 120 else doc_id.rsplit("/", 1)[-1]
    sections = []
    for number, text in enumerate(pages, start=1):
        text = re.sub(r"^(\s*)#", r"\1\\#", text.strip(), flags=re.MULTILINE)
        if text:
            sections.append(f"## Page {number} {{#page={number}}}\n\n{text}\n")
    return _front_matter({"title": title, "url": url}) + "\n".join(sections)


def document_from_bytes(
    doc_id: str, data: bytes, *, kind: str, url: str = "", known_stages: set[str] | None = None
) -> tuple[KnowledgeDocument, list[str]]:
    """A document (and the links it holds) from raw content: kind is markdown, text, html or pdf."""
    links: list[str] = []
    if kind == "pdf":
        raw = pdf_to_markdown(doc_id, data, url=url)
    elif kind == "html":
        raw, links = html_to_markdown(data, url=url)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{doc_id}: not UTF-8 text", doc_id) from exc
        if "\x00" in text:
            raise DocumentError(f"{doc_id}: binary content, not text", doc_id)
        raw = text if kind == "markdown" else text_to_markdown(doc_id, text, url=url)
    doc = parse_document(doc_id, raw, known_stages)
    if url and not doc.url:
        doc.url = url
    return doc, links


KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html", ".pdf": "pdf"}


def load_file(doc_id: str, path: Path, known_stages: set[str] | None = None) -> KnowledgeDocument:
    """One file of a knowledge folder as a document."""
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise DocumentError(f"{doc_id}: unsupported file type {path.suffix!r}", doc_id)
    return document_from_bytes(doc_id, path.read_bytes(), kind=kind, known_stages=known_stages)[0]
