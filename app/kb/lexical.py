"""A BM25 index over the stored passages, for the lexical half of hybrid retrieval (exact words, names, codes)."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np

K1 = 1.5
B = 0.75
_TOKEN = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an the and or of to in on for is are do does i my me we our you your it can how what with be by at as this "
    "that from there any have has".split()
)


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers, without the commonest English words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS]


class BM25Index:
    """Okapi BM25 (k1=1.5, b=0.75) with the weight of every posting computed once at build time."""

    def __init__(self, ids: list[str], texts: list[str]) -> None:
        self.ids = ids
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        counts = [Counter(tokens(t)) for t in texts]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float32)
        average = float(lengths.mean()) if len(lengths) else 1.0
        by_term: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, counter in enumerate(counts):
            for term, tf in counter.items():
                by_term[term].append((i, tf))
        n = len(texts)
        for term, postings in by_term.items():
            idf = math.log(1 + (n - len(postings) + 0.5) / (len(postings) + 0.5))
            rows = np.array([i for i, _ in postings], dtype=np.int64)
            tf = np.array([f for _, f in postings], dtype=np.float32)
            norm = K1 * (1 - B + B * lengths[rows] / max(average, 1e-9))
            self._postings[term] = (rows, (idf * tf * (K1 + 1) / (tf + norm)).astype(np.float32))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for the query, in the order of ids."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        for term in set(tokens(query)):
            if term in self._postings:
                rows, weights = self._postings[term]
                out[rows] += weights
        return out
