"""Fixed-window rate limits per visitor and per IP: in memory for one process, in Redis across workers."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import HTTPException, Request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """`count` requests per `seconds`, parsed from "20/60"."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, spec: str) -> Limit:
        """Read "COUNT/SECONDS"."""
        try:
            count, seconds = (int(part) for part in spec.split("/"))
        except ValueError as exc:
            raise ValueError(f"a rate limit looks like 20/60 (requests per seconds), got {spec!r}") from exc
        if count < 1 or seconds < 1:
            raise ValueError(f"a rate limit needs a positive count and window, got {spec!r}")
        return cls(count, seconds)


class MemoryCounter:
    """Counters in this process (one worker)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    async def hit(self, key: str, limit: Limit) -> float | None:
        """Count a request; None if allowed, else seconds until the window resets."""
        now = time.monotonic()
        with self._lock:
            if len(self._windows) > 100_000:
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            ends, count = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, count = now + limit.seconds, 0
            count += 1
            self._windows[key] = (ends, count)
        return None if count <= limit.count else ends - now

    async def peek(self, key: str, limit: Limit) -> float | None:
        """Seconds until the window resets when the key is over its limit now, else None (nothing counted)."""
        now = time.monotonic()
        with self._lock:
            ends, count = self._windows.get(key, (0.0, 0))
        return ends - now if ends > now and count >= limit.count else None


class RedisCounter:
    """Counters shared by every worker through Redis (INCR + EXPIRE per window).

    While Redis cannot be reached, each worker counts in its own memory (limits per worker, not refusals for all):
    a rate limit protects the service, it must not take the chat down with it.
    """

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._fallback = MemoryCounter()
        self._warned = 0.0

    async def hit(self, key: str, limit: Limit) -> float | None:
        """Count a request; None if allowed, else seconds until the window resets."""
        name = f"journey:rl:{key}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                count, _set, ttl = await pipe.incr(name).expire(name, limit.seconds, nx=True).ttl(name).execute()
        except Exception as exc:  # noqa: BLE001 - any Redis failure: count in this worker instead
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate limits: Redis unavailable (%s); counting per worker until it is back", exc)
            return await self._fallback.hit(key, limit)
        return None if count <= limit.count else float(max(ttl, 1))

    async def peek(self, key: str, limit: Limit) -> float | None:
        """Seconds until the window resets when the key is over its limit now, else None (nothing counted)."""
        name = f"journey:rl:{key}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                count, ttl = await pipe.get(name).ttl(name).execute()
        except Exception:  # noqa: BLE001 - as in hit(): this worker's own counts
            return await self._fallback.peek(key, limit)
        return float(max(ttl, 1)) if count is not None and int(count) >= limit.count else None

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class OpenStreams:
    """Streams open now, counted per key in this worker (a connection lives in one process)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, limits: dict[str, int]) -> str | None:
        """Count one more stream under every key; or, when a key is at its limit, count nothing and return that key."""
        with self._lock:
            for key, limit in limits.items():
                if self._open.get(key, 0) >= limit:
                    return key
            for key in limits:
                self._open[key] = self._open.get(key, 0) + 1
        return None

    def give_back(self, keys: Iterable[str]) -> None:
        """A stream taken under these keys ended."""
        with self._lock:
            for key in keys:
                left = self._open.get(key, 0) - 1
                if left > 0:
                    self._open[key] = left
                else:
                    self._open.pop(key, None)


class RateLimits:
    """The chat endpoints' limits: per client IP and per visitor id."""

    def __init__(
        self, *, counter, per_ip: Limit, per_visitor: Limit, trust_forwarded: bool, reads_per_ip: Limit | None = None
    ) -> None:
        self.counter = counter
        self.per_ip = per_ip
        self.per_visitor = per_visitor
        self.trust_forwarded = trust_forwarded
        self.reads_per_ip = reads_per_ip or Limit(count=120, seconds=60)
        self.streams = OpenStreams()

    def client_ip(self, request: Request) -> str:
        """The caller's address (the first X-Forwarded-For hop when the proxy is trusted)."""
        if self.trust_forwarded and (forwarded := request.headers.get("x-forwarded-for")):
            return forwarded.split(",")[0].strip()[:64]
        return request.client.host if request.client else "unknown"

    async def check(self, request: Request, visitor_id: str | None) -> None:
        """Raise 429 with Retry-After when the IP or the visitor is over its limit."""
        checks = [(f"ip:{self.client_ip(request)}", self.per_ip, "this network address")]
        if visitor_id:
            checks.append((f"visitor:{visitor_id}", self.per_visitor, "this visitor"))
        for key, limit, who in checks:
            retry = await self.counter.hit(key, limit)
            if retry is not None:
                raise _too_many(f"messages from {who}", limit, retry)

    async def check_read(self, request: Request) -> None:
        """Raise 429 with Retry-After when the IP is over its limit of visitor reads (transcripts, suggestions, live
        streams opened); counted apart from chat messages, so a page load does not use up a visitor's messages."""
        limit = self.reads_per_ip
        retry = await self.counter.hit(f"reads:{self.client_ip(request)}", limit)
        if retry is not None:
            raise _too_many("requests from this network address", limit, retry)


def open_stream_slot(request: Request, visitor_id: str) -> list[str]:
    """Take a /live stream slot for the caller's IP and visitor id (give it back with `limits.streams.give_back`);
    429 when either already has its JOURNEY_LIVE_STREAMS_PER_IP / _PER_VISITOR streams open."""
    limits, settings = rate_limits(request), request.app.state.services.settings
    keys = {
        f"ip:{limits.client_ip(request)}": settings.live_streams_per_ip,
        f"visitor:{visitor_id}": settings.live_streams_per_visitor,
    }
    if (full := limits.streams.take(keys)) is not None:
        who = "this network address" if full.startswith("ip:") else "this visitor"
        message = f"too many live streams open from {who}: at most {keys[full]} at once; close one first"
        raise HTTPException(429, message, headers={"Retry-After": "5"})
    return list(keys)


def _too_many(what: str, limit: Limit, retry: float) -> HTTPException:
    """The 429 for a limit that is used up, with Retry-After in whole seconds."""
    seconds = max(1, math.ceil(retry))
    return HTTPException(
        429,
        f"too many {what}: the limit is {limit.count} per {limit.seconds}s; try again in {seconds}s",
        headers={"Retry-After": str(seconds)},
    )


def rate_limits(request: Request) -> RateLimits:
    """The app's limits, built on first use from its settings (Redis when JOURNEY_REDIS_URL is set)."""
    limits = getattr(request.app.state, "rate_limits", None)
    if limits is None:
        settings = request.app.state.services.settings
        counter = RedisCounter(settings.redis_url) if settings.redis_url else MemoryCounter()
        limits = RateLimits(
            counter=counter,
            per_ip=Limit.parse(settings.rate_limit_ip),
            per_visitor=Limit.parse(settings.rate_limit_visitor),
            trust_forwarded=settings.trust_forwarded_for,
            reads_per_ip=Limit.parse(settings.rate_limit_reads),
        )
        request.app.state.rate_limits = limits
    return limits
