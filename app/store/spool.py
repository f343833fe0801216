"""The spool: exchanges that could not reach the database wait in an fsync'd local file and are replayed later.

A visitor's turn is never lost to a database outage: `ChatService._store` appends the ExchangeRecord here when the
database is unreachable, and the visitor gets the reply as usual. `replay_loop` (started by the app's lifespan)
writes them in order once the database is back. Replay is idempotent (the touchpoint id is the primary key: a
record already written is skipped), so a crash mid-replay or several workers replaying at once lose and duplicate
nothing. A record whose conversation belongs to another visitor goes to `dead-letter.jsonl`, with a log line.

Layout under JOURNEY_DATA_DIR/spool: `pending.jsonl` (appended to, under an flock shared by every worker),
`batch-<time>-<pid>.jsonl` (pending files taken for replay; left behind by a crash, replayed next time),
`dead-letter.jsonl`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import anyio
from anyio import to_thread
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import sessionmaker

from app.store import schema
from app.store.models import Touchpoint, utcnow
from app.store.service import (
    ConversationNotFound,
    ExchangeRecord,
    find_exchange,
    get_conversation,
    record_event,
    record_exchange,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# What "the database is unreachable" looks like: connection refused or timed out, a dropped connection, a full pool
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
)


def is_database_down(error: BaseException) -> bool:
    """True for errors that mean the database could not be reached (not for bad data or constraint errors)."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, DATABASE_DOWN)


@dataclasses.dataclass
class EventRecord:
    """A journey event (feedback) that could not reach the database; `about` is the reply it rates."""

    id: str
    conversation_id: str
    visitor_id: str
    kind: str
    data: dict
    about: str | None = None
    page: dict | None = None
    created_at: datetime | None = None


class MessageMissing(LookupError):
    """The reply an event is about is not in its conversation."""


Record = ExchangeRecord | EventRecord


def _encode(record: Record) -> str:
    data = dataclasses.asdict(record)
    data["created_at"] = record.created_at.isoformat() if record.created_at else None
    if isinstance(record, EventRecord):
        data["type"] = "event"
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _decode(line: str) -> Record:
    data = json.loads(line)
    if data.get("created_at"):
        data["created_at"] = datetime.fromisoformat(data["created_at"])
    kind = EventRecord if data.get("type") == "event" else ExchangeRecord
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known})


def _write(session, record: Record) -> None:
    if isinstance(record, ExchangeRecord):
        record_exchange(session=session, record=record)
        return
    conversation = get_conversation(
        session=session, conversation_id=record.conversation_id, visitor_id=record.visitor_id
    )
    stage = None
    if record.about:
        exchange = find_exchange(session=session, conversation_id=record.conversation_id, message_id=record.about)
        if exchange is None:
            raise MessageMissing(record.about)
        stage = exchange.stage
    record_event(
        session=session,
        conversation=conversation,
        id=record.id,
        kind=record.kind,
        data=record.data,
        stage=stage,
        page=record.page,
        created_at=record.created_at,
    )


@contextmanager
def _flock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclasses.dataclass
class ReplayReport:
    """What one replay did."""

    written: int = 0
    skipped: int = 0
    dead: int = 0


