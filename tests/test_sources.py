"""Knowledge sources: a small site crawled over real HTTP on 127.0.0.1, the SSRF guard, folders of mixed files."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from site_server import Site, make_pdf, page

from app.kb.crawl import CrawlLimits, crawl, document_id
from app.kb.documents import load_folder
from app.kb.progress import ProgressBar
from app.kb.safety import FetchError, SafeFetcher, UnsafeURLError, vet

LOCAL = frozenset({"127.0.0.1"})


@pytest.fixture()
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


def by_id(docs) -> dict:
    return {d.id: d for d in docs}


def test_crawl_from_sitemap(site):
    result = crawl(f"{site.url}/sitemap.xml", limits=CrawlLimits(), allow_hosts=LOCAL)
    host = f"web/127.0.0.1_{site.port}"
    docs = by_id(result.docs)
    assert set(docs) == {f"{host}/index", f"{host}/pricing", f"{host}/help", f"{host}/guide.pdf"}
    assert result.complete and result.source == f"web:{site.url}/sitemap.xml"

    pricing = docs[f"{host}/pricing"]
    assert pricing.title == "Pricing" and pricing.stages == ("decision",), "the page's journey-stages meta is kept"
    passages = pricing.passages()
    assert [(p.section, p.url) for p in passages] == [
        ("Team plan", f"{site.url}/pricing#team-plan"),  # the heading's own id
        ("Enterprise plan", f"{site.url}/pricing#enterprise-plan"),  # no id: a slug of the heading
    ]
    everything = "\n".join(p.text for d in result.docs for p in d.passages())
    for chrome in ("NAVIGATION-MENU", "FOOTER-COPYRIGHT", "SIDEBAR-PROMO", "TRACKING-SNIPPET", "color: red"):
        assert chrome not in everything, f"{chrome} should have been cleaned away"

    help_doc = docs[f"{host}/help"]
    assert help_doc.url == f"{site.url}/help", "the redirect from /old-help is followed; the final URL is cited"
    assert help_doc.passages()[0].url == f"{site.url}/help#reset"

    guide = docs[f"{host}/guide.pdf"]
    assert guide.title == "Brightdesk onboarding guide"
    assert [(p.section, p.url) for p in guide.passages()] == [
        ("Page 1", f"{site.url}/guide.pdf#page=1"),
        ("Page 2", f"{site.url}/guide.pdf#page=2"),
    ]
    assert "Invite your agents from Settings" in guide.passages()[0].text

    assert "/private/secret" not in site.requested, "robots.txt disallows /private/"
    assert any("private/secret: disallowed by robots.txt" in s for s in result.skipped)
    assert any("/gone: HTTP 404" in s for s in result.skipped)
    errors = {e.doc_id: str(e) for e in result.errors}
    assert set(errors) == {f"{host}/broken", f"{host}/bad.pdf"}
    assert "HTTP 500" in errors[f"{host}/broken"] and "not a readable PDF" in errors[f"{host}/bad.pdf"]
    assert not any("elsewhere.example" in r for r in site.requested)


def test_crawl_follows_links_within_limits(site):
    result = crawl(f"{site.url}/", limits=CrawlLimits(max_depth=1), allow_hosts=LOCAL)
    host = f"web/127.0.0.1_{site.port}"
    assert {d.id for d in result.docs} == {f"{host}/index", f"{host}/pricing", f"{host}/help", f"{host}/guide.pdf"}
    assert result.complete

    shallow = crawl(f"{site.url}/", limits=CrawlLimits(max_depth=0), allow_hosts=LOCAL)
    assert [d.id for d in shallow.docs] == [f"{host}/index"]

    capped = crawl(f"{site.url}/", limits=CrawlLimits(max_pages=2), allow_hosts=LOCAL)
    assert len(capped.docs) == 2 and not capped.complete and "page limit" in capped.stopped

    site.routes["/big"] = (200, "text/html", page("Big", "<p>" + "x" * 5000 + "</p>"), {})
    site.routes["/"] = (200, "text/html", page("Home", '<p><a href="/big">big</a></p>'), {})
    small = crawl(f"{site.url}/", limits=CrawlLimits(max_bytes=3000), allow_hosts=LOCAL)
    assert any(e.doc_id == f"{host}/big" and "over the 3,000-byte limit" in str(e) for e in small.errors)


def test_document_ids_are_stable():
    assert document_id("https://Help.Example.com/docs/Setup/?x=1#part") == "web/help.example.com/docs/Setup?x=1"
    assert document_id("https://help.example.com") == "web/help.example.com/index"
    assert document_id("http://127.0.0.1:8123/a/b.html") == "web/127.0.0.1_8123/a/b.html"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8000/",
        "http://10.0.0.1/admin",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(UnsafeURLError, match="refused"):
        vet(url, frozenset())


def test_other_schemes_and_credentials_are_refused():
    for url in ("file:///etc/passwd", "ftp://example.com/", "gopher://example.com/", "http://user:pw@example.com/"):
        with pytest.raises(UnsafeURLError):
            vet(url, frozenset())


def test_ssrf_through_the_fetcher_and_redirects(site):
    strict = SafeFetcher(allow_hosts=frozenset(), max_bytes=100_000, timeout=5)
    with pytest.raises(UnsafeURLError):
        strict.get(f"{site.url}/")
    assert site.requested == [], "a refused address is never connected to"

    allowed = SafeFetcher(allow_hosts=LOCAL, max_bytes=100_000, timeout=5)
    assert allowed.get(f"{site.url}/old-help").url == f"{site.url}/help"
    for path in ("/redirect-private", "/redirect-metadata"):
        with pytest.raises(UnsafeURLError, match="refused"):
            allowed.get(f"{site.url}{path}")
    site.routes["/loop"] = (302, "text/plain", b"", {"Location": "/loop"})
    with pytest.raises(FetchError, match="redirects"):
        allowed.get(f"{site.url}/loop")
    with pytest.raises(UnsafeURLError):
        crawl(f"{site.url}/", limits=CrawlLimits(), allow_hosts=frozenset())


def test_a_server_sending_a_byte_a_second_is_cut_at_the_request_timeout(site):
    site.routes["/slow"] = (200, "text/plain", b"Slow page\n\n" + b"x" * 28, {})
    site.trickle["/slow"] = 0.5  # every read gets a byte well within the per-read timeout: 20 s for the body
    fetcher = SafeFetcher(allow_hosts=LOCAL, max_bytes=100_000, timeout=2)
    started = time.monotonic()
    with pytest.raises(FetchError, match="out of time"):
        fetcher.get(f"{site.url}/slow")
    assert time.monotonic() - started < 3.5

    site.routes["/"] = (200, "text/html", page("Home", '<a href="/slow">slow</a> <a href="/pricing">p</a>'), {})
    started = time.monotonic()
    result = crawl(f"{site.url}/", limits=CrawlLimits(timeout=2, max_seconds=300), allow_hosts=LOCAL)
    assert time.monotonic() - started < 8, "the slow page holds the crawl for its request timeout, not the budget"
    host = f"web/127.0.0.1_{site.port}"
    assert f"{host}/pricing" in by_id(result.docs)
    assert [e.doc_id for e in result.errors if "out of time" in str(e)] == [f"{host}/slow"]


def test_a_start_url_with_credentials_is_refused_before_any_request(site):
    with pytest.raises(UnsafeURLError, match="credentials"):
        crawl(f"http://user:pw@127.0.0.1:{site.port}/", limits=CrawlLimits(), allow_hosts=LOCAL)
    assert site.requested == [], "nothing is fetched, with or without the credentials"


def test_a_redirect_to_another_port_is_not_requested(site):
    with Site() as other:
        other.routes["/admin"] = (200, "text/html", page("Admin", "<p>INTERNAL-ADMIN</p>"), {})
        site.routes["/"] = (200, "text/html", page("Home", '<a href="/moved">moved</a>'), {})
        site.routes["/moved"] = (302, "text/plain", b"", {"Location": f"{other.url}/admin"})
        result = crawl(f"{site.url}/", limits=CrawlLimits(), allow_hosts=LOCAL)
        assert other.requested == [], "the other port is never connected to"
    assert any(f"redirected to another site ({other.url}/admin)" in s for s in result.skipped), result.skipped


def test_folder_of_mixed_files(tmp_path):
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "welcome.md").write_text("---\ntitle: Welcome\nstages: [onboarding]\n---\n## Hi\nHello.\n")
    (tmp_path / "guides" / "hours.txt").write_text("Opening hours\n\nWe are open 9 to 5 on weekdays.\n")
    (tmp_path / "refunds.html").write_bytes(page("Refunds", '<h2 id="ask">How to ask</h2><p>Email billing.</p>'))
    (tmp_path / "manual.pdf").write_bytes(make_pdf("Manual", [["Press the green button."]]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    (tmp_path / "huge.txt").write_text("big\n" + "y" * 20_000)
    (tmp_path / ".hidden.md").write_text("# secret\ntext")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_text("# Outside\nshould never be read")
    os.symlink(outside, tmp_path / "escape.md")

    docs, errors = load_folder(tmp_path, {"onboarding", "support"}, max_bytes=10_000)
    found = by_id(docs)
    assert set(found) == {"guides/welcome", "guides/hours", "refunds", "manual"}
    assert found["guides/hours"].title == "Opening hours"
    assert found["refunds"].title == "Refunds" and found["refunds"].passages()[0].section == "How to ask"
    assert "FOOTER-COPYRIGHT" not in found["refunds"].body
    assert "Press the green button." in found["manual"].body
    reasons = {e.doc_id: str(e) for e in errors}
    assert set(reasons) == {"broken", "huge", "escape"}
    assert "not a readable PDF" in reasons["broken"]
    assert "over the 10,000-byte limit" in reasons["huge"]
    assert "outside the knowledge folder" in reasons["escape"]


def test_progress_bar_only_on_a_terminal(capsys):
    bar = ProgressBar(enabled=True)
    for done in range(4):
        bar("embed", done, 3, f"doc-{done}")
    bar.close()
    shown = capsys.readouterr().err
    assert "embedding" in shown and "3/3" in shown
    quiet = ProgressBar(enabled=False)
    quiet("crawl", 1, 5, "https://example.com/")
    quiet.close()
    assert capsys.readouterr().err == ""


def test_a_site_that_is_down_removes_nothing(site):
    site.routes = {"/robots.txt": (500, "text/plain", b"", {})}
    result = crawl(f"{site.url}/", limits=CrawlLimits(), allow_hosts=LOCAL)
    assert result.docs == [] and not result.complete and result.stopped == "no page could be read"
