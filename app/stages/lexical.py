"""A multinomial naive Bayes over words and word pairs: the cheap lexical signal beside the embeddings."""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def features(text: str) -> list[str]:
    """Lower-cased words and adjacent word pairs."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


class NaiveBayes:
    """Word/bigram naive Bayes with Laplace smoothing and uniform class priors."""

    def __init__(self, n_classes: int, alpha: float = 0.5) -> None:
        self.n_classes = n_classes
        self.alpha = alpha
        self.vocab: dict[str, int] = {}
        self.log_theta = np.zeros((n_classes, 0))

    def fit(self, texts: list[str], labels: list[int]) -> NaiveBayes:
        """Count features per class."""
        docs = [features(t) for t in texts]
        self.vocab = {f: i for i, f in enumerate(sorted({f for d in docs for f in d}))}
        counts = np.zeros((self.n_classes, len(self.vocab)))
        for doc, label in zip(docs, labels, strict=True):
            for f in doc:
                counts[label, self.vocab[f]] += 1
        smoothed = counts + self.alpha
        self.log_theta = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
        return self

    def log_posterior(self, text: str) -> np.ndarray:
        """log P(class | text), normalised; uniform when no known feature occurs."""
        idx = [self.vocab[f] for f in features(text) if f in self.vocab]
        if not idx:
            return np.full(self.n_classes, -np.log(self.n_classes))
        scores = self.log_theta[:, idx].sum(axis=1)
        scores -= scores.max()
        return scores - np.log(np.exp(scores).sum())

    def telling_words(self, text: str, label: int, limit: int = 3) -> list[str]:
        """The features of text that most favour label over the other classes."""
        found = {f: self.vocab[f] for f in features(text) if f in self.vocab}
        if not found:
            return []
        others = np.delete(self.log_theta, label, axis=0).mean(axis=0)
        lift = {f: float(self.log_theta[label, i] - others[i]) for f, i in found.items()}
        return [f for f, v in sorted(lift.items(), key=lambda kv: kv[1], reverse=True)[:limit] if v > 0.5]
