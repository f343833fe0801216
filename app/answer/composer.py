"""The offline grounded composer: the unit of the retrieved passages that states what was asked, first.

A passage is broken into units (sentences, whole lists, table rows and whole tables). Each is scored against the
question by meaning (its embedding), by the question's terms it contains, and by whether it has the shape of the
asked-for answer (a price, a duration, steps...). The best unit leads the reply; a few close runners-up of the same
document follow in document order; a second document speaks only for a part of the question the first leaves open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.answer.question import Question, shape, stem, terms
from app.kb.store import Hit
from app.security.output import looks_like_injection

MAX_LIST_ITEMS = 10
MAX_WORDS = 110  # sentences and rows; a list of steps is kept whole
LONG_LIST = 5  # a list of more items than this that is not steps keeps only the items that hold an asked term
W_TERMS = 0.30  # the question's terms found in the unit
W_SHAPE = 0.10  # the unit has the shape of the asked-for answer
MINOR = 0.3  # the weight of a term that only says who asks, against one of what they ask
SHORT_SENTENCE = 14  # sentences shorter than this ("No.", "Yes, it is.") lead into the next one

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
_META = re.compile(r"^(?:this|the following) (?:article|page|guide|section|help article|post)\b", re.IGNORECASE)
_POINTS_ON = re.compile(
    r":$|\b(?:below|as follows|the following|these (?:steps|reasons|causes|options))\b|\bthere are (?:\w+ )?(?:\w+ )?"
    r"(?:reasons|causes|ways|steps|options|things)\b",
    re.IGNORECASE,
)
_NUMBERED_HEADING = re.compile(r"^\s*(?:\d+[.)]|step \d+:?)\s*", re.IGNORECASE)


@dataclass
class Unit:
    """A sentence, a whole list, a table row or a whole table of a passage, with the hit it came from."""

    hit_index: int
    order: int
    text: str
    kind: str  # "sentence" | "list" | "row" | "table"
    probe: str  # what gets embedded to score it
    lead: int | None = None  # for a list or table: the unit index of the sentence introducing it ("...:")
    table: int | None = None  # for a row: the unit index of its whole table
    stems: frozenset[str] = field(default_factory=frozenset)

    @property
    def points_on(self) -> bool:
        """The sentence refers to something that follows it ("below", "the following", a trailing colon)."""
        return self.kind == "sentence" and bool(_POINTS_ON.search(self.text))


@dataclass
class Composed:
    """The offline reply, the passages it cites (the one holding each document's first unit used), and its basis."""

    text: str
    cited: list[Hit]
    coverage: float = 0.0  # share of the question's term weight that the reply's units contain
    best: float = 0.0  # the leading unit's score
    doc_ids: list[str] = field(default_factory=list)
    passage: Hit | None = None  # the passage holding the leading unit


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


def _rows(lines: list[str]) -> list[str]:
    """A Markdown table's body rows as "**Pro**: Monthly billing $29 per staff calendar; Staff calendars Unlimited"."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if not _TABLE_RULE.match(line)]
    if len(cells) < 2:
        return []
    header, body = cells[0], cells[1:]
    rows = []
    for row in body:
        pairs = [f"{h}: {c}" if h else c for h, c in zip(header[1:], row[1:], strict=False) if c]
        name = row[0].strip("*")
        rows.append(f"**{name}**: " + "; ".join(pairs) if pairs else name)
    return rows


def _sentences(lines: list[str]) -> list[str]:
    """A paragraph's sentences; a very short one ("No.") is joined to the sentence after it."""
    out: list[str] = []
    carry = ""
    for sentence in _SENTENCE_END.split(" ".join(s.strip() for s in lines)):
        sentence = sentence.strip()
        if not sentence:
            continue
        if carry:
            sentence, carry = f"{carry} {sentence}", ""
        if len(sentence) < SHORT_SENTENCE:
            carry = sentence
            continue
        out.append(sentence)
    if carry:
        if out:
            out[-1] = f"{out[-1]} {carry}"
        elif len(carry) > 3:
            out.append(carry)
    return out


def _lead_index(units: list[Unit], hit_index: int) -> int | None:
    """The previous unit, if it is a sentence of the same passage that ends with a colon."""
    if units and units[-1].hit_index == hit_index and units[-1].kind == "sentence" and units[-1].text.endswith(":"):
        return len(units) - 1
    return None


def split_units(hits: list[Hit]) -> list[Unit]:
    """Every passage broken into sentences, lists, table rows and tables."""
    units: list[Unit] = []
    for h_index, hit in enumerate(hits):
        lead = ""
        units.append(Unit(h_index, len(units), hit.section, "heading", f"{hit.title}: {hit.section}"))
        for kind, lines in _blocks(hit.text):
            if kind == "para":
                for sentence in _sentences(lines):
                    if _META.match(sentence) or looks_like_injection(sentence):
                        continue
                    units.append(Unit(h_index, len(units), sentence, "sentence", sentence))
                    lead = sentence
            elif kind == "list":
                items = [line for line in lines if _LIST_ITEM.match(line)][:MAX_LIST_ITEMS]
                body = "\n".join(line.strip() for line in items)
                probe = f"{hit.section}. {lead} " + " ".join(_LIST_ITEM.sub("", i) for i in items)
                units.append(Unit(h_index, len(units), body, "list", probe, _lead_index(units, h_index)))
            elif kind == "table" and (rows := _rows(lines)):
                table = "\n".join(f"- {row}" for row in rows)
                table_index = len(units)
                units.append(
                    Unit(h_index, table_index, table, "table", f"{hit.section}. {table}", _lead_index(units, h_index))
                )
                for row in rows:
                    units.append(Unit(h_index, len(units), row, "row", f"{hit.section}. {row}", table=table_index))
    for unit in units:
        unit.stems = frozenset(terms(unit.text))
    return units


def _weights(question: Question, idf: Callable[[str], float]) -> dict[str, float]:
    return {t: idf(t) * (MINOR if t in question.minor else 1.0) for t in question.terms}


def _term_share(stems: frozenset[str] | set[str], weights: dict[str, float], total: float) -> float:
    if total <= 0:
        return 0.0
    return sum(w for t, w in weights.items() if t in stems) / total


# How a passage is chosen: a weighted sum of its features (PASSAGE_FEATURES, computed by passage_features): its
# cosine similarity, what retrieval added to it (the BM25 share and the stage preference), its best units' similarity,
# the question's terms in its text and heading, whether it holds a unit of the asked-for shape, its heading's meaning.
# The weights are fitted by evals/fit_ranker.py (a pairwise logistic ranker over which retrieved passage holds the
# asked facts, on evals/answers_dev.jsonl; 5-fold cross-validated), scaled to the sum of the previous weights.
PASSAGE_FEATURES = (
    "similarity",
    "boost",
    "best_unit",
    "two_units",
    "terms",
    "heading_terms",
    "shape",
    "heading_meaning",
    "unit_terms",
)
PASSAGE_WEIGHTS = np.array([2.19, 4.68, 2.15, 0.54, 1.1, -0.04, 0.38, 0.13, 0.04])
SECOND_PASSAGE_GAP = 0.8  # a runner-up passage this close adds its best unit (0.3 when of the same document)


@dataclass
class _Scored:
    units: list[Unit]
    unit_scores: np.ndarray
    passage_scores: np.ndarray
    hits: list[Hit]

    def doc(self, i: int) -> str:
        return self.hits[self.units[i].hit_index].doc_id

    def of_passage(self, hit_index: int) -> list[int]:
        return [i for i, u in enumerate(self.units) if u.hit_index == hit_index]


def passage_features(
    question: Question, hits: list[Hit], units: list[Unit], cosines: np.ndarray, idf
) -> tuple[np.ndarray, np.ndarray]:
    """Each passage's PASSAGE_FEATURES (a row of zeros for a passage without units), and which passages have units."""
    weights = _weights(question, idf)
    total = sum(weights.values())
    features = np.zeros((len(hits), len(PASSAGE_FEATURES)))
    usable = np.zeros(len(hits), dtype=bool)
    for h, hit in enumerate(hits):
        own = [i for i, u in enumerate(units) if u.hit_index == h and u.kind != "heading"]
        if not own:
            continue
        usable[h] = True
        heading = next((float(cosines[i]) for i, u in enumerate(units) if u.hit_index == h and u.kind == "heading"), 0)
        best = sorted((float(cosines[i]) for i in own), reverse=True)
        features[h] = (
            hit.similarity,
            hit.score - hit.similarity,
            best[0],
            float(np.mean(best[:2])),
            _term_share(set(terms(hit.text)), weights, total),
            _term_share(set(terms(f"{hit.section} {hit.title}")), weights, total),
            max(shape(question, units[i].text, units[i].kind) for i in own),
            heading,
            max(_term_share(units[i].stems, weights, total) for i in own),
        )
    return features, usable


def _score(question: Question, vector: np.ndarray, hits: list[Hit], units: list[Unit], vectors: np.ndarray, idf):
    weights = _weights(question, idf)
    total = sum(weights.values())
    cosines = vectors @ vector
    unit_scores = cosines.copy()
    for i, unit in enumerate(units):
        unit_scores[i] += W_TERMS * _term_share(unit.stems, weights, total)
        unit_scores[i] += W_SHAPE * shape(question, unit.text, unit.kind)
        if unit.points_on:
            unit_scores[i] -= 0.05
    features, usable = passage_features(question, hits, units, cosines, idf)
    passage_scores = np.where(usable, features @ PASSAGE_WEIGHTS, -np.inf)
    return _Scored(units, unit_scores, passage_scores, hits)


def _sibling_list(unit: Unit, hit: Hit, passages_of: Callable[[str], list[Hit]] | None) -> str:
    """For "There are four common reasons...": the numbered sections of its document, as a list."""
    if passages_of is None:
        return ""
    headings = []
    for passage in passages_of(hit.doc_id):
        if _NUMBERED_HEADING.match(passage.section):
            headings.append(_NUMBERED_HEADING.sub("", passage.section).strip())
    if len(headings) < 2:
        return ""
    return "\n".join(f"{n}. {h}" for n, h in enumerate(headings, start=1))


def _follower(units: list[Unit], i: int) -> int | None:
    """The list or table a sentence introduces (the next unit of its passage, if it is one)."""
    j = i + 1
    if j < len(units) and units[j].hit_index == units[i].hit_index and units[j].kind in {"list", "table"}:
        return j
    return None


def _best_in(scored: _Scored, hit_index: int, skip: set[int] = frozenset()) -> int | None:
    own = [i for i in scored.of_passage(hit_index) if i not in skip and scored.units[i].kind not in {"row", "heading"}]
    rows = [i for i in scored.of_passage(hit_index) if i not in skip and scored.units[i].kind == "row"]
    candidates = own + rows
    return max(candidates, key=lambda i: scored.unit_scores[i]) if candidates else None


def _passage_parts(
    scored: _Scored, hit_index: int, lead: int, passages_of, asked: frozenset[str] = frozenset()
) -> list[tuple[int, str]]:
    """The passage with its leading unit first and the rest in order; rows give way to their whole table.

    Lists and tables other than the leading one come only when they hold one of the `asked` terms.
    """
    units = scored.units
    own = scored.of_passage(hit_index)
    lead_unit = units[lead]
    tables_used = {lead_unit.table} if lead_unit.kind == "row" else set()
    parts: list[tuple[int, str]] = []
    taken: set[int] = set()

    def add(i: int) -> None:
        unit = units[i]
        if i in taken:
            return
        taken.add(i)
        if unit.kind in {"row", "heading"} or (unit.kind == "table" and unit.table in tables_used):
            return
        if i != lead and unit.kind in {"list", "table"} and asked and not unit.stems & asked:
            return
        if unit.kind == "table" and i in tables_used:
            return
        if unit.points_on:
            follower = _follower(units, i)
            if follower is not None:
                parts.append((i, unit.text))
                taken.add(follower)
                if follower not in tables_used:
                    parts.append((follower, units[follower].text))
                return
            listed = _sibling_list(unit, scored.hits[unit.hit_index], passages_of)
            if listed:
                parts.append((i, f"{unit.text.rstrip('.:')}:\n\n{listed}"))
            return  # a pointer without what it points to is left out
        if unit.kind in {"list", "table"} and unit.lead is not None and unit.lead not in taken:
            taken.add(unit.lead)
            parts.append((unit.lead, units[unit.lead].text))
        parts.append((i, unit.text))

    if lead_unit.kind == "row":
        parts.append((lead, lead_unit.text))
        taken.add(lead)
    else:
        add(lead)
    for i in own:
        add(i)
    return parts


def _trim_list(text: str, asked: frozenset[str], keep: int = LONG_LIST) -> str:
    """A long list that is not steps: the items holding an asked-for term, else the first few."""
    items = text.split("\n")
    if len(items) <= keep or re.match(r"^\s*1[.)]", items[0]):
        return text
    holding = [item for item in items if frozenset(terms(item)) & asked]
    return "\n".join(holding[:keep] if holding else items[:keep])


def _budget(
    units: list[Unit], parts: list[tuple[int, str]], limit: int = MAX_WORDS, count_lists: bool = False
) -> list[tuple[int, str]]:
    """The parts in order while they fit in `limit` words (lists count 40 at most, unless count_lists)."""
    kept, words = [], 0
    for n, (i, text) in enumerate(parts):
        size = len(text.split())
        if units[i].kind in {"list", "table"} and not count_lists:
            size = min(size, 40)
        if n and words + size > limit:
            continue
        kept.append((i, text))
        words += size
    return kept


def _render(scored: _Scored, parts: list[tuple[int, str]]) -> tuple[str, list[Hit]]:
    """Paragraphs per document in the order the documents first appear, each ending with its citation."""
    units = scored.units
    by_doc: dict[str, list[tuple[int, str]]] = {}
    for i, text in parts:
        by_doc.setdefault(scored.doc(i), []).append((i, text))
    cited: list[Hit] = []
    paragraphs: list[str] = []
    for items in by_doc.values():
        cited.append(scored.hits[units[items[0][0]].hit_index])
        blocks: list[str] = []
        sentences: list[str] = []
        for i, text in items:
            if units[i].kind == "sentence" and "\n" not in text:
                sentences.append(text)
                continue
            if sentences:
                blocks.append(" ".join(sentences))
                sentences = []
            blocks.append(text)
        if sentences:
            blocks.append(" ".join(sentences))
        blocks[-1] += f" [{len(cited)}]"
        paragraphs.extend(blocks)
    return "\n\n".join(paragraphs), cited


def _runner_up(question: Question, scored: _Scored, first: int, used: set[int], idf) -> int | None:
    """The best unit of the next passage when it scores close: of the same document, or covering a missing term."""
    order = [int(h) for h in np.argsort(-scored.passage_scores) if np.isfinite(scored.passage_scores[h])]
    if len(order) < 2:
        return None
    second = order[1]
    same = scored.hits[second].doc_id == scored.hits[first].doc_id
    if scored.passage_scores[second] < scored.passage_scores[first] - SECOND_PASSAGE_GAP * (2 if same else 1):
        return None
    unit = _best_in(scored, second, used)
    if unit is None:
        return None
    if same or scored.passage_scores[second] >= scored.passage_scores[first] - SECOND_PASSAGE_GAP / 2:
        return unit
    covered = set().union(*(scored.units[i].stems for i in used)) if used else set()
    missing = {t for t in question.terms if t not in covered and idf(t) >= 1.0}
    return unit if scored.units[unit].stems & missing else None


def _sides(question: Question, scored: _Scored, used: set[int]) -> list[int]:
    """For a comparison: the best unit of each compared side that the reply does not mention yet."""
    extra = []
    for side in question.sides:
        key = stem(side)
        if any(key in scored.units[i].stems for i in used | set(extra)):
            continue
        covering = [i for i, u in enumerate(scored.units) if key in u.stems and u.kind != "heading"]
        if covering:
            extra.append(max(covering, key=lambda i: scored.unit_scores[i]))
    return extra


def compose(
    *,
    question: Question,
    question_vector: np.ndarray,
    hits: list[Hit],
    embed: Callable[[list[str]], np.ndarray],
    idf: Callable[[str], float],
    passages_of: Callable[[str], list[Hit]] | None = None,
) -> Composed:
    """Answer from the passage that best holds what was asked, its best unit first; cite each document's passage."""
    units = split_units(hits)
    if not units:
        return Composed(text="", cited=[])
    scored = _score(question, question_vector, hits, units, embed([u.probe for u in units]), idf)
    first = int(np.argmax(scored.passage_scores))
    lead = _best_in(scored, first)
    if lead is None:
        return Composed(text="", cited=[])
    asked = frozenset(question.terms)
    parts = _passage_parts(scored, first, lead, passages_of, asked)
    parts = _budget(units, [(i, _trim_list(t, asked) if units[i].kind in {"list", "table"} else t) for i, t in parts])
    used = {i for i, _ in parts}
    extra = [*_sides(question, scored, used)]
    runner = _runner_up(question, scored, first, used | set(extra), idf)
    if runner is not None and runner not in extra:
        extra.append(runner)
    for i in extra:
        for j, text in _passage_parts(scored, units[i].hit_index, i, passages_of, asked)[:2]:
            if j not in used:
                parts.append((j, _trim_list(text, asked, 3) if units[j].kind in {"list", "table"} else text))
                used.add(j)
    parts = _budget(units, parts, MAX_WORDS + 40)
    if not parts:
        return Composed(text="", cited=[])
    text, cited = _render(scored, parts)
    weights = _weights(question, idf)
    used_stems = set().union(*(terms(t) for _, t in parts))
    return Composed(
        text=text,
        cited=cited,
        coverage=_term_share(used_stems, weights, sum(weights.values())),
        best=float(scored.passage_scores[first]),
        doc_ids=[h.doc_id for h in cited],
        passage=scored.hits[first],
    )
