"""The widget in headless Debian chromium (Playwright): conversation, continuity, safety, keyboard, layout.

Screenshots go to artifacts/ (ignored by git). Skipped without /usr/bin/chromium or playwright, unless
JOURNEY_REQUIRE_SERVICES=1, where a missing browser fails the run.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator

import pytest
from chromium import assert_contrast
from conftest import REPO, Server, base_env, run_cli
from widget_page import PHONE, PRICING, TEXTS, XSS, Widget, assert_inert


def conversation_rows(server: Server, conversation_id: str) -> list[dict]:
    return server.touchpoints(conversation_id=conversation_id)


# ---- the conversation ----


def test_reply_streams_in_with_markdown_sources_and_suggestions(widget, llm_server, fake_llm):
    from playwright.sync_api import expect

    fake_llm.reply = (
        "The **Pro plan** costs $29 per staff calendar per month [1].\n\n"
        "- billed monthly\n- or yearly with `20%` off\n\nSee [the pricing page](https://www.lumio.example/pricing)."
    )
    fake_llm.mode, fake_llm.delay = "stall", 0.6  # a pause after two words: the first words must show alone
    widget.goto(f"{llm_server.url}/")
    widget.open()
    assert widget.focused() == "jg-in", "focus goes to the input on open"
    expect(widget(".chips p")).to_have_text("Tap any question to see how we'd answer")
    assert 2 <= widget(".chips .chip").count() <= 4
    widget.page.evaluate(
        """() => { window.__seen = [];
        const log = document.querySelector('journey-guide').shadowRoot.querySelector('.log');
        new MutationObserver(() => window.__seen.push([...log.querySelectorAll('.m.b')].pop().innerText))
          .observe(log, {subtree: true, childList: true, characterData: true}); }"""
    )
    widget.ask(PRICING)
    widget.wait_replies(1)
    reply = widget.reply()
    seen = widget.page.evaluate("window.__seen")
    partial = [text for text in seen if "The" in text and "per month" not in text]
    assert partial, f"the reply must appear in pieces, saw {seen[:8]}"
    expect(reply.locator("strong")).to_have_text("Pro plan")
    expect(reply.locator(".md li")).to_have_count(2)
    expect(reply.locator(".md li code")).to_have_text("20%")
    page_link = reply.locator(".md a", has_text="the pricing page")
    expect(page_link).to_have_attribute("href", "https://www.lumio.example/pricing")
    expect(page_link).to_have_attribute("rel", "noopener noreferrer")
    expect(page_link).to_have_attribute("target", "_blank")
    sources = reply.locator(".src a")
    assert sources.count() >= 1
    assert sources.first.get_attribute("href").startswith("https://www.lumio.example/pricing")
    expect(sources.first).to_contain_text("[1]")
    expect(reply.locator("sup a")).to_have_text("[1]")
    assert 2 <= widget(".chips .chip").count() <= 5  # up to 4 questions, plus "Talk to a person" when suggested
    expect(widget("[aria-live=polite][aria-atomic=true]")).to_contain_text("costs $29 per staff calendar")
    widget.shot("widget-desktop")
    widget.assert_clean()


def test_a_reply_arriving_while_closed_shows_the_unread_badge(widget, llm_server, fake_llm):
    from playwright.sync_api import expect

    fake_llm.mode, fake_llm.delay = "stall", 0.8
    widget.goto(f"{llm_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.page.keyboard.press("Escape")  # closed while the reply is on its way
    expect(widget(".panel")).to_be_hidden()
    expect(widget(".badge")).to_have_text("1")
    expect(widget(".launch")).to_have_attribute("aria-label", "Open chat (1 unread)")
    widget.shot("widget-desktop-unread")
    widget(".launch").click()
    expect(widget(".badge")).to_be_hidden()
    expect(widget(".launch")).to_have_attribute("aria-label", "Close chat")
    widget.wait_replies(1)
    widget.assert_clean()


def test_the_done_reply_replaces_text_streamed_before_an_llm_failure(widget, llm_server, fake_llm):
    from playwright.sync_api import expect

    fake_llm.reply = "Streamed words that the server takes back because the model stalled."
    fake_llm.mode, fake_llm.delay = "stall", 2.5  # longer than the server's 1 s token timeout
    widget.goto(f"{llm_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    expect(widget.reply()).not_to_contain_text("Streamed words")
    expect(widget.reply()).to_contain_text("$29")
    row = llm_server.touchpoints(conversation_id=widget.state()["conversation"])[0]
    assert row["outcome"] == "llm_timeout" and "$29" in row["reply"]
    widget.assert_clean()


def test_suggestion_feedback_handoff_then_reload_restores_everything(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    expect(widget(".chips .chip").first).to_be_visible()
    widget.shot("widget-desktop-empty")
    starter = widget(".chips .chip").first
    question = starter.inner_text()
    starter.click()
    expect(widget(".m.u").first).to_contain_text(question)
    widget.wait_replies(1)
    conversation = widget.state()["conversation"]
    visitor = widget.state()["visitor"]

    widget.reply(0).get_by_role("button", name="Helpful", exact=True).click()
    expect(widget.reply(0).get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(widget.reply(0).locator(".fb")).to_contain_text("Thanks for the feedback!")
    exchange = next(r for r in conversation_rows(offline_server, conversation) if r["kind"] == "exchange")
    feedback = [r for r in conversation_rows(offline_server, conversation) if r["kind"] == "feedback"]
    assert len(feedback) == 1 and feedback[0]["visitor_id"] == visitor
    assert json.loads(feedback[0]["data"]) == {"rating": "up", "message_id": exchange["id"], "comment": None}

    follow_up = widget(".chips .chip").first
    second_question = follow_up.inner_text()
    follow_up.click()
    widget.wait_replies(2)

    widget(".hb").click()
    email = widget("form.card input[type=email]")
    expect(email).to_be_focused()
    email.fill("not an email")
    widget("form.card button[type=submit]").click()
    expect(widget("form.card [role=alert]")).to_have_text("Please enter a valid email address.")
    email.fill("ana@salon.example")
    widget("form.card textarea").fill("Please call me about 40 staff")
    widget("form.card button[type=submit]").click()
    expect(widget(".note")).to_contain_text("reply by email to ana@salon.example")
    expect(widget("form.card")).to_have_count(0)
    expect(widget(".st")).to_have_text("Waiting for someone from our team…")  # a live handoff (test_live_browser.py)
    handoff = [r for r in conversation_rows(offline_server, conversation) if r["kind"] == "handoff"]
    assert len(handoff) == 1
    assert json.loads(handoff[0]["data"])["email"] == "ana@salon.example"
    assert json.loads(handoff[0]["data"])["message"] == "Please call me about 40 staff"

    widget.page.reload()
    expect(widget(".panel")).to_be_visible()  # it was open: it stays open across reloads
    expect(widget(".m.u")).to_have_count(2)
    expect(widget(".m.u").nth(0)).to_contain_text(question)
    expect(widget(".m.u").nth(1)).to_contain_text(second_question)
    widget.wait_replies(2)
    expect(widget.reply(0).get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(widget(".st")).to_have_text("Waiting for someone from our team…")  # still waiting for a person
    assert widget.state() == {"visitor": visitor, "conversation": conversation, "xss": None}
    widget.assert_clean()


def test_continuity_and_page_context_across_the_site(widget, offline_server, site):
    from playwright.sync_api import expect

    site.page("pricing", "<h1>Pricing</h1>", widget_url=offline_server.url)
    landing = site.page("home", "<h1>Home</h1><a href='pricing.html'>Pricing</a>", widget_url=offline_server.url)
    widget.goto(f"{landing}?utm_source=newsletter&utm_campaign=spring")
    widget.open()
    widget.ask("What does Lumio actually do?")
    widget.wait_replies(1)
    widget.page.evaluate("JourneyGuide.close()")
    widget.page.get_by_role("link", name="Pricing").click()
    widget.page.wait_for_url("**/pricing.html")
    widget.page.wait_for_selector("journey-guide", state="attached")
    expect(widget(".panel")).to_be_hidden()
    widget.open()
    expect(widget(".m.u")).to_have_count(1)
    widget.ask("Is there a discount if I pay yearly?")
    widget.wait_replies(2)
    rows = [r for r in conversation_rows(offline_server, widget.state()["conversation"]) if r["kind"] == "exchange"]
    assert len(rows) == 2
    first, second = (json.loads(r["page"]) for r in rows)
    assert first["url"] == f"{landing}?utm_source=newsletter&utm_campaign=spring" and first["title"] == "home page"
    assert second["url"] == f"{site.url}/pricing.html" and second["title"] == "pricing page"
    assert second["referrer"] == f"{landing}?utm_source=newsletter&utm_campaign=spring"
    assert second["utm"] == {"utm_source": "newsletter", "utm_campaign": "spring"}
    widget.assert_clean()


def test_network_error_shows_retry_and_loses_nothing(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget.page.route("**/v1/chat/stream", lambda route: route.abort("internetdisconnected"))
    message = "Can I cancel anytime?"
    widget.ask(message)
    expect(widget(".err")).to_contain_text("Not sent.")
    expect(widget(".m.u")).to_contain_text(message)
    widget.page.reload()  # the unsent message survives a reload too
    expect(widget(".m.u")).to_contain_text(message)
    expect(widget(".err button")).to_have_text("Retry")
    widget.page.unroute("**/v1/chat/stream")
    widget(".err button").click()
    widget.wait_replies(1)
    expect(widget(".err")).to_have_count(0)
    expect(widget(".m.u")).to_have_count(1)
    rows = conversation_rows(offline_server, widget.state()["conversation"])
    assert [r["question"] for r in rows] == [message]
    widget.assert_clean()


# ---- safety ----


def test_xss_in_a_visitor_message_renders_as_text(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget.ask(XSS)
    widget.wait_replies(1)
    expect(widget(".m.u")).to_contain_text(XSS)
    assert_inert(widget)


@pytest.fixture(scope="module")
def evil_server(make_data_dir, tmp_path_factory) -> Iterator[Server]:
    """A server whose knowledge base has a document full of markup and script."""
    docs = tmp_path_factory.mktemp("evil-docs")
    shutil.copytree(REPO / "knowledge" / "docs", docs, dirs_exist_ok=True)
    (docs / "evil.md").write_text(
        """---
