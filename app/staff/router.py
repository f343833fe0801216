"""The staff API under /v1/staff (bearer token; roles viewer < editor < admin)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Literal

from anyio import to_thread
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from app.chat.schemas import NOT_BLANK
from app.chat.service import is_small_talk
from app.deps import ServicesDep
from app.errors import error_responses
from app.proactive.service import rule_counts
from app.staff import analytics, customers, inbox, replies, service
from app.staff.auth import STAFF_ERRORS, Admin, Editor, Viewer
from app.staff.export import as_csv, as_jsonl, touchpoint_rows
from app.store.models import STATUSES
from app.webhooks.outbox import webhook_urls

router = APIRouter(prefix="/v1/staff", tags=["staff"], responses=STAFF_ERRORS)


AnswerId = Annotated[int, Path(ge=1, le=2**53)]


def _not_a_number(value: object) -> object:
    """'0.5' would be read as a Unix time (1970): a bound must be written as a date or a date-time."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("a date like 2026-01-31 or a date-time like 2026-01-31T12:00:00Z, not a number")
    return value


Moment = Annotated[datetime | None, BeforeValidator(_not_a_number)]
NOT_FOUND = error_responses((404, "no such conversation, turn, curated answer, canned reply or signed customer"))


class StageCorrection(BaseModel):
    """The right stage for a turn."""

    stage: str = Field(..., min_length=1, max_length=40)


class AnnotationIn(BaseModel):
    """Tags and a note for a turn (omit a field to leave it as it is)."""

    tags: list[Annotated[str, Field(max_length=40)]] | None = Field(None, max_length=20)
    note: str | None = Field(None, max_length=4000)


class ReviewIn(BaseModel):
    """Whether the conversation has been reviewed."""

    reviewed: bool = True


Status = Literal[STATUSES]


class StatusIn(BaseModel):
    """A conversation's new status; `until` (required with snoozed, in the future) is when it comes back as open."""

    status: Status
    until: Moment = None


class AssigneeIn(BaseModel):
    """Who owns a conversation: a staff member's name (as on their token), or null for nobody."""

    assignee: str | None = Field(..., min_length=1, max_length=120)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only spaces")
    return value.strip()


class CannedIn(BaseModel):
    """A canned reply: a short title to find it by and the text it puts in the message box."""

    title: Annotated[str, AfterValidator(_not_blank)] = Field(..., max_length=80, json_schema_extra=NOT_BLANK)
    text: Annotated[str, AfterValidator(_not_blank)] = Field(..., max_length=4000, json_schema_extra=NOT_BLANK)


class NoteIn(BaseModel):
    """An internal note on a conversation (staff only)."""

    text: Annotated[str, AfterValidator(_not_blank)] = Field(..., max_length=4000, json_schema_extra=NOT_BLANK)


class AnswerIn(BaseModel):
    """A better answer for a question."""

    question: str = Field(..., min_length=3, max_length=1000)
    answer: str = Field(..., min_length=1, max_length=8000)
    touchpoint_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,64}$")


