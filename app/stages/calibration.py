"""Temperature scaling: one divisor for the detector's logits so its probabilities match how often it is right."""

from __future__ import annotations

import numpy as np

TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(16.0), 121))  # 3.5% apart


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities of a (n, classes) array."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels."""
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The temperature that minimises the NLL of held-out logits, and that NLL (1.0 when there is nothing to fit)."""
    if len(labels) == 0:
        return 1.0, 0.0
    scored = [(nll(logits / t, labels), float(t)) for t in TEMPERATURES]
    best_nll, best_t = min(scored)
    return best_t, best_nll
