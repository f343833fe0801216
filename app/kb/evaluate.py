"""Retrieval evaluation: recall@1, recall@3 and MRR of the knowledge base on questions with expected documents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.kb.store import KnowledgeBase, by_document

RANK_DEPTH = 10
_EXTENSIONS = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")


class RetrievalEvalError(ValueError):
    """An evaluation file that cannot be read."""


@dataclass(frozen=True)
class RetrievalCase:
    """One question and the documents (ids or paths) that answer it."""

    question: str
    expected: tuple[str, ...]


@dataclass
class RetrievalReport:
    """Figures of one evaluation run, and the ranked documents of every case."""

    cases: list[RetrievalCase]
    ranked: list[list[str]] = field(default_factory=list)
    ranks: list[int | None] = field(default_factory=list)

    def recall_at(self, k: int) -> float:
        """Share of questions with an expected document among the first k documents."""
        return sum(1 for r in self.ranks if r is not None and r <= k) / max(len(self.ranks), 1)

    @property
    def mrr(self) -> float:
        """Mean reciprocal rank of the first expected document (0 when it is not in the first RANK_DEPTH)."""
        return sum(1 / r for r in self.ranks if r is not None) / max(len(self.ranks), 1)

    def as_dict(self) -> dict:
        """The figures as JSON-ready data."""
        return {
            "n": len(self.cases),
            "recall@1": round(self.recall_at(1), 4),
            "recall@3": round(self.recall_at(3), 4),
            "mrr": round(self.mrr, 4),
            "misses": [
                {"question": c.question, "expected": list(c.expected), "got": got[:3], "rank": rank}
                for c, got, rank in zip(self.cases, self.ranked, self.ranks, strict=True)
                if rank is None or rank > 3
            ],
        }

    def as_text(self) -> str:
        """The figures for people; the last line is `recall@3: 0.xxx (n=N)`."""
        lines = [f"retrieval: {len(self.cases)} questions"]
        lines.append(f"recall@1: {self.recall_at(1):.3f}")
        lines.append(f"MRR: {self.mrr:.3f}")
        lines.append(f"recall@3: {self.recall_at(3):.3f} (n={len(self.cases)})")
        return "\n".join(lines)


def normalise(expected: str) -> str:
    """A document id from an id or a path: no extension, forward slashes, no leading './'."""
    value = expected.strip().replace("\\", "/")
    value = value[2:] if value.startswith("./") else value
    for ext in _EXTENSIONS:
        if value.lower().endswith(ext):
            return value[: -len(ext)]
    return value


def matches(doc_id: str, expected: str) -> bool:
    """True when a retrieved document id is the expected id or path (a path may carry the folder in front)."""
    return doc_id == expected or expected.endswith("/" + doc_id)


def load_cases(path: Path) -> list[RetrievalCase]:
    """Read JSON lines {"question": ..., "expected": [...]}; errors name the line."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RetrievalEvalError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        question, expected = item.get("question") if isinstance(item, dict) else None, None
        if isinstance(item, dict):
            expected = item.get("expected")
        if not isinstance(question, str) or not question.strip():
            raise RetrievalEvalError(f"{path}:{number}: 'question' must be a non-empty string")
        if isinstance(expected, str):
            expected = [expected]
        if not isinstance(expected, list) or not expected or not all(isinstance(e, str) for e in expected):
            raise RetrievalEvalError(f"{path}:{number}: 'expected' must be a list of document ids or paths")
        cases.append(RetrievalCase(question.strip(), tuple(normalise(e) for e in expected)))
    if not cases:
        raise RetrievalEvalError(f"{path}: no questions")
    return cases


def evaluate(kb: KnowledgeBase, cases: list[RetrievalCase], *, hybrid: bool = True) -> RetrievalReport:
    """Rank documents for every question (no stage preference) and find the first expected one.

    hybrid=False leaves the question's words out of the search: vector similarity only.
    """
    report = RetrievalReport(cases=cases)
    vectors = kb.embeddings.embed_array([c.question for c in cases])
    for case, vector in zip(cases, vectors, strict=True):
        text = case.question if hybrid else None
        hits = kb.search(vector.tolist(), stage=None, k=RANK_DEPTH * 2, stage_boost=0.0, query_text=text)
        ranked = [group[0].doc_id for group in by_document(hits)][:RANK_DEPTH]
        rank = next((i for i, d in enumerate(ranked, 1) if any(matches(d, e) for e in case.expected)), None)
        report.ranked.append(ranked)
        report.ranks.append(rank)
    return report
