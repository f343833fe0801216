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
    titles["pt-BR"] = "Pergunte o que quiser"
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


SOURCE_LABEL = """() => { const a = document.querySelector('journey-guide').shadowRoot.querySelector('.src a');
  const r = document.createRange(); r.setStart(a.firstChild, 0); r.setEnd(a.firstChild, 3);
  const n = r.getBoundingClientRect(), t = a.querySelector('bdi').getBoundingClientRect();
  return [[n.left, n.right], [t.left, t.right]]; }"""


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
    number, title = widget.page.evaluate(SOURCE_LABEL)
    assert number[1] > title[1], f"a source's number comes first, on the right, then its title: {number} {title}"
    assert_contrast(widget.page, "journey-guide", TEXTS, " right to left")
    widget.shot("rtl", SCREENSHOTS)
    widget.assert_clean()


AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"  # npm install --no-save axe-core
AXE_RUN = """() => axe.run({fromShadowDom: ['journey-guide', '.jg']}).then((r) => r.violations.map((v) =>
  [v.id, v.impact, v.nodes.map((n) => n.target.join(' ')).slice(0, 3)]))"""


DECIDED = "How much does the pro plan cost for 3 people?"  # a question at the decision stage
COMPARING = "Comparing plans? I can work out the price for your team."  # knowledge/proactive.yaml, pricing-decision
ANIMATION = """() => getComputedStyle(document.querySelector('journey-guide').shadowRoot.querySelector('.pro'))
  .animationName"""


def api_requests(widget: Widget) -> list[str]:
    """Collects the URLs of the API requests (/v1/...) the page makes from now on."""
    seen: list[str] = []
    widget.page.on("request", lambda r: seen.append(r.url) if "/v1/" in r.url else None)
    return seen


def decided(widget: Widget, url: str) -> str:
    """The visitor asks a decision-stage question on url, then closes the chat; their conversation id."""
    widget.goto(url)
    widget.open()
    widget.ask(DECIDED)
    widget.wait_replies(1)
    widget(".x").click()
    return widget.state()["conversation"]


def test_a_proactive_message_from_the_journey_shows_once_opens_the_chat_and_is_recorded(widget, offline_server, site):
    from playwright.sync_api import expect

    home = site.page("home", "<h1>Home</h1>", widget_url=offline_server.url)
    pricing = site.page("pricing", "<h1>Pricing</h1>", widget_url=offline_server.url)
    sent = api_requests(widget)
    widget.goto(home)
    widget.page.wait_for_timeout(2500)
    assert sent == [], "nothing but widget.js at load: the rules are asked after 3 s on the page"
    conversation = decided(widget, home)
    for _ in range(40):  # asked again 5 s after a check that found the chat open
        if [u for u in sent if "/v1/proactive" in u]:
            break
        widget.page.wait_for_timeout(250)
    assert [u for u in sent if "/v1/proactive" in u], "asked once the chat is closed (nothing matches on this page)"
    expect(widget(".pro")).to_be_hidden()
    widget.goto(pricing)
    widget.page.wait_for_timeout(3500)
    expect(widget(".pro")).to_be_hidden()  # pricing-decision waits 5 s on the page
    expect(widget(".pro")).to_be_visible(timeout=5000)
    expect(widget(".pro")).to_have_attribute("role", "status")
    expect(widget(".pt")).to_have_text(COMPARING)
    assert widget.page.evaluate(ANIMATION) == "none", "no slide-in for prefers-reduced-motion"
    widget(".pt").click()  # opens the chat with the message in it, as the guide's, and the rule's chips
    expect(widget(".panel")).to_be_visible()
    expect(widget(".pro")).to_be_hidden()
    expect(widget(".m.b").last).to_have_text(COMPARING)
    expect(widget(".chips .chip").first).to_have_text("How much is Pro for 5 people?")
    widget(".chips .chip").first.click()
    widget.wait_replies(2)
    assert widget.state()["conversation"] == conversation, "the resulting conversation is the visitor's"
    rows = offline_server.touchpoints(conversation_id=conversation)
    kinds = [r["kind"] for r in rows if r["kind"] != "feedback"]
    assert kinds == ["exchange", "proactive_shown", "proactive_opened", "exchange"], kinds
    assert rows[-1]["question"] == "How much is Pro for 5 people?"
    widget(".x").click()
    widget.page.reload()
    widget.page.wait_for_timeout(6500)
    expect(widget(".pro")).to_be_hidden()  # once per rule per visitor
    widget.assert_clean()


def test_a_proactive_message_can_be_dismissed_moves_in_and_stays_axe_clean_in_rtl_dark(browser, offline_server, site):
    from playwright.sync_api import expect

    if not AXE.exists():
        skip_or_fail(f"axe-core is not installed at {AXE} (npm install --no-save axe-core)")
    context = browser.new_context(viewport=DESKTOP, reduced_motion="no-preference")
    widget = Widget(context.new_page())
    try:
        config = "{locale: 'ar', theme: 'dark'}"
        conversation = decided(widget, site.page("home", "<h1>Home</h1>", config=config, widget_url=offline_server.url))
        widget.goto(site.page("pricing", "<main><h1>Pricing</h1></main>", config=config, widget_url=offline_server.url))
        expect(widget(".pro")).to_be_visible(timeout=10_000)
        assert widget.page.evaluate(ANIMATION) == "in", "it slides in when motion is welcome"
        widget.page.add_script_tag(path=str(AXE))
        assert widget.page.evaluate(AXE_RUN) == [], "the bubble in the dark right-to-left widget"
        expect(widget(".dx")).to_have_attribute("aria-label", "تجاهل")
        widget(".dx").click()  # dismissed: gone, focus back on the launcher, recorded, not shown again
        expect(widget(".pro")).to_be_hidden()
        expect(widget(".launch")).to_be_focused()
        widget.page.wait_for_timeout(500)
        kinds = [r["kind"] for r in offline_server.touchpoints(conversation_id=conversation)]
        assert kinds[-2:] == ["proactive_shown", "proactive_dismissed"], kinds
        widget.page.reload()
        widget.page.wait_for_timeout(6500)
        expect(widget(".pro")).to_be_hidden()
        widget.assert_clean()
    finally:
        context.close()


def test_proactive_false_in_the_config_switches_them_off(widget, offline_server, site):
    from playwright.sync_api import expect

    config = "{proactive: false}"
    decided(widget, site.page("home", "<h1>Home</h1>", config=config, widget_url=offline_server.url))
    sent = api_requests(widget)
    widget.goto(site.page("pricing", "<h1>Pricing</h1>", config=config, widget_url=offline_server.url))
    widget.page.wait_for_timeout(7000)
    expect(widget(".pro")).to_be_hidden()
    assert [u for u in sent if "/v1/proactive" in u] == [], "not even asked"
    widget.assert_clean()


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
