"""The knowledge base in Chroma: idempotent ingestion and stage-aware retrieval."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlparse

import httpx
import numpy as np

from app.config import Settings
from app.kb.documents import LEGACY_FOLDER_SOURCE, DocumentError, KnowledgeDocument
from app.kb.lexical import BM25Index
from app.kb.vocabulary import Vocabulary

CATALOG_TTL_SECONDS = 30.0  # the catalog is also reloaded as soon as the collection's version changes
# Hybrid retrieval: score = cosine similarity + LEXICAL_WEIGHT * BM25 score / best BM25 score of the query.
# 0.15 was chosen on the demo documents' own front-matter questions, not on evals/retrieval_dev.jsonl.
LEXICAL_WEIGHT = 0.15
# how often a process looks whether another one changed the collection (one small Chroma call): searches run on
# its in-memory copy, so another worker's ingestion is searched here within this time
LEXICAL_CHECK_SECONDS = 1.0
# Up to this many passages a query is answered by an exact scan of the in-memory copy the BM25 index already keeps
# (0.02 ms for the demo's few hundred passages, ~8 ms at 100,000 on this machine); larger ones use Chroma's
# HNSW query. Either way Chroma is where passages live: the copy is reloaded whenever the collection's version changes.
MEMORY_SEARCH_MAX = 100_000
# The composer's way of splitting passages into units (app/answer/composer.py split_units): documents whose stored
# unit vectors are of another version get them again at the next ingestion (their passages are not embedded again).
UNITS_VERSION = 2


log = logging.getLogger(__name__)
T = TypeVar("T")

CHROMA_CONNECT_SECONDS = 5.0  # a Chroma server that does not accept the connection by then is down
CHROMA_REQUEST_SECONDS = 60.0  # longest wait for one answer of the Chroma server (the client's default: forever)


class KnowledgeUnavailable(RuntimeError):
    """The Chroma server (JOURNEY_CHROMA_URL) cannot be reached, or the URL is malformed: no knowledge base."""


def check_chroma_server(chroma_url: str) -> None:
    """Raise KnowledgeUnavailable, with what to do, unless a Chroma server answers its heartbeat at chroma_url."""
    url = urlparse(chroma_url)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise KnowledgeUnavailable(f"JOURNEY_CHROMA_URL must look like http://host:8000, got {chroma_url!r}")
    heartbeat = f"{chroma_url.rstrip('/')}/api/v2/heartbeat"
    try:
        response = httpx.get(heartbeat, timeout=CHROMA_CONNECT_SECONDS, trust_env=False)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise KnowledgeUnavailable(
            f"cannot reach the Chroma server at {chroma_url} ({reason}): start it (chroma run --path DIR "
            "--host HOST --port PORT) or fix JOURNEY_CHROMA_URL"
        ) from exc
    if response.status_code != 200 or "heartbeat" not in response.text:
        raise KnowledgeUnavailable(
            f"{chroma_url} does not look like a Chroma server (GET /api/v2/heartbeat answered "
            f"{response.status_code}): check JOURNEY_CHROMA_URL"
        )


def make_chroma_client(settings: Settings, *, fresh: bool = False):
    """An embedded PersistentClient under the data dir, or an HttpClient when JOURNEY_CHROMA_URL is set.

    fresh: a new embedded client that reads the files again (Chroma shares one per path in a process, with caches
    that another process's writes, `journey ingest` beside `journey serve`, leave stale).
    """
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        # every Chroma call is an HTTP request: keep them out of the logs (httpx logs each one at INFO)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        check_chroma_server(settings.chroma_url)  # a clear error now rather than the client's traceback or hang
        url = urlparse(settings.chroma_url)
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except (ValueError, httpx.TransportError) as exc:  # the server went away between the heartbeat and now
            raise KnowledgeUnavailable(f"cannot reach the Chroma server at {settings.chroma_url}: {exc}") from exc
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):  # the client waits forever by default; a stalled server must not
            session.timeout = httpx.Timeout(CHROMA_REQUEST_SECONDS, connect=CHROMA_CONNECT_SECONDS)
        return _Guarded(client, settings.chroma_url)
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    if fresh:  # the old client stays usable by whoever holds it, and is freed with its last reference
        SharedSystemClient.clear_system_cache()
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


_RETURNS_COLLECTION = {"get_collection", "get_or_create_collection", "create_collection"}


class _Guarded:
    """A Chroma client or collection whose calls raise KnowledgeUnavailable when the server cannot be reached."""

    def __init__(self, inner, where: str) -> None:
        self._inner = inner
        self._where = where

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                result = attr(*args, **kwargs)
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                raise KnowledgeUnavailable(f"the Chroma server at {self._where} is unreachable ({reason})") from exc
            return _Guarded(result, self._where) if name in _RETURNS_COLLECTION else result

        return call


def collection_name(prefix: str, embedder_name: str) -> str:
    """A valid Chroma collection name (3-512 chars) that differs per embedding model."""
    name = re.sub(r"[^a-zA-Z0-9._-]+", "-", f"{prefix}-{embedder_name}").strip("-._")
    return name[:512].ljust(3, "x")


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its similarity (cosine) and the score after the stage preference."""

    id: str
    doc_id: str
    title: str
    section: str
    url: str
    stages: tuple[str, ...]
    text: str
    similarity: float
    score: float


def _as_hit(pid: str, doc_id: str, title: str, section: str, url: str, text: str) -> Hit:
    return Hit(pid, doc_id, title, section, url, (), text, 0.0, 0.0)


def by_document(hits: list[Hit]) -> list[list[Hit]]:
    """Hits grouped per document, groups in order of their best hit, best hit first in each group."""
    groups: dict[str, list[Hit]] = {}
    for hit in hits:
        groups.setdefault(hit.doc_id, []).append(hit)
    return list(groups.values())


@dataclass
class IngestReport:
    """What an ingestion changed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    dry_run: bool = False
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        line = (
            f"added {len(self.added)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}, "
            f"removed {len(self.removed)}, errors {len(self.errors)}; embedded {self.chunks_embedded} passages"
        )
        return f"dry run, nothing written: would have {line}" if self.dry_run else line

    def as_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": len(self.unchanged),
            "removed": self.removed,
            "kept": self.kept,
            "errors": self.errors,
            "passages_embedded": self.chunks_embedded,
            "dry_run": self.dry_run,
        }


IngestProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CatalogEntry:
    """A document as the suggestion picker sees it."""

    doc_id: str
    title: str
    url: str
    stages: tuple[str, ...]
    questions: tuple[str, ...]


def _normalised(embeddings, rows: int) -> np.ndarray:
    """Stored embeddings as a (rows, dims) float32 array of unit vectors."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = np.asarray(embeddings, dtype=np.float32).reshape(rows, -1)
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def _split(value: str | None, sep: str = ",") -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(sep) if v)