title: Frobnicator <img src=x onerror="window.__xss='title'"> setup
stages: [adoption]
url: javascript:window.__xss='url'
questions:
  - How do I set up the frobnicator <img src=x onerror="window.__xss='question'">?
---
## Frobnicator setup <script>window.__xss='heading'</script>

To set up the frobnicator, open the frobnicator page <img src=x onerror="window.__xss='body'"> and press Start.
The frobnicator setup guide is [here](javascript:window.__xss='link') and <a href="javascript:void(0)">there</a>.
Frobnicator setup finishes with <script>window.__xss='script'</script> a green tick.
""",
        encoding="utf-8",
    )
    data_dir = make_data_dir()
    result = run_cli("ingest", str(docs), env=base_env(data_dir))
    assert result.returncode == 0, result.stderr
    server = Server(data_dir)
    yield server
    server.stop()


def test_xss_in_a_knowledge_document_renders_as_text(widget, evil_server):
    from playwright.sync_api import expect

    widget.goto(f"{evil_server.url}/")
    widget.open()
    widget.ask("How do I set up the frobnicator?")
    widget.wait_replies(1)
    row = conversation_rows(evil_server, widget.state()["conversation"])[0]
    assert "<img" in row["reply"], "the payload must reach the widget"
    assert any(s["url"].startswith("javascript:") for s in json.loads(row["sources"])), row["sources"]
    expect(widget.reply()).to_contain_text('<img src=x onerror="window.__xss=')
    assert_inert(widget)


def test_markup_from_the_llm_is_inert(widget, llm_server, fake_llm):
    from playwright.sync_api import expect

    fake_llm.reply = (
        "**Bold** my__file__name [bad](javascript:alert(1)) [data](data:text/html,hi) <img src=x onerror=alert(1)> "
        "<script>alert(2)</script> [mail](mailto:help@lumio.example) [ok](https://www.lumio.example/a) [1]\n\n"
        "```\nif (a < b && **c**) { x = '<'; }\n```"
    )
    widget.goto(f"{llm_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    reply = widget.reply()
    expect(reply.locator("strong")).to_have_count(1)  # underscores inside a word are not emphasis
    expect(reply.locator("strong")).to_have_text("Bold")
    expect(reply.locator("pre code")).to_have_text("if (a < b && **c**) { x = '<'; }\n")
    assert reply.locator("a", has_text="bad").count() == 0 and reply.locator("a", has_text="data").count() == 0
    expect(reply.locator("a", has_text="mail")).to_have_attribute("href", "mailto:help@lumio.example")
    assert_inert(widget)


def test_hostile_host_css_leaves_the_widget_usable(widget, offline_server, site):
    from playwright.sync_api import expect

    hostile = """<style>
      * { all: unset !important; }
      div, section, journey-guide { position: relative !important; z-index: 2147483647 !important;
        font-size: 4px !important; transform: scale(0.5) !important; display: none !important; }
      journey-guide * { display: none !important; color: red !important; }
      .cover { display: block !important; position: fixed !important; left: 0 !important; top: 0 !important;
        width: 100vw !important; height: 100vh !important; z-index: 2147483647 !important;
        background: #fee !important; }
      button { display: block !important; }
    </style>"""
    body = "<div class='cover'></div><button id='mine' onclick='window.__hostClicked = true'>Host button</button>"
    url = site.page("hostile", body, head=hostile, widget_url=offline_server.url)
    widget.goto(url)
    launcher = widget(".launch")
    expect(launcher).to_be_visible()
    box = launcher.bounding_box()
    assert round(box["width"]) == 60 and round(box["height"]) == 60, box
    hit = widget.page.evaluate(f"document.elementFromPoint({box['x'] + 30}, {box['y'] + 30}).tagName.toLowerCase()")
    assert hit == "journey-guide", "the launcher must be on top of the host's highest z-index"
    launcher.click()
    expect(widget(".panel")).to_be_visible()
    panel = widget(".panel").bounding_box()
    assert round(panel["width"]) == 380 and panel["height"] > 400, panel
    assert (
        widget.page.evaluate(
            "getComputedStyle(document.querySelector('journey-guide').shadowRoot.querySelector('.jg')).fontSize"
        )
        == "15px"
    )
    widget.ask(PRICING)  # cross-origin: the widget's API calls rely on CORS
    widget.wait_replies(1)
    expect(widget.reply()).to_contain_text("$29")
    widget.shot("widget-hostile-host")
    untouched = widget.page.evaluate(
        "() => ({styles: document.querySelectorAll('style').length, onmessage: window.onmessage})"
    )
    assert untouched == {"styles": 1, "onmessage": None}, "the widget adds nothing to the host page but itself"
    widget.page.evaluate("document.getElementById('mine').click()")
    assert widget.page.evaluate("window.__hostClicked") is True
    widget.assert_clean()


def test_strict_host_csp_and_trusted_types(widget, offline_server, site):
    from playwright.sync_api import expect

    csp = (
        f"default-src 'none'; script-src 'unsafe-inline' {offline_server.url}; connect-src {offline_server.url}; "
        "require-trusted-types-for 'script'; trusted-types journey-guide"
    )
    head = (
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        "<script>window.__violations = []; document.addEventListener('securitypolicyviolation',"
        " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));</script>"
    )
    widget.goto(site.page("csp", "<h1>Strict</h1>", head=head, widget_url=offline_server.url))
    box = widget(".launch").bounding_box()
    assert round(box["width"]) == 60, "the widget's styles apply under style-src 'none'"
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    expect(widget.reply()).to_contain_text("$29")
    assert widget.page.evaluate("window.__violations") == []
    widget.assert_clean()


# ---- keyboard, API, phone, contrast ----


def test_keyboard_only(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget(".launch").focus()
    widget.page.keyboard.press("Enter")
    expect(widget(".panel")).to_be_visible()
    assert widget.focused() == "jg-in"
    expect(widget(".launch")).to_have_attribute("aria-expanded", "true")
    widget.page.keyboard.type(PRICING)
    widget.page.keyboard.press("Enter")
    widget.wait_replies(1)
    widget("#jg-in").focus()
    widget.page.keyboard.press("Shift+Tab")
    widget.page.keyboard.press("Shift+Tab")
    assert widget.focused() == "chip", "suggestions are reachable with the keyboard"
    widget.page.keyboard.press("Enter")
    widget.wait_replies(2)
    widget.page.keyboard.press("Escape")
    expect(widget(".panel")).to_be_hidden()
    assert widget.focused() == "launch", "focus goes back to the launcher on close"
    expect(widget(".launch")).to_have_attribute("aria-expanded", "false")
    widget.page.keyboard.press("Space")
    expect(widget(".panel")).to_be_visible()
    widget.page.keyboard.press("Escape")
    widget.assert_clean()


def test_js_api_identity_and_events(widget, offline_server, site):
    from playwright.sync_api import expect

    config = "{title: 'Help', on: {reply: function (r) { (window.__events = window.__events || []).push('reply'); }}}"
    widget.goto(site.page("api", "<h1>App</h1>", config=config, widget_url=offline_server.url))
    widget.page.wait_for_function("window.JourneyGuide && typeof window.JourneyGuide.open === 'function'")
    widget.page.evaluate(
        """() => { for (const name of ['open', 'close', 'message', 'handoff', 'reset', 'identify'])
                     JourneyGuide.on(name, () => (window.__events = window.__events || []).push(name)); }"""
    )
    widget.page.evaluate("JourneyGuide.open()")
    expect(widget(".panel")).to_be_visible()
    expect(widget("h2")).to_have_text("Help")
    widget.page.evaluate("JourneyGuide.identify({id: 'cus_42', email: 'owner@glow.example', plan: 'pro'})")
    widget.ask("My booking page is blank, what's wrong?")
    widget.wait_replies(1)
    first = widget.state()
    con = sqlite3.connect(offline_server.data_dir / "journey.db")
    identity = con.execute("SELECT identity FROM conversations WHERE id = ?", (first["conversation"],)).fetchone()[0]
    con.close()
    expected = {"known_customer": True, "id": "cus_42", "email": "owner@glow.example", "plan": "pro"}
    assert {k: v for k, v in json.loads(identity).items() if k in expected} == expected
    widget(".hb").click()
    expect(widget("form.card")).to_contain_text("We'll reply to owner@glow.example.")
    assert widget("form.card input").count() == 0, "a known visitor is not asked for an email"
    widget("form.card button[type=submit]").click()
    expect(widget(".note")).to_contain_text("owner@glow.example")
    widget.page.evaluate("JourneyGuide.reset()")
    expect(widget(".m.u")).to_have_count(0)
    expect(widget(".chips .chip").first).to_be_visible()
    after = widget.state()
    assert after["conversation"] is None and after["visitor"] != first["visitor"]
    widget.page.evaluate("JourneyGuide.close()")
    expect(widget(".panel")).to_be_hidden()
    events = widget.page.evaluate("window.__events")
    assert events == ["open", "identify", "message", "reply", "handoff", "reset", "close"], events
    widget.assert_clean()


def test_phone_layout(browser, offline_server):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    try:
        widget = Widget(context.new_page()).goto(f"{offline_server.url}/")
        widget.shot("widget-phone-closed")
        widget(".launch").tap()
        expect(widget(".panel")).to_be_visible()
        assert (
            widget.page.evaluate(
                "getComputedStyle(document.querySelector('journey-guide').shadowRoot.querySelector('.panel')).animationName"
            )
            == "none"
        ), "prefers-reduced-motion turns the opening animation off"
        box = widget(".panel").bounding_box()
        assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, PHONE["width"], PHONE["height"]), box
        expect(widget(".chips .chip").first).to_be_visible()
        widget.shot("widget-phone-empty")
        widget.ask(PRICING)
        widget.wait_replies(1)
        overflow = widget.page.evaluate(
            "() => { const log = document.querySelector('journey-guide').shadowRoot.querySelector('.log');"
            " return log.scrollWidth - log.clientWidth; }"
        )
        assert overflow <= 0, "nothing may scroll sideways on a 360 px phone"
        widget.shot("widget-phone")
        widget(".x").tap()
        expect(widget(".panel")).to_be_hidden()
        expect(widget(".launch")).to_be_visible()
        widget.assert_clean()
    finally:
        context.close()


@pytest.mark.parametrize("primary", [None, "#0f766e", "#facc15", "#93c5fd"])
def test_text_contrast_is_wcag_aa(widget, offline_server, site, primary):
    config = json.dumps({"colors": {"primary": primary}} if primary else {})
    widget.goto(site.page("colours", "<h1>Colours</h1>", config=config, widget_url=offline_server.url))
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    widget.reply().get_by_role("button", name="Helpful", exact=True).click()
    widget.page.wait_for_timeout(300)
    assert_contrast(widget.page, "journey-guide", TEXTS, f" with primary {primary}")
