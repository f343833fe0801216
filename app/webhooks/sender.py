"""The background sender: claims due outbox rows, POSTs them signed, retries with capped exponential backoff."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from datetime import timedelta

import httpx
from anyio import to_thread
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.observability import metrics
from app.store.models import utcnow
from app.webhooks import outbox, signing
from app.webhooks.models import OutboxEvent

log = logging.getLogger("journey.webhooks")

BATCH = 50
PURGE_EVERY = 600.0


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempts`-th failure: base * 2^(attempts-1), capped, with equal jitter."""
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def retry_after(response: httpx.Response | None, cap: float) -> float | None:
    """A receiver's numeric Retry-After header, capped."""
    value = response.headers.get("retry-after") if response is not None else None
    if value and value.strip().isdigit():
        return min(float(value), cap)
    return None


class WebhookSender:
    """Delivers the outbox to the configured URLs from inside one server process (several may run at once)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.urls = outbox.webhook_urls(settings)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.sessions: sessionmaker | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._blocked_until: dict[str, float] = {}
        self._last_purge = 0.0

    @property
    def enabled(self) -> bool:
        """True when at least one URL is configured."""
        return bool(self.urls)

    async def start(self, sessions: sessionmaker) -> None:
        """Start delivering in the background (nothing to do without URLs)."""
        self.sessions = sessions
        metrics.set_backlog_source(self.backlog)
        if not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        event.listen(sessions, "after_commit", self._after_commit)
        self._task = asyncio.create_task(self._run(), name="webhook-sender")
        log.info("webhook sender started", extra={"urls": len(self.urls), "worker": self.worker})

    async def stop(self) -> None:
        """Stop the loop; leased rows go back to the queue when their lease ends."""
        if self._task is None:
            return
        event.remove(self.sessions, "after_commit", self._after_commit)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    def backlog(self) -> dict[str, int]:
        """Outbox rows per status for the configured URLs."""
        if self.sessions is None or not self.enabled:
            return {}
        with self.sessions() as session:
            return outbox.counts(session=session, urls=self.urls)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(outbox.NEW_EVENTS, False) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        timeout = httpx.Timeout(self.settings.webhook_timeout)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            while True:
                try:
                    busy = await self.deliver_due(client)
                    await self._maybe_purge()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a database hiccup must not end the sender; try again soon
                    log.exception("webhook sender loop failed; retrying")
                    busy = False
                if not busy:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval)
                    except TimeoutError:
                        pass

    async def deliver_due(self, client: httpx.AsyncClient) -> bool:
        """One pass over the URLs; True when something was delivered (so there may be more right away)."""
        delivered_any = False
        loop = asyncio.get_running_loop()
        for url in self.urls:
            if self._blocked_until.get(url, 0) > loop.time():
                continue
            lease = self.settings.webhook_timeout * BATCH + 30
            stop_by = loop.time() + lease - self.settings.webhook_timeout - 10
            claimed = await self._db(outbox.claim, url=url, limit=BATCH, worker=self.worker, lease=lease)
            delivered: list[tuple[int, int]] = []
            failed: outbox.FailedAttempt | None = None
            try:
                for row in claimed.rows:
                    status, failed = await self._send(client, row)
                    if failed is not None:
                        break
                    delivered.append((row.id, status))
                    if loop.time() > stop_by:
                        break
            finally:
                await self._db(outbox.settle, token=claimed.token, delivered=delivered, failed=failed)
            if delivered:
                delivered_any = True
                self._blocked_until.pop(url, None)
                metrics.WEBHOOK_DELIVERIES.labels(result="delivered").inc(len(delivered))
        return delivered_any

    async def _send(self, client: httpx.AsyncClient, row: OutboxEvent) -> tuple[int, outbox.FailedAttempt | None]:
        """POST one event; (status, None) on a 2xx, else (status, the failed attempt to record)."""
        body = row.body.encode()
        headers = signing.headers(
            secret=self.settings.webhook_secret or "", body=body, event_id=row.event_id, event_type=row.event_type
        )
        response: httpx.Response | None = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            response = await client.post(row.url, content=body, headers=headers)
            error = "" if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        metrics.WEBHOOK_SECONDS.observe(loop.time() - started)
        status = response.status_code if response is not None else 0
        if not error:
            return status, None
        attempts = row.attempts + 1
        s = self.settings
        wait = retry_after(response, s.webhook_backoff_max) or backoff(
            attempts, base=s.webhook_backoff_base, cap=s.webhook_backoff_max
        )
        dead = utcnow() - row.created_at > timedelta(hours=s.webhook_max_age_hours)
        self._blocked_until[row.url] = loop.time() + wait
        metrics.WEBHOOK_DELIVERIES.labels(result="given_up" if dead else "retry").inc()
        log.warning(
            "webhook delivery failed",
            extra={"event_id": row.event_id, "attempts": attempts, "retry_in_s": round(wait, 2), "error": error},
        )
        failed = outbox.FailedAttempt(
            row_id=row.id,
            status=response.status_code if response is not None else None,
            error=error,
            retry_at=utcnow() + timedelta(seconds=wait),
            dead=dead,
        )
        return status, failed

    async def _maybe_purge(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        days = self.settings.webhook_retention_days
        purged = await self._db(outbox.purge, older_than=timedelta(days=days))
        purged += await self._db(outbox.purge_orphans)
        if purged:
            log.info("purged old webhook events", extra={"purged": purged})

    async def _db(self, fn, **kwargs):
        def call():
            with self.sessions() as session:
                return fn(session=session, **kwargs)

        return await to_thread.run_sync(call)
