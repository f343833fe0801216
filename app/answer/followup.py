"""Follow-ups: which earlier question a message leans on ("and for 3 people?", "how do I set that up"), if any."""

from __future__ import annotations

import re

from app.answer.question import stem, terms

_CONTINUES = re.compile(
    r"^\s*(?:and|but|also|plus|or|so|then|ok(?:ay)?|okay so|ok so|alright|right|great|cool|thanks?|what about|"
    r"how about|same|even)\b",
    re.IGNORECASE,
)
_REFERS = re.compile(
    r"\b(?:it|its|it's|that|this|those|these|them|one|ones|same|such|then|too|also)\b"
    r"|(?<!\bis )(?<!\bare )\bthere\b(?! (?:is|are|a|an|any)\b)",  # "over there", not "is there a..."
    re.IGNORECASE,
)
_STANDALONE_TERMS = 4  # a message with this many topic words of its own reads on its own, even with "it" in it
_ASKS = re.compile(  # a question word first, or after one word of filler ("honestly how do i cancel")
    r"^\s*(?:[a-z']+,?\s+)?(?:who|what|whats|when|where|which|why|how|can|could|do|does|did|is|are|was|were|will|would|should|"
    r"may|must|has|have|any)\b|.*\b(?:want|need|like to|trying to|wanna|please)\b",
    re.IGNORECASE,
)
_FRAGMENT_WORDS = 5  # a message this short that is not a question ("we're 10 therapists", "for 3 people") continues


_DEFINITE = re.compile(r"\bthe ([a-z][a-z'-]+)", re.IGNORECASE)


def leans_on_context(message: str, earlier_reply: str = "") -> bool:
    """True when the message cannot be read on its own: it continues ("and...", "what about...") or refers back,
    also with "the X" for an X the previous reply spoke of ("how long is the link good for")."""
    own = terms(message)
    if not own:
        return True
    if earlier_reply and len(own) < _STANDALONE_TERMS:
        spoken = set(terms(earlier_reply))
        if any(stem(w.lower()) in spoken and stem(w.lower()) in own for w in _DEFINITE.findall(message)):
            return True
    if _CONTINUES.match(message) and len(own) < _STANDALONE_TERMS + 1:
        return True
    if len(message.split()) <= _FRAGMENT_WORDS and not _ASKS.match(message) and "?" not in message:
        return True
    return bool(_REFERS.search(message)) and len(own) < _STANDALONE_TERMS


def topic_question(history: list[str]) -> str | None:
    """The latest earlier question that could be read on its own: what the conversation is about now."""
    for question in reversed(history):
        if not leans_on_context(question):
            return question
    return history[-1] if history else None


def resolve(message: str, history: list[str], last_reply: str = "") -> tuple[str, str | None]:
    """The text to search and answer for, and the earlier question it leans on (None when it stands alone)."""
    if not history or not leans_on_context(message, last_reply):
        return message, None
    topic = topic_question(history)
    if topic is None:
        return message, None
    return f"{topic} {message}", topic
