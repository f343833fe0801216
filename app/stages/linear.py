"""Multinomial logistic regression on embeddings, fitted with Adam in numpy (no extra dependency)."""

from __future__ import annotations

import numpy as np


class SoftmaxRegression:
    """Linear classifier over sentence embeddings with L2 regularisation."""

    def __init__(self, n_classes: int, l2: float = 1e-3, steps: int = 200, rate: float = 0.05) -> None:
        self.n_classes = n_classes
        self.l2 = l2
        self.steps = steps
        self.rate = rate
        self.weights = np.zeros((0, n_classes))
        self.bias = np.zeros(n_classes)

    def fit(self, x: np.ndarray, y: np.ndarray) -> SoftmaxRegression:
        """Minimise cross-entropy + l2 * |W|^2 with full-batch Adam."""
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        w = np.zeros((d, self.n_classes))
        b = np.zeros(self.n_classes)
        target = np.zeros((n, self.n_classes))
        target[np.arange(n), y] = 1.0
        m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for step in range(1, self.steps + 1):
            logits = x @ w + b
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            grad_logits = (p - target) / n
            g_w = x.T @ grad_logits + 2 * self.l2 * w
            g_b = grad_logits.sum(axis=0)
            m_w = beta1 * m_w + (1 - beta1) * g_w
            v_w = beta2 * v_w + (1 - beta2) * g_w**2
            m_b = beta1 * m_b + (1 - beta1) * g_b
            v_b = beta2 * v_b + (1 - beta2) * g_b**2
            correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
            w -= self.rate * correction * m_w / (np.sqrt(v_w) + eps)
            b -= self.rate * correction * m_b / (np.sqrt(v_b) + eps)
        self.weights, self.bias = w, b
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Unnormalised class scores for rows of x (or one vector)."""
        return np.atleast_2d(x) @ self.weights + self.bias
