"""Live handoff in headless Debian chromium (Playwright): a visitor on the demo page and a staff member on /staff.

Two browser contexts talk through real server processes: one server, then two workers (the visitor's page served
by worker A, the staff page by worker B) sharing one data dir and Redis (JOURNEY_REDIS_URL). Also: resuming
after a dropped connection without losing or repeating a message, the office-hours fallback with its email form,
and markup sent either way staying text. Skipped without /usr/bin/chromium, playwright or Redis (for the two
workers), unless JOURNEY_REQUIRE_SERVICES=1, where a missing service fails the run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from chromium import ARTIFACTS, assert_contrast
from conftest import Server, base_env, local_redis_url, run_cli
from widget_page import Widget

pytestmark = pytest.mark.timeout(300)

DESKTOP = {"width": 1280, "height": 800}
PRICING = "How much does the pro plan cost?"
XSS = "<img src=x onerror=alert(1)>"
AGENT = "Ana"
LONG_WAIT = {"JOURNEY_HANDOFF_WAIT_SECONDS": "900"}  # nobody is marked unavailable while a test runs


def create_token(data_dir: Path, name: str, role: str, **env: str) -> str:
    """A new staff token, made with the CLI as an admin would."""
    result = run_cli("staff", "create-token", name, "--role", role, env=base_env(data_dir, **env))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@dataclass
class Deployment:
    """Where the visitor's page and the staff page are served from, and the tokens."""

    visitor_server: Server
    staff_server: Server
    editor: str
    viewer: str

    def staff_api(self, method: str, path: str, **kwargs) -> dict:
        headers = {"authorization": f"Bearer {self.editor}"}
        url = f"{self.staff_server.url}/v1/staff{path}"
        response = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
        assert response.is_success, response.text
        return response.json()

    def handoffs(self) -> list[dict]:
        return self.staff_api("GET", "/handoffs", params={"status": "waiting,unavailable,live"})["handoffs"]


def deploy(make_data_dir, *, workers: int, **env: str) -> tuple[Deployment, list[Server]]:
    data_dir = make_data_dir()
    database = {k: v for k, v in env.items() if k == "JOURNEY_DATABASE_URL"}
    editor = create_token(data_dir, AGENT, "editor", **database)
    viewer = create_token(data_dir, "Viola", "viewer", **database)
    servers: list[Server] = []
    try:
        for _ in range(workers):
            servers.append(Server(data_dir, **env))
    except Exception:
        for server in servers:
            server.stop()
        raise
    return Deployment(servers[0], servers[-1], editor, viewer), servers


@pytest.fixture(scope="module")
def one_server(make_data_dir) -> Iterator[Deployment]:
    deployment, servers = deploy(make_data_dir, workers=1, **LONG_WAIT)
    yield deployment
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def two_workers(make_data_dir) -> Iterator[Deployment]:
    """Worker A serves the visitor, worker B the staff member: one SQLite data dir, events through Redis."""
    deployment, servers = deploy(make_data_dir, workers=2, JOURNEY_REDIS_URL=local_redis_url(11), **LONG_WAIT)
    yield deployment
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def two_workers_postgres(make_data_dir, pg_url) -> Iterator[Deployment]:
    """The same two workers on one PostgreSQL database."""
    env = {"JOURNEY_REDIS_URL": local_redis_url(11), "JOURNEY_DATABASE_URL": pg_url, **LONG_WAIT}
    deployment, servers = deploy(make_data_dir, workers=2, **env)
    yield deployment
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def closed_server(make_data_dir) -> Iterator[Deployment]:
    """Office hours on another weekday only: every request now is outside them."""
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%a").lower()
    hours = {"JOURNEY_OFFICE_HOURS": f"{tomorrow} 09:00-17:00", "JOURNEY_OFFICE_TIMEZONE": "UTC"}
    deployment, servers = deploy(make_data_dir, workers=1, **hours)
    yield deployment
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def quick_timeout(make_data_dir) -> Iterator[Deployment]:
    """Requests nobody claims within 3 s become unavailable: follow-up tasks."""
    deployment, servers = deploy(make_data_dir, workers=1, JOURNEY_HANDOFF_WAIT_SECONDS="3")
    yield deployment
    for server in servers:
        server.stop()


DEPLOYMENTS = {
    "one server": "one_server",
    "two workers": "two_workers",
    "two workers, PostgreSQL": "two_workers_postgres",
}


