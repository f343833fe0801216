"""The offline reply around the composed answer: decline when the documents don't cover it, tone, the next step."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from app.answer.answerable import FLOOR, Evidence, answerable, evidence, focus_words, minor_terms
from app.answer.composer import Composed, compose
from app.answer.question import Question, head_count, total_for
from app.kb.store import Hit
from app.kb.vocabulary import Vocabulary

_FRUSTRATED = re.compile(
    r"!!|\b(?:useless|ridiculous|unacceptable|terrible|awful|worst|furious|angry|annoy\w*|fed up|sick of|"
    r"because of you|your fault|waste|again|still (?:not|isn't|doesn't|won't|can't)|(?:2nd|3rd|second|third) time|"
    r"keeps? (?:happening|failing|breaking)|nothing works|doesn'?t work|not working|broken|lost (?:clients|money|"
    r"bookings)|no-?showed|wtf|seriously|come on)\b",
    re.IGNORECASE,
)
_LINK = re.compile(r"https?://[^\s)]+|[\w.+-]+@[\w-]+\.[\w.]+")


def frustrated(message: str) -> bool:
    """The visitor sounds upset or says something keeps going wrong."""
    letters = [c for c in message if c.isalpha()]
    shouting = len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.7
    return shouting or bool(_FRUSTRATED.search(message))


@dataclass
class Tone:
    """What shapes the words around the answer: the stage, whether it is sure, the visitor's mood, the past replies."""

    stage: str
    next_step: str
    uncertain: bool = False
    upset: bool = False
    earlier_replies: list[str] = field(default_factory=list)


@dataclass
class OfflineReply:
    """The reply text, the passages it cites, and whether it declined."""

    text: str
    cited: list[Hit]
    declined: bool
    evidence: Evidence | None = None


def decline_text(company: str, upset: bool) -> str:
    """One or two sentences that say the documents don't cover it and offer a person."""
    sorry = "I'm sorry, I can't help with that one myself: " if upset else ""
    return (
        f"{sorry}I couldn't find that in {company}'s help content, so I'd rather not guess. "
        f"I can put you in touch with a person from the {company} team who can answer it."
    )


def clarify_text(company: str) -> str:
    """For a question with nothing to go on ("how long is it?" as a first message): ask what it is about."""
    return (
        "Could you tell me a bit more about what you'd like to know? For example a plan, a feature or a problem "
        f"you're having with {company}."
    )


def documented_links(text: str, known: set[str]) -> bool:
    """Every link and email address in the text is one the documents contain."""
    return all(link.rstrip(".,;") in known for link in _LINK.findall(text))


def _next_step(tone: Tone, known_links: set[str]) -> str:
    step = tone.next_step.strip()
    if not step or tone.uncertain or any(step in r for r in tone.earlier_replies):
        return ""
    return step if documented_links(step, known_links) else ""


def _acknowledge(tone: Tone) -> str:
    if tone.upset:
        return "I'm sorry about this, I can see it's causing you real trouble. Here's what should fix it:"
    if tone.stage == "support":
        return "Sorry you're running into this. Here's what should help:"
    return ""


def _offer_person(tone: Tone, company: str, step: str) -> str:
    if (tone.upset or tone.stage == "support") and "person" not in step:
        return f"If that doesn't sort it out, I can connect you with a person from the {company} support team."
    return ""


def offline_reply(
    *,
    question: Question,
    asked: str,
    question_vector: np.ndarray,
    hits: list[Hit],
    nearest: Callable[[list[str]], list[float]],
    unit_vectors: Callable[[list[str]], np.ndarray],
    vocabulary: Vocabulary,
    passages_of: Callable[[str], list[Hit]],
    company: str,
    tone: Tone,
    known_links: set[str],
) -> OfflineReply:
    """Compose from the passages, or decline; then acknowledge, offer a person and the stage's next step as fits."""
    near = [h for h in hits if h.similarity >= FLOOR]
    # what the question asks weighs more than who asks: "i'm a tutor, can i pause" is about pausing
    focus = focus_words(asked)  # computed once: it weighs the composer's terms and decides declines
    question = replace(question, minor=minor_terms(asked, focus))
    composed = (
        compose(
            question=question,
            question_vector=question_vector,
            hits=near,
            embed=unit_vectors,
            idf=vocabulary.idf,
            passages_of=passages_of,
        )
        if near
        else Composed(text="", cited=[])
    )
    found = evidence(
        question_text=question.text,
        asked=asked,
        focus=focus,
        hits=near,
        composed=composed,
        vocabulary=vocabulary,
        nearest=nearest,
    )
    if not question.terms:  # not one topic word, even with the turns it leans on: any passage would be a guess
        return OfflineReply(text=clarify_text(company), cited=[], declined=True, evidence=found)
    if not answerable(found, near, composed):
        return OfflineReply(text=decline_text(company, tone.upset), cited=[], declined=True, evidence=found)
    step = _next_step(tone, known_links)
    count = head_count(asked) or head_count(question.text)
    total = total_for(count, composed.text) if count and question.kind in {"price", "what", "quantity"} else ""
    parts = [_acknowledge(tone), composed.text, total, _offer_person(tone, company, step), step]
    return OfflineReply(text="\n\n".join(p for p in parts if p), cited=composed.cited, declined=False, evidence=found)
