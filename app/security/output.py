"""Nothing from the LLM or documents is trusted: links are limited, images dropped, leaks and injections caught."""

from __future__ import annotations

import re
from urllib.parse import urlparse

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_BARE_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
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


def sanitize_reply(text: str, hosts: set[str]) -> str:
    """Drop images and HTML tags; keep the text of links to hosts outside the allowlist, without the link."""
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _HTML_TAG.sub("", text)
    text = _LINK.sub(lambda m: m.group(0) if allowed_link(m.group(2), hosts) else m.group(1), text)

    def bare(match: re.Match) -> str:
        url = match.group(0)
        candidate = url if url.lower().startswith("http") else "https://" + url
        return url if allowed_link(candidate.rstrip(".,;:!?"), hosts) else "[link removed]"

    return _BARE_URL.sub(bare, text)


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
