"""What a visitor's question asks for: its kind (a price, yes/no, how to...), its key terms and compared sides."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9][a-z0-9'’-]*")
# Words that carry no topic: function words, question words, chat filler, and words every company's help content
# uses about itself. A question's remaining words are its terms.
GENERIC = frozenset(
    """
    a about above after again against all also am an and any anyone anything are aren't around as ask asking at be
    because been before being below between both but by can can't cannot could couldn't did didn't do does doesn't
    doing don't done down during each either else even ever every few for from further get gets getting give go goes
    going got had has hasn't have haven't having he her here hers him his how hi hello hey i i'd i'll i'm i've if in
    into is isn't it it's its itself just know let like ll lot many may me might mine more most much must my myself
    need needs no nor not now of off ok okay on once one only or other our ours out over own please pls plz re really
    same say see she should shouldn't so some someone something still such sure tell than thank thanks that that's
    the their theirs them then there there's these they they're thing things think this those though through thx to
    too u ur under until up us use used using very want wanted wants was wasn't way we we're we've well were weren't
    what what's whats when where whether which while who whom why will with won't would wouldn't yes yet you you're
    your yours yourself ve d s t m hm hmm um uh eh ah oh yeah yep nope guys guy im ive id dont doesnt cant wont isnt
    arent didnt wasnt thats theres whats hows wheres whos youre theyre lemme gonna wanna gotta kinda sorta
    anyway anyways actually basically exactly possible able option options way ways work works working
    long soon often till until later fast quickly exactly right correct true
    onto upon toward towards among amongst via whilst unto thru
    ngl tbh imo imho btw lol lmao asap fyi idk omg ty xx x pls plz thx cheers mate hiya
    """.split()
)
_CURRENCY = re.compile(r"[$€£¥]\s?\d|\b\d[\d,.]*\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b|\bfree\b|\d\s?%", re.I)
_DURATION = re.compile(
    r"\b(?:\d+|a|an|one|two|three|four|five|six|seven|ten|fourteen|thirty|24|48)\s*(?:-|to)?\s*\d*\s*"
    r"(?:business |working |calendar )?(?:seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)\b"
    r"|\bimmediately\b|\binstantly\b|\bright away\b|\bstraight away\b|\bat once\b|\bwithin\b|\buntil\b|\bend of\b",
    re.I,
)
_NUMBER = re.compile(r"\b\d[\d,.]*\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|unlimited|none)\b", re.I)
_STEPS = re.compile(
    r"\b(?:go to|click|tap|open|choose|select|sign in|turn on|switch on|enable|under settings|then)\b|, then ", re.I
)
_DECISIVE = re.compile(
    r"^(?:yes|no|not|only|yes,|no,)\b|\b(?:can(?:not|'t)?|does not|doesn't|only|never|always)\b", re.I
)
_CAUSE = re.compile(r"\b(?:because|reasons?|causes?|usually|most often|common|means|so that|due to)\b", re.I)
_CONDITION = re.compile(r"\b(?:if|when|after|once|unless|otherwise|automatically|will)\b", re.I)

# Chat shorthand and the commonest dropped apostrophes, written out before a question is read or searched.
SHORTHAND = {
    "hw": "how",
    "u": "you",
    "ur": "your",
    "r": "are",
    "y": "why",
    "wat": "what",
    "wht": "what",
    "cn": "can",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "appt": "appointment",
    "appts": "appointments",
    "acct": "account",
    "msg": "message",
    "msgs": "messages",
    "txt": "text",
    "txts": "texts",
    "mins": "minutes",
    "min": "minimum",
    "hrs": "hours",
    "ppl": "people",
    "abt": "about",
    "tmrw": "tomorrow",
    "wk": "week",
    "wks": "weeks",
    "hr": "hour",
    "yr": "year",
    "yrs": "years",
    "mo": "month",
    "pw": "password",
    "info": "information",
    "whats": "what is",
    "dont": "don't",
    "doesnt": "doesn't",
    "cant": "can't",
    "wont": "won't",
    "isnt": "isn't",
    "didnt": "didn't",
    "havent": "haven't",
    "hasnt": "hasn't",
    "im": "i'm",
    "ive": "i've",
    "max": "maximum",
    "approx": "about",
    "amex": "american express",
    "sub": "subscription",
    "hols": "holidays",
    "arvo": "afternoon",
    "w/": "with",
    "b4": "before",
    "2day": "today",
}
_SHORT_WORD = re.compile(r"(?<![\w'])(" + "|".join(re.escape(k) for k in SHORTHAND) + r")(?![\w'])", re.IGNORECASE)


def expand_shorthand(text: str) -> str:
    """Chat shorthand written out ("hw much" -> "how much", "appt" -> "appointment")."""
    return _SHORT_WORD.sub(lambda m: SHORTHAND[m.group(1).lower()], text)


KINDS = ("price", "duration", "quantity", "howto", "yesno", "happens", "why", "compare", "which", "what")


def words(text: str) -> list[str]:
    """Lower-case words (apostrophes kept inside words)."""
    return [w.strip("'’-") for w in _WORD.findall(text.lower().replace("’", "'")) if w.strip("'’-")]


@lru_cache(maxsize=20_000)
def stem(word: str) -> str:
    """A light suffix stripper, enough to match 'bookings' with 'booking' and 'cancelled' with 'cancel'."""
    w = word.lower()
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ves", "f")):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            return w[: -len(suffix)] + keep
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ation", "ing", "ed", "ly", "er"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[: -len(suffix)]
            break
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]  # cancell -> cancel, stopp -> stop
    return w.rstrip("e") if len(w) > 4 else w


def terms(text: str) -> list[str]:
    """The stems of a text's topic words, in order, without repeats."""
    return list(_terms(text))