@pytest.fixture(params=list(DEPLOYMENTS))
def deployment(request) -> Deployment:
    return request.getfixturevalue(DEPLOYMENTS[request.param])


class Tab:
    """A browser tab that records page errors and any dialog (an alert() from injected markup would be one)."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(150)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


class Visitor(Tab, Widget):
    """The demo page with the widget (goto, open, ask, wait_replies: widget_page.Widget), and the live chat's parts."""

    @property
    def conversation(self) -> str:
        return self.page.evaluate("JourneyGuide.conversationId")

    def request_person(self, message: str = "") -> None:
        from playwright.sync_api import expect

        self(".hb").click()
        form = self("form.card")
        expect(form.locator("input[type=email]")).to_be_focused()
        if message:
            form.locator("textarea").fill(message)
        form.locator("button[type=submit]").click()
        expect(self("form.card textarea")).to_have_count(0)  # the request form is gone

    def agent_messages(self):
        return self(".m.ag div")

    def watch_agent_messages(self) -> None:
        """Record when each agent message first shows up (Date.now(), same clock as the staff tab)."""
        self.page.evaluate(
            """() => { window.__agentSeen = {};
            const root = document.querySelector('journey-guide').shadowRoot;
            const look = () => root.querySelectorAll('.m.ag div').forEach((e) => {
              if (!(e.textContent in window.__agentSeen)) window.__agentSeen[e.textContent] = Date.now(); });
            new MutationObserver(look).observe(root.querySelector('.log'), {childList: true, subtree: true}); }"""
        )

    def assert_inert(self) -> None:
        found = self.page.evaluate(
            """() => { const all = [...document.querySelector('journey-guide').shadowRoot.querySelectorAll('*')];
            return { tags: all.filter(e => ['IMG', 'SCRIPT', 'IFRAME'].includes(e.tagName)).length,
                     handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length }; }"""
        )
        assert found == {"tags": 0, "handlers": 0}, found
        self.assert_clean()


