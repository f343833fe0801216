"""Admin API for knowledge: start an ingestion (folder or site), follow its progress, review stored documents."""

from __future__ import annotations

from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from app.deps import ServicesDep
from app.errors import error_responses
from app.kb import jobs
from app.kb.safety import FetchError, UnsafeURLError, parse_allow_hosts, vet
from app.kb.sync import run
from app.staff.auth import STAFF_ERRORS, Admin, Viewer

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=STAFF_ERRORS)


class IngestIn(BaseModel):
    """What to ingest: a site (url: a page or a sitemap.xml) or a folder under the ingest root (path)."""

    url: str | None = Field(None, max_length=2048)
    path: str | None = Field(None, max_length=1024, description="relative to JOURNEY_INGEST_ROOT (default knowledge/)")
    dry_run: bool = False


def ingest_root(services) -> Path:
    """The folder the endpoint may read from."""
    settings = services.settings
    return (settings.ingest_root or settings.knowledge_dir).resolve()


def resolve_folder(root: Path, path: str | None, default: Path) -> Path:
    """The folder to ingest, which must stay inside root (no '..', no absolute path elsewhere, no link out)."""
    folder = (root / path).resolve() if path else default.resolve()
    if not folder.is_relative_to(root):
        raise HTTPException(422, f"path: must stay inside the ingest folder {root}")
    if not folder.is_dir():
        raise HTTPException(422, f"path: no such folder under the ingest folder: {path}")
    return folder


@router.post("/ingest", status_code=202, responses=error_responses((409, "another ingestion is running")))
async def start_ingest(body: IngestIn, services: ServicesDep, user: Admin) -> dict:
    """Start an ingestion job in the background; 409 while another one runs."""
    if body.url and body.path:
        raise HTTPException(422, "give either url or path, not both")
    settings = services.settings
    if body.url:
        target = body.url.strip()
        if not target.lower().startswith(("http://", "https://")):
            raise HTTPException(422, "url: must start with http:// or https://")
        try:
            await to_thread.run_sync(vet, target, parse_allow_hosts(settings.crawl_allow_hosts))
        except UnsafeURLError as exc:
            raise HTTPException(422, f"url: {exc}") from exc
        except FetchError as exc:
            raise HTTPException(422, f"url: {exc}") from exc
    else:
        target = str(resolve_folder(ingest_root(services), body.path, settings.docs_dir))
    sessions = services.chat.sessions

    def create() -> dict | None:
        jobs.ensure_table(services.engine)
        with sessions() as session:
            if jobs.running_job(session=session) is not None:
                return None
            return jobs.as_dict(
                jobs.create_job(session=session, target=target, dry_run=body.dry_run, requested_by=user.name)
            )

    job = await to_thread.run_sync(create)
    if job is None:
        raise HTTPException(409, "another ingestion is running; wait for it to finish")

    def work(recorder: jobs.JobRecorder):
        return run(
            target,
            kb=services.kb,
            settings=settings,
            known_stages=set(services.journey.names),
            detector_factory=lambda: services.chat.detector,
            dry_run=body.dry_run,
            progress=recorder.progress,
        )

    jobs.start(sessions=sessions, job_id=job["job_id"], work=work)
    return job


@router.get("/ingest")
async def list_ingest_jobs(services: ServicesDep, user: Admin) -> dict:
    """The latest ingestion jobs."""

    def load() -> list[dict]:
        jobs.ensure_table(services.engine)
        with services.chat.sessions() as session:
            return [jobs.as_dict(j) for j in jobs.recent_jobs(session=session)]

    return {"jobs": await to_thread.run_sync(load)}


@router.get("/ingest/{job_id}", responses=error_responses((404, "no such job")))
async def get_ingest_job(job_id: str, services: ServicesDep, user: Admin) -> dict:
    """One job's progress: documents seen and processed, errors, and the report once done."""

    def load() -> dict | None:
        jobs.ensure_table(services.engine)
        with services.chat.sessions() as session:
            job = jobs.get_job(session=session, job_id=job_id)
            return jobs.as_dict(job) if job else None

    job = await to_thread.run_sync(load)
    if job is None:
        raise HTTPException(404, "ingestion job not found")
    return job


@router.get("/knowledge")
async def list_documents(
    services: ServicesDep,
    user: Viewer,
    source: str | None = Query(None, max_length=2100),
    assigned: bool = Query(False, description="only documents whose stages the stage model assigned"),
) -> dict:
    """Stored documents with source, stages and, for assigned stages, the model's confidence (to review)."""
    found = await to_thread.run_sync(services.kb.documents, source)
    return {"documents": [d for d in found if d["stages_assigned"] or not assigned]}
