"""Journey analytics over touchpoints: funnel, transitions, time in stage, daily volume, rates, knowledge gaps."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.staff.inbox import INBOX_KINDS
from app.staff.service import LOW_RETRIEVAL, thumbs_down_condition
from app.store.models import Conversation, Touchpoint
from app.store.service import PROACTIVE_KINDS

GAP_SIMILARITY = 0.75
GAP_MAX_QUESTIONS = 2000


@dataclass(frozen=True)
class Period:
    """[since, until) on touchpoint time; None means open."""

    since: datetime | None = None
    until: datetime | None = None

    def where(self, column=Touchpoint.created_at) -> list:
        """SQL conditions for the period."""
        out = []
        if self.since:
            out.append(column >= self.since)
        if self.until:
            out.append(column < self.until)
        return out


def _exchanges(period: Period) -> list:
    return [Touchpoint.kind == "exchange", *period.where()]


def funnel(*, session: Session, period: Period, stages: list[str]) -> list[dict]:
    """Per stage: visitors seen in it, and visitors who reached it or a later stage."""
    seen: dict[str, set] = defaultdict(set)
    furthest: dict[str, int] = {}
    rows = session.execute(select(Touchpoint.visitor_id, Touchpoint.stage).where(*_exchanges(period)).distinct())
    for visitor, stage in rows:
        if stage not in stages:
            continue
        seen[stage].add(visitor)
        furthest[visitor] = max(furthest.get(visitor, -1), stages.index(stage))
    reached = Counter(furthest.values())
    out, running = [], 0
    for index in range(len(stages) - 1, -1, -1):
        running += reached.get(index, 0)
        out.append({"stage": stages[index], "visitors": len(seen[stages[index]]), "reached": running})
    return out[::-1]


def transitions(*, session: Session, period: Period) -> list[dict]:
    """Counts of stage changes from -> to, most frequent first."""
    rows = session.execute(
        select(Touchpoint.previous_stage, Touchpoint.stage, func.count())
        .where(*_exchanges(period), Touchpoint.stage_changed.is_(True))
        .group_by(Touchpoint.previous_stage, Touchpoint.stage)
    ).all()
    return sorted(({"from": a, "to": b, "count": n} for a, b, n in rows), key=lambda r: -r["count"])


def time_in_stage(*, session: Session, period: Period) -> list[dict]:
    """Seconds each conversation spent in a stage: from its first to its last touchpoint in that stage.

    Every touchpoint with a stage counts (exchanges, feedback, handoffs, live messages), not status or assignee
    changes (staff's bookkeeping) nor proactive messages (the widget's). A stage seen on one touchpoint only has no
    measurable time: it is counted in `single`, not in the mean and median (None when a stage has no span of two
    touchpoints or more).
    """
    query = (
        select(Touchpoint.stage, func.min(Touchpoint.created_at), func.max(Touchpoint.created_at), func.count())
        .where(Touchpoint.stage.is_not(None), Touchpoint.kind.not_in(INBOX_KINDS + PROACTIVE_KINDS), *period.where())
        .group_by(Touchpoint.conversation_id, Touchpoint.stage)
    )
    spans: dict[str, list[float]] = defaultdict(list)
    single: Counter[str] = Counter()
    for stage, first, last, count in session.execute(query):
        if count < 2:
            single[stage] += 1
        else:
            spans[stage].append(max((last - first).total_seconds(), 0.0))
    return [
        {
            "stage": stage,
            "spans": len(spans[stage]),
            "single": single[stage],
            "mean_seconds": statistics.fmean(spans[stage]) if spans[stage] else None,
            "median_seconds": statistics.median(spans[stage]) if spans[stage] else None,
        }
        for stage in sorted(set(spans) | set(single))
    ]


def csat(*, session: Session, period: Period, stages: list[str]) -> dict:
    """Thumbs-up share of rated replies, per stage and per UTC day (a reply rated twice counts its latest rating)."""
    query = (
        select(
            Touchpoint.stage,
            Touchpoint.created_at,
            Touchpoint.data["message_id"].as_string(),
            Touchpoint.data["rating"].as_string(),
        )
        .where(Touchpoint.kind == "feedback", *period.where())
        .order_by(Touchpoint.created_at, Touchpoint.id)
    )
    latest: dict[str, tuple[str | None, str, str]] = {}
    for stage, at, message_id, rating in session.execute(query):
        if rating in ("up", "down"):
            latest[message_id or f"{at.isoformat()}-{len(latest)}"] = (stage, at.date().isoformat(), rating)
    by_stage: dict[str, Counter] = defaultdict(Counter)
    by_day: dict[str, Counter] = defaultdict(Counter)
    for stage, day, rating in latest.values():
        by_stage[stage or "unknown"][rating] += 1
        by_day[day][rating] += 1

    def share(key: str, counts: Counter, name: str) -> dict:
        rated = counts["up"] + counts["down"]
        return {name: key, "up": counts["up"], "down": counts["down"], "csat": counts["up"] / rated if rated else None}

    order = [s for s in stages if s in by_stage] + sorted(set(by_stage) - set(stages))
    total = Counter()
    for counts in by_stage.values():
        total.update(counts)
    return {
        "overall": share("all", total, "scope"),
        "by_stage": [share(s, by_stage[s], "stage") for s in order],
        "by_day": [share(d, by_day[d], "day") for d in sorted(by_day)],
    }


def daily(*, session: Session, period: Period) -> list[dict]:
    """Touchpoints (exchanges) per day and stage."""
    day = func.date(Touchpoint.created_at)
    rows = session.execute(
        select(day, Touchpoint.stage, func.count())
        .where(*_exchanges(period))
        .group_by(day, Touchpoint.stage)
        .order_by(day)
    ).all()
    return [{"day": str(d), "stage": s, "count": n} for d, s, n in rows]


def rates(*, session: Session, period: Period, stages: list[str]) -> list[dict]:
    """Per stage: exchanges, thumbs-down rate; conversations ending there, handoff rate and deflection."""
    exchanges = dict(
        session.execute(
            select(Touchpoint.stage, func.count()).where(*_exchanges(period)).group_by(Touchpoint.stage)
        ).all()
    )
    downs = dict(
        session.execute(
            select(Touchpoint.stage, func.count())
            .where(thumbs_down_condition(), *period.where())
            .group_by(Touchpoint.stage)
        ).all()
    )
    handoff_conversations = (
        select(Touchpoint.conversation_id).where(Touchpoint.kind == "handoff").distinct().scalar_subquery()
    )
    ended = dict(
        session.execute(
            select(Conversation.stage, func.count())
            .where(*period.where(Conversation.updated_at))
            .group_by(Conversation.stage)
        ).all()
    )
    handed = dict(
        session.execute(
            select(Conversation.stage, func.count())
            .where(*period.where(Conversation.updated_at), Conversation.id.in_(handoff_conversations))
            .group_by(Conversation.stage)
        ).all()
    )
    out = []
    for stage in stages:
        n, c, h = exchanges.get(stage, 0), ended.get(stage, 0), handed.get(stage, 0)
        out.append(
            {
                "stage": stage,
                "exchanges": n,
                "thumbs_down": downs.get(stage, 0),
                "thumbs_down_rate": downs.get(stage, 0) / n if n else 0.0,
                "conversations": c,
                "handoffs": h,
                "handoff_rate": h / c if c else 0.0,
                "deflection": (c - h) / c if c else 0.0,
            }
        )
    return out


def resolution(*, session: Session, period: Period) -> dict:
    """Conversations the bot resolved (no handoff), a person resolved (claimed, then closed or handed back), or not."""

    def conversations(*kinds: str) -> set[str]:
        query = select(Touchpoint.conversation_id).where(Touchpoint.kind.in_(kinds), *period.where()).distinct()
        return set(session.scalars(query))

    ever_handed = select(Touchpoint.conversation_id).where(Touchpoint.kind == "handoff").distinct()
    bot = session.scalar(
        select(func.count(func.distinct(Touchpoint.conversation_id))).where(
            *_exchanges(period), Touchpoint.conversation_id.not_in(ever_handed)
        )
    )
    human = conversations("handoff_claimed") & conversations("handoff_closed", "handoff_returned")
    requested = conversations("handoff")
    return {"bot_resolved": int(bot or 0), "human_resolved": len(human), "unresolved_handoffs": len(requested - human)}


def knowledge_gaps(
    *,
    session: Session,
    period: Period,
    embed: Callable[[list[str]], np.ndarray],
    is_small_talk: Callable[[str], bool],
    answered: Callable[[np.ndarray], bool] = lambda _vector: False,
) -> list[dict]:
    """Questions with weak retrieval, a thumbs down or followed by a handoff, grouped by stage and similar wording.

    Questions a curated answer now answers (`answered` on their vector), or answered when asked, are left out.
    """
    down_ids = {
        str(m)
        for m in session.scalars(select(Touchpoint.data["message_id"].as_string()).where(thumbs_down_condition()))
        if m
    }
    handoff_turns = dict(
        session.execute(
            select(Touchpoint.conversation_id, func.min(Touchpoint.turn))
            .where(Touchpoint.kind == "handoff")
            .group_by(Touchpoint.conversation_id)
        ).all()
    )
    flagged: list[tuple[str, str, set[str]]] = []
    last_before_handoff: dict[str, tuple[int, int]] = {}
    query = (
        select(
            Touchpoint.id,
            Touchpoint.conversation_id,
            Touchpoint.turn,
            Touchpoint.stage,
            Touchpoint.question,
            Touchpoint.retrieval_score,
        )
        .where(*_exchanges(period), Touchpoint.mode != "curated")  # staff already answered those
        .order_by(Touchpoint.created_at.desc())
        .limit(GAP_MAX_QUESTIONS * 5)
    )
    for tid, conversation_id, turn, stage, question, score in session.execute(query):
        if not question or is_small_talk(question):
            continue
        reasons = set()
        if score is None or score < LOW_RETRIEVAL:
            reasons.add("weak_retrieval")
        if tid in down_ids:
            reasons.add("thumbs_down")
        handoff_turn = handoff_turns.get(conversation_id)
        if handoff_turn is not None and turn < handoff_turn:
            best = last_before_handoff.get(conversation_id)
            if best is None or turn > best[0]:
                last_before_handoff[conversation_id] = (turn, len(flagged))
        flagged.append((stage or "", question, reasons))
    for _turn, index in last_before_handoff.values():
        flagged[index][2].add("handoff")
    flagged = [f for f in flagged if f[2]][:GAP_MAX_QUESTIONS]
    if not flagged:
        return []
    vectors = embed([q for _, q, _ in flagged])
    groups: list[dict] = []
    centroids: list[np.ndarray] = []
    for (stage, question, reasons), vector in zip(flagged, vectors, strict=True):
        if answered(vector):
            continue
        match = next(
            (i for i, g in enumerate(groups) if g["stage"] == stage and float(centroids[i] @ vector) >= GAP_SIMILARITY),
            None,
        )
        if match is None:
            groups.append({"stage": stage, "question": question, "count": 0, "examples": [], "reasons": Counter()})
            centroids.append(vector)
            match = len(groups) - 1
        group = groups[match]
        group["count"] += 1
        group["reasons"].update(reasons)
        if question not in group["examples"] and len(group["examples"]) < 5:
            group["examples"].append(question)
    groups.sort(key=lambda g: (-g["count"], g["stage"], g["question"]))
    return [{**g, "reasons": dict(g["reasons"])} for g in groups]
