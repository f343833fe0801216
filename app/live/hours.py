"""Office hours: `mon-fri 09:00-17:30; sat 10:00-14:00` read in one IANA time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(r"^([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Window:
    """Open from `start` to `end` (exclusive) on `day` (0 = Monday)."""

    day: int
    start: time
    end: time


def _time(hours: str, minutes: str, spec: str) -> time:
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0:
        return time.max
    if h > 23 or m > 59:
        raise ValueError(f"office hours: {hours}:{minutes} is not a time of day in {spec!r}")
    return time(h, m)


def parse_office_hours(spec: str) -> list[Window]:
    """Read `mon-fri 09:00-17:30; sat 10:00-14:00` (empty = always open); ValueError with the reason otherwise."""
    windows: list[Window] = []
    for part in (p.strip().lower() for p in spec.split(";")):
        if not part:
            continue
        match = _RULE.match(part)
        if not match:
            raise ValueError(f"office hours look like 'mon-fri 09:00-17:30; sat 10:00-14:00', got {part!r}")
        first, last, h1, m1, h2, m2 = match.groups()
        for name in (first, last or first):
            if name not in DAYS:
                raise ValueError(f"office hours: unknown day {name!r} (use {', '.join(DAYS)})")
        start, end = _time(h1, m1, part), _time(h2, m2, part)
        if end <= start:
            raise ValueError(f"office hours: the end must come after the start in {part!r}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
        windows.extend(Window(day, start, end) for day in days)
    return windows


def office_zone(name: str) -> ZoneInfo:
    """The IANA zone, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"office time zone: unknown IANA name {name!r} (e.g. Europe/Paris)") from exc


def is_open(windows: list[Window], zone: ZoneInfo, at: datetime) -> bool:
    """True when `at` falls in a window (no windows = always open)."""
    if not windows:
        return True
    local = at.astimezone(zone)
    now = local.time()
    return any(w.day == local.weekday() and w.start <= now < w.end for w in windows)
