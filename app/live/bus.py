"""The live channel: notices ("conversation X has new events"), typing and queue changes, to every open stream.

In one process the bus fans messages out to local subscribers; with JOURNEY_REDIS_URL it publishes them on the
Redis pub/sub channel `journey:live` and every worker's listener fans them out to its own subscribers. The bus
carries wake-ups only: the events themselves are rows in `live_events`, so a lost message costs at most the
streams' 2 s safety poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

CHANNEL = "journey:live"
QUEUE_SIZE = 1000
log = logging.getLogger("journey.live")


class Subscription:
    """Messages for one open stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict] = asyncio.Queue(QUEUE_SIZE)

    def put(self, message: dict) -> None:
        """Deliver a message (dropped when the stream lags: it re-reads the database anyway)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(message)

    async def get(self, timeout: float) -> dict | None:
        """The next message, or None after `timeout` seconds."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class LocalBus:
    """Fan-out inside this process."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to close."""

    def deliver(self, message: dict) -> None:
        """Hand a message to every local subscriber."""
        for subscriber in list(self._subscribers):
            subscriber.put(message)

    async def publish(self, message: dict) -> None:
        """Send a message to every stream."""
        self.deliver(message)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Receive messages while the block runs."""
        subscription = Subscription()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)


class RedisBus(LocalBus):
    """Fan-out across workers through Redis pub/sub (one listener per process)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_connect_timeout=2, health_check_interval=10)
        self._listener: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start listening; returns once subscribed (or after 5 s, the listener keeps retrying)."""
        self._listener = asyncio.create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._redis.aclose()

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._ready.set()
                    async for raw in pubsub.listen():
                        if raw.get("type") != "message":
                            continue
                        try:
                            message = json.loads(raw["data"])
                        except ValueError:
                            continue  # not one of ours
                        if isinstance(message, dict):
                            self.deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: streams still poll; retry the subscription
                log.warning("live bus: Redis subscription lost (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)

    async def publish(self, message: dict) -> None:
        """Publish on Redis; if Redis is down, at least this worker's streams hear it."""
        try:
            await self._redis.publish(CHANNEL, json.dumps(message, separators=(",", ":")))
        except Exception as exc:  # noqa: BLE001 - the event is committed: other workers find it by polling
            log.warning("live bus: Redis publish failed (%s); delivering locally only", exc)
            self.deliver(message)


def make_bus(redis_url: str | None) -> LocalBus:
    """Redis pub/sub when a URL is configured, else in process."""
    return RedisBus(redis_url) if redis_url else LocalBus()
