"""Regressions in the widget that site owners hit (issue 19), each pinned in headless Debian chromium.

Skipped without /usr/bin/chromium or playwright, unless JOURNEY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from chromium import assert_contrast
from conftest import REPO
from widget_page import PHONE, PRICING, Widget, assert_inert

from app.widget.router import widget_js

# 1. `open: true` in the config


def test_open_true_opens_the_chat_and_keeps_the_rest_of_the_config(widget, offline_server, site):
    from playwright.sync_api import expect

    config = """{open: true, title: 'Glow salon help', subtitle: 'We answer fast', greeting: 'Hello from Glow!',
      colors: {primary: '#0f766e'}, identity: {email: 'owner@glow.example'},
      on: {open: function () { window.__opened = (window.__opened || 0) + 1; }},
      onReady: function () { window.__ready = true; }}"""
    widget.goto(site.page("open", "<h1>Glow</h1>", config=config, widget_url=offline_server.url))
    expect(widget(".panel")).to_be_visible()
    expect(widget("h2")).to_have_text("Glow salon help")
    expect(widget("header p")).to_have_text("We answer fast")
    expect(widget(".m.b").first).to_have_text("Hello from Glow!")
    assert widget("header").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(15, 118, 110)"
    assert widget.page.evaluate("[window.__opened, window.__ready]") == [1, True]
    widget(".hb").click()
    expect(widget("form.card")).to_contain_text("We'll reply to owner@glow.example.")
    assert widget.page.evaluate("typeof JourneyGuide.open") == "function"
    widget.assert_clean()


# 2. focus on a phone, where the open panel covers the whole page


@pytest.fixture()
def phone(browser) -> Iterator[Widget]:
    """A fresh 360×740 touch browser context."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    yield Widget(context.new_page())
    context.close()


VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'
INSIDE = "() => document.activeElement === document.querySelector('journey-guide')"


def test_tab_stays_in_the_full_screen_panel_on_a_phone(phone, offline_server, site):
    from playwright.sync_api import expect

    links = "".join(f"<p><a href='#l{i}'>Host link {i}</a></p>" for i in range(5))
    phone.goto(site.page("phone", f"<h1>Salon</h1>{links}", head=VIEWPORT, widget_url=offline_server.url))
    phone(".launch").tap()
    expect(phone(".panel")).to_be_visible()
    expect(phone(".panel")).to_have_attribute("aria-modal", "true")
    expect(phone(".chips .chip").first).to_be_visible()
    seen = []
    for _ in range(12):  # around the panel more than once: close, chips, input, send, "Talk to a person"
        phone.page.keyboard.press("Tab")
        assert phone.page.evaluate(INSIDE), f"Tab left the panel after {seen}"
        seen.append(phone.focused())
    assert "hb" in seen and seen.count("x") >= 2, seen
    phone(".nc").focus()  # "New conversation", the first control
    phone.page.keyboard.press("Shift+Tab")
    assert phone.focused() == "hb", "Shift+Tab from the first control goes to the last one"
    phone.page.keyboard.press("Tab")
    assert phone.focused() == "nc"
    phone.assert_clean()


# 3. messages sent during an outage

STREAM = "**/v1/chat/stream"
LOG_ORDER = """() => [...document.querySelector('journey-guide').shadowRoot.querySelector('.log').children]
  .filter((e) => e.matches('.m.u, .m.b:has(.fb), .err'))
  .map((e) => e.matches('.err') ? 'err' : e.matches('.u') ? 'Q:' + e.childNodes[1].textContent : 'A')"""


def outage(widget: Widget, questions: list[str]) -> None:
    """Send each question while the server cannot be reached: each one shows "Not sent."."""
    from playwright.sync_api import expect

    widget.page.route(STREAM, lambda route: route.abort("connectionrefused"))
    for i, question in enumerate(questions):
        widget.ask(question)
        expect(widget(".err")).to_have_count(i + 1)
    expect(widget(".err").first).to_contain_text("Not sent.")


