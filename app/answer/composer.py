"""The offline grounded composer: a short reply built from the best sentences of the retrieved passages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.kb.store import Hit
from app.security.output import looks_like_injection

MAX_SOURCES = 3
MAX_SENTENCES = 4
MAX_LIST_ITEMS = 8
RELEVANT_GAP = 0.12
SENTENCE_GAP = 0.14
LIST_GAP = 0.07

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")


@dataclass
class Unit:
    """A sentence, a whole list or a table of a passage, with the hit it came from."""

    hit_index: int
    order: int
    text: str
    kind: str  # "sentence" | "list" | "table"
    probe: str  # what gets embedded to score it
    lead: int | None = None  # for a list or table: the unit index of the sentence introducing it ("...:")


@dataclass
class Composed:
    """The offline reply and the documents it cites (best hit of each, in citation order)."""

    text: str
    cited: list[Hit]


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split passage text into paragraphs, lists and tables (kind, lines)."""
    blocks: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            blocks.append(("gap", []))
            continue
        if line.lstrip().startswith("|"):
            kind = "table"
        elif _LIST_ITEM.match(line):
            kind = "list"
        elif blocks and blocks[-1][0] == "list" and raw.startswith(("  ", "\t")):
            kind = "list"
        else:
            kind = "para"
        if blocks and blocks[-1][0] == kind:
            blocks[-1][1].append(line)
        else:
            blocks.append((kind, [line]))
    return [(k, lines) for k, lines in blocks if k != "gap"]


def _table_as_list(lines: list[str]) -> str:
    """A Markdown table as a bullet list ("- Pro: Price $29, Staff unlimited") that any renderer shows."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if not _TABLE_RULE.match(line)]
    if len(rows) < 2:
        return ""
    header, body = rows[0], rows[1:]
    items = []
    for row in body:
        pairs = [f"{h} {c}" if h else c for h, c in zip(header[1:], row[1:], strict=False) if c]
        items.append(f"- **{row[0].strip('*')}**: " + ", ".join(pairs) if pairs else f"- {row[0]}")
    return "\n".join(items)


def _lead_index(units: list[Unit], hit_index: int) -> int | None:
    """The previous unit, if it is a sentence of the same passage that ends with a colon."""
    if units and units[-1].hit_index == hit_index and units[-1].kind == "sentence" and units[-1].text.endswith(":"):
        return len(units) - 1
    return None


def split_units(hits: list[Hit]) -> list[Unit]:
    """Every passage broken into sentences, lists and tables."""
    units: list[Unit] = []
    for h_index, hit in enumerate(hits):
        lead = ""
        for kind, lines in _blocks(hit.text):
            if kind == "para":
                for sentence in _SENTENCE_END.split(" ".join(s.strip() for s in lines)):
                    sentence = sentence.strip()
                    if len(sentence) > 12 and not looks_like_injection(sentence):
                        units.append(Unit(h_index, len(units), sentence, "sentence", sentence))
                        lead = sentence
            elif kind == "list":
                items = [line for line in lines if _LIST_ITEM.match(line)][:MAX_LIST_ITEMS]
                body = "\n".join(line.strip() if _LIST_ITEM.match(line) else line for line in items)
                probe = f"{hit.section}. {lead} " + " ".join(_LIST_ITEM.sub("", i) for i in items)
                units.append(Unit(h_index, len(units), body, "list", probe, _lead_index(units, h_index)))
            elif kind == "table" and (table := _table_as_list(lines)):
                units.append(
                    Unit(h_index, len(units), table, "table", f"{hit.section}. {table}", _lead_index(units, h_index))
                )
    return units


def compose(
    *,
    question_vector: np.ndarray,
    hits: list[Hit],
    embed: Callable[[list[str]], np.ndarray],
    next_step: str,
    min_score: float,
) -> Composed:
    """Pick the sentences (or list) that answer best, keep their order, cite them, add the stage's next step."""
    if not hits or hits[0].similarity < min_score:
        text = (
            "I couldn't find anything about that in our help content, so I'd rather not guess. "
            "You could rephrase the question, or ask to talk to a person and our team will help."
        )
        return Composed(text=text, cited=[])
    top = hits[0].similarity
    relevant = [h for h in hits if h.similarity >= max(min_score, top - RELEVANT_GAP)][:MAX_SOURCES]
    units = split_units(relevant)
    if not units:
        return Composed(text=relevant[0].text, cited=[relevant[0]])
    vectors = embed([u.probe for u in units])
    scores = vectors @ question_vector
    ranked = sorted(range(len(units)), key=lambda i: scores[i], reverse=True)
    best = float(scores[ranked[0]])
    best_doc = relevant[units[ranked[0]].hit_index].doc_id
    chosen: list[int] = []
    words = 0
    for i in ranked:
        unit = units[i]
        if scores[i] < best - SENTENCE_GAP or len(chosen) >= MAX_SENTENCES:
            break
        if unit.kind != "sentence" and (
            scores[i] < best - LIST_GAP
            or relevant[unit.hit_index].doc_id != best_doc
            or any(units[j].kind != "sentence" for j in chosen)
        ):
            continue
        size = len(unit.text.split())
        if chosen and words + size > 140:
            continue
        chosen.append(i)
        words += size
    for i in list(chosen):
        lead = units[i].lead
        if lead is not None and lead not in chosen:
            chosen.append(lead)
        followers = [j for j, u in enumerate(units) if u.lead == i]
        if followers and not any(units[j].kind != "sentence" for j in chosen):
            chosen.append(followers[0])
    first_of_doc = {h.doc_id: i for i, h in reversed(list(enumerate(relevant)))}
    chosen.sort(key=lambda i: (first_of_doc[relevant[units[i].hit_index].doc_id], units[i].hit_index, units[i].order))
    cited: list[Hit] = []
    paragraphs: list[str] = []
    for doc_id in dict.fromkeys(relevant[units[i].hit_index].doc_id for i in chosen):
        cited.append(next(h for h in relevant if h.doc_id == doc_id))
        parts: list[str] = []
        sentences: list[str] = []
        for unit in (units[i] for i in chosen if relevant[units[i].hit_index].doc_id == doc_id):
            if unit.kind == "sentence":
                sentences.append(unit.text)
                continue
            if sentences:
                parts.append(" ".join(sentences))
                sentences = []
            parts.append(unit.text)
        if sentences:
            parts.append(" ".join(sentences))
        parts[-1] += f" [{len(cited)}]"
        paragraphs.extend(parts)
    reply = "\n\n".join(paragraphs)
    if next_step:
        reply = f"{reply}\n\n{next_step}"
    return Composed(text=reply, cited=cited)
