"""Evaluating the stage detector on labelled conversations (the `journey eval-stages` format)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.stages.detector import StageDetector, StageResult, StageSignals, StageVote
from app.stages.passages import PassageSignal

PassageLookup = Callable[[str], tuple[PassageSignal, ...]]  # a message -> the knowledge passages nearest to it
Voter = Callable[[StageSignals, StageResult], StageVote | None]  # an outside (LLM) vote on a turn, or None

CALIBRATION_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)


class EvalFileError(ValueError):
    """A line of the evaluation file is not a valid case."""


@dataclass(frozen=True)
class StageCase:
    """One labelled conversation: the last user message is classified with the earlier ones as context."""

    messages: tuple[dict, ...]
    stage: str
    page: dict = field(default_factory=dict)
    known_customer: bool = False


def load_cases(path: Path, stage_names: list[str]) -> list[StageCase]:
    """Read a JSON-lines file of cases, with a clear error for the first bad line."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        messages = raw.get("messages") if isinstance(raw, dict) else None
        if not isinstance(messages, list) or not messages:
            raise EvalFileError(f"{path}:{number}: 'messages' must be a non-empty list")
        if any(not isinstance(m, dict) or m.get("role") not in {"user", "assistant"} for m in messages):
            raise EvalFileError(f"{path}:{number}: every message needs role 'user' or 'assistant'")
        if messages[-1]["role"] != "user" or not str(messages[-1].get("content", "")).strip():
            raise EvalFileError(f"{path}:{number}: the last message must be a non-empty user message")
        if raw.get("stage") not in stage_names:
            raise EvalFileError(f"{path}:{number}: stage {raw.get('stage')!r} is not one of {stage_names}")
        identity = raw.get("identity") or {}
        cases.append(
            StageCase(
                messages=tuple(messages),
                stage=raw["stage"],
                page=raw.get("page") or {},
                known_customer=bool(identity.get("known_customer")),
            )
        )
    if not cases:
        raise EvalFileError(f"{path}: no cases")
    return cases


def classify_case(
    detector: StageDetector, case: StageCase, passages: PassageLookup | None = None, voter: Voter | None = None
) -> tuple[str, float]:
    """Replay the user turns in order (so the conversation's stage builds up) and classify the last one.

    With a voter, every turn is classified alone first and again with the vote when the voter gives one (as the chat
    service does with the LLM's vote).
    """
    users = [str(m["content"]) for m in case.messages if m["role"] == "user"]
    previous = None
    result = None
    for i, message in enumerate(users):
        last = i == len(users) - 1
        signals = StageSignals(
            message=message,
            history=tuple(users[:i]),
            page_url=str(case.page.get("url", "")) if last else "",
            page_title=str(case.page.get("title", "")) if last else "",
            known_customer=case.known_customer,
            previous=previous,
            passages=passages(message) if passages is not None else (),
        )
        result = detector.detect(signals)
        if voter is not None and (vote := voter(signals, result)) is not None:
            result = detector.detect(signals, vote=vote)
        previous = result.name
    assert result is not None
    return result.name, result.confidence