@dataclass
class LexicalIndex:
    """An in-memory copy of the collection for searching it: BM25 over every passage, their texts and vectors."""

    version: str | None
    bm25: BM25Index
    rows: dict[str, int]  # passage id -> its row in bm25.ids, vectors, documents and metadatas
    vectors: np.ndarray  # L2-normalised rows, so a dot product with a normalised query is the cosine
    documents: list[str]
    metadatas: list[dict]
    units: dict[str, np.ndarray] = field(default_factory=dict)  # the composer's unit vectors (probe text -> vector)
    vocabulary: Vocabulary | None = None  # built on first use: term frequencies for the composer and the decline
    by_doc: dict[str, list[int]] | None = None  # built on first use: each document's rows in chunk order


class KnowledgeBase:
    """Passages of the company's documents in one Chroma collection."""

    def __init__(
        self,
        *,
        client,
        embeddings,
        prefix: str,
        memory_search_max: int = MEMORY_SEARCH_MAX,
        reopen: Callable[[], object] | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.memory_search_max = memory_search_max
        self.name = collection_name(prefix, embeddings.name)
        self._reopen_client = reopen  # makes a fresh client (see _read)
        self._client_lock = threading.Lock()
        self._open(client)
        self.stale = False  # the last reload failed: searches run on the copy read before
        self._catalog: dict[str, CatalogEntry] = {}
        self._catalog_at = 0.0
        self._catalog_version: str | None = None
        self._lock = threading.Lock()
        self._lexical: LexicalIndex | None = None
        self._lexical_checked = 0.0
        self._lexical_lock = threading.Lock()

    def _open(self, client) -> None:
        """Use this Chroma client: its passage collection and the composer's unit collection."""
        collection = client.get_or_create_collection(
            name=self.name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": self.embeddings.name},
            embedding_function=None,
        )
        # The offline composer scores each sentence, list and table of the passages it answers from; their vectors are
        # computed at ingestion and kept here (one row per unit, by document), so a turn embeds only the question.
        units = client.get_or_create_collection(
            name=f"{self.name}-units",
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": self.embeddings.name},
            embedding_function=None,
        )
        self._client, self._collection, self._units = client, collection, units

    def _reopen(self) -> None:
        """Read through a fresh Chroma client (the collection changed, maybe in another process)."""
        if self._reopen_client is not None:
            with self._client_lock:
                self._open(self._reopen_client())

    def _read(self, read: Callable[[], T]) -> T:
        """A Chroma read; when it fails, reopen the client and try once more, then raise KnowledgeUnavailable.

        An embedded client caches the collection's files: after `journey ingest` rewrote them in another process its
        reads fail ("Error finding id") until it is opened again.
        """
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 - Chroma raises many kinds; any failed read gets one retry
            log.warning("knowledge base read failed (%s: %s); reopening the Chroma client", type(exc).__name__, exc)
        try:
            self._reopen()
            return read()
        except KnowledgeUnavailable:
            raise
        except Exception as exc:
            raise KnowledgeUnavailable(f"the knowledge base cannot be read: {type(exc).__name__}: {exc}") from exc

    def count(self) -> int:
        """Number of stored passages."""
        return self._read(lambda: self._collection.count())

    def check(self) -> dict:
        """Read the knowledge base as a turn would (KnowledgeUnavailable if it cannot): passages, and whether the copy
        searches run on is older than the collection (a reload failed)."""
        self._lexical_index()
        self._read(lambda: self._collection.get(limit=1, include=["embeddings"]))
        return {"passages": self.count(), "stale": self.stale}

    def _stored(self) -> dict[str, tuple[str, str]]:
        """doc_id -> (content hash, source) of what is stored now (passages from before sources were folders)."""
        got = self._collection.get(include=["metadatas"])
        return {m["doc_id"]: (m["doc_hash"], m.get("source") or LEGACY_FOLDER_SOURCE) for m in got["metadatas"] or []}

    def _adopt_legacy(self, stored: dict[str, tuple[str, str]], source: str, wanted: set[str], dry_run: bool) -> None:
        """Give this folder the documents stored when every folder was the one source `folder`, if they are its own.

        Then every folder run replaced all of them, so they are one folder's documents: this one when it holds at
        least half of them (it syncs them from now on, vanished ones included); otherwise they stay as they are.
        """
        legacy = {d for d, (_, src) in stored.items() if src == LEGACY_FOLDER_SOURCE}
        if not legacy or source == LEGACY_FOLDER_SOURCE or 2 * len(legacy & wanted) < len(legacy):
            return
        if not dry_run:
            got = self._collection.get(where={"doc_id": {"$in": sorted(legacy)}}, include=["metadatas"])
            metadatas = [{**m, "source": source} for m in got["metadatas"]]
            self._collection.update(ids=got["ids"], metadatas=metadatas)
            self._changed()
        for doc_id in legacy:
            stored[doc_id] = (stored[doc_id][0], source)

    def ingest(
        self,
        docs: list[KnowledgeDocument],
        *,
        errors: list[DocumentError] | None = None,
        source: str = LEGACY_FOLDER_SOURCE,
        remove_missing: bool = True,
        adopt_legacy: bool = False,
        dry_run: bool = False,
        before_embedding: Callable[[KnowledgeDocument], None] | None = None,
        progress: IngestProgress | None = None,
    ) -> IngestReport:
        """Make the source's part of the collection match docs: replace changed documents, drop vanished ones.

        Unchanged documents (same content hash) are skipped; documents of other sources are left alone. A document
        that failed to load keeps what was stored for it before (a typo loses nothing), and so does every document
        when remove_missing is false (a crawl cut short by its limits). before_embedding sees each document about to
        be (re)embedded, e.g. to give it stages; dry_run reports what would change and writes nothing. A document
        whose id another source already stores is reported as an error and left to that source. adopt_legacy: a
        folder takes over the documents stored before sources were folders (see _adopt_legacy).
        """
        report = IngestReport(errors=[str(e) for e in errors or []], dry_run=dry_run)
        stored = self._stored()
        wanted = {d.id for d in docs} | {e.doc_id for e in errors or []}
        if adopt_legacy:
            self._adopt_legacy(stored, source, wanted, dry_run)
        for number, doc in enumerate(docs, start=1):
            if progress is not None:
                progress(number - 1, len(docs), doc.id)
            if stored.get(doc.id) == (doc.content_hash, source):
                report.unchanged.append(doc.id)
                continue
            if doc.id in stored and stored[doc.id][1] != source:
                report.errors.append(
                    f"{doc.id}: a document with this id is already stored from {stored[doc.id][1]}; left to it "
                    "(rename the file, or remove the document from that source)"
                )
                continue
            (report.updated if doc.id in stored else report.added).append(doc.id)
            if dry_run:
                continue
            if before_embedding is not None:
                before_embedding(doc)
            passages = doc.passages()
            vectors = self.embeddings.embed_documents([p.embedding_text() for p in passages])
            self._collection.delete(where={"doc_id": doc.id})
            self._collection.add(
                ids=[p.id for p in passages],
                embeddings=vectors,
                documents=[p.text for p in passages],
                metadatas=[
                    {
                        "doc_id": doc.id,
                        "doc_hash": doc.content_hash,
                        "title": p.title,
                        "section": p.section,
                        "url": p.url,
                        "doc_url": doc.url,
                        "stages": ",".join(p.stages),
                        "questions": "\n".join(doc.questions),
                        "chunk": i,
                        "source": source,
                        "stages_assigned": doc.stages_assigned,
                        **({"stage_confidence": doc.stage_confidence} if doc.stage_confidence is not None else {}),
                    }
                    for i, p in enumerate(passages)
                ],
            )
            report.chunks_embedded += len(passages)
            self._store_units(doc.id, [_as_hit(p.id, p.doc_id, p.title, p.section, p.url, p.text) for p in passages])
        if progress is not None:
            progress(len(docs), len(docs), "")
        changed = bool(report.added or report.updated)
        for doc_id in sorted(d for d, (_, src) in stored.items() if src == source and d not in wanted):
            if not remove_missing:
                report.kept.append(doc_id)
                continue
            if not dry_run:
                self._collection.delete(where={"doc_id": doc_id})
                self._units.delete(where={"doc_id": doc_id})
            report.removed.append(doc_id)
        kept = {d for d in stored if d not in report.updated and d not in report.removed}  # their passages as before
        if not dry_run and self._backfill_units(kept):  # documents stored before their units were
            changed = True
        if not dry_run and (changed or report.removed):
            self._changed()
        self._catalog_at = 0.0
        return report

    def _changed(self) -> None:
        """Mark the collection as changed so every process rebuilds its lexical index."""
        version = uuid.uuid4().hex
        self._collection.modify(metadata={"embedding_model": self.embeddings.name, "version": version})
        with self._lexical_lock:
            self._lexical = None

    def _store_units(self, doc_id: str, passages: list[Hit]) -> int:
        """Replace the document's unit vectors (what the offline composer compares the question with)."""
        from app.answer.composer import split_units  # the composer reads Hits from this module

        probes = list(dict.fromkeys(unit.probe for unit in split_units(passages)))
        self._units.delete(where={"doc_id": doc_id})
        if probes:
            self._units.add(
                ids=[f"{doc_id}#{i}" for i in range(len(probes))],
                embeddings=self.embeddings.embed_documents(probes),
                documents=probes,
                metadatas=[{"doc_id": doc_id, "units": UNITS_VERSION} for _ in probes],
            )
        return len(probes)

    def _backfill_units(self, doc_ids: set[str]) -> bool:
        """Compute the unit vectors of stored documents that have none of this UNITS_VERSION (passages are kept)."""
        metadatas = self._units.get(include=["metadatas"])["metadatas"] or []
        have = {m["doc_id"] for m in metadatas if m.get("units") == UNITS_VERSION}
        missing = sorted(doc_ids - have)
        if not missing:
            return False
        got = self._collection.get(where={"doc_id": {"$in": missing}}, include=["documents", "metadatas"])
        passages: dict[str, list[tuple[int, Hit]]] = {}
        for pid, text, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
            hit = _as_hit(pid, m["doc_id"], m["title"], m["section"], m["url"], text)
            passages.setdefault(m["doc_id"], []).append((m.get("chunk", 0), hit))
        stored = [
            self._store_units(doc_id, [hit for _, hit in sorted(chunks, key=lambda c: c[0])])
            for doc_id, chunks in passages.items()
        ]
        return any(stored)

    def unit_vectors(self) -> dict[str, np.ndarray]:
        """Vectors of the passages' units computed at ingestion (probe text -> vector); reloaded with the index."""
        return self._lexical_index().units

    def _lexical_index(self) -> LexicalIndex:
        """The in-memory copy of the collection searches run on, rebuilt when the collection's version changes.

        Passages with their texts, metadata and vectors (the exact cosine scan, and a keyword match scored without
        another Chroma call), their BM25 index, and the composer's unit vectors.
        """
        with self._lexical_lock:
            now = time.monotonic()
            if self._lexical is not None and now - self._lexical_checked < LEXICAL_CHECK_SECONDS:
                return self._lexical
            self._lexical_checked = now
            try:
                version = self._read(self._version)
                if self._lexical is None or self._lexical.version != version:
                    if self._lexical is not None:  # changed since it was read: maybe by another process
                        self._reopen()
                    self._lexical = self._read(lambda: self._load_copy(version))
                self.stale = False
            except KnowledgeUnavailable:
                if self._lexical is None:
                    raise
                self.stale = True  # keep answering from what was read before; try again at the next check
                log.warning("knowledge base changed but cannot be read: searching the copy read before")
            return self._lexical

    def _load_copy(self, version: str | None) -> LexicalIndex:
        got = self._collection.get(include=["documents", "metadatas", "embeddings"])
        pairs = zip(got["documents"], got["metadatas"], strict=True)
        texts = [f"{m['title']} {m['section']} {text}" for text, m in pairs]
        return LexicalIndex(
            version=version,
            bm25=BM25Index(got["ids"], texts),
            rows={pid: i for i, pid in enumerate(got["ids"])},
            vectors=_normalised(got["embeddings"], len(got["ids"])),
            documents=list(got["documents"]),
            metadatas=list(got["metadatas"]),
            units=self._load_units(),
        )

    def vocabulary(self) -> Vocabulary:
        """The passages' words and how rare each is (rebuilt with the in-memory copy)."""
        index = self._lexical_index()
        if index.vocabulary is None:
            index.vocabulary = Vocabulary(
                [
                    f"{m['title']} {m['section']} {text}"
                    for text, m in zip(index.documents, index.metadatas, strict=True)
                ],
                links=[m.get(key) or "" for m in index.metadatas for key in ("url", "doc_url")],
            )
        return index.vocabulary

    def passages_of(self, doc_id: str) -> list[Hit]:
        """Every passage of a document, in order (from the in-memory copy)."""
        index = self._lexical_index()
        if index.by_doc is None:
            by_doc: dict[str, list[int]] = {}
            for row, m in enumerate(index.metadatas):
                by_doc.setdefault(m["doc_id"], []).append(row)
            for rows in by_doc.values():
                rows.sort(key=lambda r: index.metadatas[r].get("chunk", 0))
            index.by_doc = by_doc
        out = []
        for row in index.by_doc.get(doc_id, []):
            m = index.metadatas[row]
            hit = _as_hit(index.bm25.ids[row], m["doc_id"], m["title"], m["section"], m["url"], index.documents[row])
            out.append(hit)
        return out

    def _load_units(self) -> dict[str, np.ndarray]:
        got = self._units.get(include=["documents", "embeddings"])
        if not got["ids"]:
            return {}
        vectors = _normalised(got["embeddings"], len(got["ids"]))
        return dict(zip(got["documents"], vectors, strict=True))

    def _version(self) -> str | None:
        """The collection's change marker (set by every ingestion that changed something, in any process)."""
        return (self._client.get_collection(self.name, embedding_function=None).metadata or {}).get("version")

    def documents(self, source: str | None = None) -> list[dict]:
        """Every stored document with its source, stages, whether they were assigned (and how surely), passages."""
        got = self._read(lambda: self._collection.get(include=["metadatas"]))
        docs: dict[str, dict] = {}
        for m in got["metadatas"] or []:
            entry = docs.setdefault(
                m["doc_id"],
                {
                    "id": m["doc_id"],
                    "title": m["title"],
                    "url": m.get("doc_url", ""),
                    "source": m.get("source") or LEGACY_FOLDER_SOURCE,
                    "stages": list(_split(m.get("stages"))),
                    "stages_assigned": bool(m.get("stages_assigned", False)),
                    "stage_confidence": m.get("stage_confidence"),
                    "passages": 0,
                },
            )
            entry["passages"] += 1
        listed = sorted(docs.values(), key=lambda d: (d["source"], d["id"]))
        return [d for d in listed if source is None or d["source"] == source]

    def search(
        self, query_vector: list[float], *, stage: str | None, k: int, stage_boost: float, query_text: str | None = None
    ) -> list[Hit]:
        """Best passages, preferring those tagged with the stage, at most two per document.

        With query_text the ranking is hybrid: the nearest passages and the best BM25 matches are pooled and scored
        by cosine similarity plus LEXICAL_WEIGHT times the normalised BM25 score. `similarity` stays the cosine.
        """
        index = self._lexical_index()  # its size is the count; the collection's version is checked every few s
        total = len(index.rows)  # the copy holds every passage
        if total == 0:
            return []
        pool = min(total, max(k * 4, 12))
        query = np.asarray(query_vector, dtype=np.float32)
        if index.rows and total <= self.memory_search_max:  # exact cosine over the in-memory copy: no Chroma round trip
            similarities = index.vectors @ query
            nearest = np.argpartition(-similarities, pool - 1)[:pool] if pool < total else np.arange(total)
            ids = index.bm25.ids
            found = {ids[i]: (index.documents[i], index.metadatas[i], float(similarities[i])) for i in nearest}
        else:
            got = self._read(
                lambda: self._collection.query(
                    query_embeddings=[query_vector],
                    n_results=pool,
                    include=["documents", "metadatas", "distances"],
                )
            )
            found = {
                pid: (text, meta, 1.0 - float(dist))
                for pid, text, meta, dist in zip(
                    got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0], strict=True
                )
            }
        lexical: dict[str, float] = {}
        if query_text and index.rows:
            rows = index.rows
            scores = index.bm25.scores(query_text)
            best = float(scores.max()) if len(scores) else 0.0
            if best > 0:
                top = [index.bm25.ids[i] for i in np.argsort(-scores)[:pool] if scores[i] > 0]
                for pid in top:
                    if pid not in found:
                        row = rows[pid]
                        found[pid] = (index.documents[row], index.metadatas[row], float(index.vectors[row] @ query))
                lexical = {pid: float(scores[rows[pid]]) / best for pid in found if pid in rows}
        hits = []
        for pid, (text, meta, similarity) in found.items():
            stages = _split(meta.get("stages"))
            score = similarity + LEXICAL_WEIGHT * lexical.get(pid, 0.0)
            score += stage_boost if stage and stage in stages else 0.0
            hits.append(
                Hit(pid, meta["doc_id"], meta["title"], meta["section"], meta["url"], stages, text, similarity, score)
            )
        hits.sort(key=lambda h: h.score, reverse=True)
        per_doc: dict[str, int] = {}
        picked = []
        for hit in hits:
            if per_doc.get(hit.doc_id, 0) < 2:
                per_doc[hit.doc_id] = per_doc.get(hit.doc_id, 0) + 1
                picked.append(hit)
            if len(picked) == k:
                break
        return picked

    def catalog(self) -> dict[str, CatalogEntry]:
        """Every document's title, stages and questions (cached; reloaded after an ingestion in any process)."""
        self._lexical_index()  # reads the collection's version, at most every LEXICAL_CHECK_SECONDS
        version = self._lexical.version if self._lexical is not None else None
        with self._lock:
            if time.monotonic() - self._catalog_at > CATALOG_TTL_SECONDS or version != self._catalog_version:
                try:
                    got = self._read(lambda: self._collection.get(where={"chunk": 0}, include=["metadatas"]))
                except KnowledgeUnavailable:
                    if not self._catalog:
                        raise
                    log.warning("knowledge base cannot be read: the catalog read before is kept")
                    return self._catalog
                self._catalog_version = version
                self._catalog = {
                    m["doc_id"]: CatalogEntry(
                        m["doc_id"], m["title"], m["doc_url"], _split(m["stages"]), _split(m["questions"], "\n")
                    )
                    for m in got["metadatas"] or []
                }
                self._catalog_at = time.monotonic()
            return self._catalog
