"""Clear 4xx answers for bad requests, and a cap on request size."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _describe(error: dict) -> str:
    """'message: String should have at most 4000 characters' from a pydantic error."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 (400 for unparseable JSON) with a one-line message and the field details."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse(
            status_code=400, content={"error": "the request body is not valid JSON", "detail": _plain(errors)}
        )
    return JSONResponse(
        status_code=422,
        content={"error": "; ".join(_describe(e) for e in errors), "detail": _plain(errors)},
    )


def _plain(errors: list[dict]) -> list[dict]:
    """Errors without the offending input (it may be huge) and with JSON-safe context."""
    return [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in errors]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on an app."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


class BodySizeLimit:
    """Refuse request bodies larger than max_bytes with 413 before the app reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"request body too large: the limit is {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(BaseException):  # noqa: N818
    """Raised inside receive() when the body passes the limit.

    A BaseException, so FastAPI's body parsing (which turns any Exception into a 400) lets it through to us.
    """


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """HTTPException as JSON; a 422 keeps the validation-error shape (detail is a list) with a one-line error."""
    headers = getattr(exc, "headers", None)
    if exc.status_code == 422 and isinstance(exc.detail, str):
        content = {"error": exc.detail, "detail": [{"loc": [], "msg": exc.detail, "type": "value_error"}]}
        return JSONResponse(status_code=422, content=content, headers=headers)
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=headers)
