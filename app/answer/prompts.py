"""Prompt templates loaded from the prompts/ folder, and how passages are shown to the LLM."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from app.kb.store import Hit, by_document


@lru_cache(maxsize=32)
def load_prompt(folder: Path, name: str) -> str:
    """Read prompts/<name>.md (cached)."""
    path = folder / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template missing: {path}")
    return path.read_text(encoding="utf-8")


_DELIMITER = re.compile(r"<(/?)(documents|document|visitor_message)\b", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Keep data (documents, visitor text) from opening or closing the prompt's delimiting tags."""
    return _DELIMITER.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", text)


def _attribute(text: str) -> str:
    """A title or source as a tag attribute: neutralised, on one line, unable to close its quotes."""
    return " ".join(neutralise(text).replace('"', "&quot;").split())


def _heading(text: str) -> str:
    """A section heading as one neutralised line (a newline in it could start what looks like a new section)."""
    return " ".join(neutralise(text).split())


def format_docs(hits: list[Hit]) -> str:
    """Passages as one numbered <document> per source document; the numbers are what citations refer to.

    Titles, sources and section headings come from the documents as well, so they are neutralised like the text.
    """
    blocks = []
    for number, group in enumerate(by_document(hits), start=1):
        sections = "\n\n".join(f"## {_heading(h.section)}\n{neutralise(h.text)}" for h in group)
        first = group[0]
        blocks.append(
            f'<document id="{number}" source="{_attribute(first.doc_id)}" title="{_attribute(first.title)}">\n'
            f"{sections}\n</document>"
        )
    return "\n".join(blocks)


_CITATION = re.compile(r"[ \t]*\[\d+(?:\s*[,;]\s*\d+)*\](?!\()")


def strip_citations(text: str) -> str:
    """An earlier reply without its [n] markers: they numbered that turn's documents, not this turn's."""
    return _CITATION.sub("", text)


def render(folder: Path, name: str, **values: str) -> str:
    """Fill a template's {placeholders}; values are inserted verbatim."""
    return load_prompt(folder, name).format_map(values)
