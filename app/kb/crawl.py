"""Crawling a site (from a page or a sitemap) into knowledge documents, within limits and robots.txt."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from app.kb.documents import DocumentError, KnowledgeDocument
from app.kb.loaders import document_from_bytes
from app.kb.safety import USER_AGENT, FetchError, SafeFetcher, UnsafeURLError

ROBOTS_AGENT = "JourneyGuideBot"
MAX_SITEMAPS = 20
_SKIPPED_EXTENSIONS = re.compile(
    r"\.(png|jpe?g|gif|webp|svg|ico|css|js|mjs|json|zip|gz|tgz|mp[34]|mov|avi|woff2?|ttf|eot|exe|dmg|docx?|xlsx?|pptx?)$",
    re.IGNORECASE,
)
_KINDS = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "text/plain": "text",
    "text/markdown": "markdown",
}

Progress = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class CrawlLimits:
    """How far a crawl may go: pages fetched, link depth, bytes per page, seconds in all, seconds per request."""

    max_pages: int = 200
    max_depth: int = 3
    max_bytes: int = 5_000_000
    max_seconds: float = 300.0
    timeout: float = 15.0


@dataclass
class CrawlResult:
    """Documents found, pages that failed (they keep their earlier passages), and what was left out and why."""

    source: str
    docs: list[KnowledgeDocument] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    complete: bool = True
    stopped: str = ""
    fetched: int = 0


def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, no fragment, no default port, '/' for an empty path."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def source_of(url: str) -> str:
    """The ingestion source a crawl from url syncs: re-crawling the same start URL replaces what it found before."""
    return f"web:{normalise_url(url)}"


def document_id(url: str) -> str:
    """A stable document id for a page: web/<host>/<path> (query kept, '/index' for the site root)."""
    parts = urlsplit(normalise_url(url))
    path = unquote(parts.path).strip("/") or "index"
    path = re.sub(r"[^\w.~/-]+", "-", path)
    host = parts.netloc.replace(":", "_")
    doc_id = f"web/{host}/{path}"
    if parts.query:
        doc_id += "?" + re.sub(r"[^\w=&.~-]+", "-", parts.query)
    return doc_id


def _same_site(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return a.scheme in {"http", "https"} and a.netloc == b.netloc


def _kind(content_type: str, url: str) -> str | None:
    if content_type in _KINDS:
        return _KINDS[content_type]
    if content_type in {"", "application/octet-stream"}:
        path = urlsplit(url).path.lower()
        for ext, kind in ((".pdf", "pdf"), (".html", "html"), (".htm", "html"), (".txt", "text"), (".md", "markdown")):
            if path.endswith(ext):
                return kind
    return None


def _is_sitemap(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(".xml")


def _sitemap_entries(body: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) of a sitemap or sitemap index."""
    root = ElementTree.fromstring(body)  # noqa: S314  (ElementTree does not resolve external entities)
    pages, nested = [], []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "loc" or not (element.text or "").strip():
            continue
        parent_is_sitemap = root.tag.rsplit("}", 1)[-1] == "sitemapindex"
        (nested if parent_is_sitemap else pages).append(element.text.strip())
    return pages, nested


