"""What visitors expect of a chat widget (issue 19, Deliver): inline code, new conversation, copy, times, dark theme,
locales and right-to-left, proactive messages. Each in headless Debian chromium.

Skipped without /usr/bin/chromium or playwright, unless JOURNEY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import pytest
from chromium import assert_contrast
from conftest import REPO, skip_or_fail
from widget_page import DESKTOP, PRICING, TEXTS, Widget, assert_inert

SCREENSHOTS = REPO / "screenshots"  # looked at by a person; not committed


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


PANEL_BACKGROUND = (
    "() => getComputedStyle(document.querySelector('journey-guide').shadowRoot.querySelector('.panel')).backgroundColor"
)
DARK, LIGHT = "rgb(17, 24, 39)", "rgb(255, 255, 255)"


def show(widget: Widget, url: str) -> None:
    """Go to url with the chat open (it may already be open there: the chat stays open from page to page)."""
    widget.goto(url)
    widget.page.wait_for_function("window.JourneyGuide && typeof window.JourneyGuide.open === 'function'")
    widget.page.evaluate("JourneyGuide.open()")


def answered(widget: Widget) -> None:
    """Open, ask, rate the reply: every text in TEXTS is on screen."""
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    widget.reply().locator(".fb button").first.click()
    widget.page.wait_for_timeout(300)


def test_dark_theme_follows_the_system_or_the_config_with_readable_text(widget, offline_server, site):
    from playwright.sync_api import expect

    widget.page.emulate_media(color_scheme="light")
    widget.goto(site.page("auto", "<h1>Auto</h1>", widget_url=offline_server.url))
    answered(widget)
    assert widget.page.evaluate(PANEL_BACKGROUND) == LIGHT
    widget.page.emulate_media(color_scheme="dark")  # the visitor's system switches: the open widget follows
    expect(widget(".jg.dark")).to_have_count(1)
    assert widget.page.evaluate(PANEL_BACKGROUND) == DARK
    assert_contrast(widget.page, "journey-guide", TEXTS, " in the dark theme")
    widget.shot("dark", SCREENSHOTS)
    for theme, seen in (("light", LIGHT), ("dark", DARK)):  # the config wins over a dark system
        show(widget, site.page(theme, "<h1>Forced</h1>", config=f"{{theme: '{theme}'}}", widget_url=offline_server.url))
        assert widget.page.evaluate(PANEL_BACKGROUND) == seen, theme
    widget.page.emulate_media(color_scheme="light")
    assert widget.page.evaluate(PANEL_BACKGROUND) == DARK, "theme: 'dark' stays dark on a light system"
    for primary in ("#1e3a8a", "#facc15"):  # a brand colour too dark for dark bubbles gets a light accent
        config = f"{{theme: 'dark', colors: {{primary: '{primary}'}}}}"
        widget.goto(site.page("brand", "<h1>Brand</h1>", config=config, widget_url=offline_server.url))
        widget.page.evaluate("localStorage.clear()")
        widget.page.reload()
        answered(widget)
        assert_contrast(widget.page, "journey-guide", TEXTS, f" in the dark theme with primary {primary}")
    widget.assert_clean()


def test_strings_come_from_the_locale_table_by_config_or_browser_language(widget, browser, offline_server, site):
    from playwright.sync_api import expect

    titles = {"es": "Pregúntanos lo que quieras", "de": "Fragen Sie uns alles", "fr": "Posez-nous vos questions"}
    for locale, title in titles.items():
        show(widget, site.page(locale, "<h1>Hi</h1>", config=f"{{locale: '{locale}'}}", widget_url=offline_server.url))
        expect(widget("h2")).to_have_text(title)
        assert (
            widget.page.evaluate("document.querySelector('journey-guide').shadowRoot.querySelector('.jg').lang")
            == locale
        )
    config = "{locale: 'es-MX', strings: {send: 'Mandar'}, title: 'Ayuda de Glow'}"  # the site's own words still win
    show(widget, site.page("es-mx", "<h1>Hola</h1>", config=config, widget_url=offline_server.url))
    expect(widget("h2")).to_have_text("Ayuda de Glow")
    expect(widget(".compose button")).to_have_attribute("aria-label", "Mandar")
    expect(widget("#jg-in")).to_have_attribute("placeholder", "Escribe tu pregunta…")
    expect(widget(".launch")).to_have_attribute("aria-label", "Cerrar chat")
    context = browser.new_context(viewport=DESKTOP, locale="de-DE", reduced_motion="reduce")
    german = Widget(context.new_page())
    try:  # no locale in the config: the browser's language
        german.goto(site.page("none", "<h1>Hallo</h1>", widget_url=offline_server.url))
        expect(german(".launch")).to_have_attribute("aria-label", "Chat öffnen")
        german.open()
        expect(german("#jg-in")).to_have_attribute("placeholder", "Ihre Frage…")
        expect(german(".hb")).to_have_text("Mit einem Menschen sprechen")
        german.assert_clean()
    finally:
        context.close()
    widget.assert_clean()


BOXES = """() => { const root = document.querySelector('journey-guide').shadowRoot;
  const box = (s) => { const r = root.querySelector(s).getBoundingClientRect(); return [r.left, r.right]; };
  return {launch: box('.launch'), panel: box('.panel'), title: box('h2'), close: box('.x'),
          question: box('.m.u'), reply: box('.m.b:has(.fb)'),
          send: box('.compose button'), input: box('textarea')}; }"""


def test_arabic_is_right_to_left_and_mirrored(widget, offline_server, site):
    from playwright.sync_api import expect

    page = site.page("ar", "<h1>مرحبا</h1>", config="{locale: 'ar'}", widget_url=offline_server.url)
    widget.goto(page)
    expect(widget(".jg")).to_have_attribute("dir", "rtl")
    answered(widget)
    expect(widget("h2")).to_have_text("اسألنا عن أي شيء")
    b = widget.page.evaluate(BOXES)
    assert b["launch"][0] == 20, f"the launcher moves to the left corner: {b}"
    assert b["panel"][0] == 20, b
    assert b["close"][1] < b["title"][0], f"the close button is left of the title: {b}"
    assert b["question"][0] < b["reply"][0] and b["reply"][1] > b["question"][1], f"questions left, replies right: {b}"
    assert b["send"][1] <= b["input"][0], f"send is left of the input: {b}"
    assert_contrast(widget.page, "journey-guide", TEXTS, " right to left")
    widget.shot("rtl", SCREENSHOTS)
    widget.assert_clean()


PRO = "Comparing plans? I can work out the price for your team <img src=x onerror=\"window.__xss='pro'\">"


def chat_requests(widget: Widget) -> list[str]:
    """Collects the URLs of the chat requests the page makes from now on."""
    seen: list[str] = []
    widget.page.on("request", lambda r: seen.append(r.url) if "/v1/chat" in r.url else None)
    return seen


def test_a_proactive_message_shows_once_per_visitor_by_page_and_delay_and_is_not_sent(widget, offline_server, site):
    from playwright.sync_api import expect

    config = f"""{{proactive: [{{id: 'pricing', text: {PRO!r}, page: '/pricing', delay: 1.5}},
      {{id: 'support', text: 'Stuck? I can walk you through it.', stage: 'support'}}]}}"""
    home = site.page("home", "<h1>Home</h1>", config=config, widget_url=offline_server.url)
    pricing = site.page("pricing", "<h1>Pricing</h1>", config=config, widget_url=offline_server.url)
    sent = chat_requests(widget)
    widget.goto(home)
    widget.page.wait_for_timeout(2000)
    expect(widget(".pro")).to_be_hidden()  # not this page
    widget.goto(pricing)
    widget.page.wait_for_timeout(700)
    expect(widget(".pro")).to_be_hidden()  # not before its delay
    expect(widget(".pro")).to_be_visible()
    expect(widget(".pro")).to_have_attribute("role", "status")
    expect(widget(".pt")).to_have_text(PRO)
    widget(".pt").click()  # opens the chat with the message in it, as the guide's
    expect(widget(".panel")).to_be_visible()
    expect(widget(".m.b").last).to_have_text(PRO)
    expect(widget(".pro")).to_be_hidden()
    assert sent == [] and widget.state()["conversation"] is None, "nothing is sent to the server"
    widget.ask(PRICING)  # the visitor's own message still starts the conversation
    widget.wait_replies(1)
    rows = offline_server.touchpoints(conversation_id=widget.state()["conversation"])
    assert [r["question"] for r in rows if r["kind"] == "exchange"] == [PRICING]
    assert all(PRO not in (r["reply"] or "") for r in rows)
    widget(".x").click()  # close the chat
    widget.goto(pricing)
    widget.page.wait_for_timeout(2000)
    expect(widget(".pro")).to_be_hidden()  # once per visitor
    assert_inert(widget)


def test_a_proactive_rule_by_stage_from_data_attributes_can_be_dismissed_or_switched_off(widget, offline_server, site):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    stage = widget.page.evaluate("localStorage.getItem('journey-guide:stage')")
    assert stage, "the visitor's stage is remembered from the last reply"
    other = "support" if stage != "support" else "renewal"

    def page(name: str, rule_stage: str, config: str = "{}") -> str:
        html = (
            f"<!doctype html><html lang='en'><head><title>{name}</title></head><body><h1>{name}</h1>"
            f"<script>window.JourneyGuide = {config};</script><script src='{offline_server.url}/widget.js' async "
            f"data-proactive='Hi {rule_stage}!' data-proactive-stage='{rule_stage}' data-proactive-id='{name}'>"
            "</script></body></html>"
        )
        (site.root / f"{name}.html").write_text(html, encoding="utf-8")
        return f"{site.url}/{name}.html"

    sent = chat_requests(widget)
    widget.goto(page("other", other))  # the site is another origin with its own storage: the same stage there
    widget.page.evaluate("(s) => localStorage.setItem('journey-guide:stage', s)", stage)
    for name, rule_stage, config in (("other", other, "{}"), ("off", stage, "{proactive: false}")):
        widget.goto(page(name, rule_stage, config))  # a stage the visitor is not in / switched off
        widget.page.wait_for_timeout(1000)
        expect(widget(".pro")).to_be_hidden()
    widget.goto(page("same", stage))
    expect(widget(".pro")).to_be_visible()
    expect(widget(".pt")).to_have_text(f"Hi {stage}!")
    widget(".dx").click()  # dismissed: gone, focus back on the launcher, not shown again
    expect(widget(".pro")).to_be_hidden()
    expect(widget(".launch")).to_be_focused()
    widget.page.reload()
    widget.page.wait_for_timeout(1000)
    expect(widget(".pro")).to_be_hidden()
    assert sent == []
    widget.assert_clean()


AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"  # npm install --no-save axe-core
AXE_RUN = """() => axe.run({fromShadowDom: ['journey-guide', '.jg']}).then((r) => r.violations.map((v) =>
  [v.id, v.impact, v.nodes.map((n) => n.target.join(' ')).slice(0, 3)]))"""


@pytest.mark.parametrize("config", ["{theme: 'light'}", "{theme: 'dark'}", "{locale: 'ar'}"])
def test_axe_finds_no_violations_in_the_open_widget(widget, offline_server, site, config):
    if not AXE.exists():
        skip_or_fail(f"axe-core is not installed at {AXE} (npm install --no-save axe-core)")
    widget.goto(site.page("axe", "<main><h1>Axe</h1></main>", config=config, widget_url=offline_server.url))
    answered(widget)
    widget.page.add_script_tag(path=str(AXE))
    assert widget.page.evaluate(AXE_RUN) == [], config
    widget(".compose button").evaluate("(b) => b.removeAttribute('aria-label')")  # axe does look inside
    assert "button-name" in [v[0] for v in widget.page.evaluate(AXE_RUN)]
    widget.assert_clean()