@dataclass
class StageReport:
    """Accuracy, per-stage precision and recall, confusion matrix, calibration and speed."""

    names: list[str]
    gold: list[str]
    predicted: list[str]
    confidence: list[float]
    ms_per_case: float
    votes: dict[str, int] | None = None  # with an LLM: {"turns": replayed turns, "asked": turns it was asked to vote}

    @property
    def accuracy(self) -> float:
        """Share of cases classified right."""
        return sum(g == p for g, p in zip(self.gold, self.predicted, strict=True)) / len(self.gold)

    def per_stage(self) -> dict[str, dict[str, float]]:
        """precision, recall, f1 and support of every stage."""
        out = {}
        for name in self.names:
            tp = sum(g == p == name for g, p in zip(self.gold, self.predicted, strict=True))
            predicted = self.predicted.count(name)
            support = self.gold.count(name)
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        return out

    def confusion(self) -> list[list[int]]:
        """rows: gold stage, columns: predicted stage."""
        index = {n: i for i, n in enumerate(self.names)}
        matrix = [[0] * len(self.names) for _ in self.names]
        for g, p in zip(self.gold, self.predicted, strict=True):
            matrix[index[g]][index[p]] += 1
        return matrix

    def calibration(self) -> tuple[list[dict], float]:
        """Confidence bins with their accuracy, and the expected calibration error."""
        bins = []
        ece = 0.0
        for low, high in zip(CALIBRATION_BINS, CALIBRATION_BINS[1:], strict=False):
            members = [i for i, c in enumerate(self.confidence) if low <= c < high]
            if not members:
                continue
            mean_conf = sum(self.confidence[i] for i in members) / len(members)
            acc = sum(self.gold[i] == self.predicted[i] for i in members) / len(members)
            ece += len(members) / len(self.gold) * abs(mean_conf - acc)
            bins.append({"range": [low, min(high, 1.0)], "n": len(members), "confidence": mean_conf, "accuracy": acc})
        return bins, ece

    def as_dict(self) -> dict:
        """Everything, for --json."""
        bins, ece = self.calibration()
        return {
            "n": len(self.gold),
            "accuracy": self.accuracy,
            "per_stage": self.per_stage(),
            "labels": self.names,
            "confusion": self.confusion(),
            "calibration": {"bins": bins, "ece": ece},
            "ms_per_case": self.ms_per_case,
            "llm_votes": self.votes,
        }

    def as_text(self) -> str:
        """A report for people, ending with `accuracy: 0.xxx (n=N)`."""
        lines = [f"{'stage':<15}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>6}"]
        for name, m in self.per_stage().items():
            lines.append(f"{name:<15}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['support']:>6}")
        short = [n[:5] for n in self.names]
        lines += ["", "confusion (rows: expected, columns: predicted)", " " * 15 + "".join(f"{s:>6}" for s in short)]
        for name, row in zip(self.names, self.confusion(), strict=True):
            lines.append(f"{name:<15}" + "".join(f"{v:>6}" for v in row))
        bins, ece = self.calibration()
        lines += ["", "calibration (confidence bin: mean confidence -> accuracy)"]
        for b in bins:
            low, high = b["range"]
            lines.append(f"  [{low:.2f}, {high:.2f}) n={b['n']:<4} {b['confidence']:.3f} -> {b['accuracy']:.3f}")
        lines += [f"  expected calibration error: {ece:.3f}", f"  {self.ms_per_case:.1f} ms per case", ""]
        if self.votes is not None:
            share = self.votes["asked"] / max(self.votes["turns"], 1)
            lines += [f"LLM stage votes asked: {self.votes['asked']} of {self.votes['turns']} turns ({share:.3f})", ""]
        lines.append(f"accuracy: {self.accuracy:.3f} (n={len(self.gold)})")
        return "\n".join(lines)


def evaluate(
    detector: StageDetector,
    cases: list[StageCase],
    names: list[str],
    passages: PassageLookup | None = None,
    voter: CountingVoter | None = None,
) -> StageReport:
    """Classify every case (with the knowledge passages near each message, and the voter, if given); collect figures."""
    gold, predicted, confidence = [], [], []
    start = time.perf_counter()
    for case in cases:
        name, conf = classify_case(detector, case, passages, voter)
        gold.append(case.stage)
        predicted.append(name)
        confidence.append(conf)
    ms = (time.perf_counter() - start) * 1000 / len(cases)
    votes = {"turns": voter.turns, "asked": voter.asked} if voter is not None else None
    return StageReport(names=names, gold=gold, predicted=predicted, confidence=confidence, ms_per_case=ms, votes=votes)


class CountingVoter:
    """Asks `ask` for a vote on the turns `wanted` says are worth one, and counts turns and votes asked."""

    def __init__(self, ask: Callable[[StageSignals], StageVote | None], wanted: Callable[[str, StageResult], bool]):
        self.ask, self.wanted = ask, wanted
        self.turns = self.asked = 0

    def __call__(self, signals: StageSignals, result: StageResult) -> StageVote | None:
        """The vote on this turn, or None when none was asked or the answer was no vote."""
        self.turns += 1
        if not self.wanted(signals.message, result):
            return None
        self.asked += 1
        return self.ask(signals)
