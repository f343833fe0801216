"""Whether the documents answer a question, and a score for how likely they don't.

A question is declined when nothing retrieved is close at all, or when a word the documents never use stands where
the asked-about thing stands: the object of "pay in bitcoin", "ISO 27001 certified", "integrate with hubspot", or any
specific word of the question's own clause ("whos the ceo", "do you have a python sdk", "is there a kiosk mode"),
leaving out the words that only say who is asking ("im a physio", "we're a yoga place in lisbon").

A small logistic model over what retrieval and the composer found (how close the best passages are, how much of the
question's term weight the reply holds, whether the question turns on words the documents never use) gives
`unanswered`, stored with every offline turn for staff and for refitting (`evals/fit_decline.py`). It does not decline
by itself: fitted on evals/answers_dev.jsonl, at a threshold declining 3.5% of that set's answerable questions it
declined 0.330 of its unanswerable ones but only 0.100 of the held-out set's (0.050 without it) while declining 2 of
the held-out set's 60 answerable ones; at 0.91 (0.5% of dev's answerable declined) it declined 0.170 on dev and
nothing more on the held-out set, plus one answerable question there. Both helped the dev set and hurt the held-out
one, so the score is kept for staff and later work and not used to decide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from app.answer.composer import Composed
from app.answer.question import GENERIC, terms, words
from app.kb.store import Hit
from app.kb.vocabulary import Vocabulary

COMMON_ENGLISH = 5.0  # wordfreq Zipf at or above which an unknown word is everyday language, not a missing term
RARITY_SPAN = 2.0  # ... and this far below it, a word is as rare as names and jargon get
OBJECT_KEY = 0.25  # a missing word of this weight where the asked-about thing stands declines on its own
FLOOR = 0.15  # below this cosine similarity nothing is close enough to answer from
FOCUS_ZIPF = 4.8  # a missing word of the question's clause rarer than this is specific enough to decline on
FOCUS_SIMILAR = 0.65  # ... unless a knowledge-base word is at least this close in meaning (barbershop -> barbers)
FEATURES = ("top", "best", "coverage", "key", "keys")
VERB_FORM_ZIPF = 2.8  # a word whose -ed or -ing form is this common is taken for a verb
SYNONYM_SIMILARITY, SYNONYM_MARGIN = 0.72, 0.12  # a KB word this close in meaning stands in for an unknown word
# Fitted by evals/fit_decline.py (standardised features; the intercept last).
WEIGHTS = (0.049, -0.499, -0.52, 0.828, -0.351, -0.379)
MEANS = (0.4993, 3.1486, 0.5283, 0.1395, 0.1772)
SCALES = (0.1241, 0.8168, 0.2898, 0.3, 0.4196)


def rarity(word: str) -> float:
    """0 for everyday English words, up to 1 for jargon, names and codes the language barely uses."""
    from wordfreq import zipf_frequency

    if re.search(r"\d", word):
        return 1.0
    return min(max((COMMON_ENGLISH - zipf_frequency(word, "en")) / RARITY_SPAN, 0.0), 1.0)


_OBJECT = re.compile(
    r"\b(?:pay|paying|accept|accepts|take|takes|support|supports|integrate|integrates|connect|connects|sync|"
    r"syncs|works?|plug|compatible|available)\s+(?:with|in|by|via|through|to|into|on|for)\s+(?:a|an|the|my|our)?\s*"
    r"([\w'-]+)(?:\s+([\w'-]+))?"
    r"|\b(?:accept|accepts|take|takes|support|supports)\s+([\w'-]+)"
    r"|\b([\w'-]+)(?:\s+([\w'-]+))?\s+(?:certified|certification|compliant|compliance|accredited)\b",
    re.IGNORECASE,
)


def asked_about(text: str) -> set[str]:
    """Words in the place of what a question asks about: the object of "pay in", "integrate with", "X certified"."""
    return {w.lower() for match in _OBJECT.finditer(text) for w in match.groups() if w}


_QUESTION_START = re.compile(
    r"^\s*(?:and |so |ok |also |but )?(?:can|could|does|do|did|is|are|will|would|how|what|whats|which|why|when|where|"
    r"who|whos|any|has|have|should|u|y)\b",
    re.IGNORECASE,
)
_CLAUSES = re.compile(r"(?<=[?.!])\s+|\s+-\s+|[()]|, (?=(?:can|does|do|is|are|will|how|what|which|any)\b)", re.I)
# a word right after these says who is asking or where they are ("im a physio", "my wife", "in bristol"), not what
_CONTEXT = re.compile(
    r"\b(?:i'?m|i am|we'?re|were|we are|as|my|our|her|his|she|he)\s+(?:a|an|the)?\s*(?:[\w'-]+\s+){0,2}$"
    r"|\b(?:in|at|from|near|round|around)\s+(?:the\s+|a\s+|an\s+|my\s+|our\s+)?$",
    re.IGNORECASE,
)


def question_clause(text: str) -> str:
    """The parts of a message that ask something (with a "?" or a question word first); nothing for a statement.

    A statement ("reset email never came, its a hotmail adress") reports a problem: its unknown words (hotmail,
    squarespace) say where the problem is, not what is asked, so they never decline it.
    """
    parts = [p for p in _CLAUSES.split(text.lower()) if p and p.strip()]
    asking = [i for i, p in enumerate(parts) if "?" in p or _QUESTION_START.search(p)]
    # a clause that only points back ("which is better", "can they?") asks about the clause before it
    asking += [i - 1 for i in asking if i and not any(rarity(w) for w in set(words(parts[i])) - GENERIC)]
    return " ".join(parts[i] for i in sorted(set(asking))) if asking else ""


def focus_words(text: str) -> set[str]:
    """Words of the question's clause that can be what it asks about: not those saying who asks or from where."""
    clause = question_clause(text)
    found = set()
    for match in re.finditer(r"[a-z0-9][a-z0-9'’-]*", clause):
        before, after = clause[: match.start()], clause[match.end() :]
        if not _CONTEXT.search(before) and not after.lstrip().startswith("here"):
            found.add(re.sub(r"'s$", "", match.group()))
    return found


