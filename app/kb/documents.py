"""Knowledge documents: Markdown with YAML front matter, split into passages on headings."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from langchain_text_splitters import RecursiveCharacterTextSplitter

CHUNKER_VERSION = "2"
MAX_CHUNK_CHARS = 1600
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^(#{1,4})[ \t]+(.+?)[ \t#]*$")
_ANCHOR = re.compile(r"[ \t]*\{#([^\s{}]+)\}$")  # `## Heading {#its-id}` keeps the page's own anchor
LEGACY_FOLDER_SOURCE = "folder"  # every folder's source before a source was the folder's own path
FILE_TYPES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf"}


class DocumentError(ValueError):
    """A knowledge document that cannot be used: its id and the reason."""

    def __init__(self, message: str, doc_id: str) -> None:
        super().__init__(message)
        self.doc_id = doc_id


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of a document."""

    id: str
    doc_id: str
    title: str
    section: str
    url: str
    stages: tuple[str, ...]
    text: str

    def embedding_text(self) -> str:
        """What gets embedded: the passage with its document title and section for context."""
        head = self.title if not self.section or self.section == self.title else f"{self.title}: {self.section}"
        return f"{head}\n{self.text}"


@dataclass
class KnowledgeDocument:
    """A parsed Markdown document and its metadata."""

    id: str
    title: str
    url: str
    stages: tuple[str, ...]
    questions: tuple[str, ...]
    body: str
    content_hash: str
    path: Path | None = None
    extra: dict = field(default_factory=dict)
    source: str = LEGACY_FOLDER_SOURCE
    stages_assigned: bool = False
    stage_confidence: float | None = None

    def passages(self) -> list[Passage]:
        """Split the body on headings (and long sections by size) into passages."""
        splitter = RecursiveCharacterTextSplitter(chunk_size=MAX_CHUNK_CHARS, chunk_overlap=120)
        out: list[Passage] = []
        for section, anchor_id, text in _sections(self.body):
            pieces = [text] if len(text) <= MAX_CHUNK_CHARS else splitter.split_text(text)
            for piece in pieces:
                anchor = f"#{anchor_id or slugify(section)}" if section and section != self.title else ""
                out.append(
                    Passage(
                        id=f"{self.id}#{len(out)}",
                        doc_id=self.id,
                        title=self.title,
                        section=section or self.title,
                        url=f"{self.url}{anchor}" if self.url else "",
                        stages=self.stages,
                        text=piece.strip(),
                    )
                )
        return out


def slugify(text: str) -> str:
    """A URL fragment for a heading, as most site generators make it."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _split_anchor(heading: str) -> tuple[str, str]:
    """A heading's text and its explicit `{#anchor}` (empty when it has none)."""
    if match := _ANCHOR.search(heading):
        return heading[: match.start()].strip(), match.group(1)
    return heading.strip(), ""


def _sections(body: str) -> list[tuple[str, str, str]]:
    """Split Markdown into (heading, anchor, text), ignoring '#' lines inside code fences."""
    sections: list[tuple[str, str, list[str]]] = [("", "", [])]
    in_fence = False
    for line in body.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match and len(match.group(1)) >= 2:
            sections.append((*_split_anchor(match.group(2)), []))
        elif match:
            continue
        else:
            sections[-1][2].append(line)
    return [(head, anchor, "\n".join(lines).strip()) for head, anchor, lines in sections if "\n".join(lines).strip()]


def parse_document(doc_id: str, raw: str, known_stages: set[str] | None = None) -> KnowledgeDocument:
    """Parse Markdown with front matter (title, stages, url, questions) into a document."""
    match = _FRONT_MATTER.match(raw)
    meta: dict = {}
    body = raw
    if match:
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise DocumentError(f"{doc_id}: front matter is not valid YAML ({exc.__class__.__name__})", doc_id) from exc
        if not isinstance(meta, dict):
            raise DocumentError(f"{doc_id}: front matter must be a mapping of keys to values", doc_id)
        body = raw[match.end() :]
    stages = meta.get("stages") or []
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise DocumentError(f"{doc_id}: 'stages' must be a list of stage names", doc_id)
    if known_stages is not None and (unknown := [s for s in stages if s not in known_stages]):
        raise DocumentError(f"{doc_id}: unknown stage(s) {unknown}; known: {sorted(known_stages)}", doc_id)
    questions = meta.get("questions") or []
    if not isinstance(questions, list):
        raise DocumentError(f"{doc_id}: 'questions' must be a list", doc_id)
    title = str(meta.get("title") or _first_heading(body) or doc_id)
    if not body.strip():
        raise DocumentError(f"{doc_id}: the document has no text", doc_id)
    digest = hashlib.sha256(f"{CHUNKER_VERSION}\n{raw}".encode()).hexdigest()
    return KnowledgeDocument(
        id=doc_id,
        title=title,
        url=str(meta.get("url") or ""),
        stages=tuple(stages),
        questions=tuple(str(q).strip() for q in questions if str(q).strip()),
        body=body,
        content_hash=digest,
        extra={k: v for k, v in meta.items() if k not in {"title", "url", "stages", "questions"}},
    )


def _first_heading(body: str) -> str | None:
    """The first Markdown heading, used as a title when front matter has none."""
    for line in body.splitlines():
        if match := _HEADING.match(line):
            return _split_anchor(match.group(2))[0]
    return None


def folder_source(root: Path) -> str:
    """The ingestion source a folder syncs: its resolved path, so several folders live side by side."""
    return str(root.resolve())


def load_folder(
    root: Path, known_stages: set[str] | None = None, *, max_bytes: int | None = None
) -> tuple[list[KnowledgeDocument], list[DocumentError]]:
    """Read every Markdown, text, HTML and PDF file under root; returns documents and one error per bad file.

    Hidden files are ignored; a file that resolves outside root (a symbolic link) or is over max_bytes is an error.
    """
    from app.kb.loaders import load_file

    if not root.is_dir():
        raise FileNotFoundError(f"knowledge folder not found: {root}")
    base = root.resolve()
    docs: list[KnowledgeDocument] = []
    errors: list[DocumentError] = []
    seen: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in FILE_TYPES):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        doc_id = relative.with_suffix("").as_posix()
        try:
            if not path.resolve().is_relative_to(base):
                raise DocumentError(f"{doc_id}: the file links outside the knowledge folder; not read", doc_id)
            if doc_id in seen:
                raise DocumentError(f"{doc_id}: another file already has this document id ({path.name})", doc_id)
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                message = f"{doc_id}: {path.name} is {size:,} bytes, over the {max_bytes:,}-byte limit"
                raise DocumentError(message, doc_id)
            doc = load_file(doc_id, path, known_stages)
        except DocumentError as exc:
            errors.append(exc)
            continue
        except OSError as exc:
            errors.append(DocumentError(f"{doc_id}: cannot read {path.name} ({exc.strerror or exc})", doc_id))
            continue
        seen.add(doc_id)
        doc.path = path
        docs.append(doc)
    return docs, errors
