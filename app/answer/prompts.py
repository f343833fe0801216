"""Prompt templates loaded from the prompts/ folder, and how passages are shown to the LLM."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from app.kb.store import Hit


@lru_cache(maxsize=32)
def load_prompt(folder: Path, name: str) -> str:
    """Read prompts/<name>.md (cached)."""
    path = folder / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template missing: {path}")
    return path.read_text(encoding="utf-8")


def _neutralise(text: str) -> str:
    """Keep passage text from closing the delimiting tags."""
    return text.replace("</document", "&lt;/document").replace("</documents", "&lt;/documents")


def format_docs(hits: list[Hit]) -> str:
    """Passages as numbered <document> elements, the numbers the citations refer to."""
    return "\n".join(
        f'<document id="{i}" source="{h.doc_id}" title="{h.title}" section="{h.section}">\n'
        f"{_neutralise(h.text)}\n</document>"
        for i, h in enumerate(hits, start=1)
    )


def render(folder: Path, name: str, **values: str) -> str:
    """Fill a template's {placeholders}; values are inserted verbatim."""
    return load_prompt(folder, name).format_map(values)
