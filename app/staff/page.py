"""GET /staff (the staff page) and GET /staff/assets/{name}, served with a strict Content-Security-Policy."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from app.config import REPO_ROOT
from app.widget.assets import StaticAsset

STAFF_DIR = REPO_ROOT / "staff"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(tags=["staff page"])
page = StaticAsset(STAFF_DIR / "index.html", "text/html; charset=utf-8", "no-cache")
SHARED_START = b"// <shared-renderer>"
SHARED_END = b"// </shared-renderer>"


def widget_renderer(widget_js: bytes) -> bytes:
    """The widget's safe Markdown renderer (between its shared-renderer markers) as a script for the staff page.

    One renderer for both: the staff page shows guide replies exactly as visitors saw them, never parsed as HTML.
    """
    start = widget_js.index(SHARED_START)
    end = widget_js.index(SHARED_END, start) + len(SHARED_END)
    return (
        b"/* Served from widget/widget.js by app/staff/page.py: the widget's Markdown renderer. */\n"
        b'(() => {\n  "use strict";\n  const d = document;\n'
        + widget_js[start:end]
        + b"\n  window.JourneyMarkdown = Object.freeze({markdown});\n})();\n"
    )


assets = {
    "markdown.js": StaticAsset(
        REPO_ROOT / "widget" / "widget.js", "text/javascript; charset=utf-8", "no-cache", widget_renderer
    ),
    "staff.js": StaticAsset(STAFF_DIR / "staff.js", "text/javascript; charset=utf-8", "no-cache"),
    "staff.css": StaticAsset(STAFF_DIR / "staff.css", "text/css; charset=utf-8", "no-cache"),
}


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@router.api_route("/staff", methods=["GET", "HEAD"], include_in_schema=False)
async def staff_page(request: Request) -> Response:
    """The staff page: sign in with a token, review conversations, correct, read analytics."""
    return _secured(page.response(request))


@router.api_route("/staff/assets/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def staff_asset(name: str, request: Request) -> Response:
    """The page's script and stylesheet (only the files listed here; anything else is 404)."""
    asset = assets.get(name)
    if asset is None:
        raise HTTPException(404, f"no staff asset {name!r}")
    return _secured(asset.response(request))