class Spool:
    """Exchange records waiting for the database, in one directory shared by every worker of a data dir."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pending = directory / "pending.jsonl"
        self.dead_letter = directory / "dead-letter.jsonl"
        self._append_lock = directory / "append.lock"
        self._replay_lock = directory / "replay.lock"

    def _ready(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.directory.parent)

    def append(self, record: Record) -> None:
        """Write the record durably (fsync'd) before returning."""
        self._ready()
        if record.created_at is None:
            record.created_at = utcnow()
        line = (_encode(record) + "\n").encode("utf-8")
        with _flock(self._append_lock):
            created = not self.pending.exists()
            with self.pending.open("ab+") as handle:
                if handle.tell() > 0:  # a process killed mid-write left a torn last line: end it first
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = b"\n" + line
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            if created:
                _fsync_dir(self.directory)

    def batches(self) -> list[Path]:
        """Files taken for replay and not finished yet, oldest first."""
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("batch-*.jsonl"))

    def has_work(self) -> bool:
        """Anything waiting (cheap: two stats and a listing)."""
        return self.pending.exists() or bool(self.batches())

    def backlog(self) -> int:
        """How many records wait (lines in the pending and batch files)."""
        total = 0
        for path in [*self.batches(), self.pending]:
            try:
                with path.open("rb") as handle:
                    total += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue
        return total

    def _take_pending(self) -> None:
        """Move pending.jsonl to a new batch file, so appends go on while it is replayed."""
        with _flock(self._append_lock):
            if self.pending.exists():
                target = self.directory / f"batch-{time.time_ns():020d}-{os.getpid()}.jsonl"
                self.pending.rename(target)
                _fsync_dir(self.directory)

    def _bury(self, line: str, reason: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            record = line  # kept as it was read
        with self.dead_letter.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"reason": reason, "record": record}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def replay(self, sessions: sessionmaker, *, wait: bool = False) -> ReplayReport:
        """Write every waiting record in order; raise a DATABASE_DOWN error (keeping the rest) if the database fails.

        Only one process replays at a time; the others return at once (or, with `wait`, wait for it and go on).
        """
        report = ReplayReport()
        if not self.has_work():
            return report
        self._ready()
        with _flock(self._replay_lock, blocking=wait) as mine:
            if not mine:
                return report
            self._take_pending()
            for batch in self.batches():
                for line in batch.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        self._replay_line(sessions, line, report)
                batch.unlink()
                _fsync_dir(self.directory)
        if report.written or report.dead:
            log.info(
                "spool replayed: %d touchpoints written, %d already there, %d dead-lettered",
                report.written,
                report.skipped,
                report.dead,
            )
        return report

    def _replay_line(self, sessions: sessionmaker, line: str, report: ReplayReport) -> None:
        try:
            record = _decode(line)
        except (ValueError, TypeError) as error:
            log.error("spool: unreadable record moved to %s: %s", self.dead_letter, error)
            self._bury(line, f"unreadable: {error}")
            report.dead += 1
            return
        for attempt in range(5):
            with sessions() as session:
                if session.get(Touchpoint, record.id) is not None:
                    report.skipped += 1
                    return
                try:
                    _write(session, record)
                    report.written += 1
                    return
                except MessageMissing:
                    self._refuse(line, record, LookupError("the rated reply is not in the conversation"), report)
                    return
                except ConversationNotFound:
                    log.error(
                        "spool: touchpoint %s names conversation %s of another visitor; moved to %s",
                        record.id,
                        record.conversation_id,
                        self.dead_letter,
                    )
                    self._bury(line, "conversation belongs to another visitor")
                    report.dead += 1
                    return
                except sa_exc.IntegrityError as error:  # a concurrent writer took the turn number, or wrote it
                    session.rollback()
                    if attempt == 4:
                        self._refuse(line, record, error, report)
                        return
                except Exception as error:
                    if is_database_down(error):
                        raise
                    self._refuse(line, record, error, report)  # bad data would block every record after it
                    return

    def _refuse(self, line: str, record: Record, error: BaseException, report: ReplayReport) -> None:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        log.error("spool: touchpoint %s could not be written (%s); moved to %s", record.id, reason, self.dead_letter)
        self._bury(line, reason)
        report.dead += 1


@lru_cache(maxsize=8)
def _spool_at(directory: str) -> Spool:
    return Spool(Path(directory))


_BY_SESSIONS: dict[int, Spool] = {}


def spool_of(sessions: sessionmaker) -> Spool | None:
    """The spool that replays into `sessions` (registered by replay_loop), for code that only has the sessions."""
    return _BY_SESSIONS.get(id(sessions))


def spool_for(data_dir: Path) -> Spool:
    """The spool of a data dir (one object per directory and process)."""
    return _spool_at(str((data_dir / "spool").resolve()))


async def replay_loop(spool: Spool, sessions: sessionmaker, every_seconds: float = 1.0) -> None:
    """Replay the spool whenever it holds records, from startup (a crashed process's spool) until cancelled."""
    from app.observability.metrics import SPOOL_BACKLOG

    _BY_SESSIONS[id(sessions)] = spool
    down_since: float | None = None
    engine = sessions.kw.get("bind")
    while True:
        SPOOL_BACKLOG.set(await to_thread.run_sync(spool.backlog) if spool.has_work() else 0)
        if engine is not None and engine in schema.PENDING:  # started while the database was down
            try:
                await to_thread.run_sync(schema.upgrade_pending, engine)
                log.info("database reachable: schema upgraded")
            except Exception:  # noqa: BLE001 - still down: tried again at the next tick
                await anyio.sleep(every_seconds)
                continue
        if spool.has_work():
            try:
                await to_thread.run_sync(spool.replay, sessions)
                if down_since is not None:
                    log.info("database reachable again after %.0f s; spool replayed", time.monotonic() - down_since)
                    down_since = None
            except Exception as error:  # noqa: BLE001 - retried at the next tick; the records stay in the spool
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("spool replay waits for the database: %s", str(error).splitlines()[0][:200])
        await anyio.sleep(every_seconds)


def read_or_spooled(read: Callable[[], T], *, spool: Spool, sessions: sessionmaker, fallback: T) -> T:
    """`read()` from the database, with the spool in mind.

    The database down: `fallback` (the turn goes on without what read() gives; ownership is checked at replay).
    ConversationNotFound while records wait in the spool (the conversation may be one of them): replay, read again.
    """
    try:
        return read()
    except ConversationNotFound:
        if not spool.has_work():
            raise
        try:
            spool.replay(sessions, wait=True)
        except DATABASE_DOWN:
            return fallback
        return read()
    except DATABASE_DOWN as error:
        log.warning("database unreachable, turn goes on without history: %s", str(error).splitlines()[0][:200])
        return fallback


def install_database_errors(app) -> None:
    """Answer 503 with a clear message, never a 500, when a request needs the database and it is unreachable.

    (Chat turns do not get here: they are spooled. Feedback, handoff, transcripts and staff pages do.)
    """
    from fastapi.responses import JSONResponse

    async def unavailable(_request, _exc) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content={"error": "database_unavailable", "detail": "the database is unreachable; try again shortly"},
            headers={"Retry-After": "5"},
        )

    for kind in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError):
        app.add_exception_handler(kind, unavailable)
