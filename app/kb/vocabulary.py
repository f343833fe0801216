"""The words of the knowledge base: how rare each term is, and whether a visitor's word (misspelt or not) is in it."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.answer.question import GENERIC, expand_shorthand, stem, words

COMMON_ZIPF = 3.0  # an English word at least this common (wordfreq's Zipf scale) is not taken for a typo
_ADDRESS = re.compile(r"\S+@\S+|https?://\S+|\b(?:[\w-]+\.)+(?:com|net|org|io|co|uk|de|fr|app|example)\b\S*", re.I)
MAX_EMBEDDED_WORDS = 30_000  # the commonest words of a large knowledge base get vectors (nearest-word lookups)

_LINK = re.compile(r"https?://[^\s)<>\]]+|[\w.+-]+@[\w-]+\.[\w.-]+")


def _within(a: str, b: str, limit: int) -> bool:
    """Damerau-Levenshtein distance of a and b is at most limit (bounded, early exit)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


class Vocabulary:
    """Document frequencies of the stems of every passage (title, section and text), and the words themselves."""

    def __init__(self, texts: list[str], links: list[str] = ()) -> None:
        self.n = max(len(texts), 1)
        found_links = {link.rstrip(".,;:") for text in texts for link in _LINK.findall(text)}
        found_links.update(link.split("#")[0] for link in links if link)
        self.links = frozenset(found_links | {link.rstrip("/") for link in found_links})
        self.df: Counter[str] = Counter()
        seen_words: set[str] = set()
        for text in texts:
            found = words(text)
            seen_words.update(found)
            self.df.update({stem(w) for w in found})
        self.words = frozenset(seen_words)
        self.by_stem: dict[str, str] = {}
        for word in sorted(seen_words, key=len):
            self.by_stem.setdefault(stem(word), word)
        self._by_length: dict[int, list[str]] = {}
        for word in self.words:
            if len(word) >= 4 and word.isalpha():
                self._by_length.setdefault(len(word), []).append(word)
        self._match = lru_cache(maxsize=4096)(self._lookup)
        self._vectors: np.ndarray | None = None
        self._embedded: list[str] = []
        self._vectors_lock = threading.Lock()

    def vectors(
        self, embed: Callable[[list[str]], np.ndarray], cache_dir: Path | None = None, model: str = ""
    ) -> np.ndarray:
        """Unit vectors of the knowledge base's words (computed once, kept in cache_dir when given)."""
        with self._vectors_lock:
            if self._vectors is None:
                counts = Counter({w: self.df.get(stem(w), 0) for w in self.words if w.isalpha() and len(w) > 2})
                self._embedded = sorted(w for w, _ in counts.most_common(MAX_EMBEDDED_WORDS))
                key = hashlib.sha256("\n".join([model, *self._embedded]).encode())
                path = cache_dir / f"kb-words-{key.hexdigest()[:24]}.npy" if cache_dir else None
                if path is not None and path.is_file():
                    self._vectors = np.load(path)
                else:
                    self._vectors = embed(self._embedded) if self._embedded else np.zeros((0, 1), dtype=np.float32)
                    if path is not None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tmp = path.with_suffix(".tmp.npy")
                        np.save(tmp, self._vectors)
                        tmp.replace(path)
            return self._vectors

    def nearest(
        self,
        vector: np.ndarray,
        embed: Callable[[list[str]], np.ndarray],
        cache_dir: Path | None = None,
        model: str = "",
    ) -> tuple[str, float]:
        """The knowledge base's word closest in meaning to a vector, and the cosine similarity."""
        vectors = self.vectors(embed, cache_dir, model)
        if not len(self._embedded):
            return "", 0.0
        sims = vectors @ vector
        best = int(np.argmax(sims))
        return self._embedded[best], float(sims[best])

    def idf(self, term: str) -> float:
        """Inverse document frequency of a stem (a stem the passages never use gets the highest)."""
        return math.log(1 + self.n / (1 + self.df.get(term, 0)))

    def _lookup(self, word: str) -> str | None:
        if word in self.words:
            return word
        if stem(word) in self.by_stem:
            return self.by_stem[stem(word)]
        if len(word) < 5 or not word.isalpha():
            return None
        limit = 1 if len(word) < 8 else 2
        found: list[tuple[int, int, int, str]] = []
        for length in range(len(word) - limit, len(word) + limit + 1):
            for candidate in self._by_length.get(length, ()):
                if candidate[0] != word[0]:
                    continue
                for distance in range(1, limit + 1):
                    if _within(word, candidate, distance):
                        pairs = enumerate(zip(word, candidate, strict=False))
                        prefix = next((i for i, (a, b) in pairs if a != b), len(word))
                        found.append((distance, -prefix, -self.df.get(stem(candidate), 0), candidate))
                        break
        return min(found)[3] if found else None

    def spelled(self, word: str) -> str | None:
        """The knowledge base's word for a visitor's word: itself, a form with the same stem, or a close misspelling."""
        return self._match(word.lower())

    def normalise(self, text: str) -> str:
        """The text with chat shorthand written out and misspelt words in the documents' spelling."""
        from wordfreq import zipf_frequency

        text = expand_shorthand(text)

        def fix(match: re.Match) -> str:
            word = match.group(0)
            lower = word.lower()
            if lower in self.words or len(lower) < 4 or zipf_frequency(lower, "en") >= COMMON_ZIPF:
                return word
            return self.spelled(lower) or word

        return re.sub(r"[A-Za-z]+", fix, text)

    def unknown(self, text: str) -> list[str]:
        """The topic words of a text that the knowledge base never uses, even allowing for a typo (links left out)."""
        text = _ADDRESS.sub(" ", text)
        found = (re.sub(r"'s$", "", w) for w in words(text))
        return [w for w in dict.fromkeys(found) if w not in GENERIC and len(w) > 1 and self.spelled(w) is None]
