"""Ingestion jobs started from the staff API: a row per job, progress written as it goes, run in a thread.

The row lives in the database, so any worker can report a job's progress; the work itself runs in the worker that
accepted the request. A job whose worker stopped (restart, crash) stops updating and is reported as `stale` after
STALE_AFTER; start it again and ingestion, being idempotent, picks up where the content differs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from app.store.models import Base, utcnow

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=10)
WRITE_EVERY_SECONDS = 0.5
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
START_LOCK_KEY = 0x6A6F626B  # PostgreSQL advisory lock serialising job starts across workers


class IngestJob(Base):
    """One ingestion started by staff: target, progress, errors and the final report."""

    __tablename__ = "ingest_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    target: Mapped[str] = mapped_column(String(2048))
    source: Mapped[str | None] = mapped_column(String(2100))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    phase: Mapped[str | None] = mapped_column(String(16))
    seen: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    current: Mapped[str | None] = mapped_column(String(2048))
    errors: Mapped[list | None] = mapped_column(JSON)
    skipped: Mapped[list | None] = mapped_column(JSON)
    report: Mapped[dict | None] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(120))
    worker: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=utcnow().tzinfo)


def as_dict(job: IngestJob) -> dict:
    """The job as the API shows it."""
    stale = job.status in {QUEUED, RUNNING} and utcnow() - _aware(job.updated_at) > STALE_AFTER
    return {
        "job_id": job.id,
        "target": job.target,
        "source": job.source,
        "dry_run": job.dry_run,
        "status": "stale" if stale else job.status,
        "done": job.status in {DONE, FAILED},
        "phase": job.phase,
        "progress": {"seen": job.seen, "processed": job.processed, "total": job.total, "current": job.current},
        "errors": job.errors or [],
        "skipped": job.skipped or [],
        "report": job.report,
        "message": job.message,
        "requested_by": job.requested_by,
        "worker": job.worker,
        "created_at": _aware(job.created_at).isoformat(),
        "updated_at": _aware(job.updated_at).isoformat(),
        "finished_at": _aware(job.finished_at).isoformat() if job.finished_at else None,
    }


def ensure_table(engine) -> None:
    """Create the jobs table if this database does not have it yet."""
    IngestJob.__table__.create(engine, checkfirst=True)


def running_job(*, session: Session) -> IngestJob | None:
    """A job still queued or running and not stale, if any.

    On PostgreSQL this takes a transaction-level lock first, held until the session commits, so that this check and
    a following create_job in the same session are one step for all workers (two admins cannot start two jobs).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": START_LOCK_KEY})
    since = utcnow() - STALE_AFTER
    rows = session.scalars(select(IngestJob).where(IngestJob.status.in_([QUEUED, RUNNING]))).all()
    return next((r for r in rows if _aware(r.updated_at) >= since), None)


def create_job(*, session: Session, target: str, dry_run: bool, requested_by: str) -> IngestJob:
    """Record a new queued job."""
    job = IngestJob(
        id=uuid.uuid4().hex,
        target=target,
        dry_run=dry_run,
        requested_by=requested_by,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    session.add(job)
    session.commit()
    return job


def get_job(*, session: Session, job_id: str) -> IngestJob | None:
    """A job by id."""
    return session.get(IngestJob, job_id)


def recent_jobs(*, session: Session, limit: int = 20) -> list[IngestJob]:
    """The latest jobs, newest first."""
    return list(session.scalars(select(IngestJob).order_by(IngestJob.created_at.desc()).limit(limit)).all())


class JobRecorder:
    """Writes a job's progress to its row, at most every WRITE_EVERY_SECONDS (and always on a phase change)."""

    def __init__(self, sessions: sessionmaker, job_id: str) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self._written = 0.0
        self._phase = ""

    def update(self, **values) -> None:
        """Set columns of the job row."""
        with self.sessions() as session:
            job = session.get(IngestJob, self.job_id)
            for key, value in values.items():
                setattr(job, key, value)
            job.updated_at = utcnow()
            session.commit()

    def progress(self, phase: str, done: int, total: int, item: str) -> None:
        """A sync progress callback."""
        now = time.monotonic()
        if phase == self._phase and now - self._written < WRITE_EVERY_SECONDS and done < total:
            return
        self._phase, self._written = phase, now
        values: dict = {"phase": phase, "current": item[:2048] or None}
        if phase == "crawl":
            values |= {"seen": done, "total": total}
        else:
            values |= {"processed": done, "total": total}
        self.update(**values)


def start(*, sessions: sessionmaker, job_id: str, work) -> threading.Thread:
    """Run work(recorder) in a thread; the job ends done with its report, or failed with the error."""

    def main() -> None:
        recorder = JobRecorder(sessions, job_id)
        recorder.update(status=RUNNING)
        try:
            loaded, report = work(recorder)
        except Exception as exc:  # the job must end, whatever went wrong; the error is stored and logged
            log.exception("ingestion job %s failed", job_id)
            recorder.update(status=FAILED, message=f"{exc.__class__.__name__}: {exc}", finished_at=utcnow())
            return
        recorder.update(
            status=DONE,
            source=loaded.source,
            seen=len(loaded.docs) + len(loaded.errors) + len(loaded.skipped),
            processed=len(loaded.docs),
            errors=report.errors,
            skipped=loaded.skipped[:500],
            report=report.as_dict(),
            message=report.summary() + (f"; crawl stopped early: {loaded.note}" if loaded.note else ""),
            finished_at=utcnow(),
        )

    thread = threading.Thread(target=main, name=f"ingest-{job_id[:8]}", daemon=True)
    thread.start()
    return thread
