"""GET /widget.js (the embed), GET / (the Lumio demo page) and GET /v1/suggestions (starter questions)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from app.config import REPO_ROOT
from app.deps import ChatDep
from app.errors import error_responses
from app.security.headers import csp_with_inline_scripts
from app.security.ratelimit import rate_limits
from app.widget.assets import StaticAsset, lean_script
from app.widget.service import starter_questions

WIDGET_DIR = REPO_ROOT / "widget"

router = APIRouter(tags=["widget"])
widget_js = StaticAsset(WIDGET_DIR / "widget.js", "text/javascript; charset=utf-8", "public, max-age=300", lean_script)
demo_page = StaticAsset(WIDGET_DIR / "demo.html", "text/html; charset=utf-8", "no-cache")


class StartersOut(BaseModel):
    """Questions to offer on an empty chat."""

    stage: str
    basis: str
    suggestions: list[str]


@router.api_route("/widget.js", methods=["GET", "HEAD"], include_in_schema=False)
async def widget(request: Request) -> Response:
    """The widget script (ETag, gzip when accepted, cached for five minutes)."""
    return widget_js.response(request)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def demo(request: Request) -> Response:
    """The Lumio demo page with the widget on it (its inline config script allowed by hash in the CSP)."""
    response = demo_page.response(request)
    response.headers["Content-Security-Policy"] = csp_with_inline_scripts(demo_page.path.read_text())
    response.headers["X-Frame-Options"] = "DENY"
    return response


@router.get("/v1/suggestions", response_model=StartersOut, responses=error_responses(429, 503))
async def suggestions(
    request: Request,
    chat: ChatDep,
    stage: Annotated[str | None, Query(max_length=40)] = None,
    page_url: Annotated[str, Query(max_length=2048)] = "",
) -> dict:
    """Starter questions for the stage (given, else the page URL's, else the first), from the knowledge base."""
    await rate_limits(request).check_read(request)
    if stage is not None and stage not in chat.journey.names:
        message = f"unknown stage {stage!r}; expected one of {', '.join(chat.journey.names)}"
        raise RequestValidationError([{"loc": ("query", "stage"), "msg": message, "type": "enum"}])
    call = partial(starter_questions, chat=chat, stage=stage, page_url=page_url)
    return await to_thread.run_sync(call)