def _filter(
    stage: str | None = None,
    since: Moment = None,
    until: Moment = None,
    thumbs_down: bool = False,
    handoff: bool = False,
    low_stage_confidence: bool = False,
    low_retrieval: bool = False,
    unreviewed: bool = False,
    q: Annotated[str | None, Query(max_length=200)] = None,
    visitor_id: Annotated[str | None, Query(max_length=128)] = None,
    status: Status | None = None,
    assignee: Annotated[str | None, Query(min_length=1, max_length=120)] = None,
    customer: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> service.ConversationFilter:
    return service.ConversationFilter(
        stage=stage,
        since=service.as_utc(since),
        until=service.as_utc(until),
        thumbs_down=thumbs_down,
        handoff=handoff,
        low_stage_confidence=low_stage_confidence,
        low_retrieval=low_retrieval,
        unreviewed=unreviewed,
        q=q or None,
        visitor_id=visitor_id,
        status=status,
        assignee=assignee,
        customer=customer,
    )


def _filter_for(user: Viewer, f: Annotated[service.ConversationFilter, Depends(_filter)]) -> service.ConversationFilter:
    """The filter with `assignee=me` read as the caller's name."""
    return replace(f, assignee=user.name) if f.assignee == "me" else f


FilterDep = Annotated[service.ConversationFilter, Depends(_filter_for)]


async def _run(services, fn, **kwargs):
    """Run a store function in a fresh session on a worker thread; NotFound becomes 404."""

    def call():
        with services.chat.sessions() as session:
            return fn(session=session, **kwargs)

    try:
        return await to_thread.run_sync(call)
    except (service.NotFound, inbox.NotFound) as exc:
        raise HTTPException(404, str(exc)) from exc
    except inbox.Invalid as exc:
        raise HTTPException(422, str(exc)) from exc


def _check_stage(services, stage: str) -> None:
    if stage not in services.journey.names:
        raise HTTPException(422, f"stage must be one of {', '.join(services.journey.names)}; got {stage!r}")


@router.get("/me")
async def me(user: Viewer) -> dict:
    """Who the token belongs to."""
    return {"name": user.name, "role": user.role}


@router.get("/stages")
async def stages(user: Viewer, services: ServicesDep) -> dict:
    """The configured journey stages, in order."""
    return {"stages": [{"name": s.name, "label": s.label} for s in services.journey.stages]}


@router.get("/conversations")
async def conversations(
    user: Viewer,
    services: ServicesDep,
    f: FilterDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict:
    """Conversations, newest activity first, filtered and paged."""
    items, total = await _run(services, service.list_conversations, f=f, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/conversations/{conversation_id}", responses=NOT_FOUND)
async def conversation(conversation_id: str, user: Viewer, services: ServicesDep) -> dict:
    """A transcript with the stage, evidence, sources, latency, mode and feedback of every turn."""
    return await _run(services, service.transcript, conversation_id=conversation_id)


@router.get("/customers/{customer_id}", responses=NOT_FOUND)
async def customer(
    customer_id: Annotated[str, Path(min_length=1, max_length=200)], user: Viewer, services: ServicesDep
) -> dict:
    """A signed identity's conversations on every visitor id, its journey (stages with dates), feedback, handoffs."""
    f = service.ConversationFilter(customer=customer_id)
    view = await _run(services, customers.journey, customer_id=customer_id)
    items, total = await _run(services, service.list_conversations, f=f, limit=200, offset=0)
    return {**view, "conversations": items, "total": total}


@router.put("/conversations/{conversation_id}/review", responses=NOT_FOUND)
async def review(conversation_id: str, body: ReviewIn, user: Editor, services: ServicesDep) -> dict:
    """Mark a conversation reviewed or not."""
    await _run(services, service.mark_reviewed, conversation_id=conversation_id, reviewed=body.reviewed, by=user.name)
    return {"conversation_id": conversation_id, "reviewed": body.reviewed}


@router.put("/conversations/{conversation_id}/status", responses=NOT_FOUND)
async def set_status(conversation_id: str, body: StatusIn, user: Editor, services: ServicesDep) -> dict:
    """Set a conversation's status (open, pending, snoozed until a time, resolved); recorded with who and when."""
    until = service.as_utc(body.until)
    return await _run(
        services, inbox.set_status, conversation_id=conversation_id, status=body.status, until=until, by=user.name
    )


@router.put("/conversations/{conversation_id}/assignee", responses=NOT_FOUND)
async def set_assignee(conversation_id: str, body: AssigneeIn, user: Editor, services: ServicesDep) -> dict:
    """Give a conversation to a staff member (null: to nobody); recorded with who and when."""
    assignee = body.assignee.strip() if body.assignee else None
    return await _run(
        services, inbox.set_assignee, conversation_id=conversation_id, assignee=assignee or None, by=user.name
    )


@router.get("/team")
async def team(user: Viewer, services: ServicesDep) -> dict:
    """Names of the staff members a conversation can be assigned to (those with an active token)."""
    return {"names": await _run(services, inbox.staff_names)}


@router.post("/conversations/{conversation_id}/notes", status_code=201, responses=NOT_FOUND)
async def add_note(conversation_id: str, body: NoteIn, user: Editor, services: ServicesDep, request: Request) -> dict:
    """Leave an internal note on a conversation: staff see it (transcript, live chat), visitors never do."""
    note = await _run(services, replies.add_note, conversation_id=conversation_id, text=body.text, by=user.name)
    live = getattr(request.app.state, "live", None)
    if live is not None:  # to the staff streams only (never stored as a live event, so never on a visitor's stream)
        await live.bus.publish({"type": "note", "conversation_id": conversation_id, "note": replies.note_json(note)})
    return note


@router.get("/conversations/{conversation_id}/notes", responses=NOT_FOUND)
async def notes(conversation_id: str, user: Viewer, services: ServicesDep) -> dict:
    """A conversation's internal notes, oldest first (the live chat shows them among the messages)."""
    return {"notes": await _run(services, replies.conversation_notes, conversation_id=conversation_id)}


CannedId = Annotated[int, Path(ge=1, le=2**53)]


@router.get("/canned")
async def canned_replies(
    user: Viewer, services: ServicesDep, q: Annotated[str | None, Query(max_length=200)] = None
) -> dict:
    """Canned replies by title (those whose title or text contains `q`)."""
    return {"items": await _run(services, replies.list_canned, q=q)}


@router.post("/canned", status_code=201)
async def create_canned(body: CannedIn, user: Editor, services: ServicesDep) -> dict:
    """Save a canned reply."""
    return await _run(services, replies.save_canned, title=body.title, text=body.text, by=user.name)


@router.put("/canned/{canned_id}", responses=NOT_FOUND)
async def update_canned(canned_id: CannedId, body: CannedIn, user: Editor, services: ServicesDep) -> dict:
    """Change a canned reply."""
    return await _run(
        services, replies.save_canned, title=body.title, text=body.text, by=user.name, canned_id=canned_id
    )


@router.delete("/canned/{canned_id}", status_code=204, responses=NOT_FOUND)
async def delete_canned(canned_id: CannedId, user: Editor, services: ServicesDep) -> None:
    """Remove a canned reply."""
    await _run(services, replies.delete_canned, canned_id=canned_id)


@router.put("/touchpoints/{touchpoint_id}/stage", responses=NOT_FOUND)
async def correct_stage(touchpoint_id: str, body: StageCorrection, user: Editor, services: ServicesDep) -> dict:
    """Set the right stage for a turn; the detector learns it at once (other workers within seconds)."""
    _check_stage(services, body.stage)
    example = await _run(services, service.correct_stage, touchpoint_id=touchpoint_id, stage=body.stage, by=user.name)
    await to_thread.run_sync(services.chat.learning.changed)
    return {"touchpoint_id": touchpoint_id, "stage": body.stage, "example": {"id": example.id, "text": example.text}}


@router.put("/touchpoints/{touchpoint_id}/annotation", responses=NOT_FOUND)
async def annotate(touchpoint_id: str, body: AnnotationIn, user: Editor, services: ServicesDep) -> dict:
    """Tag and annotate a turn."""
    return await _run(
        services, service.annotate, touchpoint_id=touchpoint_id, tags=body.tags, note=body.note, by=user.name
    )


def _answer(row) -> dict:
    return {
        "id": row.id,
        "question": row.question,
        "answer": row.answer,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "touchpoint_id": row.source_touchpoint_id,
    }


@router.get("/answers")
async def answers(user: Viewer, services: ServicesDep) -> dict:
    """Curated answers, newest first."""
    rows = await _run(services, service.list_answers)
    return {"items": [_answer(r) for r in rows], "threshold": services.settings.curated_threshold}


@router.post("/answers", status_code=201, responses=NOT_FOUND)
async def create_answer(body: AnswerIn, user: Editor, services: ServicesDep) -> dict:
    """Write a better answer; visitors asking something close enough get it from now on."""
    row = await _run(
        services,
        service.save_answer,
        question=body.question,
        answer=body.answer,
        by=user.name,
        touchpoint_id=body.touchpoint_id,
    )
    await to_thread.run_sync(services.chat.learning.changed)
    return _answer(row)


@router.put("/answers/{answer_id}", responses=NOT_FOUND)
async def update_answer(answer_id: AnswerId, body: AnswerIn, user: Editor, services: ServicesDep) -> dict:
    """Change a curated answer."""
    row = await _run(
        services, service.save_answer, question=body.question, answer=body.answer, by=user.name, answer_id=answer_id
    )
    await to_thread.run_sync(services.chat.learning.changed)
    return _answer(row)


@router.delete("/answers/{answer_id}", status_code=204, responses=NOT_FOUND)
async def delete_answer(answer_id: AnswerId, user: Editor, services: ServicesDep) -> None:
    """Remove a curated answer."""
    await _run(services, service.delete_answer, answer_id=answer_id)
    await to_thread.run_sync(services.chat.learning.changed)


@router.get("/analytics")
async def journey_analytics(user: Viewer, services: ServicesDep, since: Moment = None, until: Moment = None) -> dict:
    """Funnel, transitions, time in stage, touchpoints per stage per day, per-stage rates, resolution, CSAT and
    proactive messages per rule (shown, opened, dismissed, conversations, moved to a later stage)."""
    period = analytics.Period(service.as_utc(since), service.as_utc(until))
    names = services.journey.names

    def proactive_rows(*, session, period: analytics.Period) -> list[dict]:
        counts = rule_counts(session=session, since=period.since, until=period.until, stages=names)
        configured = [r.id for r in services.proactive_rules]
        rules = configured + sorted(set(counts) - set(configured))  # rules since removed, when they were shown
        empty = {"shown": 0, "opened": 0, "dismissed": 0, "conversations": 0, "moved": 0}
        return [{"rule": rule, **counts.get(rule, empty)} for rule in rules]

    def compute(session):
        return {
            "stages": names,
            "funnel": analytics.funnel(session=session, period=period, stages=names),
            "transitions": analytics.transitions(session=session, period=period),
            "time_in_stage": analytics.time_in_stage(session=session, period=period),
            "daily": analytics.daily(session=session, period=period),
            "rates": analytics.rates(session=session, period=period, stages=names),
            "resolution": analytics.resolution(session=session, period=period),
            "csat": analytics.csat(session=session, period=period, stages=names),
            "proactive": proactive_rows(session=session, period=period),
        }

    return await _run(services, compute)


@router.get("/analytics/gaps")
async def knowledge_gaps(user: Viewer, services: ServicesDep, since: Moment = None, until: Moment = None) -> dict:
    """Questions with weak retrieval, thumbs down or a handoff, grouped by stage and similar question."""
    groups = await _run(
        services,
        analytics.knowledge_gaps,
        period=analytics.Period(service.as_utc(since), service.as_utc(until)),
        embed=services.chat.vectors.embed_array,
        is_small_talk=is_small_talk,
        answered=lambda vector: services.chat.learning.match(vector) is not None,
    )
    return {"groups": groups}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "touchpoints as CSV (a header row, formula cells neutralised) or JSON lines",
            "content": {media: {"schema": {"type": "string"}} for media in ("text/csv", "application/x-ndjson")},
        },
    },
)
async def export(
    user: Editor, services: ServicesDep, f: FilterDep, format: Literal["csv", "jsonl"] = "jsonl"
) -> StreamingResponse:
    """Touchpoints of the filtered conversations, streamed as CSV or JSON lines."""
    rows = touchpoint_rows(services.chat.sessions, f)
    body, media = (as_csv(rows), "text/csv") if format == "csv" else (as_jsonl(rows), "application/x-ndjson")
    filename = f"touchpoints.{format}"
    return StreamingResponse(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.delete("/visitors/{visitor_id}")
async def erase_visitor(visitor_id: str, user: Admin, services: ServicesDep) -> dict:
    """Erase every stored trace of a visitor (curated answers written from their turns stay, detached)."""
    urls = webhook_urls(services.settings)
    counts = await _run(services, service.erase_visitor, visitor_id=visitor_id, webhook_urls=urls)
    await to_thread.run_sync(services.chat.learning.changed)
    return {"visitor_id": visitor_id, "erased": counts}
