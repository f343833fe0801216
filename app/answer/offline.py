"""The offline reply around the composed answer: decline when the documents don't cover it, tone, the next step."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.answer.composer import Composed, compose
from app.answer.question import Question
from app.kb.store import Hit
from app.kb.vocabulary import Vocabulary

# The documents are taken not to cover a question when the words it turns on are nowhere in them, or when what
# matches says little of what was asked (the units used hold under MIN_COVERAGE of the question's term weight and
# score under WEAK_SCORE).
MIN_COVERAGE = 0.34
WEAK_SCORE = 0.55

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


def decline_text(company: str, upset: bool) -> str:
    """One or two sentences that say the documents don't cover it and offer a person."""
    sorry = "I'm sorry, I can't help with that one myself: " if upset else ""
    return (
        f"{sorry}I couldn't find that in {company}'s help content, so I'd rather not guess. "
        f"I can put you in touch with a person from the {company} team who can answer it."
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


def covers(question_text: str, hits: list[Hit], composed: Composed, vocabulary: Vocabulary, min_score: float) -> bool:
    """Whether the documents answer the question: its words are in them, and what matches speaks to it."""
    if not hits or hits[0].similarity < min_score or not composed.text:
        return False
    if vocabulary.unknown(question_text):
        return False
    return composed.coverage >= MIN_COVERAGE or composed.best >= WEAK_SCORE


def offline_reply(
    *,
    question: Question,
    question_vector: np.ndarray,
    hits: list[Hit],
    embed: Callable[[list[str]], np.ndarray],
    vocabulary: Vocabulary,
    passages_of: Callable[[str], list[Hit]],
    min_score: float,
    company: str,
    tone: Tone,
    known_links: set[str],
) -> OfflineReply:
    """Compose from the passages, or decline; then acknowledge, offer a person and the stage's next step as fits."""
    relevant = [h for h in hits if h.similarity >= min_score]
    composed = (
        compose(
            question=question,
            question_vector=question_vector,
            hits=relevant,
            embed=embed,
            idf=vocabulary.idf,
            passages_of=passages_of,
        )
        if relevant
        else Composed(text="", cited=[])
    )
    if not covers(question.text, relevant, composed, vocabulary, min_score):
        return OfflineReply(text=decline_text(company, tone.upset), cited=[], declined=True)
    step = _next_step(tone, known_links)
    parts = [_acknowledge(tone), composed.text, _offer_person(tone, company, step), step]
    return OfflineReply(text="\n\n".join(p for p in parts if p), cited=composed.cited, declined=False)
