"""Stage detection latency per turn (embedding included) on this machine; prints figures.

Usage: .venv/bin/python bench/stage_latency.py [FILE.jsonl] [--repeat 3]
Replays each case's user turns through the detector, as the chat service does, and times every turn.
Default FILE: evals/stages_dev.jsonl.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from app.config import Settings
from app.embeddings import make_embeddings
from app.stages.config import load_journey
from app.stages.detector import EnsembleStageDetector, StageSignals
from app.stages.evaluate import load_cases

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=REPO / "evals" / "stages_dev.jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    journey = load_journey(settings.knowledge_dir / "stages.yaml")
    embeddings = make_embeddings(settings)
    start = time.perf_counter()
    detector = EnsembleStageDetector(journey, embeddings)
    fit_s = time.perf_counter() - start
    cases = load_cases(args.file, journey.names)
    times: list[float] = []
    for _ in range(args.repeat):
        for case in cases:
            users = [m["content"] for m in case.messages if m["role"] == "user"]
            previous = None
            for i, message in enumerate(users):
                signals = StageSignals(message=message, history=tuple(users[:i]), previous=previous)
                t = time.perf_counter()
                previous = detector.detect(signals).name
                times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"fit on {detector.fitted['examples']} examples: {fit_s:.2f}s (embeddings not cached)")
    print(
        f"per turn ms: n={len(times)} p50={times[len(times) // 2]:.2f} p95={times[int(len(times) * 0.95)]:.2f} "
        f"p99={times[int(len(times) * 0.99)]:.2f} mean={statistics.mean(times):.2f}"
    )


if __name__ == "__main__":
    main()
