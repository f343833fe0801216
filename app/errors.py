"""Clear 4xx answers for bad requests, a cap on request size, and the errors the OpenAPI schema documents."""

from __future__ import annotations

import json
from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class FieldError(BaseModel):
    """One invalid parameter or field of a 422."""

    loc: list[str | int]
    type: str | None = None
    msg: str | None = None


class ErrorBody(BaseModel):
    """The body of every error answer (the OpenAI-compatible routes answer in OpenAI's shape instead)."""

    model_config = ConfigDict(extra="allow")

    error: str | None = Field(
        None, description="one line saying what was wrong (400, 413, 415, 422), or a code (409 of the live desk, 503)"
    )
    detail: str | list[FieldError] | None = Field(
        None, description="what was wrong: a sentence, or every invalid field of a 422"
    )


ERRORS: dict[int, str] = {
    400: "the body is not valid JSON",
    401: "no valid staff token",
    403: "the token's role is too low for this action",
    404: "not found",
    409: "conflicts with the current state",
    413: "the body is over JOURNEY_MAX_BODY_BYTES",
    415: "the body is not JSON (send Content-Type: application/json)",
    422: "a parameter or field is missing or invalid",
    429: "over a rate limit; Retry-After says when to try again",
    503: "the database or the knowledge base cannot be read now; Retry-After says when to try again",
}


def error_responses(*codes: int | tuple[int, str], model: type[BaseModel] = ErrorBody) -> dict[int | str, dict]:
    """`responses=` for a route or router: each status (or (status, what it means here)) with its error body model."""
    out: dict[int | str, dict] = {}
    for code in codes:
        status, description = code if isinstance(code, tuple) else (code, ERRORS[code])
        out[status] = {"model": model, "description": description}
    return out


def event_stream(description: str, events: Iterable[str] = (), *, json_too: bool = False) -> dict[int | str, dict]:
    """`responses=` for a route whose 200 is server-sent events named `events` (unnamed when empty), each data JSON;
    and a JSON body too when `json_too`. The schema describes one event, as OpenAPI 3.1 does for event streams."""
    event = {"type": "string", "enum": list(events)} if events else {"type": "string"}
    one = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": event,
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string", "description": "a resume point (Last-Event-ID)"},
            "retry": {"type": "integer"},
        },
    }
    content = {"text/event-stream": {"schema": one}}
    if json_too:
        content["application/json"] = {"schema": {"type": "object"}}
    return {200: {"description": description, "content": content}}


def document_errors(app: FastAPI) -> None:
    """Have the OpenAPI schema list what the app's shared layers answer, on every operation, with ErrorBody.

    Where FastAPI validates parameters or a JSON body (it documents a 422 there): 422, and with a body 400 and 415 too;
    on any body 413 (BodySizeLimit). The errors of a route or router (401, 403, 404, 409, 429, 503) are declared beside
    it with `responses=error_responses(...)`; this never replaces those.
    """
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        for operations in schema["paths"].values():
            for operation in operations.values():
                responses = operation["responses"]
                validated = "HTTPValidationError" in json.dumps(responses.get("422", {}))  # FastAPI's own 422
                codes = [422] if validated else []
                if "requestBody" in operation:
                    codes += [400, 413, 415] if validated else [413]
                for code in codes:
                    if validated and code == 422 or str(code) not in responses:
                        content = {"application/json": {"schema": ref}}
                        responses[str(code)] = {"description": ERRORS[code], "content": content}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(components["ErrorBody"].pop("$defs", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _describe(error: dict) -> str:
    """'message: String should have at most 4000 characters' from a pydantic error ('body: ...' for the whole body)."""
    loc = tuple(error.get("loc", ()))
    where = ".".join(str(p) for p in loc if p != "body") or ("body" if loc == ("body",) else "")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if loc == ("body",) and error.get("type") == "missing":
        message = "a JSON object is required"
    return f"{where}: {message}" if where else message


def _is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 (400 for unparseable JSON, 415 for a body that is not JSON) with a one-line message and the field details."""
    errors = exc.errors()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and not _is_json(media) and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors):
        message = f"the body must be JSON (Content-Type: application/json), not {media[:100]}"
        return JSONResponse(status_code=415, content={"error": message, "detail": message})
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
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    if exc.status_code == 422 and isinstance(exc.detail, str):
        content = {"error": exc.detail, "detail": [{"loc": [], "msg": exc.detail, "type": "value_error"}]}
        return JSONResponse(status_code=422, content=content, headers=headers)
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (Starlette's 405 names only the first matching route's)."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
