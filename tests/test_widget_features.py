"""What visitors expect of a chat widget (issue 19, Deliver): inline code, new conversation, copy, times, dark theme,
locales and right-to-left, proactive messages. Each in headless Debian chromium.

Skipped without /usr/bin/chromium or playwright, unless JOURNEY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from widget_page import PRICING, assert_inert


def test_inline_code_from_the_llm_renders_as_code_elements_holding_text(widget, llm_server, fake_llm):
    from playwright.sync_api import expect

    fake_llm.reply = (
        "Run `journey ingest`, or <code>journey serve --port 8000</code> as some models write it; "
        'add ``<script src="w.js">`` with a ``a`b`` tick, see [`widget.js` docs](https://www.lumio.example/docs) '
        "and <code><img src=x onerror=\"window.__xss='code'\"></code> stays text."
    )
    widget.goto(f"{llm_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    reply = widget.reply()
    expect(reply.locator(".md code")).to_have_text(
        [
            "journey ingest",
            "journey serve --port 8000",
            '<script src="w.js">',
            "a`b",
            "widget.js",
            "<img src=x onerror=\"window.__xss='code'\">",
        ]
    )
    expect(reply.locator(".md a code")).to_have_text("widget.js")
    expect(reply.locator(".md a")).to_have_attribute("href", "https://www.lumio.example/docs")
    assert "<code>" not in reply.locator(".md").inner_text()
    assert_inert(widget)


STORED = "(key) => localStorage.getItem('journey-guide:' + key)"


def test_new_conversation_starts_an_empty_chat_and_keeps_the_old_one_on_the_server(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    first = widget.state()
    widget(".nc").click()  # the header's "New conversation"
    expect(widget(".m.u")).to_have_count(0)
    expect(widget(".m.b").first).to_contain_text("Hi!")  # the greeting of an empty chat, and its starters
    expect(widget(".chips .chip").first).to_be_visible()
    assert widget.state()["conversation"] is None and widget.page.evaluate(STORED, "conversation") is None
    assert widget.state()["visitor"] == first["visitor"], "the same visitor, a new conversation"
    expect(widget("#jg-in")).to_be_focused()
    widget.ask("Can I cancel anytime?")
    widget.wait_replies(1)
    second = widget.state()["conversation"]
    assert second and second != first["conversation"]
    widget.page.reload()
    widget.wait_replies(1)
    expect(widget(".m.u")).to_have_count(1)
    expect(widget(".m.u")).to_contain_text("Can I cancel anytime?")
    exchanges = {
        c: [r["question"] for r in offline_server.touchpoints(conversation_id=c) if r["kind"] == "exchange"]
        for c in (first["conversation"], second)
    }
    assert exchanges == {first["conversation"]: [PRICING], second: ["Can I cancel anytime?"]}
    widget.assert_clean()


def test_copy_puts_the_reply_text_on_the_clipboard(widget, offline_server):
    from playwright.sync_api import expect

    widget.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=offline_server.url)
    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    copy = widget.reply().locator(".fb button[aria-label='Copy reply']")
    copy.click()
    expect(widget.reply().locator(".fb")).to_contain_text("Copied")
    copied = widget.page.evaluate("navigator.clipboard.readText()")
    assert copied == widget.reply().locator(".md").inner_text() and "$29" in copied, copied
    widget.assert_clean()


TIMES = """() => [...document.querySelector('journey-guide').shadowRoot.querySelectorAll('.m time')]
  .map((t) => [t.textContent, t.dateTime])"""


def test_messages_show_their_time_in_the_widget_locale(widget, offline_server, site):
    import re
    from datetime import UTC, datetime, timedelta

    for locale, pattern in (("en-US", r"^\d{1,2}:\d{2}\s[AP]M$"), ("de", r"^\d{2}:\d{2}$")):
        start = datetime.now(UTC) - timedelta(seconds=1)
        widget.goto(
            site.page(locale, "<h1>Times</h1>", config=f"{{locale: '{locale}'}}", widget_url=offline_server.url)
        )
        widget.page.evaluate("localStorage.clear()")
        widget.page.reload()
        widget.open()
        widget.ask(PRICING)
        widget.wait_replies(1)
        times = widget.page.evaluate(TIMES)
        assert len(times) == 2, times  # the question and the reply (the greeting has none)
        for text, iso in times:
            assert re.match(pattern, text), (locale, text)
            assert start <= datetime.fromisoformat(iso) <= datetime.now(UTC) + timedelta(seconds=1), iso
        widget.page.reload()  # restored from the transcript with the server's times
        widget.wait_replies(1)
        assert [re.match(pattern, t) is not None for t, _ in widget.page.evaluate(TIMES)] == [True, True]
    widget.assert_clean()
