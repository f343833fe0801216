"""Fit the passage ranker of app/answer/composer.py (PASSAGE_WEIGHTS) on an answer evaluation set; print the weights.

    .venv/bin/python evals/fit_ranker.py evals/answers_dev.jsonl [--check evals/answers_heldout.jsonl] [--l2 0.001]

Every answerable case is asked through the chat service (a scratch database). For the composition of its last turn,
each retrieved passage's PASSAGE_FEATURES are kept with a label: 1 when the passage's text holds every fact of the
case. A pairwise logistic ranker (no intercept, L2, standardised differences of a holding and a non-holding passage
of the same case) is fitted; 5-fold cross-validation over cases shows how often the top-ranked passage holds the facts
on cases it was not fitted on, next to the weights in the app now. The weights are scaled to the sum of the app's,
because the composer's runner-up gap (SECOND_PASSAGE_GAP) is in the same units. Paste them into PASSAGE_WEIGHTS.
--check prints the same top-1 figure on another set (a held-out one: look, never fit). Not used by the app.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

import app.answer.composer as composer
from app.answer.evaluate import load_cases, run_cases
from app.config import Settings
from app.state import build_services


def collect(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """For every answerable case: its last composition's passage features, and which passages hold all its facts."""
    seen: list[tuple[np.ndarray, np.ndarray, list[str]]] = []
    original = composer.passage_features

    def recording(question, hits, units, cosines, idf):
        features, usable = original(question, hits, units, cosines, idf)
        seen.append((features[usable], usable, [h.text for h, ok in zip(hits, usable, strict=True) if ok]))
        return features, usable

    composer.passage_features = recording  # this script only: read what the composer weighs
    cases = [c for c in load_cases(path) if c.answerable]
    out = []
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(database_url=f"sqlite:///{scratch}/fit.db", redis_url=None, webhook_urls="")
        services = build_services(settings)
        try:
            for case in cases:
                seen.clear()
                asyncio.run(run_cases(services.chat, [case]))
                if not seen:
                    continue
                features, _, texts = seen[-1]
                holds = np.array([all(re.search(f, t, re.IGNORECASE) for f in case.facts) for t in texts], float)
                out.append((features, holds))
        finally:
            services.close()
            composer.passage_features = original
    return out


def top1(data: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> float:
    """Share of the cases with a holding passage whose best-scored passage holds the facts."""
    usable = [(x, y) for x, y in data if y.any()]
    return sum(y[int(np.argmax(x @ weights))] for x, y in usable) / max(len(usable), 1)


def fit(data: list[tuple[np.ndarray, np.ndarray]], l2: float) -> np.ndarray:
    """Pairwise logistic ranker by gradient descent on standardised differences."""
    diffs = [x[i] - x[j] for x, y in data for i in np.flatnonzero(y) for j in np.flatnonzero(y == 0)]
    d = np.array(diffs)
    scale = np.vstack([d, -d]).std(axis=0) + 1e-9
    xs = np.vstack([d, -d]) / scale
    target = np.r_[np.ones(len(d)), np.zeros(len(d))]
    w = np.zeros(d.shape[1])
    for _ in range(3000):
        p = 1.0 / (1.0 + np.exp(-(xs @ w)))
        w -= 1.0 * (xs.T @ (p - target) / len(target) + l2 * w)
    return w / scale


def main() -> None:
    """Fit, cross-validate and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--check", type=Path, default=None)
    parser.add_argument("--l2", type=float, default=0.001)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    data = collect(args.file)
    order = np.random.default_rng(0).permutation(len(data))
    folds = np.array_split(order, 5)
    held = 0.0
    for fold in folds:
        chosen = set(fold.tolist())
        weights = fit([data[i] for i in order if i not in chosen], args.l2)
        part = [data[i] for i in fold]
        held += top1(part, weights) * sum(y.any() for _, y in part)
    weights = fit(data, args.l2)
    weights *= composer.PASSAGE_WEIGHTS.sum() / weights.sum()
    with_facts = sum(y.any() for _, y in data)
    print(f"cases: {len(data)} ({with_facts} with a passage holding every fact)")
    print(
        f"top-1 holds the facts: app weights {top1(data, composer.PASSAGE_WEIGHTS):.3f}, "
        f"refit 5-fold cross-validated {held / with_facts:.3f}, refit on all {top1(data, weights):.3f}"
    )
    if args.check:
        other = collect(args.check)
        print(
            f"{args.check}: app weights {top1(other, composer.PASSAGE_WEIGHTS):.3f}, refit {top1(other, weights):.3f}"
        )
    print("PASSAGE_WEIGHTS = np.array([" + ", ".join(f"{w:.2f}" for w in weights) + "])")
    print("   (" + ", ".join(composer.PASSAGE_FEATURES) + ")")


if __name__ == "__main__":
    main()
