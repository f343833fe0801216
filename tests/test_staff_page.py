"""The staff page over HTTP: served at /staff with a strict CSP, its assets, nothing loaded from elsewhere."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import REPO

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
FILES = {"staff.js": "text/javascript", "staff.css": "text/css"}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an identifier in staff.js, never fetched


def test_staff_page_is_html_with_a_strict_csp(offline_server):
    response = httpx.get(f"{offline_server.url}/staff")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    html = response.text
    assert '<script src="/staff/assets/staff.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/staff/assets/staff.css">' in html
    assert 'id="token"' in html and '<label for="token">' in html


def test_staff_csp_allows_no_base_element_and_no_form_posting_elsewhere(offline_server):
    policy = httpx.get(f"{offline_server.url}/staff").headers["content-security-policy"]
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in policy.split(";")}
    assert directives["base-uri"] == "base-uri 'none'", "an injected <base> cannot move the page's relative URLs"
    assert directives["form-action"] == "form-action 'self'", "an injected form cannot post the token elsewhere"


@pytest.mark.parametrize("name", sorted(FILES))
def test_assets_are_served_with_their_type_and_the_csp(offline_server, name):
    response = httpx.get(f"{offline_server.url}/staff/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FILES[name])
    assert response.headers["content-security-policy"] == CSP
    assert response.content == (REPO / "staff" / name).read_bytes()
    again = httpx.get(f"{offline_server.url}/staff/assets/{name}", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("name", ["index.html", "nope.js", "..%2F..%2Fapp%2Fconfig.py", "%2E%2E%2Fstaff.js"])
def test_only_listed_assets_are_served(offline_server, name):
    assert httpx.get(f"{offline_server.url}/staff/assets/{name}").status_code == 404


def test_page_loads_nothing_from_elsewhere_and_has_no_inline_code():
    html = (REPO / "staff" / "index.html").read_text(encoding="utf-8")
    texts = {name: (REPO / "staff" / name).read_text(encoding="utf-8") for name in ["index.html", *FILES]}
    texts["staff.js"] = texts["staff.js"].replace(f"'{SVG_NAMESPACE}'", "SVG_NS", 1)
    for name, text in texts.items():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"external URL in {name}"
        assert "@import" not in text and "url(" not in text, f"outside resource in {name}"
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script src="/staff/assets/markdown.js" defer>',
        '<script src="/staff/assets/staff.js" defer>',
    ]
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)


def test_script_never_writes_markup():
    script = (REPO / "staff" / "staff.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_markdown_asset_is_the_widgets_own_renderer(offline_server):
    """The staff page renders guide replies with the widget's renderer, served from widget.js (not a copy)."""
    response = httpx.get(f"{offline_server.url}/staff/assets/markdown.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert response.headers["content-security-policy"] == CSP
    widget = (REPO / "widget" / "widget.js").read_text(encoding="utf-8")
    start, end = widget.index("// <shared-renderer>"), widget.index("// </shared-renderer>")
    shared = widget[start:end]
    assert "const markdown = (target, text, sources) =>" in shared and shared in response.text
    assert "window.JourneyMarkdown = Object.freeze({markdown})" in response.text
    assert "markdown(" not in (REPO / "staff" / "staff.js").read_text(encoding="utf-8").replace(
        "JourneyMarkdown.markdown(", ""
    ), "staff.js calls the shared renderer and defines none of its own"
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in response.text, sink
