"""GET /widget.js, the demo page, starter questions and CORS for embedding, through real HTTP."""

from __future__ import annotations

import gzip

import httpx
from conftest import REPO
from fastapi.testclient import TestClient

from app.config import Settings
from app.kb.documents import load_folder
from app.main import create_app
from app.widget.assets import lean_script

MAX_WIDGET_GZIP_BYTES = 16 * 1024


def get(server, path: str, **kwargs) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30, **kwargs)


def test_widget_js_is_served_with_an_etag_and_caching(offline_server):
    response = get(offline_server, "/widget.js", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.content == lean_script((REPO / "widget" / "widget.js").read_bytes())
    etag = response.headers["etag"]
    again = get(offline_server, "/widget.js", headers={"accept-encoding": "identity", "if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    changed = get(offline_server, "/widget.js", headers={"accept-encoding": "identity", "if-none-match": '"old"'})
    assert changed.status_code == 200


def test_widget_js_is_at_most_16_kb_gzipped(offline_server):
    plain = get(offline_server, "/widget.js", headers={"accept-encoding": "identity"}).content
    with httpx.stream("GET", f"{offline_server.url}/widget.js", headers={"accept-encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in response.headers["vary"]
        served = b"".join(response.iter_raw())
    assert gzip.decompress(served) == plain
    print(f"widget.js: {len(plain)} bytes, {len(served)} bytes gzipped as served")
    assert len(served) <= MAX_WIDGET_GZIP_BYTES
    assert len(gzip.compress(plain, compresslevel=6)) <= MAX_WIDGET_GZIP_BYTES


SAME_TREE = """const acorn = require(process.argv[1]);
const fs = require("fs");
const tree = (file) => JSON.stringify(acorn.parse(fs.readFileSync(file, "utf8"), {ecmaVersion: "latest"}),
  (k, v) => (k === "start" || k === "end" || k === "raw" ? undefined : v));
process.stdout.write(tree(process.argv[2]) === tree(process.argv[3]) ? "same" : "different");"""


def test_the_served_widget_is_the_same_code_as_the_file(tmp_path):
    """lean_script drops comments and whitespace only: the syntax trees (acorn, positions aside) are equal."""
    import shutil
    import subprocess

    from conftest import skip_or_fail

    acorn = REPO / "node_modules" / "acorn"
    if not shutil.which("node") or not acorn.exists():
        skip_or_fail(f"node and {acorn} are needed (npm install --no-save acorn@8)")
    source = REPO / "widget" / "widget.js"
    served = tmp_path / "served.js"
    served.write_bytes(lean_script(source.read_bytes()))
    assert len(served.read_bytes()) < 0.95 * len(source.read_bytes())
    compare = ["node", "-e", SAME_TREE, str(acorn), str(source), str(served)]
    run = subprocess.run(compare, capture_output=True, text=True)
    assert run.stdout == "same", run.stderr
    served.write_bytes(served.read_bytes() + b"\nvar x=1;")
    assert subprocess.run(compare, capture_output=True, text=True).stdout == "different", "the comparison can fail"


def test_widget_js_answers_head(offline_server):
    response = httpx.head(f"{offline_server.url}/widget.js", timeout=30)
    assert response.status_code == 200 and response.headers["etag"]


def test_demo_page_embeds_the_widget(offline_server):
    response = get(offline_server, "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert "Lumio" in html and "window.JourneyGuide = {" in html
    assert '<script src="/widget.js" async></script>' in html
    assert html.index("window.JourneyGuide") < html.index('src="/widget.js"')


def stage_questions(stage: str) -> set[str]:
    docs, _ = load_folder(REPO / "knowledge" / "docs")
    return {q for d in docs if stage in d.stages for q in d.questions}


def test_starter_questions_follow_the_page_rules(offline_server):
    response = get(offline_server, "/v1/suggestions", params={"page_url": "https://www.lumio.example/pricing?x=1"})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["stage"] == "decision" and out["basis"] == "page_rule"
    assert 2 <= len(out["suggestions"]) <= 4
    assert set(out["suggestions"]) <= stage_questions("decision")


def test_starter_questions_for_a_given_stage(offline_server):
    out = get(offline_server, "/v1/suggestions", params={"stage": "onboarding", "page_url": "/pricing"}).json()
    assert out["stage"] == "onboarding" and out["basis"] == "stage"
    assert 2 <= len(out["suggestions"]) <= 4
    assert set(out["suggestions"]) <= stage_questions("onboarding")


def test_starter_questions_default_to_the_first_stage(offline_server):
    out = get(offline_server, "/v1/suggestions").json()
    assert out["stage"] == "awareness" and out["basis"] == "default"
    assert set(out["suggestions"]) <= stage_questions("awareness") and len(out["suggestions"]) >= 2


def test_unknown_stage_is_a_clear_422(offline_server):
    response = get(offline_server, "/v1/suggestions", params={"stage": "nirvana"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("query.stage: unknown stage 'nirvana'; expected one of awareness")


def test_any_site_may_call_the_visitor_api_by_default(offline_server):
    preflight = httpx.options(
        f"{offline_server.url}/v1/chat/stream",
        headers={
            "origin": "https://www.customer.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    response = get(offline_server, "/v1/suggestions", headers={"origin": "https://www.customer.example"})
    assert response.headers["access-control-allow-origin"] == "*"


def test_widget_origins_limit_which_sites_may_call():
    """JOURNEY_WIDGET_ORIGINS, checked in-process: CORS preflights need no services."""
    app = create_app(Settings(widget_origins="https://www.lumio.example, https://lumio.example/"))
    client = TestClient(app)

    def preflight(origin: str) -> httpx.Response:
        headers = {
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        }
        return client.options("/v1/chat", headers=headers)

    allowed = preflight("https://lumio.example")
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://lumio.example"
    refused = preflight("https://evil.example")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
