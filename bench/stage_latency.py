"""Stage detection CPU time per turn on this machine, optionally against an earlier checkout in the same run.

Usage: .venv/bin/python bench/stage_latency.py [FILE.jsonl] [--repeat 3] [--baseline DIR]
Replays each case's user turns through the detector as the chat service does: the message's embedding is computed
once beforehand (the service embeds it once for the stage and the search), then the knowledge passages nearest to it
are looked up (JOURNEY_DATA_DIR's knowledge base, if ingested) and the detector runs. Default FILE:
evals/stages_dev.jsonl. With --baseline DIR (a checkout of an earlier version, e.g. a `git worktree`), that version's
app/stages/detector.py and knowledge/stages.yaml are timed turn by turn alternately with this one, so a change in the
machine's speed affects both alike; the baseline does what it did then (no passage lookup if it had none).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.config import Settings
from app.embeddings import make_embeddings
from app.stages.config import load_journey
from app.stages.detector import EnsembleStageDetector, StageSignals
from app.stages.evaluate import load_cases
from app.stages.passages import nearest
from app.state import build_knowledge_base

REPO = Path(__file__).resolve().parent.parent

Turn = Callable[[str, tuple[str, ...], str | None, np.ndarray], str]


def _current(embeddings, kb) -> Turn:
    detector = EnsembleStageDetector(load_journey(REPO / "knowledge" / "stages.yaml"), embeddings)
    print(f"this checkout: {detector.fitted}")

    def turn(message: str, history: tuple[str, ...], previous: str | None, vector: np.ndarray) -> str:
        signals = StageSignals(message=message, history=history, previous=previous, passages=nearest(kb, vector))
        return detector.detect(signals, vector).name

    return turn


def _baseline(directory: Path, embeddings) -> Turn:
    spec = importlib.util.spec_from_file_location("baseline_detector", directory / "app" / "stages" / "detector.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being created
    spec.loader.exec_module(module)
    detector = module.EnsembleStageDetector(load_journey(directory / "knowledge" / "stages.yaml"), embeddings)
    print(f"baseline {directory}: {detector.fitted}")

    def turn(message: str, history: tuple[str, ...], previous: str | None, vector: np.ndarray) -> str:
        signals = module.StageSignals(message=message, history=history, previous=previous)
        return detector.detect(signals, vector).name

    return turn


def _summary(label: str, times: list[float]) -> str:
    times = sorted(times)
    n = len(times)
    return (
        f"{label:<14} CPU ms per turn: n={n} p50={times[n // 2]:.2f} p95={times[int(n * 0.95)]:.2f} "
        f"p99={times[int(n * 0.99)]:.2f} mean={statistics.mean(times):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=REPO / "evals" / "stages_dev.jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier version to time alongside")
    args = parser.parse_args()
    settings = Settings()
    embeddings = make_embeddings(settings)
    kb = build_knowledge_base(settings, embeddings)
    kb.catalog()  # loads the in-memory copy searches run on, as the service does at start
    start = time.perf_counter()
    versions = {"this checkout": _current(embeddings, kb)}
    print(f"fit: {time.perf_counter() - start:.2f}s (embeddings not cached); knowledge base: {kb.count()} passages")
    if args.baseline is not None:
        versions["baseline"] = _baseline(args.baseline.resolve(), embeddings)
    cases = load_cases(args.file, load_journey(REPO / "knowledge" / "stages.yaml").names)
    texts = sorted({str(m["content"]) for c in cases for m in c.messages if m["role"] == "user"})
    vectors = dict(zip(texts, embeddings.embed_array(texts), strict=True))
    times: dict[str, list[float]] = {label: [] for label in versions}
    for _ in range(args.repeat):
        for case in cases:
            users = [str(m["content"]) for m in case.messages if m["role"] == "user"]
            previous = dict.fromkeys(versions)
            for i, message in enumerate(users):
                for label, turn in versions.items():
                    t = time.process_time()
                    previous[label] = turn(message, tuple(users[:i]), previous[label], vectors[message])
                    times[label].append((time.process_time() - t) * 1000)
    for label, spent in times.items():
        print(_summary(label, spent))
    if "baseline" in times:
        extra = statistics.mean(times["this checkout"]) - statistics.mean(times["baseline"])
        ratio = statistics.mean(times["this checkout"]) / statistics.mean(times["baseline"])
        print(f"this checkout - baseline: {extra:+.2f} ms CPU per turn (mean), ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
