"""Picking a visitor's proactive message from their journey, and recording its showing, opening or dismissal."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.chat.service import new_id
from app.proactive.rules import Journey, Rule, page_path, pick
from app.stages.config import JourneyConfig
from app.store.models import Conversation, Touchpoint, utcnow
from app.store.service import PROACTIVE_KINDS, get_conversation

SHOWN, OPENED, DISMISSED = PROACTIVE_KINDS
ACTIONS = {"open": OPENED, "dismiss": DISMISSED}


class ShowingNotFound(LookupError):
    """No proactive message with that id was shown to this visitor."""


def touchpoint_id(*parts: str) -> str:
    """A fixed id for (visitor, rule) or (showing, action): the primary key makes each happen once."""
    return "pro-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def visitor_journey(*, session: Session, visitor_id: str) -> tuple[str | None, frozenset[str]]:
    """The stage of the visitor's latest exchange and every stage their exchanges reached, in any conversation."""
    rows = session.execute(
        select(Touchpoint.stage, func.max(Touchpoint.created_at))
        .where(Touchpoint.visitor_id == visitor_id, Touchpoint.kind == "exchange", Touchpoint.stage.is_not(None))
        .group_by(Touchpoint.stage)
    ).all()
    latest = max(rows, key=lambda r: r[1])[0] if rows else None
    return latest, frozenset(stage for stage, _ in rows)


def shown_rules(*, session: Session, visitor_id: str) -> set[str]:
    """Ids of the rules already shown to the visitor."""
    query = select(Touchpoint.data["rule"].as_string()).where(
        Touchpoint.visitor_id == visitor_id, Touchpoint.kind == SHOWN
    )
    return {r for r in session.scalars(query) if r}


def baseline_stage(journey: JourneyConfig, latest: str | None, url: str) -> str:
    """Where the visitor was when shown: their latest stage, else the page's (page rules), else the first stage."""
    if latest:
        return latest
    matching = [rule for rule in journey.page_rules if rule.matches(url, "")]
    return max(matching, key=lambda rule: rule.weight).stage if matching else journey.names[0]


def _add(*, session: Session, conversation: Conversation, id: str, kind: str, data: dict, page: dict | None) -> None:
    """The conversation's next touchpoint, without touching its activity time (the inbox order is the visitor's)."""
    locked = session.get(Conversation, conversation.id, with_for_update=True, populate_existing=True) or conversation
    turn = (locked.turns or 0) + 1
    session.add(
        Touchpoint(
            id=id,
            conversation_id=locked.id,
            visitor_id=locked.visitor_id,
            turn=turn,
            kind=kind,
            created_at=utcnow(),
            page=page,
            stage=data.get("stage"),
            data=data,
        )
    )
    locked.turns = turn
    session.commit()


def decide(
    *,
    sessions: sessionmaker[Session],
    journey: JourneyConfig,
    rules: tuple[Rule, ...],
    visitor_id: str,
    conversation_id: str | None,
    page: dict,
    seconds_on_page: float,
    visits: int,
) -> dict:
    """The message to show now (recorded as shown), else when to ask again; only this visitor's data is read."""
    with sessions() as session:
        conversation = None
        if conversation_id:  # ConversationNotFound (404) when it is not this visitor's
            conversation = get_conversation(session=session, conversation_id=conversation_id, visitor_id=visitor_id)
        latest, reached = visitor_journey(session=session, visitor_id=visitor_id)
        seen = Journey(latest, reached, page_path(page.get("url", "")), seconds_on_page, visits)
        rule, wait = pick(rules, seen, shown_rules(session=session, visitor_id=visitor_id))
        if rule is None:
            return {"message": None, "retry_after": round(wait, 1) if wait is not None else None}
        if conversation is None:
            now = utcnow()
            conversation = Conversation(
                id=new_id(), visitor_id=visitor_id, created_at=now, updated_at=now, first_page=page, turns=0
            )
            session.add(conversation)
            session.flush()
        shown_id = touchpoint_id(visitor_id, rule.id)
        data = {
            "rule": rule.id,
            "text": rule.message,
            "chips": list(rule.chips),
            "stage": baseline_stage(journey, latest, page.get("url", "")),
            "seconds_on_page": seconds_on_page,
            "visits": visits,
        }
        try:
            _add(session=session, conversation=conversation, id=shown_id, kind=SHOWN, data=data, page=page)
        except IntegrityError:  # shown to this visitor at the same moment by another request (another tab)
            session.rollback()
            return {"message": None, "retry_after": None}
    message = {"id": shown_id, "rule": rule.id, "text": rule.message, "chips": list(rule.chips)}
    return {"message": {**message, "conversation_id": conversation.id}, "retry_after": None}


