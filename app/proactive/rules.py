"""Proactive message rules (knowledge/proactive.yaml, beside stages.yaml) and how one visitor is matched to them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import urlsplit

import yaml

MAX_TEXT = 200
MAX_CHIP = 120
MAX_CHIPS = 4
MAX_AFTER_SECONDS = 3600
NO_STAGE = "none"  # in `stage:`, a visitor with no stage yet (never chatted)
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_KEYS = {"id", "message", "chips", "page", "stage", "reached", "not_reached", "after_seconds", "returning"}


class ProactiveConfigError(ValueError):
    """proactive.yaml is malformed."""


@dataclass(frozen=True)
class Journey:
    """What is known of one visitor: their latest stage, every stage reached, the page and visit."""

    latest: str | None
    reached: frozenset[str]
    path: str
    seconds_on_page: float
    visits: int


@dataclass(frozen=True)
class Rule:
    """One opening message with its chips and the conditions that pick it (every condition given must hold)."""

    id: str
    message: str
    chips: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()  # path patterns (fnmatch, case-insensitive); none: any page
    stages: tuple[str, ...] = ()  # the latest stage is one of them ("none": no stage yet); none: any
    reached: tuple[str, ...] = ()  # the journey so far holds at least one of them
    not_reached: tuple[str, ...] = ()  # the journey so far holds none of them
    after_seconds: float = 0.0  # time on the page
    returning: bool | None = None  # True: only returning visits, False: only first visits

    def matches_except_time(self, journey: Journey) -> bool:
        """Every condition holds but maybe the time on the page."""
        if self.pages and not any(fnmatchcase(journey.path, p) for p in self.pages):
            return False
        if self.stages and (journey.latest or NO_STAGE) not in self.stages:
            return False
        if self.reached and not journey.reached.intersection(self.reached):
            return False
        if self.not_reached and journey.reached.intersection(self.not_reached):
            return False
        return self.returning is None or self.returning == (journey.visits > 1)

    def matches(self, journey: Journey) -> bool:
        """Every condition holds."""
        return journey.seconds_on_page >= self.after_seconds and self.matches_except_time(journey)


def page_path(url: str) -> str:
    """The lowercased path of a page URL ('/' when it has none)."""
    try:
        return (urlsplit(url).path or "/").lower()
    except ValueError:
        return "/"


def pick(rules: tuple[Rule, ...], journey: Journey, shown: set[str]) -> tuple[Rule | None, float | None]:
    """The first rule that matches and was not shown to this visitor; else the seconds until one could (or None)."""
    waits = []
    for rule in rules:
        if rule.id in shown or not rule.matches_except_time(journey):
            continue
        if journey.seconds_on_page >= rule.after_seconds:
            return rule, None
        waits.append(rule.after_seconds - journey.seconds_on_page)
    return None, (min(waits) if waits else None)


def _strings(value: object, where: str, *, limit: int, most: int = 50) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise ProactiveConfigError(f"{where}: expected a string or a list of non-empty strings, got {value!r}")
    if len(items) > most or any(len(i) > limit for i in items):
        raise ProactiveConfigError(f"{where}: at most {most} items of at most {limit} characters")
    return tuple(i.strip() for i in items)


def _rule(item: object, number: int, stages: list[str]) -> Rule:
    where = f"rule #{number}"
    if not isinstance(item, dict):
        raise ProactiveConfigError(f"{where}: expected a mapping, got {item!r}")
    if unknown := set(item) - _KEYS:
        raise ProactiveConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    rule_id = str(item.get("id", ""))
    if not _ID.match(rule_id):
        raise ProactiveConfigError(f"{where}: id must be 1-40 lowercase letters, digits, - or _, got {rule_id!r}")
    where = f"rule {rule_id!r}"
    message = _strings(item.get("message", ""), f"{where} message", limit=MAX_TEXT, most=1)[0]
    chips = _strings(item.get("chips") or [], f"{where} chips", limit=MAX_CHIP, most=MAX_CHIPS)
    pages = tuple(p.lower() for p in _strings(item.get("page") or [], f"{where} page", limit=300))
    known = [*stages, NO_STAGE]
    lists = {}
    for key in ("stage", "reached", "not_reached"):
        lists[key] = _strings(item.get(key) or [], f"{where} {key}", limit=40)
        if bad := [s for s in lists[key] if s not in (known if key == "stage" else stages)]:
            raise ProactiveConfigError(f"{where} {key}: unknown stages {bad}; expected some of {', '.join(known)}")
    after = item.get("after_seconds", 0)
    if isinstance(after, bool) or not isinstance(after, int | float) or not 0 <= after <= MAX_AFTER_SECONDS:
        raise ProactiveConfigError(f"{where} after_seconds: a number from 0 to {MAX_AFTER_SECONDS}, got {after!r}")
    returning = item.get("returning")
    if returning is not None and not isinstance(returning, bool):
        raise ProactiveConfigError(f"{where} returning: true or false, got {returning!r}")
    return Rule(
        id=rule_id,
        message=message,
        chips=chips,
        pages=pages,
        stages=lists["stage"],
        reached=lists["reached"],
        not_reached=lists["not_reached"],
        after_seconds=float(after),
        returning=returning,
    )


def load_rules(path: Path, stages: list[str]) -> tuple[Rule, ...]:
    """Read and check the rules of a proactive file (none when the file is absent)."""
    if not path.is_file():
        return ()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProactiveConfigError(f"{path}: not valid YAML: {exc}") from exc
    items = raw.get("rules") if isinstance(raw, dict) else None
    if not isinstance(items or [], list):
        raise ProactiveConfigError(f"{path}: `rules` must be a list")
    try:
        rules = tuple(_rule(item, i + 1, stages) for i, item in enumerate(items or []))
    except ProactiveConfigError as exc:
        raise ProactiveConfigError(f"{path}: {exc}") from exc
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise ProactiveConfigError(f"{path}: rule ids must be unique")
    return rules