@lru_cache(maxsize=50_000)  # the same passages' sentences come back turn after turn
def _terms(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(stem(w) for w in words(text) if w not in GENERIC and len(w) > 1))


@dataclass(frozen=True)
class Question:
    """A visitor question as the composer reads it."""

    text: str
    kind: str
    terms: tuple[str, ...]
    sides: tuple[str, ...] = ()  # the compared things of a comparison ("pro", "business")
    minor: frozenset[str] = frozenset()  # terms that only say who asks or from where ("im a tutor", "in leeds")


_COMPARE = re.compile(
    r"\b(?:vs\.?|versus|compared? (?:to|with)|difference between|better than|cheaper than)\b"
    r"|\b(?:which|better|cheaper|rather|difference)\b.*\bor\b|\bor\b.*\b(?:which|better|cheaper)\b",
    re.IGNORECASE,
)
_SIDE_SPLIT = re.compile(
    r"\s*(?:\bvs\.?|\bversus\b|\bcompared? (?:to|with)\b|\bbetter than\b|\bcheaper than\b|\band\b|\bor\b|,)\s*"
)


_NOT_A_SIDE = frozenset(
    "plan plans option options tier tiers account version difference differences better cheaper best cheapest which "
    "compare comparison price prices cost costs extra get pay".split()
)


def _sides(text: str) -> tuple[str, ...]:
    """The compared things, one word each: "pro vs business, whats the difference" -> ("pro", "business")."""
    lowered = " ".join(words(text))
    match = re.search(r"differences? between (.+)", lowered)
    body = match.group(1) if match else lowered
    heads = []
    for part in _SIDE_SPLIT.split(body):
        named = [w for w in words(part) if w not in GENERIC and w not in _NOT_A_SIDE and len(w) > 1]
        if named:
            heads.append(named[0])
    sides = tuple(dict.fromkeys(heads))
    return sides if len(sides) >= 2 else ()


def classify(text: str) -> str:
    """The kind of answer a question asks for."""
    t = " " + " ".join(words(text)) + " "
    if re.search(
        r" how (much|expensive|pricey)|\b(price|pricing|cost|costs|fee|fees|charge for|pay for|per month|"
        r"per year|cheapest|cheaper|discount)\b",
        t,
    ):
        if not re.search(r" (why|how do i|how can i|where) ", t):
            return "price"
    if re.search(
        r" how (long|soon|fast|quickly)| when (will|do|does|can|is|are)| how many (days|hours|weeks|minutes)"
        r"| what time",
        t,
    ):
        return "duration"
    if _COMPARE.search(t) and _sides(text) and not re.search(r" (how do|how can|how to) ", t):
        return "compare"
    if re.search(r" how many | how much (sms|storage|space)| limit | maximum | max | minimum ", t):
        return "quantity"
    if re.search(r" (which|what) (plan|plans|tier|tiers|version) ", t):
        return "which"
    if re.search(
        r" what (happens|if|will happen)| what about if | if i (dont|don't|do not|stop|miss|cancel|forget)", t
    ):
        return "happens"
    if re.search(r"^ why | why (is|are|was|were|do|does|did|would|cant|can't|isnt|isn't|wont|won't|has|have) ", t):
        return "why"
    if re.search(
        r" how (do|can|should|would) (i|we|you|my|our|one)| how to | steps? | set ?up | setup |"
        r" where (do|can|is|are) (i|we)| turn (on|off) | enable | connect | add | change | import ",
        t,
    ):
        return "howto"
    if re.match(r" (can|could|do|does|did|is|are|will|would|should|am|has|have|may|must) ", t) or re.search(
        r" (is there|are there|do you|does it|does lumio|can i|can we|can my|can clients) ", t
    ):
        return "yesno"
    return "what"


