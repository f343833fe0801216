"""HMAC-SHA256 signatures of webhook requests: `sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Journey-Signature"
TIMESTAMP_HEADER = "X-Journey-Timestamp"
EVENT_ID_HEADER = "X-Journey-Event-Id"
EVENT_TYPE_HEADER = "X-Journey-Event-Type"
DEFAULT_TOLERANCE = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str, body: bytes, signature: str, timestamp: str, *, tolerance: int = DEFAULT_TOLERANCE, now=None
) -> bool:
    """True when the signature matches and the timestamp is within `tolerance` seconds (what a receiver does)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature or "")


def headers(*, secret: str, body: bytes, event_id: str, event_type: str, timestamp: int | None = None) -> dict:
    """Every header of one delivery attempt."""
    sent = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": "JourneyGuide-Webhooks/1",
        SIGNATURE_HEADER: sign(secret, sent, body),
        TIMESTAMP_HEADER: str(sent),
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: event_type,
    }
