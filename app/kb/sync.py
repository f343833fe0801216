"""One ingestion run: load a source (a folder or a site), give untagged documents stages, sync the collection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings
from app.kb.crawl import CrawlLimits, crawl
from app.kb.documents import DocumentError, KnowledgeDocument, folder_source, load_folder
from app.kb.safety import parse_allow_hosts
from app.kb.store import IngestReport, KnowledgeBase

# phase ("crawl", "load" or "embed"), done, total, the item at hand
Progress = Callable[[str, int, int, str], None]
SECOND_STAGE_SHARE = 0.5  # a second stage is kept when its probability is at least half the first one's
MIN_STAGE_PROBABILITY = 0.2


def is_url(target: str) -> bool:
    """True when the ingestion target is a web address rather than a folder."""
    return target.lower().startswith(("http://", "https://"))


def crawl_limits(settings: Settings) -> CrawlLimits:
    """The crawl limits configured in the settings."""
    return CrawlLimits(
        max_pages=settings.crawl_max_pages,
        max_depth=settings.crawl_max_depth,
        max_bytes=settings.ingest_max_bytes,
        max_seconds=settings.crawl_max_seconds,
        timeout=settings.crawl_timeout,
    )


@dataclass
class Loaded:
    """A source's documents, the ones that failed, what was left out, and whether the source was read in full."""

    source: str
    docs: list[KnowledgeDocument]
    errors: list[DocumentError]
    skipped: list[str] = field(default_factory=list)
    complete: bool = True
    note: str = ""


def load_source(
    target: str, *, settings: Settings, known_stages: set[str] | None, progress: Progress | None = None
) -> Loaded:
    """Read a folder or crawl a URL; raises FileNotFoundError, UnsafeURLError or FetchError when it cannot start."""
    if is_url(target):
        result = crawl(
            target,
            limits=crawl_limits(settings),
            allow_hosts=parse_allow_hosts(settings.crawl_allow_hosts),
            known_stages=known_stages,
            progress=progress,
        )
        for doc in result.docs:
            doc.source = result.source
        return Loaded(result.source, result.docs, result.errors, result.skipped, result.complete, result.stopped)
    if progress is not None:
        progress("load", 0, 0, target)
    docs, errors = load_folder(Path(target), known_stages, max_bytes=settings.ingest_max_bytes)
    source = folder_source(Path(target))
    for doc in docs:
        doc.source = source
    return Loaded(source, docs, errors)


class StageAssigner:
    """Gives a document without a `stages` tag the stages the stage model reads in its title and opening passage."""

    def __init__(self, detector_factory: Callable[[], object]) -> None:
        self._factory = detector_factory
        self._detector = None

    def __call__(self, doc: KnowledgeDocument) -> None:
        """Set doc.stages, stage_confidence and stages_assigned when the document has no stages of its own."""
        if doc.stages:
            return
        from app.stages.detector import StageSignals

        if self._detector is None:
            self._detector = self._factory()
        passages = doc.passages()
        opening = passages[0].text if passages else ""
        result = self._detector.detect(
            StageSignals(message=f"{doc.title}\n{opening}"[:2000], page_url=doc.url, page_title=doc.title)
        )
        ranked = sorted(result.scores.items(), key=lambda kv: kv[1], reverse=True)
        top = ranked[0][1] if ranked else 0.0
        stages = [result.name] + [
            name
            for name, p in ranked
            if name != result.name and p >= max(MIN_STAGE_PROBABILITY, top * SECOND_STAGE_SHARE)
        ][:1]
        doc.stages = tuple(stages)
        doc.stage_confidence = round(float(result.confidence), 3)
        doc.stages_assigned = True


def run(
    target: str,
    *,
    kb: KnowledgeBase,
    settings: Settings,
    known_stages: set[str] | None,
    detector_factory: Callable[[], object],
    dry_run: bool = False,
    progress: Progress | None = None,
) -> tuple[Loaded, IngestReport]:
    """Load the target and make its part of the knowledge base match it."""
    loaded = load_source(target, settings=settings, known_stages=known_stages, progress=progress)
    report = kb.ingest(
        loaded.docs,
        errors=loaded.errors,
        source=loaded.source,
        remove_missing=loaded.complete,
        adopt_legacy=not is_url(target),
        dry_run=dry_run,
        before_embedding=StageAssigner(detector_factory),
        progress=(lambda done, total, item: progress("embed", done, total, item)) if progress else None,
    )
    return loaded, report
