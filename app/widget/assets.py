"""Static files served from memory with a content ETag and a gzip copy, reloaded when the file changes."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int]
    body: bytes
    gzipped: bytes
    etag: str


def lean_script(source: bytes) -> bytes:
    """A script without its comments and the spaces and line breaks code does not need: the same code, fewer bytes.

    Only for our own scripts, written so that no string or template literal holds a line starting with `//` or
    indentation that matters, no end-of-line comment follows `;`, `{`, `}`, `,` or `)` inside a string, every
    statement ends with `;` (as the formatter writes it) and a `/` after `)`, `]`, `}` or a name is a division.
    tests/test_widget_api.py checks that the served widget parses to the same syntax tree as the file (acorn).
    """
    text = source.decode("utf-8")
    text = re.sub(r"(?ms)^[ \t]*/\*(?!!).*?\*/[ \t]*\n", "", text)  # /* ... */ blocks (not the /*! licence)
    text = re.sub(r"(?m)^[ \t]*//[^\n]*\n", "", text)
    text = re.sub(r"(?m)([;{},)]) +// [^\n]*$", r"\1", text)
    return _squeeze(re.sub(r"(?m)^[ \t]+", "", text)).encode("utf-8")


_WORD = re.compile(r"[\w$\\]")
_REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^")  # a `/` after one of these (or a keyword below) starts a regex literal
_REGEX_KEYWORDS = ("return", "typeof", "case", "do", "else", "in", "of", "void", "yield", "await")
_JOIN_AFTER = "{,;([=:?&|+"  # a line break after one of these, or before one of the next, is not needed
_JOIN_BEFORE = ")]}.,:?&|="


def _skip_string(text: str, i: int) -> int:
    j = i + 1
    while text[j] != text[i]:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _skip_template(text: str, i: int, stack: list[int]) -> int:
    """From a backtick or the `}` closing a `${`, to the next backtick or `${` (pushed on stack)."""
    j = i + 1
    while True:
        if text[j] == "\\":
            j += 2
        elif text[j] == "`":
            return j + 1
        elif text.startswith("${", j):
            stack.append(0)
            return j + 2
        else:
            j += 1


def _skip_regex(text: str, i: int) -> int:
    j, in_class = i + 1, False
    while text[j] != "/" or in_class:
        if text[j] == "\\":
            j += 1
        elif text[j] in "[]":
            in_class = text[j] == "["
        j += 1
    j += 1
    while j < len(text) and text[j].isalpha():
        j += 1
    return j


def _squeeze(text: str) -> str:
    """Whitespace between tokens dropped where no token needs it; strings, templates and regexes kept as they are."""
    out: list[str] = []
    stack: list[int] = []  # brace depth inside each open `${ ... }` of a template literal
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = _skip_string(text, i)
        elif c == "`" or (c == "}" and stack and stack[-1] == 0):
            if c == "}":
                stack.pop()
            j = _skip_template(text, i, stack)
        elif c == "/" and text[i + 1 : i + 2] not in ("/", "*"):
            before = "".join(out).rstrip()[-8:] if out else ""
            if before and before[-1] not in _REGEX_AFTER and not before.endswith(_REGEX_KEYWORDS):
                out.append(c)
                i += 1
                continue
            j = _skip_regex(text, i)
        elif c in " \t\n":
            j = i
            while j < n and text[j] in " \t\n":
                j += 1
            before, after = (out[-1][-1:] if out else ""), text[j : j + 1]
            if "\n" in text[i:j] and before not in _JOIN_AFTER and after not in _JOIN_BEFORE:
                out.append("\n")  # kept: automatic semicolon insertion may rely on it
            elif (_WORD.match(before) and _WORD.match(after)) or before + after in ("++", "--", "+-", "-+"):
                out.append(" ")
            i = j
            continue
        else:
            if stack and c in "{}":
                stack[-1] += 1 if c == "{" else -1
            out.append(c)
            i += 1
            continue
        out.append(text[i:j])
        i = j
    return "".join(out)


class StaticAsset:
    """One file with its media type and Cache-Control, optionally transformed once per change (lean_script)."""

    def __init__(
        self, path: Path, media_type: str, cache_control: str, transform: Callable[[bytes], bytes] | None = None
    ) -> None:
        self.path = path
        self.media_type = media_type
        self.cache_control = cache_control
        self.transform = transform  # what is served, made from the file's bytes (None: the bytes as they are)
        self._loaded: _Loaded | None = None

    def load(self) -> _Loaded:
        """The file's bytes, gzip copy and ETag (re-read only when its size or mtime changed)."""
        info = self.path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
        if self._loaded is None or self._loaded.stamp != stamp:
            body = self.path.read_bytes()
            if self.transform is not None:
                body = self.transform(body)
            etag = hashlib.sha256(body).hexdigest()[:20]
            self._loaded = _Loaded(stamp, body, gzip.compress(body, compresslevel=9, mtime=0), etag)
        return self._loaded

    def response(self, request: Request) -> Response:
        """200 with the (gzipped if accepted) bytes, or 304 when the client's ETag matches."""
        loaded = self.load()
        use_gzip = "gzip" in request.headers.get("accept-encoding", "").lower()
        etag = f'"{loaded.etag}-gz"' if use_gzip else f'"{loaded.etag}"'
        headers = {"ETag": etag, "Cache-Control": self.cache_control, "Vary": "Accept-Encoding"}
        wanted = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
        if {f'"{loaded.etag}"', f'"{loaded.etag}-gz"', "*"} & wanted:
            return Response(status_code=304, headers=headers)
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(loaded.gzipped if use_gzip else loaded.body, media_type=self.media_type, headers=headers)