class Desk(Tab):
    """The staff page, signed in, on the Live tab."""

    def sign_in(self, url: str, token: str, streaming: bool = True) -> Desk:
        from playwright.sync_api import expect

        self.page.goto(f"{url}/staff")
        self.page.get_by_label("Staff token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.locator("#who")).to_be_visible()
        self.page.get_by_role("link", name=re.compile("^Live")).click()
        expect(self.page.locator("#view-live")).to_be_visible()
        if streaming:
            expect(self.page.locator("#live-state")).to_have_text("Live updates are on.")
        return self

    def request(self, conversation_id: str):
        return self.page.locator(f'#queue li[data-id="{conversation_id}"]')

    def chat(self):
        return self.page.locator("#chat")

    def say(self, text: str) -> int:
        """Type and press Enter; returns Date.now() of the browser right before the Enter."""
        box = self.page.locator("#chat-input")
        box.fill(text)
        sent_at = self.page.evaluate("Date.now()")
        box.press("Enter")
        return sent_at

    def visitor_lines(self):
        return self.page.locator("#chat .chat-log .bubble.visitor .text")

    def assert_inert(self) -> None:
        found = self.page.evaluate(
            """() => ({ tags: document.querySelectorAll('main img, main script, main iframe').length,
                        handlers: [...document.querySelectorAll('main *')]
                          .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length })"""
        )
        assert found == {"tags": 0, "handlers": 0}, found
        self.assert_clean()


@pytest.fixture()
def visitor(browser) -> Iterator[Visitor]:
    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    yield Visitor(context.new_page())
    context.close()


@pytest.fixture()
def desk(browser) -> Iterator[Desk]:
    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    yield Desk(context.new_page())
    context.close()


def start_live_chat(visitor: Visitor, desk: Desk, deployment: Deployment, message: str) -> str:
    """The visitor asks the guide, then for a person; the staff member sees the request arrive and claims it."""
    from playwright.sync_api import expect

    desk.sign_in(deployment.staff_server.url, deployment.editor)
    visitor.goto(f"{deployment.visitor_server.url}/")
    visitor.open()
    visitor.ask(PRICING)
    visitor.wait_replies(1)
    conversation = visitor.conversation
    expect(desk.request(conversation)).to_have_count(0)
    visitor.request_person(message)
    expect(visitor(".st")).to_have_text("Waiting for someone from our team…")
    expect(visitor(".hb")).to_be_hidden()
    request = desk.request(conversation)
    expect(request).to_be_visible()  # pushed by the live stream: the staff page was not reloaded
    expect(request.locator(".badge.st-waiting")).to_have_text("Waiting")
    expect(request.locator(".last").first).to_contain_text(PRICING)
    expect(request.locator(".asked")).to_contain_text(message)
    page_link = request.get_by_role("link", name=re.compile("^Lumio"))  # the page the visitor was on
    expect(page_link).to_have_attribute("href", f"{deployment.visitor_server.url}/")
    first = request.locator(".waited").inner_text()
    assert re.fullmatch(r"waiting \d+ s|waiting \d+ min \d\d s", first), first
    expect(request.locator(".waited")).not_to_have_text(first)  # the waiting time ticks
    request.get_by_role("button", name="Claim").click()
    chat = desk.chat()
    expect(chat.locator("h2")).to_contain_text(conversation)
    expect(chat.locator(".bubble.visitor .text").first).to_have_text(PRICING)
    expect(chat.locator(".bubble.guide .text").first).to_contain_text("$29")
    expect(desk.page.locator("#chat-input")).to_be_focused()
    expect(request.locator(".badge.st-live")).to_have_text("Live")
    expect(visitor(".note").filter(has_text=f"{AGENT} joined")).to_have_count(1)
    expect(visitor(".st")).to_have_text(f"You're chatting with {AGENT}")
    return conversation


# ---- a live conversation ----


def test_staff_take_over_a_conversation_live(visitor, desk, deployment):
    from playwright.sync_api import expect

    conversation = start_live_chat(visitor, desk, deployment, "Can someone help me with 40 staff?")
    bot_replies = visitor(".m.b:not(.ag):not(.ty)").count()

    # staff → visitor, within a second
    visitor.watch_agent_messages()
    hello = "Hi, I'm Ana from Lumio. How many locations do you have?"
    sent_at = desk.say(hello)
    expect(visitor.agent_messages()).to_have_text([hello])
    delay = visitor.page.evaluate("(text) => window.__agentSeen[text]", hello) - sent_at
    print(f"staff message shown in the widget {delay} ms after Enter")
    assert delay < 1000, f"the staff message took {delay} ms to show in the widget"
    expect(visitor(".m.ag b")).to_have_text([AGENT])  # from that person, by name
    expect(visitor(".m.ag time")).to_have_count(1)  # and when they wrote it, like the guide's replies
    assert visitor(".m.ag time").get_attribute("datetime").startswith(str(dt.datetime.now(dt.UTC).year))
    expect(visitor("[aria-live=polite][aria-atomic=true]")).to_contain_text(hello)
    expect(desk.chat().locator(".bubble.staff .text")).to_have_text([hello])

    # typing, both ways
    desk.page.locator("#chat-input").press_sequentially("Let me ch", delay=40)
    expect(visitor(".ty")).to_have_text(f"{AGENT} is typing…")
    expect(visitor(".ty")).to_have_count(0, timeout=10_000)  # ~3 s without a key: stopped typing
    desk.page.locator("#chat-input").fill("")
    visitor("#jg-in").press_sequentially("Two loc", delay=40)
    expect(desk.chat().locator(".typing")).to_have_text("The visitor is typing…")
    widget_texts = [".st", ".note", ".m.ag b", ".m.ag div"]
    assert_contrast(visitor.page, "journey-guide", widget_texts)
    staff_texts = [
        "#tabs a[data-view=live]",
        ".badge.st-live",
        ".req .muted",
        ".req .last",
        "#live-state",
        ".bubble.staff .who-said",
        ".bubble.staff .text",
        ".chat .typing",
        ".chat-note",
    ]
    assert_contrast(desk.page, None, staff_texts)
    expect(desk.chat().locator(".typing")).to_have_text("", timeout=10_000)

    # visitor → staff: no bot reply while a person holds the conversation
    visitor("#jg-in").fill("")
    visitor.ask("Two locations, 40 staff in all.")
    expect(desk.visitor_lines().last).to_have_text("Two locations, 40 staff in all.")
    expect(visitor(".m.u").last).to_contain_text("Two locations, 40 staff in all.")
    visitor.page.wait_for_timeout(500)
    expect(visitor(".m.b:not(.ag):not(.ty)")).to_have_count(bot_replies)

    # markup either way stays text
    desk.say(XSS)
    expect(visitor.agent_messages().last).to_have_text(XSS)
    visitor.ask(XSS)
    expect(desk.visitor_lines().last).to_have_text(XSS)
    visitor.assert_inert()
    desk.assert_inert()
    visitor.shot("live-widget")
    desk.shot("live-staff")

    # hand back: the guide answers again
    desk.page.get_by_role("button", name="Hand back to bot").click()
    expect(visitor(".note").last).to_contain_text("back")
    expect(visitor(".st")).to_be_hidden()
    expect(desk.page.locator("#chat-input")).to_be_disabled()
    expect(desk.request(conversation)).to_have_count(0)
    visitor.ask("Is there a discount if I pay yearly?")
    visitor.wait_replies(2)
    expect(visitor(".m.b:has(.fb)").last).not_to_be_empty()

    # a second request, claimed again, then closed
    visitor.request_person("One more question about invoices")
    expect(desk.request(conversation).get_by_role("button", name="Claim")).to_be_enabled()
    desk.request(conversation).get_by_role("button", name="Claim").click()
    expect(visitor(".note").filter(has_text=f"{AGENT} joined")).to_have_count(2)
    desk.page.get_by_role("button", name="Close").click()
    expect(visitor(".note").last).to_contain_text("close")
    expect(visitor(".st")).to_be_hidden()
    expect(visitor(".hb")).to_be_visible()
    expect(desk.request(conversation)).to_have_count(0)
    kinds = {e["kind"] for e in deployment.staff_api("GET", f"/conversations/{conversation}")["events"]}
    wanted = {"handoff", "visitor_message", "human_message", "handoff_claimed", "handoff_returned", "handoff_closed"}
    assert wanted <= kinds, kinds
    desk.page.evaluate("(id) => { location.hash = '#/conversations/' + id; }", conversation)
    events = desk.page.locator("#transcript .events")
    expect(events).to_contain_text(f"{AGENT} joined")  # the review transcript lists the live chat too
    expect(events.locator("li", has_text=XSS)).to_have_count(2)
    visitor.assert_clean()
    desk.assert_inert()


def test_messages_sent_while_offline_arrive_once_after_reconnecting(visitor, desk, one_server):
    from playwright.sync_api import expect

    conversation = start_live_chat(visitor, desk, one_server, "Please call me back")
    desk.say("First, before the drop")
    expect(visitor.agent_messages()).to_have_text(["First, before the drop"])

    visitor.page.context.set_offline(True)
    missed = [f"Sent while you were offline #{i}" for i in range(1, 4)]
    for text in missed:
        desk.say(text)
        expect(desk.chat().locator(".bubble.staff .text").last).to_have_text(text)
    visitor.page.wait_for_timeout(1500)
    expect(visitor.agent_messages()).to_have_count(1)  # nothing can arrive while offline
    visitor.page.context.set_offline(False)
    expect(visitor.agent_messages()).to_have_text(["First, before the drop", *missed], timeout=20_000)
    visitor.page.wait_for_timeout(1000)
    expect(visitor.agent_messages()).to_have_count(4)  # exactly once each

    # the staff page loses its connection too: the visitor's messages are there once it is back
    desk.page.context.set_offline(True)
    visitor.ask("Are you still there?")
    expect(visitor(".m.u")).to_have_count(2)
    expect(visitor(".compose button")).to_be_enabled()  # sent: one message at a time
    visitor.ask("Hello?")
    expect(visitor(".m.u")).to_have_count(3)
    desk.page.wait_for_timeout(1000)
    desk.page.context.set_offline(False)
    expect(desk.visitor_lines()).to_contain_text(["Are you still there?", "Hello?"], timeout=20_000)
    desk.page.wait_for_timeout(1000)
    expect(desk.visitor_lines().filter(has_text="Hello?")).to_have_count(1)

    # a reload keeps the live conversation (and the resume point) in the widget
    visitor.page.reload()
    expect(visitor(".panel")).to_be_visible()
    expect(visitor.agent_messages()).to_have_text(["First, before the drop", *missed])
    expect(visitor(".m.u")).to_have_count(3)  # the visitor's live messages, once each, in their place
    expect(visitor(".m.u").last).to_contain_text("Hello?")
    expect(visitor(".st")).to_have_text(f"You're chatting with {AGENT}")
    desk.say("After your reload")
    expect(visitor.agent_messages()).to_have_count(5)
    expect(visitor.agent_messages().last).to_have_text("After your reload")

    # closed chat, new page: the widget still follows the conversation and counts what arrives
    visitor.page.evaluate("JourneyGuide.close()")
    visitor.page.reload()
    expect(visitor(".panel")).to_be_hidden()
    visitor.page.wait_for_timeout(1000)
    desk.say("While your chat was closed")
    expect(visitor(".badge")).to_have_text("1")
    visitor.open()
    expect(visitor.agent_messages()).to_have_count(6)
    expect(visitor.agent_messages().last).to_have_text("While your chat was closed")

    # the staff page reloaded: the conversation is still theirs, its transcript complete
    desk.page.reload()
    expect(desk.page.locator("#view-live")).to_be_visible()
    desk.request(conversation).get_by_role("button", name="Open chat").click()
    expect(desk.chat().locator(".bubble.staff .text")).to_have_count(6)
    expect(desk.visitor_lines().filter(has_text="Hello?")).to_have_count(1)
    desk.page.get_by_role("button", name="Close").click()
    expect(visitor(".st")).to_be_hidden()
    visitor.assert_clean()
    desk.assert_clean()


# ---- nobody available ----


def test_outside_office_hours_the_visitor_is_told_and_leaves_an_email(browser, visitor, desk, closed_server):
    from playwright.sync_api import expect

    visitor.goto(f"{closed_server.visitor_server.url}/")
    visitor.open()
    visitor.ask(PRICING)
    visitor.wait_replies(1)
    conversation = visitor.conversation
    visitor.request_person("I need help with billing")
    note = visitor(".note").last
    expect(note).not_to_be_empty()
    told = note.inner_text()
    expect(visitor(".st")).to_be_hidden()  # not "waiting": nobody is coming now
    email = visitor("form.card input[type=email]")
    expect(email).to_be_visible()
    email.fill("not an email")
    visitor("form.card button[type=submit]").click()
    expect(visitor("form.card [role=alert]")).to_have_text("Please enter a valid email address.")
    email.fill("ana@salon.example")
    visitor("form.card button[type=submit]").click()
    expect(visitor(".note").last).to_have_text("Thanks! We'll reply to ana@salon.example.")
    expect(visitor("form.card")).to_have_count(0)
    request = next(h for h in closed_server.handoffs() if h["conversation_id"] == conversation)
    assert request["status"] == "unavailable" and request["email"] == "ana@salon.example", request
    visitor.shot("live-widget-unavailable")

    # the request stays in the queue; a viewer sees it but cannot claim it
    desk.sign_in(closed_server.staff_server.url, closed_server.viewer)
    item = desk.request(conversation)
    expect(item.locator(".badge.st-unavailable")).to_have_text("Unavailable")
    expect(item).to_contain_text("ana@salon.example")
    expect(item.get_by_role("button", name="Claim")).to_be_disabled()
    expect(desk.page.locator("#queue-viewer")).to_be_visible()

    visitor.page.reload()  # the honest text survives a reload, without asking for the email again
    expect(visitor(".note").filter(has_text=told)).to_have_count(1)
    expect(visitor("form.card")).to_have_count(0)
    desk.assert_clean()

    # an editor whose page missed the news (no live stream) claims too late: told so, and the queue catches up
    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    try:
        context.route("**/v1/staff/live*", lambda route: route.abort())
        late = Desk(context.new_page()).sign_in(closed_server.staff_server.url, closed_server.editor, streaming=False)
        claim = late.request(conversation).get_by_role("button", name="Claim")
        expect(claim).to_be_enabled()  # an unavailable request can still be taken
        bob = create_token(closed_server.visitor_server.data_dir, "Bob", "editor")
        taken = httpx.post(
            f"{closed_server.staff_server.url}/v1/staff/handoffs/{conversation}/claim",
            headers={"authorization": f"Bearer {bob}"},
            timeout=30,
        )
        assert taken.status_code == 200, taken.text
        expect(visitor(".note").filter(has_text="Bob joined")).to_have_count(1)
        claim.click()
        expect(late.page.locator("#queue-msg")).to_have_text("Another staff member claimed this conversation first.")
        expect(late.request(conversation)).to_contain_text("Bob is talking with this visitor")
        expect(late.request(conversation).get_by_role("button", name="Claim")).to_have_count(0)
        expect(late.page.locator("#chat .chat-log")).to_have_count(0)
        late.assert_clean()
    finally:
        context.close()
    visitor.assert_clean()


RECORD_NOTICES = """(() => {
  const notes = (window.__notes = []);
  class Recorder {  // the browser's Notification, recording what the page shows (headless shows nothing)
    constructor(title, options) { notes.push({title, body: options.body, tag: options.tag}); }
    close() {}
    static requestPermission() { Recorder.permission = 'granted'; return Promise.resolve('granted'); }
  }
  Recorder.permission = 'default';
  window.Notification = Recorder;
  window.__tones = 0;
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    createOscillator() { window.__tones += 1; return super.createOscillator(); }
  };
})();"""


def ask_for_a_person(server: Server, question: str, **handoff) -> str:
    """A visitor (over the API) asks the guide, then for a person; returns the conversation id."""
    turn = httpx.post(f"{server.url}/v1/chat", json={"message": question}, timeout=60).json()
    body = {"visitor_id": turn["visitor_id"], "message": question, **handoff}
    url = f"{server.url}/v1/conversations/{turn['conversation_id']}/handoff"
    httpx.post(url, json=body, timeout=30).raise_for_status()
    return turn["conversation_id"]


def test_a_waiting_visitor_shows_in_the_tab_title_a_notification_and_a_sound(browser, one_server):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    context.add_init_script(RECORD_NOTICES)
    try:
        desk = Desk(context.new_page()).sign_in(one_server.staff_server.url, one_server.editor)
        page = desk.page
        expect(page.locator("#notify-on")).to_be_visible()
        page.locator("#notify-on").click()
        expect(page.locator("#notify-state")).to_have_text("Desktop notifications are on.")
        expect(page.locator("#notify-on")).to_be_hidden()
        page.get_by_label("Play a sound when a visitor asks for a person").check()
        page.wait_for_function("window.__tones >= 2")  # turning the sound on plays it once
        before = sum(1 for h in one_server.handoffs() if h["status"] == "waiting")
        expect(page).to_have_title(f"({before}) waiting · Journey Guide · Staff" if before else "Journey Guide · Staff")
        assert page.evaluate("window.__notes") == [], "requests already waiting at sign-in do not ring"

        question = "Can a person help me move 3 salons <b>today</b>?"
        conversation = ask_for_a_person(one_server.visitor_server, question)
        expect(page).to_have_title(f"({before + 1}) waiting · Journey Guide · Staff")
        page.wait_for_function("window.__notes.length === 1 && window.__tones >= 4")
        note = page.evaluate("window.__notes[0]")
        assert note["title"] == "A visitor is waiting for a person" and note["tag"] == f"handoff-{conversation}"
        assert question in note["body"], note
        expect(page.locator("#live-count")).to_have_text(str(before + 1))
        desk.shot("live-notified-1280")
        desk.request(conversation).get_by_role("button", name="Claim").click()
        expect(page).to_have_title(f"({before}) waiting · Journey Guide · Staff" if before else "Journey Guide · Staff")
        assert page.evaluate("window.__notes.length") == 1, "claiming rings nothing"
        one_server.staff_api("POST", f"/handoffs/{conversation}/close")
        desk.assert_clean()
    finally:
        context.close()


def test_a_request_nobody_took_becomes_a_follow_up_task(desk, closed_server):
    from playwright.sync_api import expect

    question = "Please call me about moving our <i>two</i> salons"
    conversation = ask_for_a_person(closed_server.visitor_server, question, email="lee@salon.example")
    desk.sign_in(closed_server.staff_server.url, closed_server.editor)
    task = desk.request(conversation).locator(".followup")
    expect(task.locator("h3")).to_have_text("Follow-up task")
    expect(task).to_contain_text(f"Write to lee@salon.example about: “{question}”")
    expect(task.get_by_role("link", name="lee@salon.example")).to_have_attribute("href", "mailto:lee@salon.example")
    expect(task.get_by_role("link", name="Open the conversation")).to_have_attribute(
        "href", f"#/conversations/{conversation}"
    )
    expect(desk.page.locator("#queue-count")).to_contain_text("to follow up")
    expect(desk.page).to_have_title("Journey Guide · Staff")  # nobody is waiting: they were told to expect an email
    desk.shot("live-follow-up-1280")
    task.get_by_role("button", name="Mark followed up").click()
    expect(desk.request(conversation)).to_have_count(0)
    assert all(h["conversation_id"] != conversation for h in closed_server.handoffs())
    assert closed_server.staff_api("GET", f"/conversations/{conversation}")["status"] == "resolved"
    desk.assert_clean()


def test_marking_a_timed_out_request_followed_up_resolves_its_conversation(desk, quick_timeout):
    from playwright.sync_api import expect

    desk.sign_in(quick_timeout.staff_server.url, quick_timeout.editor)
    page = desk.page
    question = "Can someone call me about moving our 3 salons?"
    conversation = ask_for_a_person(quick_timeout.visitor_server, question, email="lee@salon.example")
    request = desk.request(conversation)
    expect(page).to_have_title("(1) waiting · Journey Guide · Staff")
    task = request.locator(".followup")
    expect(task).to_contain_text(f"Write to lee@salon.example about: “{question}”", timeout=20_000)  # timed out
    expect(request.locator(".badge.st-unavailable")).to_have_text("Unavailable")
    expect(page).to_have_title("Journey Guide · Staff")
    task.get_by_role("button", name="Mark followed up").click()
    expect(page.locator("#queue-msg")).to_have_text(f"Followed up: conversation {conversation} is now resolved.")
    expect(request).to_have_count(0)
    saved = quick_timeout.staff_api("GET", f"/conversations/{conversation}")
    assert saved["status"] == "resolved", saved["status"]
    change = [e["data"] for e in saved["events"] if e["kind"] == "status"][-1]
    assert (change["by"], change["reason"], change["previous"]) == (AGENT, "followed_up", "open")

    page.get_by_role("link", name="Conversations").click()
    row = page.locator(f'#conversation-table tr[data-id="{conversation}"]')
    expect(row.locator(".badge.status-resolved")).to_have_text("Resolved")
    row.get_by_role("link").click()
    pane = page.locator("#transcript")
    expect(pane.locator("dl.facts").first).to_contain_text("Resolved")
    events = pane.locator(".events")
    expect(events).to_contain_text(f"{AGENT} followed up (the request nobody took)")
    expect(events.locator(".badge", has_text="Followed up")).to_have_count(1)
    desk.assert_clean()


def test_internal_notes_in_a_live_chat_stay_with_staff(visitor, desk, one_server):
    from playwright.sync_api import expect

    reply = "Each bill has a PDF button under Billing, then Documents."  # no "inv": the slash test looks for it
    one_server.staff_api("POST", "/canned", json={"title": "PDF copy", "text": reply})
    conversation = start_live_chat(visitor, desk, one_server, "Where do I find my invoices?")
    page = desk.page
    box = page.locator("#chat-input")
    page.get_by_label("Internal note (staff only)").check()
    expect(page.locator("label[for=chat-input]")).to_have_text("Internal note: staff only, the visitor never sees it")
    expect(page.locator("#chat form button[type=submit]")).to_have_text("Add note")
    expect(box).to_be_focused()
    secret = "Owner is on the legacy plan <b>VIP</b>: offer the 20% discount"
    box.fill(secret)
    box.press("Enter")
    notes = desk.chat().locator(".chat-log li.chat-internal")
    expect(notes.locator(".text")).to_have_text([secret])
    expect(notes.first.locator(".who-said")).to_contain_text(f"Internal note · {AGENT}")
    expect(notes.first.locator(".who-said")).to_contain_text("not shown to the visitor")
    expect(box).to_have_value("")
    ben = create_token(one_server.staff_server.data_dir, "Ben", "editor")
    other = "Ben: they asked the same thing by email yesterday"
    httpx.post(
        f"{one_server.staff_server.url}/v1/staff/conversations/{conversation}/notes",
        json={"text": other},
        headers={"authorization": f"Bearer {ben}"},
        timeout=30,
    ).raise_for_status()
    expect(notes.locator(".text")).to_have_text([secret, other])  # pushed by the staff stream, no reload
    expect(notes.nth(1).locator(".who-said")).to_contain_text("Internal note · Ben")

    page.get_by_label("Reply to the visitor").check()
    expect(page.locator("#chat form button[type=submit]")).to_have_text("Send")
    box.press_sequentially("/pdf")  # right after the mode change: the box's blur must not close the list
    page.wait_for_timeout(300)
    expect(page.get_by_role("listbox", name="Canned replies").get_by_role("option")).to_have_count(1)
    desk.shot("live-note-and-canned-1280")
    box.press("Enter")
    expect(box).to_have_value(reply)
    box.press("Enter")
    expect(visitor.agent_messages()).to_have_text([reply])  # sent after both notes: they would have arrived first
    shown = visitor.page.evaluate("document.querySelector('journey-guide').shadowRoot.textContent")
    assert "legacy plan" not in shown and "yesterday" not in shown, shown
    visitor.assert_inert()

    page.reload()  # the notes are kept: opening the chat again shows them among the messages
    desk.page.get_by_role("link", name=re.compile("^Live")).click()
    desk.request(conversation).get_by_role("button", name="Open chat").click()
    expect(notes.locator(".text")).to_have_text([secret, other])
    expect(desk.chat().locator(".chat-log > li").last.locator(".text")).to_have_text(reply)
    transcript = one_server.staff_api("GET", f"/conversations/{conversation}")
    assert [n["text"] for n in transcript["notes"]] == [secret, other]
    history = httpx.get(
        f"{one_server.visitor_server.url}/v1/conversations/{conversation}",
        params={"visitor_id": visitor.page.evaluate("JourneyGuide.visitorId")},
        timeout=30,
    )
    assert history.status_code == 200 and "legacy plan" not in history.text and "yesterday" not in history.text
    one_server.staff_api("POST", f"/handoffs/{conversation}/close")
    desk.assert_inert()


def test_slash_in_the_message_box_inserts_a_canned_reply(desk, one_server):
    from playwright.sync_api import expect

    reply = "Refunds are made within 30 days: Billing, then Invoices, then Refund."
    for title, text in [("Refund policy", reply), ("Opening hours", "We answer 9:00-17:00, Monday to Friday.")]:
        one_server.staff_api("POST", "/canned", json={"title": title, "text": text})
    conversation = ask_for_a_person(one_server.visitor_server, "I want my money back")
    desk.sign_in(one_server.staff_server.url, one_server.editor)
    desk.request(conversation).get_by_role("button", name="Claim").click()
    box = desk.page.locator("#chat-input")
    expect(box).to_be_focused()
    box.press_sequentially("/inv")
    options = desk.page.get_by_role("listbox", name="Canned replies").get_by_role("option")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("Refund policy")
    desk.shot("canned-picker-1280")
    box.press("Enter")
    expect(box).to_have_value(reply)
    expect(desk.page.get_by_role("listbox", name="Canned replies")).to_be_hidden()
    expect(desk.chat().locator(".bubble.staff")).to_have_count(0)  # inserted, not sent
    box.press("Enter")
    expect(desk.chat().locator(".bubble.staff .text")).to_have_text([reply])
    box.press_sequentially("/zzz")
    expect(desk.page.get_by_role("listbox", name="Canned replies")).to_have_text("No canned reply matches.")
    box.press("Escape")
    expect(desk.page.get_by_role("listbox", name="Canned replies")).to_be_hidden()
    one_server.staff_api("POST", f"/handoffs/{conversation}/close")
    desk.assert_clean()


def test_the_guide_asks_for_a_person_itself(visitor, one_server):
    from playwright.sync_api import expect

    visitor.goto(f"{one_server.visitor_server.url}/")
    visitor.open()
    visitor.ask("This is useless, I want to talk to a real person")
    expect(visitor(".st")).to_have_text("Waiting for someone from our team…")
    expect(visitor(".note").last).to_contain_text("join this chat")
    expect(visitor(".hb")).to_be_hidden()
    expect(visitor(".chips .chip").filter(has_text="Talk to a person")).to_have_count(0)
    conversation = visitor.conversation
    request = next(h for h in one_server.handoffs() if h["conversation_id"] == conversation)
    assert request["status"] == "waiting" and request["reason"] == "bot_frustrated", request
    assert one_server.staff_api("POST", f"/handoffs/{conversation}/close")["status"] == "closed"
    expect(visitor(".note").last).to_contain_text("closed this conversation")
    expect(visitor(".st")).to_be_hidden()
    expect(visitor(".hb")).to_be_visible()
    visitor.assert_clean()
