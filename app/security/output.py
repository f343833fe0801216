"""Nothing from the LLM or documents is trusted: links are limited, images dropped, leaks and injections caught."""

from __future__ import annotations

import html
import re
from urllib.parse import urlparse

_URL = r"((?:[^()\s]|\([^()\s]*\))+)"  # one level of parentheses inside: javascript:f(1) is one URL
_IMAGE = re.compile(r"!\[([^\]]*)\]\(" + _URL + r"?(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(" + _URL + r"(?:\s+\"[^\"]*\")?\)")
_BARE_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_HTML_START = re.compile(r"<(?=[a-zA-Z/!?])")  # what is left that could open raw HTML (<div, <!--, <?)
# An inline code span on one line, as CommonMark pairs backtick runs: not escaped, not a link destination, no `|` (a
# table row splits its cells before code spans are read).
_CODE_SPAN = re.compile(r"(?<![`\\(])(`++)([^\n|]+?)(?<!`)\1(?!`)")
_HTML_CODE = re.compile(r"<code>([^\n]*?)</code>", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,})[^`\n]*$")
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.!?\n]{0,40}\b(instructions?|prompts?|rules|guidelines)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bnew instructions\b|\bact as\b[^.!?\n]{0,30}\b(assistant|ai|bot)\b",
    re.IGNORECASE,
)


def allowed_link(url: str, hosts: set[str]) -> bool:
    """http(s) to an allowed host (or a subdomain of one), or mailto."""
    parsed = urlparse(url.strip())
    if parsed.scheme == "mailto":
        return True
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return False
    host = parsed.hostname.lower()
    return any(host == h or host.endswith("." + h) for h in hosts)


def split_code(text: str) -> list[tuple[bool, str]]:
    """The text as (is fenced code, part) pieces, fences as CommonMark reads them (an unclosed one runs to the end)."""
    parts: list[tuple[bool, str]] = []
    fence = ""
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line.rstrip("\r\n"))
        if not fence and m:
            parts.append((False, "".join(current)))
            current, fence = [], m.group(1)
        current.append(line)
        if fence and len(current) > 1 and re.fullmatch(r" {0,3}" + fence + r"`*[ \t]*", line.rstrip("\r\n")):
            parts.append((True, "".join(current)))
            current, fence = [], ""
    parts.append((bool(fence), "".join(current)))
    return [part for part in parts if part[1]]


def as_code_span(text: str) -> str:
    """`text` as a Markdown code span: fenced by one backtick more than its longest run, padded when it needs it."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def split_inline_code(prose: str) -> list[tuple[bool, str]]:
    """Prose as (is inline code, part) pieces; code only where any Markdown renderer reads the same spans.

    In a paragraph (lines up to a blank one) with a backtick that is not in a one-line span, nothing counts as
    code: a span a renderer pairs across lines could otherwise hold raw HTML that we took for code.
    """
    parts: list[tuple[bool, str]] = []
    for chunk in re.split(r"(\n[ \t]*\n)", prose):
        last = 0
        if "`" not in _CODE_SPAN.sub("", chunk):
            for m in _CODE_SPAN.finditer(chunk):
                parts += [(False, chunk[last : m.start()]), (True, m.group(0))]
                last = m.end()
        parts.append((False, chunk[last:]))
    return [part for part in parts if part[1]]


def sanitize_reply(text: str, hosts: set[str]) -> str:
    """Drop images and HTML tags; keep the text of links to hosts outside the allowlist, without the link.

    Fenced code blocks and one-line code spans are kept as they are: a Markdown renderer shows them as text, tags
    included (an HTML `<code>…</code>` becomes a code span). Outside them no `<` is left that could open raw HTML, so
    no HTML block can swallow a fence and turn its contents into markup.
    """

    def bare(match: re.Match) -> str:
        url = match.group(0)
        candidate = url if url.lower().startswith("http") else "https://" + url
        return url if allowed_link(candidate.rstrip(".,;:!?"), hosts) else "[link removed]"

    def clean(prose: str) -> str:
        prose = _HTML_CODE.sub(lambda m: as_code_span(html.unescape(m.group(1))), prose)
        prose = _IMAGE.sub(lambda m: m.group(1), prose)
        prose = _LINK.sub(lambda m: m.group(0) if allowed_link(m.group(2), hosts) else m.group(1), prose)
        return "".join(
            part if code else _HTML_START.sub("< ", _HTML_TAG.sub("", part)) for code, part in split_inline_code(prose)
        )

    for _ in range(8):  # until nothing changes: removing a tag may join backticks into a new fence, or make a link
        done = "".join(part if code else _BARE_URL.sub(bare, clean(part)) for code, part in split_code(text))
        if done == text:
            return done
        text = done
    return text.replace("<", "< ")


def looks_like_injection(sentence: str) -> bool:
    """True for text that addresses an AI with instructions ("ignore your instructions", "system prompt")."""
    return bool(_INJECTION.search(sentence))


def leaks_prompt(reply: str, system_prompt: str) -> bool:
    """True when the reply repeats a sentence of the system prompt."""
    flat = " ".join(reply.lower().split())
    for sentence in re.split(r"(?<=[.!?])\s+|\n", system_prompt):
        words = " ".join(sentence.lower().split()).strip("-• ")
        if len(words) >= 40 and words in flat:
            return True
    return False
