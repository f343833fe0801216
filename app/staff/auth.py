"""Staff tokens: created on the command line, stored hashed, checked on every staff request with a role."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import error_responses
from app.security.ratelimit import Limit, rate_limits
from app.staff.models import ROLES, StaffToken
from app.store.models import utcnow

TOKEN_PREFIX = "jgs_"


@dataclass(frozen=True)
class StaffUser:
    """Who is calling: the token's name and role."""

    token_id: int
    name: str
    role: str

    def may(self, role: str) -> bool:
        """True when this user's role is at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, session: Session, name: str, role: str) -> tuple[StaffToken, str]:
    """Create a token; the clear text is returned once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name.strip():
        raise ValueError("a token needs a name (whose it is)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = StaffToken(name=name.strip()[:120], role=role, token_hash=hash_token(token), created_at=utcnow())
    session.add(row)
    session.commit()
    return row, token


def list_tokens(*, session: Session) -> list[StaffToken]:
    """Every token, newest first."""
    return list(session.scalars(select(StaffToken).order_by(StaffToken.id.desc())).all())


def revoke_token(*, session: Session, token_id: int) -> bool:
    """Revoke a token; False if there is no such active token."""
    row = session.get(StaffToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.commit()
    return True


def _lookup(sessions, token: str) -> StaffUser | None:
    with sessions() as session:
        row = session.scalar(select(StaffToken).where(StaffToken.token_hash == hash_token(token)))
        if row is None or row.revoked_at is not None:
            return None
        row.last_used_at = utcnow()
        session.commit()
        return StaffUser(token_id=row.id, name=row.name, role=row.role)


async def current_staff(request: Request) -> StaffUser:
    """The staff user of a bearer token, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "staff token required: send 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
        )
    limits = rate_limits(request)
    key = f"staff-auth:{limits.client_ip(request)}"
    allowed = Limit.parse(request.app.state.services.settings.staff_auth_limit)
    if (wait := await limits.counter.peek(key, allowed)) is not None:  # guessing tokens: checked no more for now
        seconds = max(1, math.ceil(wait))
        message = f"too many wrong staff tokens from this address: try again in {seconds}s"
        raise HTTPException(429, message, headers={"Retry-After": str(seconds)})
    user = await to_thread.run_sync(_lookup, request.app.state.services.chat.sessions, token.strip())
    if user is None:
        await limits.counter.hit(key, allowed)
        raise HTTPException(401, "invalid or revoked staff token", headers={"WWW-Authenticate": "Bearer"})
    return user


STAFF_ERRORS = error_responses(
    (401, "no valid staff token"),
    (403, "the token's role is too low for this action"),
    (429, "too many wrong staff tokens from this address (Retry-After)"),
    503,
)


def require(role: str):
    """A dependency that lets through staff with at least `role`, else 403."""

    async def check(user: Annotated[StaffUser, Depends(current_staff)]) -> StaffUser:
        if not user.may(role):
            raise HTTPException(403, f"this action needs the {role} role; your token has {user.role}")
        return user

    return check


Viewer = Annotated[StaffUser, Depends(require("viewer"))]
Editor = Annotated[StaffUser, Depends(require("editor"))]
Admin = Annotated[StaffUser, Depends(require("admin"))]
