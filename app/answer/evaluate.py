"""Evaluating whole answers (the `journey eval-answers` format): the asked-for facts, cited, or an honest decline."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class AnswerEvalError(ValueError):
    """A line of the evaluation file is not a valid case."""


@dataclass(frozen=True)
class AnswerCase:
    """A visitor question (after an optional conversation) with the facts a correct reply states, or none."""

    question: str
    answerable: bool
    facts: tuple[str, ...] = ()
    history: tuple[dict, ...] = ()
    stage: str | None = None


@dataclass
class AnswerResult:
    """What the guide replied to one case and how it was judged."""

    case: AnswerCase
    reply: str
    sources: list[str]
    handoff_reason: str | None
    stage: str
    missing: list[str] = field(default_factory=list)
    message_id: str = ""

    @property
    def declined(self) -> bool:
        """No source cited and the handoff's reason is no_answer."""
        return not self.sources and self.handoff_reason == "no_answer"

    @property
    def correct(self) -> bool:
        """Answerable: every fact found and a source cited. Unanswerable: declined."""
        if self.case.answerable:
            return not self.missing and bool(self.sources)
        return self.declined


def load_cases(path: Path) -> list[AnswerCase]:
    """Read a JSON-lines file of cases, with a clear error for the first bad line."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnswerEvalError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(raw, dict) or not str(raw.get("question", "")).strip():
            raise AnswerEvalError(f"{where}: 'question' must be a non-empty string")
        if not isinstance(raw.get("answerable"), bool):
            raise AnswerEvalError(f"{where}: 'answerable' must be true or false")
        facts = raw.get("facts") or []
        if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
            raise AnswerEvalError(f"{where}: 'facts' must be a list of regular expressions")
        if raw["answerable"] and not facts:
            raise AnswerEvalError(f"{where}: an answerable case needs at least one fact")
        for fact in facts:
            try:
                re.compile(fact)
            except re.error as exc:
                raise AnswerEvalError(f"{where}: fact {fact!r} is not a valid regular expression ({exc})") from exc
        history = raw.get("history") or []
        if not isinstance(history, list) or any(
            not isinstance(m, dict) or m.get("role") not in {"user", "assistant"} for m in history
        ):
            raise AnswerEvalError(f"{where}: 'history' must be a list of {{role: user|assistant, content}}")
        cases.append(
            AnswerCase(
                question=str(raw["question"]).strip(),
                answerable=raw["answerable"],
                facts=tuple(facts),
                history=tuple(history),
                stage=raw.get("stage"),
            )
        )
    if not cases:
        raise AnswerEvalError(f"{path}: no cases")
    return cases


def judge(case: AnswerCase, payload: dict) -> AnswerResult:
    """Compare one done object of the chat API with the case."""
    reply = str(payload.get("reply", ""))
    missing = [f for f in case.facts if not re.search(f, reply, re.IGNORECASE)] if case.answerable else []
    return AnswerResult(
        case=case,
        reply=reply,
        sources=[s["id"] for s in payload.get("sources") or []],
        handoff_reason=(payload.get("handoff") or {}).get("reason"),
        stage=(payload.get("stage") or {}).get("name", ""),
        missing=missing,
        message_id=str(payload.get("message_id", "")),
    )


@dataclass
class AnswerReport:
    """The results of one run."""

    results: list[AnswerResult]

    def _share(self, answerable: bool, stage: str | None = None) -> tuple[float, int]:
        chosen = [
            r for r in self.results if r.case.answerable == answerable and (stage is None or r.case.stage == stage)
        ]
        return sum(r.correct for r in chosen) / max(len(chosen), 1), len(chosen)

    def as_dict(self) -> dict:
        """The figures, per labelled stage, and every case that went wrong."""
        correct, n = self._share(True)
        declined, m = self._share(False)
        answerable = [r for r in self.results if r.case.answerable]
        stages = sorted({r.case.stage for r in self.results if r.case.stage})
        return {
            "correct": round(correct, 4),
            "n": n,
            "declined": round(declined, 4),
            "m": m,
            "answerable_declined": round(sum(r.declined for r in answerable) / max(len(answerable), 1), 4),
            "follow_ups": dict(zip(("correct", "n"), self._follow_ups(), strict=True)),
            "per_stage": {
                s: {
                    "correct": round(self._share(True, s)[0], 4),
                    "n": self._share(True, s)[1],
                    "declined": round(self._share(False, s)[0], 4),
                    "m": self._share(False, s)[1],
                }
                for s in stages
            },
            "errors": [
                {
                    "question": r.case.question,
                    "answerable": r.case.answerable,
                    "missing": r.missing,
                    "sources": r.sources,
                    "handoff": r.handoff_reason,
                    "reply": r.reply,
                }
                for r in self.results
                if not r.correct
            ],
        }

    def _follow_ups(self) -> tuple[float, int]:
        chosen = [r for r in self.results if r.case.answerable and r.case.history]
        return round(sum(r.correct for r in chosen) / max(len(chosen), 1), 4), len(chosen)

    def as_text(self) -> str:
        """The figures for people; the last line is `correct: 0.xxx (n=N) declined: 0.xxx (n=M)`."""
        data = self.as_dict()
        kinds = Counter("follow-up" if r.case.history else "single" for r in self.results if r.case.answerable)
        lines = [
            f"answers: {len(self.results)} cases ({data['n']} answerable, {kinds['follow-up']} of them follow-ups; "
            f"{data['m']} unanswerable)",
            f"answerable declined: {data['answerable_declined']:.3f}",
            f"follow-ups correct: {data['follow_ups']['correct']:.3f} (n={data['follow_ups']['n']})",
        ]
        if data["per_stage"]:
            lines.append("per stage (answerable correct, unanswerable declined)")
            for stage, row in data["per_stage"].items():
                lines.append(
                    f"  {stage:<14} {row['correct']:.3f} (n={row['n']:<3}) {row['declined']:.3f} (n={row['m']})"
                )
        lines.append(f"correct: {data['correct']:.3f} (n={data['n']}) declined: {data['declined']:.3f} (n={data['m']})")
        return "\n".join(lines)

    def errors_text(self) -> str:
        """The cases that went wrong, for reading."""
        out = []
        for r in self.results:
            if r.correct:
                continue
            what = (
                f"missing {r.missing}"
                if r.case.answerable and r.missing
                else (
                    "no source"
                    if r.case.answerable
                    else f"not declined (sources {r.sources}, handoff {r.handoff_reason})"
                )
            )
            before = " | ".join(m.get("content", "")[:60] for m in r.case.history if m.get("role") == "user")
            out.append(f"- {r.case.question!r}" + (f" after [{before}]" if before else "") + f": {what}")
            out.append("    " + r.reply.replace("\n", "\n    "))
        return "\n".join(out)


async def run_cases(chat, cases: list[AnswerCase]) -> AnswerReport:
    """Ask every case through the chat service, a new conversation each, replaying the history's visitor turns."""
    from app.chat.schemas import ChatRequest

    results = []
    for case in cases:
        conversation_id = visitor_id = None
        payload: dict = {}
        asked = [str(m.get("content", "")) for m in case.history if m.get("role") == "user"] + [case.question]
        for message in asked:
            request = ChatRequest(message=message, conversation_id=conversation_id, visitor_id=visitor_id)
            payload = await chat.answer(await chat.prepare(request))
            conversation_id, visitor_id = payload["conversation_id"], payload["visitor_id"]
        results.append(judge(case, payload))
    return AnswerReport(results)
