"""Fit the decline model of app/answer/answerable.py on an answer evaluation set; print its constants.

    .venv/bin/python evals/fit_decline.py evals/answers_dev.jsonl [--max-declined 0.03]

Every case is asked through the chat service (a scratch database), the features of its last turn are read back from
the touchpoint, and a class-balanced logistic regression (L2, standardised features) is fitted; 5-fold
cross-validation shows how it does on cases it was not fitted on. The threshold is the lowest at which at most
--max-declined of the answerable cases are declined; it is printed for comparison only, since the app stores the
score and does not decline on it. Paste the printed WEIGHTS, MEANS and SCALES into app/answer/answerable.py.
Not used by the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from app.answer.answerable import FEATURES
from app.answer.evaluate import load_cases, run_cases
from app.config import Settings
from app.state import build_services
from app.store.models import Touchpoint


def features(path: Path, dump: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The features of every case's last turn, and 1 for the cases that should be declined."""
    cases = load_cases(path)
    with tempfile.TemporaryDirectory() as scratch:
        services = build_services(Settings(database_url=f"sqlite:///{scratch}/fit.db", redis_url=None, webhook_urls=""))
        report = asyncio.run(run_cases(services.chat, cases))
        rows, labels, dumped = [], [], []
        with services.chat.sessions() as session:
            for result in report.results:
                data = (session.get(Touchpoint, result.message_id).data or {}).get("answerability")
                if data is None:  # small talk: no features
                    continue
                rows.append([data[name] for name in FEATURES])
                labels.append(0 if result.case.answerable else 1)
                dumped.append({"question": result.case.question, "answerable": result.case.answerable, **data})
        services.close()
    if dump is not None:
        dump.write_text(json.dumps(dumped, indent=1))
    return np.array(rows, dtype=float), np.array(labels)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 0.01, steps: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-balanced logistic regression on standardised features: (weights with the intercept last, means, scales)."""
    means, scales = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.c_[(x - means) / scales, np.ones(len(x))]
    balance = np.where(y == 1, len(y) / (2 * max(y.sum(), 1)), len(y) / (2 * max((1 - y).sum(), 1)))
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        w -= 0.5 * (z.T @ ((p - y) * balance) / len(y) + l2 * np.r_[w[:-1], 0.0])
    return w, means, scales


def predict(model: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Probability of 'decline' for each row."""
    w, means, scales = model
    return 1 / (1 + np.exp(-np.c_[(x - means) / scales, np.ones(len(x))] @ w))


def threshold(p: np.ndarray, y: np.ndarray, max_declined: float) -> float:
    """The lowest threshold that declines at most max_declined of the answerable rows."""
    for t in np.arange(0.30, 0.99, 0.01):
        if (p[y == 0] >= t).mean() <= max_declined:
            return float(round(t, 2))
    return 0.99


def main() -> None:
    """Fit, cross-validate, print."""
    logging.disable(logging.INFO)
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--max-declined", type=float, default=0.03)
    parser.add_argument("--dump", type=Path, help="write every case's features to this JSON file")
    args = parser.parse_args()
    x, y = features(args.file, args.dump)
    folds = np.arange(len(y)) % 5
    held = np.zeros(len(y))
    for k in range(5):
        held[folds == k] = predict(fit(x[folds != k], y[folds != k]), x[folds == k])
    model = fit(x, y)
    t = threshold(predict(model, x), y, args.max_declined)
    for name, p in (("fitted", predict(model, x)), ("5-fold", held)):
        print(f"{name}: answerable declined {(p[y == 0] >= t).mean():.3f}, unanswerable declined {(p[y == 1] >= t).mean():.3f}")
    w, means, scales = model
    print(f"WEIGHTS = {tuple(round(float(v), 3) for v in w)}")
    print(f"MEANS = {tuple(round(float(v), 4) for v in means)}")
    print(f"SCALES = {tuple(round(float(v), 4) for v in scales)}")
    print(f"# threshold at most {args.max_declined} answerable declined: {t} (compared only; the app does not use it)")


if __name__ == "__main__":
    main()