class Crawler:
    """One crawl of one site: robots.txt read first, same-site links followed breadth-first within the limits."""

    def __init__(
        self,
        *,
        limits: CrawlLimits,
        allow_hosts: frozenset[str],
        known_stages: set[str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.limits = limits
        self.known_stages = known_stages
        self.progress = progress or (lambda *_: None)
        self.fetcher = SafeFetcher(allow_hosts=allow_hosts, max_bytes=limits.max_bytes, timeout=limits.timeout)
        self.deadline = 0.0
        self.robots: RobotFileParser | None = None

    def crawl(self, start_url: str) -> CrawlResult:
        """Crawl from a page or a sitemap; raises UnsafeURLError or FetchError when the start itself fails."""
        given = urlsplit(start_url.strip())
        if given.username or given.password:  # refused as the admin API refuses it (normalising would drop them)
            raise UnsafeURLError(f"URLs with credentials are refused: {given.hostname}")
        start = normalise_url(start_url)
        result = CrawlResult(source=source_of(start))
        self.deadline = time.monotonic() + self.limits.max_seconds
        try:
            self.robots = self._robots(start)
            seeds = self._sitemap(start, result) if _is_sitemap(start) else [start]
            self._walk(seeds, start, result)
        finally:
            self.fetcher.close()
        if not result.docs and result.complete:
            # a site that is down or answers 404 everywhere must not wipe what an earlier crawl stored
            result.complete, result.stopped = False, "no page could be read"
        return result

    def _robots(self, start: str) -> RobotFileParser:
        """The site's robots.txt: missing means everything is allowed; 401/403 means nothing is."""
        parts = urlsplit(start)
        parser = RobotFileParser()
        robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
        try:
            fetched = self.fetcher.get(robots_url, deadline=self.deadline)
        except FetchError:
            parser.parse([])
            return parser
        if fetched.status in {401, 403}:
            parser.disallow_all = True
        elif fetched.status < 300:
            parser.parse(fetched.body.decode("utf-8", "replace").splitlines())
        else:
            parser.parse([])
        return parser

    def _allowed(self, url: str) -> bool:
        return self.robots is None or self.robots.can_fetch(ROBOTS_AGENT, url)

    def _sitemap(self, start: str, result: CrawlResult) -> list[str]:
        """Page URLs of the sitemap (and the sitemaps it lists, same site only)."""
        pages: list[str] = []
        queue, seen = [start], set()
        while queue and len(seen) < MAX_SITEMAPS:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            fetched = self.fetcher.get(url, deadline=self.deadline)
            if fetched.status >= 400:
                raise FetchError(f"sitemap {url}: HTTP {fetched.status}")
            try:
                found, nested = _sitemap_entries(fetched.body)
            except ElementTree.ParseError as exc:
                raise FetchError(f"sitemap {url} is not valid XML: {exc}") from exc
            pages += [normalise_url(p) for p in found if _same_site(normalise_url(p), start)]
            queue += [normalise_url(n) for n in nested if _same_site(normalise_url(n), start)]
            result.skipped += [f"{p}: another site" for p in found if not _same_site(normalise_url(p), start)]
        return list(dict.fromkeys(pages))

    def _walk(self, seeds: list[str], start: str, result: CrawlResult) -> None:
        queue: deque[tuple[str, int]] = deque((s, 0) for s in seeds)
        seen: set[str] = set(seeds)
        done_ids: set[str] = set()
        while queue:
            if result.fetched >= self.limits.max_pages:
                result.complete, result.stopped = False, f"page limit ({self.limits.max_pages}) reached"
                return
            if time.monotonic() >= self.deadline:
                result.complete, result.stopped = False, f"time limit ({self.limits.max_seconds:g}s) reached"
                return
            url, depth = queue.popleft()
            self.progress("crawl", result.fetched, result.fetched + len(queue) + 1, url)
            if not self._allowed(url):
                result.skipped.append(f"{url}: disallowed by robots.txt")
                continue
            doc_id = document_id(url)
            result.fetched += 1
            try:  # a redirect to another site (another port included) is not even requested
                fetched = self.fetcher.get(
                    url, deadline=self.deadline, follow=lambda target: _same_site(normalise_url(target), start)
                )
            except UnsafeURLError as exc:
                result.skipped.append(f"{url}: {exc}")
                continue
            except FetchError as exc:
                result.errors.append(DocumentError(f"{doc_id}: {exc}", doc_id))
                continue
            final = normalise_url(fetched.url)
            if not _same_site(final, start):
                result.skipped.append(f"{url}: redirected to another site ({final})")
                continue
            if final != url and not self._allowed(final):
                result.skipped.append(f"{final}: disallowed by robots.txt")
                continue
            doc_id = document_id(final)
            if fetched.status in {404, 410}:
                result.skipped.append(f"{url}: HTTP {fetched.status}, gone")
                continue
            if fetched.status >= 400:
                result.errors.append(DocumentError(f"{doc_id}: HTTP {fetched.status} from {final}", doc_id))
                continue
            if doc_id in done_ids:
                continue
            kind = _kind(fetched.content_type, final)
            if kind is None:
                result.skipped.append(f"{final}: {fetched.content_type or 'unknown'} content is not read")
                continue
            try:
                doc, links = document_from_bytes(
                    doc_id, fetched.body, kind=kind, url=final, known_stages=self.known_stages
                )
            except DocumentError as exc:
                result.errors.append(exc)
                continue
            if kind == "html" and _noindex(fetched.body):
                result.skipped.append(f"{final}: marked noindex")
                continue
            done_ids.add(doc_id)
            doc.url = final
            result.docs.append(doc)
            if depth >= self.limits.max_depth:
                continue
            for href in links:
                link = normalise_url(urljoin(final, href.strip()))
                if link in seen or not _same_site(link, start) or _SKIPPED_EXTENSIONS.search(urlsplit(link).path):
                    continue
                seen.add(link)
                queue.append((link, depth + 1))
        self.progress("crawl", result.fetched, result.fetched, "")


def _noindex(body: bytes) -> bool:
    """True when the page asks not to be indexed (<meta name="robots" content="noindex">)."""
    head = body[:20000].decode("utf-8", "replace").lower()
    return bool(re.search(r"<meta[^>]+name=[\"']robots[\"'][^>]+content=[\"'][^\"']*noindex", head))


def crawl(
    url: str,
    *,
    limits: CrawlLimits,
    allow_hosts: frozenset[str],
    known_stages: set[str] | None = None,
    progress: Progress | None = None,
) -> CrawlResult:
    """Crawl a site from a page or a sitemap URL into documents."""
    crawler = Crawler(limits=limits, allow_hosts=allow_hosts, known_stages=known_stages, progress=progress)
    return crawler.crawl(url)


__all__ = ["USER_AGENT", "CrawlLimits", "CrawlResult", "crawl", "document_id", "normalise_url", "source_of"]