def test_retrying_the_first_of_two_unsent_messages_answers_each_under_its_question(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    first, second = "Can I cancel anytime?", "How much does the pro plan cost?"
    outage(widget, [first, second])
    assert widget.page.evaluate(LOG_ORDER) == [f"Q:{first}", "err", f"Q:{second}", "err"]
    widget.page.unroute(STREAM)
    widget(".err button").first.click()
    widget.wait_replies(2)
    expect(widget(".err")).to_have_count(0)
    assert widget.page.evaluate(LOG_ORDER) == [f"Q:{first}", "A", f"Q:{second}", "A"]
    rows = offline_server.touchpoints(conversation_id=widget.state()["conversation"])
    assert [r["question"] for r in rows if r["kind"] == "exchange"] == [first, second]
    widget.assert_clean()


def test_unsent_messages_survive_a_reload_and_go_out_in_order_when_the_server_is_back(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    first, second = "Can I cancel anytime?", "Is there a discount if I pay yearly?"
    outage(widget, [first, second])
    widget.page.reload()
    expect(widget(".err")).to_have_count(2)
    assert widget.page.evaluate(LOG_ORDER) == [f"Q:{first}", "err", f"Q:{second}", "err"]
    widget.page.unroute(STREAM)  # the server is back: the widget resends by itself, nobody clicks Retry
    widget.wait_replies(2)
    expect(widget(".err")).to_have_count(0)
    assert widget.page.evaluate(LOG_ORDER) == [f"Q:{first}", "A", f"Q:{second}", "A"]
    rows = offline_server.touchpoints(conversation_id=widget.state()["conversation"])
    assert [r["question"] for r in rows if r["kind"] == "exchange"] == [first, second]
    widget.page.reload()
    widget.wait_replies(2)
    expect(widget(".err")).to_have_count(0)
    widget.assert_clean()


def test_a_refused_message_gets_its_error_and_does_not_block_the_resend_queue(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    too_long, after = "x" * 4001, "Can I cancel anytime?"
    widget.page.route(STREAM, lambda route: route.abort("connectionrefused"))
    widget.page.evaluate("(text) => JourneyGuide.send(text)", too_long)
    expect(widget(".err")).to_have_count(1)
    widget.ask(after)
    expect(widget(".err")).to_have_count(2)
    widget.page.unroute(STREAM)
    widget(".err button").first.click()  # the server answers the first with 422, the second with a reply
    widget.wait_replies(1)
    refused = widget(".err.no[role=alert]")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("at most 4000 characters")
    expect(widget(".err button")).to_have_count(0)  # nothing left to retry
    assert widget.page.evaluate(LOG_ORDER) == [f"Q:{too_long}", "err", f"Q:{after}", "A"]
    assert widget.page.evaluate("localStorage.getItem('journey-guide:pending')") is None
    rows = offline_server.touchpoints(conversation_id=widget.state()["conversation"])
    assert [r["question"] for r in rows if r["kind"] == "exchange"] == [after]
    widget.ask("Is there a discount if I pay yearly?")  # and later messages go out as usual
    widget.wait_replies(2)
    expect(widget(".err.no")).to_have_count(1)
    widget.assert_clean()


# 4. "Not sent" for screen readers

POLITE = "journey-guide .sr[aria-live=polite][aria-atomic=true]"


def test_not_sent_is_announced_as_an_alert(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget.ask("How much does the pro plan cost?")
    widget.wait_replies(1)
    expect(widget.page.locator(POLITE)).to_contain_text("$29")
    outage(widget, ["Can I cancel anytime?", "Is there a discount if I pay yearly?"])
    alert = widget(".err[role=alert]")
    expect(alert).to_have_count(1)  # one alert, not one per unsent message
    expect(alert).to_contain_text("Not sent.")
    expect(widget.page.locator(POLITE)).not_to_contain_text("$29")  # the previous reply is not read out again
    widget.page.reload()
    expect(widget(".err[role=alert]")).to_have_count(1)
    widget.assert_clean()


# 5. rendering: code with tags in it, links with parentheses, tables


def test_code_with_tags_javascript_links_with_parentheses_and_tables_render(widget, llm_server, fake_llm):
    from playwright.sync_api import expect

    fake_llm.reply = (
        'Paste this before the end of the body:\n\n```html\n<script src="https://cdn.lumio.example/w.js"></script>\n```\n\n'
        "Not [bad](javascript:alert(1)) but [pricing](https://www.lumio.example/pricing).\n\n"
        "| Plan | Price |\n|------|------:|\n| Starter | $9 |\n| **Pro** | $29 |\n\nThat's all."
    )
    widget.goto(f"{llm_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    reply = widget.reply()
    expect(reply.locator("pre code")).to_have_text('<script src="https://cdn.lumio.example/w.js"></script>\n')
    expect(reply.locator(".md")).to_contain_text("Not bad but pricing.")
    assert reply.locator("a", has_text="bad").count() == 0
    expect(reply.locator("table th")).to_have_text(["Plan", "Price"])
    expect(reply.locator("table tbody tr")).to_have_count(2)
    expect(reply.locator("table tbody td")).to_have_text(["Starter", "$9", "Pro", "$29"])
    expect(reply.locator("table strong")).to_have_text("Pro")
    expect(reply.locator(".md p").last).to_have_text("That's all.")
    assert_inert(widget)


# 6. host pages that move or cover the launcher

HIT = "([x, y]) => document.elementFromPoint(x, y).tagName.toLowerCase()"


def test_launcher_stays_in_view_and_on_top_of_transformed_bodies_and_later_overlays(widget, offline_server, site):
    from playwright.sync_api import expect

    head = "<style>body { transform: translateZ(0); margin: 0; } .tall { height: 4000px; }</style>"
    widget.goto(site.page("moved", "<div class='tall'>Long page</div>", head=head, widget_url=offline_server.url))
    widget.page.mouse.wheel(0, 1500)
    launcher = widget(".launch")
    expect(launcher).to_be_visible()
    box = launcher.bounding_box()
    assert (round(box["x"]), round(box["y"])) == (1280 - 20 - 60, 800 - 20 - 60), box
    widget.page.evaluate(
        """() => { const cover = document.createElement('div'); cover.id = 'cover';
        cover.style.cssText = 'position:fixed;inset:0;z-index:2147483647;background:rgba(0,0,0,.2)';
        document.body.appendChild(cover); }"""
    )
    assert widget.page.evaluate(HIT, [box["x"] + 30, box["y"] + 30]) == "journey-guide"
    assert widget.page.evaluate(HIT, [300, 300]) == "div", "the rest of the page is the host's (no backdrop)"
    launcher.click()  # Playwright clicks only what is on top at that point
    expect(widget(".panel")).to_be_visible()
    panel = widget(".panel").bounding_box()
    assert panel["y"] >= 0 and panel["y"] + panel["height"] <= 800, panel
    assert widget.page.evaluate(HIT, [panel["x"] + 100, panel["y"] + 100]) == "journey-guide"
    widget.assert_clean()


# 7. what scrolls: only the conversation, and a long answer shows its start

GEOMETRY = """() => { const root = document.querySelector('journey-guide').shadowRoot;
  const [panel, head, log] = ['.panel', 'header', '.log'].map((s) => root.querySelector(s));
  const reply = [...root.querySelectorAll('.m.b')].pop();
  return { overflow: panel.scrollHeight - panel.clientHeight, panelTop: panel.getBoundingClientRect().top,
           headTop: head.getBoundingClientRect().top, logTop: log.getBoundingClientRect().top,
           replyTop: reply.getBoundingClientRect().top, logScroll: log.scrollTop }; }"""


def test_only_the_log_scrolls_so_scroll_into_view_keeps_the_header(widget, offline_server):
    widget.goto(f"{offline_server.url}/")
    widget.open()
    for i, question in enumerate([PRICING, "Can I cancel anytime?", "Is there a discount if I pay yearly?"]):
        widget.ask(question)
        widget.wait_replies(i + 1)
    widget.page.evaluate(
        "() => document.querySelector('journey-guide').shadowRoot.querySelector('.m.b .fb').scrollIntoView()"
    )
    g = widget.page.evaluate(GEOMETRY)
    assert g["overflow"] <= 0, f"the panel itself must not scroll: {g}"
    assert g["headTop"] == g["panelTop"], f"the header and its close button stay in view: {g}"
    widget.assert_clean()


def test_a_long_answer_shows_its_start_when_it_arrives_and_after_a_reload(widget, llm_server, fake_llm):
    fake_llm.reply = "The Pro plan costs $29 per staff calendar per month [1].\n\n" + "\n\n".join(
        f"Point {i}: more detail about the plan." for i in range(1, 41)
    )
    widget.goto(f"{llm_server.url}/")
    widget.open()
    widget.ask(PRICING)
    widget.wait_replies(1)
    for moment in ("arrived", "reloaded"):
        g = widget.page.evaluate(GEOMETRY)
        assert g["logScroll"] > 0, f"{moment}: the log scrolled down to the answer: {g}"
        assert g["logTop"] <= g["replyTop"] <= g["logTop"] + 40, f"{moment}: the answer's start is in view: {g}"
        if moment == "arrived":
            widget.page.reload()
            widget.wait_replies(1)
            widget.page.wait_for_timeout(300)
    widget.assert_clean()


# 8. config of the wrong type, the handoff form, the brand colour, what widget/README.md promises


def test_wrong_typed_config_falls_back_to_defaults_without_errors(widget, offline_server, site):
    from playwright.sync_api import expect

    console = []

    def note(message) -> None:
        if message.type in ("error", "warning") and "favicon" not in message.location["url"]:  # the site has none
            console.append(message.text)

    widget.page.on("console", note)
    config = """{title: {en: 'Help'}, subtitle: ['a'], greeting: {text: 'Hi'}, locale: {}, apiUrl: {},
      strings: {placeholder: {}, send: 5, human: null, title: 'Strings win'}, on: {reply: 'x', open: 42},
      onReady: 'nope'}"""
    widget.goto(site.page("typed", "<h1>Typed</h1>", config=config, widget_url=offline_server.url))
    widget.page.wait_for_function("window.JourneyGuide && typeof window.JourneyGuide.open === 'function'")
    widget.page.evaluate("JourneyGuide.on('reply', 'not a function')")
    widget.open()
    expect(widget("h2")).to_have_text("Strings win")
    expect(widget("header p")).to_have_text("Answers from our help centre")
    expect(widget(".m.b").first).to_contain_text("Hi! I can answer questions")
    expect(widget("#jg-in")).to_have_attribute("placeholder", "Type your question…")
    expect(widget(".hb")).to_have_text("Talk to a person")
    widget.ask(PRICING)
    widget.wait_replies(1)
    shown = widget.page.evaluate(
        """() => { const root = document.querySelector('journey-guide').shadowRoot;
        return [...root.querySelectorAll('*')].map((e) => e.textContent + ' ' +
          [...e.attributes].map((a) => a.value).join(' ')).join(' '); }"""
    )
    assert "[object" not in shown and "undefined" not in shown and "null" not in shown
    lang = widget.page.evaluate("document.querySelector('journey-guide').shadowRoot.querySelector('.jg').lang")
    assert lang == widget.page.evaluate("navigator.language"), "a locale that is not a string is ignored"
    assert console == [], console
    widget.assert_clean()


def test_escape_in_the_handoff_form_closes_the_form_not_the_chat(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget(".hb").click()
    expect(widget("form.card input[type=email]")).to_be_focused()
    widget.page.keyboard.press("Escape")
    expect(widget("form.card")).to_have_count(0)
    expect(widget(".panel")).to_be_visible()
    expect(widget(".hb")).to_be_focused()
    widget.page.keyboard.press("Escape")
    expect(widget(".panel")).to_be_hidden()
    widget.assert_clean()


def test_talk_to_a_person_is_hidden_while_its_form_is_open(widget, offline_server):
    from playwright.sync_api import expect

    widget.goto(f"{offline_server.url}/")
    widget.open()
    widget(".hb").click()
    expect(widget("form.card")).to_be_visible()
    expect(widget(".hb")).to_be_hidden()
    widget("form.card .sec").click()  # Cancel
    expect(widget(".hb")).to_be_visible()
    expect(widget(".hb")).to_be_focused()
    widget.assert_clean()


def test_chip_hover_uses_the_brand_colour(widget, offline_server, site):
    from playwright.sync_api import expect

    widget.goto(site.page("brand", "<h1>Brand</h1>", config="{color: '#0f766e'}", widget_url=offline_server.url))
    widget.open()
    chip = widget(".chips .chip").first
    expect(chip).to_be_visible()
    chip.hover()
    assert chip.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(15, 118, 110)"
    assert_contrast(widget.page, "journey-guide", [".chip:hover"], " on a hovered chip")
    widget.assert_clean()


def test_no_globals_besides_journey_guide_and_a_second_copy_does_nothing(widget, offline_server, site):
    head = "<script>window.__before = Object.getOwnPropertyNames(window);</script>"
    widget.goto(site.page("globals", "<h1>Globals</h1>", head=head, widget_url=offline_server.url))
    widget.page.wait_for_function("window.JourneyGuide && typeof window.JourneyGuide.open === 'function'")
    added = widget.page.evaluate(
        "() => Object.getOwnPropertyNames(window).filter((n) => !window.__before.includes(n) && n !== '__before')"
    )
    assert added == ["JourneyGuide"], added
    widget.page.evaluate(
        """(src) => new Promise((done) => { const s = document.createElement('script'); s.src = src;
        s.onload = done; document.body.appendChild(s); })""",
        f"{offline_server.url}/widget.js?again",
    )
    assert widget.page.evaluate("document.querySelectorAll('journey-guide').length") == 1
    widget.assert_clean()


def test_widget_readme_states_the_widget_gzipped_size():
    size = len(widget_js.load().gzipped) / 1024  # as served: without comments and indentation
    readme = (REPO / "widget" / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"about (\d+(?:\.\d)?) KB gzipped", readme)
    assert stated, "widget/README.md states the widget's gzipped size"
    assert abs(float(stated.group(1)) - size) <= 0.3, f"widget/README.md says {stated.group(1)} KB, it is {size:.1f} KB"
    assert size <= 16, f"{size:.1f} KB gzipped: the widget must stay at most 16 KB"
