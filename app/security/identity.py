"""Verified identity: the host site signs who the visitor is with HMAC-SHA256 on its server.

The signature covers, in this order and joined by newlines: id, email, name, plan, known_customer ("1"/"0")
and expires (Unix seconds); a field with a line break is refused. The secret (JOURNEY_IDENTITY_SECRET) stays on the
host's server.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNED_TEXT = ("id", "email", "name", "plan")


class IdentityError(ValueError):
    """The identity's signature is missing, wrong or expired."""


def signing_payload(identity: dict) -> bytes:
    """The exact bytes that are signed."""
    fields = [
        str(identity.get("id") or ""),
        str(identity.get("email") or ""),
        str(identity.get("name") or ""),
        str(identity.get("plan") or ""),
        "1" if identity.get("known_customer") else "0",
        str(int(identity.get("expires") or 0)),
    ]
    return "\n".join(fields).encode()


def sign(identity: dict, secret: str) -> str:
    """The hex signature a host server computes (used by tests and the docs)."""
    return hmac.new(secret.encode(), signing_payload(identity), hashlib.sha256).hexdigest()


def verify(identity: dict, secret: str, *, now: float | None = None) -> None:
    """Raise IdentityError unless the identity carries a valid, unexpired signature."""
    signature = identity.get("signature")
    if not isinstance(signature, str) or not signature:
        raise IdentityError("identity must be signed: add 'signature' (HMAC-SHA256 computed on your server)")
    expires = identity.get("expires")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise IdentityError("a signed identity needs 'expires' (Unix seconds)")
    if expires < (now if now is not None else time.time()):
        raise IdentityError("the identity signature has expired; sign it again on your server")
    if any("\n" in str(identity.get(key) or "") or "\r" in str(identity.get(key) or "") for key in SIGNED_TEXT):
        # the fields are signed joined by newlines: one inside a field would let its text move to the next field
        raise IdentityError("identity fields must not contain line breaks")
    if not hmac.compare_digest(sign(identity, secret).encode(), signature.lower().encode()):
        raise IdentityError("the identity signature does not match")
