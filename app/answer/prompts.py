"""Prompt templates loaded from the prompts/ folder, and how passages are shown to the LLM."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

from app.kb.store import Hit, by_document


@lru_cache(maxsize=32)
def load_prompt(folder: Path, name: str) -> str:
    """Read prompts/<name>.md (cached)."""
    path = folder / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template missing: {path}")
    return path.read_text(encoding="utf-8")


NO_ANSWER = "NO_ANSWER"  # the whole reply of an LLM whose documents do not answer the question


def may_be_no_answer(text: str) -> bool:
    """The reply so far could still become NO_ANSWER: hold it back from the visitor until it can't."""
    start = text.lstrip()[: len(NO_ANSWER)].upper()
    return NO_ANSWER.startswith(start)


def is_no_answer(text: str) -> bool:
    """The LLM declined: its reply is NO_ANSWER (anything after the marker is ignored)."""
    return text.lstrip().upper().startswith(NO_ANSWER)


def load_guidance(path: Path) -> dict[str, str]:
    """Each stage's `guidance:` in stages.yaml (how to answer at that stage), by stage name; none when unset."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = raw.get("stages") or []
    return {str(s["name"]): " ".join(str(s["guidance"]).split()) for s in stages if s.get("name") and s.get("guidance")}


def stage_prompt(*, label: str, description: str, guidance: str, next_step: str, uncertain: bool) -> tuple[str, str]:
    """Who the visitor is and how to answer them, for the answer prompt's {stage} and {guidance}.

    A stage the detector is unsure of brings no stage-specific pressure: no stage, no guidance, no next step.
    """
    if uncertain:
        return (
            "It is not clear which stage of their customer journey the visitor is in.",
            "Answer the question plainly: no sales push, no offers and no next step they did not ask for.",
        )
    how = f"How to answer at this stage: {guidance}" if guidance else ""
    step = f"Then, in one sentence, offer the natural next step for this stage: {next_step}" if next_step else ""
    who = f"The visitor is in the **{label}** stage of their journey: {description}"
    return who, " ".join(part for part in (how, step) if part)


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
