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
    """A script without its comment lines, end-of-line comments and indentation: the same code, fewer bytes.

    Only for our own scripts, written so that no string or template literal holds a line starting with `//` or
    indentation that matters, and no end-of-line comment follows `;`, `{`, `}`, `,` or `)` inside a string.
    """
    text = source.decode("utf-8")
    text = re.sub(r"(?ms)^[ \t]*/\*(?!!).*?\*/[ \t]*\n", "", text)  # /* ... */ blocks (not the /*! licence)
    text = re.sub(r"(?m)^[ \t]*//[^\n]*\n", "", text)
    text = re.sub(r"(?m)([;{},)]) +// [^\n]*$", r"\1", text)
    return re.sub(r"(?m)^[ \t]+", "", text).encode("utf-8")


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