def read_question(text: str) -> Question:
    """Read a question: its kind, terms and (for comparisons) the compared sides."""
    kind = classify(text)
    return Question(text=text, kind=kind, terms=tuple(terms(text)), sides=_sides(text) if kind == "compare" else ())


_YEARLY = re.compile(r"\b(?:annual(?:ly)?|yearly|per year|a year|each year|every year|year up ?front)\b", re.I)
_MONTHLY = re.compile(r"\b(?:monthly|per month|a month|each month|every month)\b", re.I)


def shape(question: Question, text: str, unit_kind: str) -> float:
    """How much a unit has the shape of the answer: `fits`, and for a price, the period asked about. A price
    question that doesn't say "yearly" asks the list (monthly) price; one that does asks the annual figure."""
    found = fits(question.kind, text, unit_kind)
    if question.kind != "price" or not found:
        return found
    if _YEARLY.search(question.text):
        return found if _YEARLY.search(text) else found * PERIOD_MISMATCH
    yearly, price = _YEARLY.search(text), _CURRENCY.search(text)
    # the first figure is the annual one: "the annual price works out at $9.60 per month", "$115.20 per year"
    annual_first = yearly and (yearly.start() < price.start() or not _MONTHLY.search(text))
    return found * PERIOD_MISMATCH if annual_first else found


def fits(kind: str, text: str, unit_kind: str) -> float:
    """How much a unit's text has the shape of the asked-for kind of answer (0 to 1)."""
    if kind == "price":
        return 1.0 if _CURRENCY.search(text) else 0.0
    if kind == "duration":
        return 1.0 if _DURATION.search(text) else 0.0
    if kind == "quantity":
        return 1.0 if _NUMBER.search(text) else 0.0
    if kind == "howto":
        if unit_kind == "list" and re.search(r"^\s*1[.)]", text, re.M):
            return 1.0
        return 0.7 if _STEPS.search(text) else 0.0
    if kind == "yesno":
        return 1.0 if _DECISIVE.search(text) else 0.0
    if kind == "why":
        return 1.0 if _CAUSE.search(text) else 0.0
    if kind == "happens":
        return 1.0 if _CONDITION.search(text) else 0.0
    if kind in {"which", "compare"}:
        return 1.0 if unit_kind in {"row", "table"} else 0.5 if re.search(r"\b(plan|plans)\b", text, re.I) else 0.0
    return 0.0


PERIOD_MISMATCH = 0.5  # a price for the other billing period than the one asked about


_COUNT = re.compile(
    r"\b(\d{1,3})\s*(?:of us|people|persons?|staff|stylists?|therapists?|practitioners?|instructors?|trainers?|"
    r"tutors?|teachers?|coaches?|barbers?|employees?|users?|seats?|members?|team members?|calendars?|"
    r"staff calendars?|chairs?|physios?|doctors?|dentists?|consultants?|locations?)\b"
    r"|\bfor (\d{1,3})\b|\bwe(?:'re| are) (\d{1,3})\b",
    re.IGNORECASE,
)
_UNIT_PRICE = re.compile(
    r"([$€£])\s?(\d+(?:\.\d{1,2})?) (?:per|a|each) (staff calendar|staff member|user|seat|person|member|"
    r"licen[cs]e|calendar|location)\b(?: (?:per|a) (month|year))?",
    re.IGNORECASE,
)


def head_count(text: str) -> int | None:
    """The number of people (staff, users, seats...) a question is about, if it says."""
    match = _COUNT.search(text)
    if not match:
        return None
    count = int(next(g for g in match.groups() if g))
    return count if 1 < count <= 500 else None


def total_for(count: int, reply: str) -> str:
    """ "For 4, that comes to 4 x $12 = $48 per month." from the first per-person price in the reply, if any."""
    match = _UNIT_PRICE.search(reply)
    if not match:
        return ""
    symbol, price, unit, period = match.groups()
    total = count * float(price)
    amount = f"{total:,.2f}".removesuffix(".00")
    per = f" per {period}" if period else ""
    return f"For {count} {unit}s, that comes to {count} x {symbol}{price} = {symbol}{amount}{per}."