def record_action(*, sessions: sessionmaker[Session], shown_id: str, visitor_id: str, action: str) -> dict:
    """Record that the visitor opened or dismissed a message shown to them (once each); ShowingNotFound otherwise."""
    kind = ACTIONS[action]
    with sessions() as session:
        shown = session.get(Touchpoint, shown_id)
        if shown is None or shown.kind != SHOWN or shown.visitor_id != visitor_id:
            raise ShowingNotFound(shown_id)
        conversation = session.get(Conversation, shown.conversation_id)
        rule = (shown.data or {}).get("rule")
        data = {"rule": rule, "shown": shown_id, "stage": (shown.data or {}).get("stage")}
        action_id = touchpoint_id(shown_id, action)
        if session.get(Touchpoint, action_id) is None:
            try:
                _add(session=session, conversation=conversation, id=action_id, kind=kind, data=data, page=shown.page)
            except IntegrityError:  # the same action recorded at the same moment by another request
                session.rollback()
    return {"id": shown_id, "rule": rule, "action": action, "conversation_id": shown.conversation_id}


def rule_counts(*, session: Session, since: datetime | None, until: datetime | None, stages: list[str]) -> dict:
    """Per rule id: shown, opened, dismissed, conversations (opened, then the visitor wrote) and moved on.

    Moved on: after the opening, an exchange of that conversation reached a stage later in the journey than the
    one the visitor was in when shown. Showings are counted by when they were shown.
    """
    where = [Touchpoint.kind == SHOWN]
    if since:
        where.append(Touchpoint.created_at >= since)
    if until:
        where.append(Touchpoint.created_at < until)
    shown = {t.id: t for t in session.scalars(select(Touchpoint).where(*where))}
    counts: dict[str, dict] = {}
    for t in shown.values():
        rule = (t.data or {}).get("rule") or "?"
        counts.setdefault(rule, {"shown": 0, "opened": 0, "dismissed": 0, "conversations": 0, "moved": 0})
        counts[rule]["shown"] += 1
    if not shown:
        return counts
    actions = session.scalars(
        select(Touchpoint).where(
            Touchpoint.kind.in_((OPENED, DISMISSED)),
            Touchpoint.conversation_id.in_({t.conversation_id for t in shown.values()}),
        )
    ).all()
    opened = []
    for a in actions:
        origin = shown.get((a.data or {}).get("shown"))
        if origin is None:
            continue
        rule = (origin.data or {}).get("rule") or "?"
        counts[rule]["opened" if a.kind == OPENED else "dismissed"] += 1
        if a.kind == OPENED:
            opened.append((a, origin))
    order = {name: i for i, name in enumerate(stages)}
    for action, origin in opened:
        later = session.scalars(
            select(Touchpoint.stage).where(
                Touchpoint.conversation_id == action.conversation_id,
                Touchpoint.kind == "exchange",
                Touchpoint.turn > action.turn,
            )
        ).all()
        if not later:
            continue
        rule = (origin.data or {}).get("rule") or "?"
        counts[rule]["conversations"] += 1
        start = order.get((origin.data or {}).get("stage"), len(stages))
        if any(order.get(stage, -1) > start for stage in later):
            counts[rule]["moved"] += 1
    return counts