def minor_terms(asked: str, focus: set[str]) -> frozenset[str]:
    """The terms of a message that only say who asks or from where: those outside its focus words."""
    return frozenset(terms(asked)) - frozenset(terms(" ".join(focus)))


def verb_like(word: str) -> bool:
    """The word reads as a verb, adverb or adjective (filler around a question) rather than a thing asked about."""
    from wordfreq import zipf_frequency

    if re.search(r"(?:ing|ed|ly|ous|ful|ive|able|ible|est)$", word):
        return True
    bases = {word}
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        if word[:-1] in GENERIC:
            return True  # "ups" in "follow ups"
        if len(word) > 4:
            bases.add(word[:-1])  # "reckons": a verb's -s form
    forms = set()
    for base in bases:
        forms |= {base + "ed", base + base[-1] + "ed", base + "ing", base + base[-1] + "ing"}
        if base.endswith("e"):
            forms |= {base + "d", base[:-1] + "ing"}
        if base.endswith("y"):
            forms.add(base[:-1] + "ied")  # "fancy" -> "fancied"
    return max(zipf_frequency(form, "en") for form in forms) >= VERB_FORM_ZIPF


def key_weight(word: str, closest: float) -> float:
    """How much an unknown word looks like the thing asked about: rare, a noun or name, nothing similar in the KB."""
    if re.fullmatch(r"\d+(?:st|nd|rd|th|am|pm|h|k)?", word):
        return 0.3 if len(word) >= 3 and word.isdigit() else 0.0  # a code (27001, 403) or a count (800); not "6th"
    if verb_like(word):
        return 0.0
    far = min(max((SYNONYM_SIMILARITY - closest) / SYNONYM_MARGIN, 0.0), 1.0)
    return rarity(word) * far


def specific(word: str, closest: float) -> bool:
    """A missing word specific enough to decline on: a rare noun or name, no digits, nothing like it in the KB."""
    from wordfreq import zipf_frequency

    if re.search(r"\d", word) or verb_like(word) or closest >= FOCUS_SIMILAR:
        return False
    return zipf_frequency(word, "en") < FOCUS_ZIPF


@dataclass(frozen=True)
class Evidence:
    """The features of one question, in FEATURES order, with the unknown words behind them."""

    values: tuple[float, ...]
    unknown: tuple[str, ...]
    missing_asked: tuple[str, ...] = ()  # unknown words standing where the asked-about thing stands
    missing_focus: tuple[str, ...] = ()  # specific unknown words of the question's own clause

    def as_dict(self) -> dict:
        """Readable form, stored with the turn and printed by evaluations."""
        values = dict(zip(FEATURES, (round(v, 3) for v in self.values), strict=True))
        return {
            **values,
            "unanswered": round(probability(self), 3),
            "unknown": list(self.unknown),
            "missing_asked": list(self.missing_asked),
            "missing_focus": list(self.missing_focus),
        }


def evidence(
    *,
    asked: str,
    focus: set[str],
    question_text: str,
    hits: list[Hit],
    composed: Composed,
    vocabulary: Vocabulary,
    nearest: Callable[[list[str]], list[float]],
) -> Evidence:
    """Measure what the model looks at; `focus` is focus_words(asked); `nearest` gives each word's similarity to its
    closest knowledge-base word."""
    unknown = [w for w in vocabulary.unknown(question_text) if rarity(w) > 0]
    closest = nearest(unknown) if unknown else []
    keys = [key_weight(w, s) for w, s in zip(unknown, closest, strict=True)]
    objects = asked_about(asked)
    # a missing word in the place of the thing asked about ("pay in bitcoin", "ISO 27001 certified") decides alone
    asked_missing = [w for w, k in zip(unknown, keys, strict=True) if w in objects and k >= OBJECT_KEY]
    focus_missing = [w for w, s in zip(unknown, closest, strict=True) if w in focus and specific(w, s)]
    values = (
        hits[0].similarity if hits else 0.0,
        composed.best if composed.text else 0.0,
        composed.coverage,
        max(keys, default=0.0),
        sum(keys),
    )
    return Evidence(
        values=values, unknown=tuple(unknown), missing_asked=tuple(asked_missing), missing_focus=tuple(focus_missing)
    )


def probability(found: Evidence) -> float:
    """The model's probability that the documents do not answer the question."""
    z = WEIGHTS[-1] + sum(w * (v - m) / s for w, v, m, s in zip(WEIGHTS[:-1], found.values, MEANS, SCALES, strict=True))
    return 1.0 / (1.0 + math.exp(-z))


def answerable(found: Evidence, hits: list[Hit], composed: Composed) -> bool:
    """Answer unless nothing is close at all, or a word the documents lack is the thing asked about."""
    if not hits or hits[0].similarity < FLOOR or not composed.text:
        return False
    return not found.missing_asked and not found.missing_focus
