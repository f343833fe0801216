"""The staff page in headless Debian chromium (Playwright): sign in, filter, read, correct, analytics, safety, layout.

Screenshots go to artifacts/ (ignored by git). Skipped without /usr/bin/chromium or playwright, unless
JOURNEY_REQUIRE_SERVICES=1, where a missing browser fails the run (see chromium.py).
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from chromium import ARTIFACTS, assert_contrast
from conftest import Server, base_env, run_cli

pytestmark = pytest.mark.timeout(300)  # the first test also starts and fills the server

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}
PRICING = "How much does the pro plan cost?"
CANCEL = "Can I cancel anytime?"
BLANK = "My booking page is blank, what's wrong?"
XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script> what is lumio?"
FILLER = ["What is Lumio?", "Do you have an app for iPhone?", "How do reminders work?", "Is there a free trial?"]
IDENTITY_SECRET = "host-secret-for-the-staff-page"
FILLERS = 24  # with the four below: 28 conversations, more than one page of 25
MARKDOWN_QUESTION = "Can the shop export the week's bookings as a spreadsheet?"
MARKDOWN_ANSWER = "**Delivered:** every Monday.\n- CSV for Excel\n- PDF <b onclick=alert(3)>now</b>"


def create_token(data_dir: Path, name: str, role: str) -> tuple[int, str]:
    """(id, token) of a new staff token, made with the CLI as an admin would."""
    result = run_cli("staff", "create-token", name, "--role", role, env=base_env(data_dir))
    assert result.returncode == 0, result.stderr
    token_id = int(re.match(r"token (\d+) ", result.stdout).group(1))
    return token_id, result.stdout.strip().splitlines()[-1]


@dataclass
class Staff:
    """A server with conversations in it, and tokens for it."""

    server: Server
    editor: str
    viewer: str
    pricing: str
    xss: str

    @property
    def url(self) -> str:
        return f"{self.server.url}/staff"

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"authorization": f"Bearer {token or self.editor}"}
        return httpx.request(method, f"{self.server.url}/v1/staff{path}", headers=headers, timeout=30, **kwargs)

    def transcript(self, conversation_id: str) -> dict:
        response = self.api("GET", f"/conversations/{conversation_id}")
        response.raise_for_status()
        return response.json()


def chat(server: Server, message: str, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/chat", json={"message": message, **body}, timeout=60)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def staff(browser, make_data_dir) -> Iterator[Staff]:
    """A server with a handoff, a thumbs down, an XSS attempt and enough conversations for two pages."""
    data_dir = make_data_dir()
    _, editor = create_token(data_dir, "editor@lumio.example", "editor")
    _, viewer = create_token(data_dir, "viewer@lumio.example", "viewer")
    server = Server(data_dir, JOURNEY_IDENTITY_SECRET=IDENTITY_SECRET)  # unsigned identities still pass, unverified
    try:
        for i in range(FILLERS):
            chat(server, FILLER[i % len(FILLER)])
        page = {"url": "https://www.lumio.example/pricing", "title": "Pricing", "referrer": ""}
        first = chat(server, PRICING, page=page)
        ids = {"conversation_id": first["conversation_id"], "visitor_id": first["visitor_id"]}
        chat(server, CANCEL, **ids)
        handoff = {"visitor_id": first["visitor_id"], "email": "owner@glow.example"}
        httpx.post(f"{server.url}/v1/conversations/{first['conversation_id']}/handoff", json=handoff).raise_for_status()
        blank = chat(server, BLANK)
        down = {"visitor_id": blank["visitor_id"], "message_id": blank["message_id"], "rating": "down"}
        httpx.post(f"{server.url}/v1/conversations/{blank['conversation_id']}/feedback", json=down).raise_for_status()
        xss = chat(server, XSS)
        answer = {"question": MARKDOWN_QUESTION, "answer": MARKDOWN_ANSWER}  # a curated answer written in Markdown
        headers = {"authorization": f"Bearer {editor}"}
        httpx.post(f"{server.url}/v1/staff/answers", json=answer, headers=headers, timeout=30).raise_for_status()
        chat(server, MARKDOWN_QUESTION)
        ask = {"visitor_id": "visitor-first-look", "page": page, "seconds_on_page": 25}  # a proactive message shown,
        httpx.post(f"{server.url}/v1/proactive", json=ask, timeout=30).raise_for_status()  # not in the inbox list
        yield Staff(server, editor, viewer, first["conversation_id"], xss["conversation_id"])
    finally:
        server.stop()


class StaffPage:
    """The staff page in a browser tab, and what a staff member does with it."""

    def __init__(self, page, staff: Staff) -> None:
        self.page = page
        self.staff = staff
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.on("console", self._console)

    def _console(self, message) -> None:
        """Console errors (a CSP violation shows up here), except the 401/403 answers the tests ask for."""
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def sign_in(self, token: str) -> StaffPage:
        from playwright.sync_api import expect

        self.page.goto(self.staff.url)
        self.page.get_by_label("Staff token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.locator("#who")).to_be_visible()
        expect(self.rows().first).to_be_visible()
        return self

    def rows(self):
        return self.page.locator("#conversation-table tbody tr[data-id]")

    def open(self, question: str):
        """Open the conversation whose first question is this; returns the transcript pane."""
        from playwright.sync_api import expect

        self.rows().filter(has_text=question).get_by_role("link").click()
        pane = self.page.locator("#transcript")
        expect(pane.locator(".turn").first).to_contain_text(question)
        return pane

    def check(self, name: str) -> None:
        from playwright.sync_api import expect

        count = self.page.locator("#list-count")
        before = count.inner_text()
        self.page.get_by_label(name).check()
        expect(count).not_to_have_text(before)

    def turn(self, index: int):
        return self.page.locator("#transcript .turn").nth(index)

    def shot(self, name: str, full_page: bool = False) -> None:
        self.page.wait_for_timeout(150)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture()
def desk(browser, staff) -> Iterator[StaffPage]:
    """A fresh desktop browser context (own sessionStorage)."""
    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    yield StaffPage(context.new_page(), staff)
    context.close()


# ---- conversations ----


def test_editor_filters_opens_a_transcript_and_corrects_it(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.editor)
    expect(desk.page.locator("#list-count")).to_have_text("28 conversations")
    expect(desk.page.locator("#who")).to_contain_text("editor@lumio.example · editor")
    desk.check("Handoff requested")
    expect(desk.rows()).to_have_count(1)
    expect(desk.rows().first).to_contain_text(PRICING)
    expect(desk.rows().first.locator(".badge.handoff")).to_have_text("Handoff")
    expect(desk.rows().first).to_contain_text("2 turns")  # two exchanges; the handoff is not a turn

    pane = desk.open(PRICING)
    expect(pane.locator(".turn")).to_have_count(2)
    first = desk.turn(0)
    expect(first.locator(".bubble.guide")).to_contain_text("$29")
    expect(first).to_contain_text("offline · offline-composer")
    expect(first).to_contain_text(re.compile(r"Latency\s*\d+ ms"))
    expect(first.locator(".page a")).to_have_text("Pricing")
    source = first.locator(".sources a").first
    expect(source).to_have_attribute("href", re.compile(r"^https://www\.lumio\.example/pricing"))
    expect(source).to_have_attribute("rel", "noopener noreferrer")
    first.locator(".evidence summary").click()
    expect(first.locator(".evidence")).to_contain_text("Page rule:")
    expect(first.locator(".evidence")).to_contain_text("Similar example:")
    expect(desk.turn(1).locator("dl.meta")).to_contain_text("from Decision")
    handoff = pane.locator(".events li.handoff")
    expect(handoff).to_contain_text("owner@glow.example")
    expect(handoff.locator("a")).to_have_attribute("href", "mailto:owner@glow.example")
    desk.shot("staff-desktop-transcript")

    better = "Pro is $29 per staff calendar per month, and you can cancel at any time from Billing."
    second = desk.turn(1)
    second.locator("summary", has_text="Write a better answer").click()
    second.get_by_label("Better answer").fill(better)  # a draft, saved at the end

    first.get_by_label("Right stage").select_option("consideration")
    first.get_by_role("button", name="Save stage").click()
    expect(desk.turn(0).locator("form[data-form=stage] .msg")).to_contain_text("Saved: Consideration")
    expect(first.get_by_role("button", name="Save stage")).to_be_focused()
    expect(desk.turn(0).locator(".annotation")).to_contain_text("Right stage: Consideration")
    assert staff.transcript(staff.pricing)["turns"][0]["annotation"]["corrected_stage"] == "consideration"

    desk.turn(0).locator("summary", has_text="Tags and note").click()
    desk.turn(0).get_by_label("Tags (comma-separated)").fill("pricing, follow-up")
    desk.turn(0).get_by_label("Note", exact=True).fill("Asked on the pricing page, not ready to buy yet.")
    desk.turn(0).get_by_role("button", name="Save tags and note").click()
    expect(desk.turn(0).locator(".annotation")).to_contain_text("Tags: follow-up, pricing.")
    note = staff.transcript(staff.pricing)["turns"][0]["annotation"]
    assert note["tags"] == ["follow-up", "pricing"] and note["note"].startswith("Asked on the pricing page")

    pane.get_by_role("button", name="Mark reviewed").click()
    expect(pane.get_by_role("button", name="Mark not reviewed")).to_be_focused()
    expect(desk.rows().first.locator(".badge.reviewed")).to_have_text("Reviewed")
    assert staff.transcript(staff.pricing)["reviewed"]["by"] == "editor@lumio.example"

    expect(second.get_by_label("Better answer")).to_have_value(better)  # saving elsewhere keeps the draft
    second.get_by_role("button", name="Save answer").click()
    expect(second.locator("form:has(textarea[name=answer]) .msg")).to_contain_text("from now on")
    answers = staff.api("GET", "/answers").json()["items"]
    saved = next(a for a in answers if a["answer"] == better)
    assert saved["question"] == CANCEL and saved["touchpoint_id"] == staff.transcript(staff.pricing)["turns"][1]["id"]
    desk.assert_clean()


def test_status_and_assignee_from_the_transcript_and_in_bulk(desk, staff):
    from playwright.sync_api import expect

    page = desk.page
    desk.sign_in(staff.editor)
    iphone = desk.rows().filter(has_text=FILLER[1]).first
    iphone_id = iphone.get_attribute("data-id")
    iphone.get_by_role("link").click()
    pane = page.locator("#transcript")
    expect(pane.locator(".tr-head")).to_contain_text("Open")
    pane.locator("form[data-form=status] select").select_option("pending")
    pane.get_by_role("button", name="Save status").click()
    expect(pane.locator("form[data-form=status] .msg")).to_have_text("Status: Pending.")
    expect(pane.get_by_role("button", name="Save status")).to_be_focused()
    expect(pane.locator("dl.facts").first).to_contain_text("Pending")
    expect(pane.locator(".events .event").last).to_contain_text("editor@lumio.example set it")
    pane.get_by_label("Assign to").select_option("viewer@lumio.example")
    pane.get_by_role("button", name="Assign").click()
    expect(pane.locator("form[data-form=assignee] .msg")).to_have_text("Assigned to viewer@lumio.example.")
    expect(pane.locator(".events .event").last).to_contain_text("assigned it to viewer@lumio.example")
    row = page.locator(f'#conversation-table tr[data-id="{iphone_id}"]')
    expect(row.locator(".badge.status-pending")).to_have_text("Pending")
    expect(row).to_contain_text("Assigned to viewer@lumio.example")
    saved = staff.transcript(iphone_id)
    assert (saved["status"], saved["assignee"]) == ("pending", "viewer@lumio.example")

    page.locator("#f-status").select_option("pending")
    expect(desk.rows()).to_have_count(1)
    expect(desk.rows().first).to_have_attribute("data-id", iphone_id)
    page.locator("#f-status").select_option("")
    expect(page.locator("#list-count")).to_have_text("28 conversations")

    reminders = desk.rows().filter(has_text=FILLER[2])
    expect(page.get_by_role("button", name="Set status")).to_be_disabled()
    picked = [reminders.nth(i).get_attribute("data-id") for i in range(3)]
    for i in range(3):
        reminders.nth(i).locator("td.pick input").check()
    expect(page.locator("#bulk-count")).to_have_text("3 selected")
    page.locator("#bulk-status").select_option("snoozed")
    expect(page.locator("#bulk-until")).to_be_visible()
    page.locator("#bulk-until").fill("2099-01-02T09:00")
    desk.shot("inbox-bulk-1280")
    page.get_by_role("button", name="Set status").click()
    expect(page.locator("#bulk-msg")).to_contain_text("3 conversations set to Snoozed until")
    page.locator("#f-status").select_option("snoozed")
    expect(desk.rows()).to_have_count(3)
    assert {desk.rows().nth(i).get_attribute("data-id") for i in range(3)} == set(picked)
    expect(desk.rows().first).to_contain_text("until")
    page.locator("#pick-all").check()
    page.locator("#bulk-assignee").select_option("editor@lumio.example")
    page.locator("#bulk").get_by_role("button", name="Assign").click()
    expect(page.locator("#bulk-msg")).to_have_text("3 conversations assigned to editor@lumio.example.")
    page.locator("#f-assignee").select_option("me")
    expect(desk.rows()).to_have_count(3)
    listed = staff.api("GET", "/conversations", params={"status": "snoozed", "assignee": "me"}).json()["items"]
    assert {c["id"] for c in listed} == set(picked) and all(c["until"].startswith("2099-01-02") for c in listed)
    desk.shot("inbox-snoozed-mine-1280")
    page.get_by_role("button", name="Clear filters").click()
    expect(page.locator("#list-count")).to_have_text("28 conversations")
    desk.assert_clean()


def test_a_visitor_message_reopens_a_resolved_conversation(desk, staff):
    from playwright.sync_api import expect

    page = desk.page
    desk.sign_in(staff.editor)
    row = desk.rows().filter(has_text=FILLER[3]).first
    conversation = row.get_attribute("data-id")
    row.get_by_role("link").click()
    pane = page.locator("#transcript")
    pane.locator("form[data-form=status] select").select_option("resolved")
    pane.get_by_role("button", name="Save status").click()
    expect(pane.locator("form[data-form=status] .msg")).to_have_text("Status: Resolved.")
    expect(page.locator(f'#conversation-table tr[data-id="{conversation}"] .badge.status-resolved')).to_be_visible()

    visitor_id = staff.transcript(conversation)["visitor_id"]
    chat(
        staff.server,
        "Sorry, one more question: how long is the trial?",
        conversation_id=conversation,
        visitor_id=visitor_id,
    )
    page.locator("#f-status").select_option("open")  # the list is read again
    row = page.locator(f'#conversation-table tr[data-id="{conversation}"]')
    expect(row.locator(".badge.status-open")).to_have_text("Open")
    row.get_by_role("link").click()
    expect(pane.locator("dl.facts").first).to_contain_text("Open")
    expect(pane.locator(".events .event").last).to_contain_text("Reopened by a visitor message")
    assert staff.transcript(conversation)["status"] == "open"
    page.get_by_role("button", name="Clear filters").click()
    desk.assert_clean()


def test_viewer_sees_status_but_gets_no_inbox_controls(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.viewer)
    expect(desk.page.locator("#bulk")).to_be_hidden()
    pane = desk.open(XSS)
    expect(pane.locator("dl.facts").first).to_contain_text("Status")
    expect(pane.locator("form[data-form=status]")).to_have_count(0)
    desk.assert_clean()


def test_guide_reply_markdown_renders_like_the_widget_and_stage_now_follows_a_correction(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.editor)
    pane = desk.open(MARKDOWN_QUESTION)
    guide = desk.turn(0).locator(".bubble.guide .md")
    expect(guide.locator("strong")).to_have_text("Delivered:")
    expect(guide.locator("li")).to_have_count(2)
    expect(guide.locator("li").nth(1)).to_have_text("PDF <b onclick=alert(3)>now</b>")
    assert guide.locator("b, [onclick]").count() == 0 and "**" not in guide.inner_text()
    desk.shot("markdown-reply-1280")

    before = pane.locator("dl.facts").first.locator("div", has_text="Stage now").inner_text()
    target = "advocacy" if "Advocacy" not in before else "renewal"
    desk.turn(0).get_by_label("Right stage").select_option(target)
    desk.turn(0).get_by_role("button", name="Save stage").click()
    expected = staff.api("GET", "/stages").json()["stages"]
    name = next(st["label"] for st in expected if st["name"] == target)
    expect(pane.locator("dl.facts").first.locator("div", has_text="Stage now")).to_contain_text(name)
    expect(desk.rows().filter(has_text=MARKDOWN_QUESTION).locator(".stage")).to_contain_text(name)
    conversation = desk.rows().filter(has_text=MARKDOWN_QUESTION).get_attribute("data-id")
    assert staff.transcript(conversation)["stage"] == target
    desk.assert_clean()


def test_internal_notes_stay_with_staff_and_canned_replies_are_kept(desk, staff):
    from playwright.sync_api import expect

    page = desk.page
    desk.sign_in(staff.editor)
    row = desk.rows().filter(has_text=FILLER[3]).first
    conversation = row.get_attribute("data-id")
    row.get_by_role("link").click()
    notes = page.locator("#transcript section.notes")
    expect(notes).to_contain_text("staff only")
    text = "Called back <b>Tuesday</b>: wants the trial extended"
    notes.get_by_label("New internal note").fill(text)
    notes.get_by_role("button", name="Add note").click()
    expect(notes.locator(".msg")).to_have_text("Note added.")
    expect(notes.locator(".note-list li .text")).to_have_text([text])
    assert notes.locator(".note-list b").count() == 0
    expect(notes.locator(".note-list li .muted")).to_contain_text("editor@lumio.example")
    desk.shot("internal-note-1280")
    saved = staff.transcript(conversation)
    assert [n["text"] for n in saved["notes"]] == [text]
    visitor = httpx.get(
        f"{staff.server.url}/v1/conversations/{conversation}", params={"visitor_id": saved["visitor_id"]}, timeout=30
    )
    assert visitor.status_code == 200 and "Tuesday" not in visitor.text

    page.get_by_role("link", name="Curated answers").click()
    form = page.locator("#canned-new")
    form.get_by_label("Title").fill("Trial extension")
    form.get_by_label("Text").fill("I've extended your trial by 14 days.")
    form.get_by_role("button", name="Save canned reply").click()
    item = page.locator("#canned-list li", has_text="Trial extension")
    expect(item).to_contain_text("extended your trial by 14 days")
    assert [c["title"] for c in staff.api("GET", "/canned").json()["items"]] == ["Trial extension"]
    item.get_by_role("button", name="Delete “Trial extension”").click()
    expect(page.locator("#canned-list")).to_have_text("No canned replies yet.")
    desk.assert_clean()


def test_filters_search_and_paging(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.editor)
    desk.check("Thumbs down")
    expect(desk.rows()).to_have_count(1)
    expect(desk.rows().first).to_contain_text(BLANK)
    expect(desk.rows().first.locator(".badge.down")).to_have_text("Thumbs down")
    desk.page.get_by_role("button", name="Clear filters").click()
    expect(desk.page.locator("#list-count")).to_have_text("28 conversations")

    desk.page.get_by_label("Per page").select_option("25")
    expect(desk.page.locator("#page-info")).to_have_text("1–25 of 28")
    expect(desk.rows()).to_have_count(25)
    expect(desk.page.get_by_role("button", name="Previous")).to_be_disabled()
    desk.page.get_by_role("button", name="Next").click()
    expect(desk.page.locator("#page-info")).to_have_text("26–28 of 28")
    expect(desk.rows()).to_have_count(3)
    expect(desk.page.get_by_role("button", name="Next")).to_be_disabled()

    desk.page.get_by_label("Search questions and replies").fill("blank")
    desk.page.get_by_label("Search questions and replies").press("Enter")
    expect(desk.page.locator("#page-info")).to_have_text("1–1 of 1")
    stage = desk.rows().first.locator(".stage").inner_text().split()[0]
    desk.page.get_by_label("Stage", exact=True).select_option(label=stage)
    expect(desk.rows()).to_have_count(1)
    today = desk.page.evaluate("new Date().toLocaleDateString('en-CA')")  # YYYY-MM-DD, local
    desk.page.locator("#f-since").fill(today)
    expect(desk.rows()).to_have_count(1)
    desk.page.locator("#f-until").fill("2001-01-01")
    expect(desk.page.locator("#list-count")).to_have_text("0 conversations")
    expect(desk.page.locator("#conversation-table")).to_contain_text("No conversations match these filters.")
    desk.assert_clean()


def test_visitor_markup_shows_as_text_and_runs_nothing(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.editor)
    desk.page.get_by_label("Search questions and replies").fill("onerror")
    desk.page.get_by_role("button", name="Search").click()
    expect(desk.rows()).to_have_count(1)
    expect(desk.rows().first.get_by_role("link")).to_have_text(XSS)
    pane = desk.open(XSS)
    expect(pane.locator(".bubble.visitor .text")).to_have_text(XSS)
    desk.page.wait_for_timeout(300)
    found = desk.page.evaluate(
        """() => { const all = [...document.querySelectorAll('body *')];
        return { tags: document.querySelectorAll('body img, body script, body iframe, body object').length,
                 handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                 hrefs: [...document.querySelectorAll('main a')].map(a => a.getAttribute('href')) }; }"""
    )
    assert found["tags"] == 0 and found["handlers"] == 0, found
    assert all(h.startswith(("https://", "http://", "mailto:", "#/")) for h in found["hrefs"]), found["hrefs"]
    desk.assert_clean()  # no alert dialog, no error


# ---- roles and sign-in ----


def test_viewer_is_told_corrections_need_an_editor(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.viewer)
    pane = desk.open(PRICING)
    expect(pane).to_contain_text("Your token has the viewer role")
    second = desk.turn(1)
    second.get_by_label("Right stage").select_option("advocacy")
    second.get_by_role("button", name="Save stage").click()
    refused = second.locator("form[data-form=stage] .msg.refused")
    expect(refused).to_contain_text("Your role (viewer) can't do this")
    expect(refused).to_contain_text("needs the editor role")
    reviewed = staff.transcript(staff.pricing)["reviewed"]
    pane.locator(".tr-head .actions button").click()
    expect(pane.locator(".tr-head .msg.refused")).to_contain_text("can't do this")
    after = staff.transcript(staff.pricing)
    assert (after["turns"][1]["annotation"] or {}).get("corrected_stage") != "advocacy"
    assert after["reviewed"] == reviewed
    desk.shot("staff-desktop-viewer-refused")
    desk.assert_clean()


def test_sign_in_errors_session_and_sign_out(desk, staff):
    from playwright.sync_api import expect

    page = desk.page
    page.goto(staff.url)
    expect(page.get_by_label("Staff token")).to_be_focused()
    desk.shot("staff-desktop-signin")
    page.get_by_label("Staff token").fill("jgs_not-a-real-token")
    page.get_by_label("Staff token").press("Enter")
    expect(page.locator("#signin-msg")).to_contain_text("Your token was not accepted")
    assert page.evaluate("sessionStorage.length") == 0

    token_id, token = create_token(staff.server.data_dir, "temp@lumio.example", "viewer")
    desk.sign_in(token)
    assert page.evaluate("Object.values(sessionStorage)") == [token]
    page.reload()
    expect(page.locator("#who")).to_contain_text("temp@lumio.example")
    revoke = run_cli("staff", "revoke-token", str(token_id), env=base_env(staff.server.data_dir))
    assert revoke.returncode == 0, revoke.stderr
    page.get_by_role("link", name="Analytics").click()
    expect(page.locator("#signin-msg")).to_contain_text("invalid or revoked")
    expect(page.locator("#who")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    desk.sign_in(staff.viewer)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Staff token")).to_be_visible()
    expect(page.locator("#signin-msg")).to_have_text("Signed out.")
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("Staff token")).to_be_visible()
    desk.assert_clean()


# ---- curated answers ----


def test_curated_answers_are_written_edited_and_deleted(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.editor)
    page = desk.page
    page.get_by_role("link", name="Curated answers").click()
    expect(page.locator("#answers-hint")).to_contain_text("85%")
    form = page.locator("#answer-new")
    form.get_by_label("Question").fill("Do you offer discounts for charities?")
    form.get_by_label("Answer").fill("Yes: registered charities get 30% off any plan.")
    form.get_by_role("button", name="Save answer").click()
    expect(page.locator("#answers-list li.answer", has_text="charities")).to_contain_text("30% off")
    answer_id = page.locator("#answers-list li.answer", has_text="charities").get_attribute("data-id")
    item = page.locator(f"#answers-list li[data-id='{answer_id}']")
    expect(item).to_contain_text("By editor@lumio.example")

    item.get_by_role("button", name="Edit").click()
    item.get_by_label("Answer").fill("Yes: registered charities get 40% off any plan.")
    item.get_by_role("button", name="Save", exact=True).click()
    expect(item).to_contain_text("40% off")
    stored = [a for a in staff.api("GET", "/answers").json()["items"] if "charities" in a["question"]]
    assert [a["answer"] for a in stored] == ["Yes: registered charities get 40% off any plan."]
    desk.shot("staff-desktop-answers")

    item.get_by_role("button", name="Delete").click()
    item.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#answers-msg")).to_have_text("Answer deleted.")
    expect(item).to_have_count(0)
    assert not [a for a in staff.api("GET", "/answers").json()["items"] if "charities" in a["question"]]
    desk.assert_clean()


# ---- analytics ----


def test_analytics_charts_render_as_svg(desk, staff):
    from playwright.sync_api import expect

    desk.sign_in(staff.editor)
    page = desk.page
    page.get_by_role("link", name="Analytics").click()
    stages = staff.api("GET", "/stages").json()["stages"]
    funnel = page.locator("#chart-funnel svg[role=img]")
    expect(funnel.locator("rect.bar")).to_have_count(len(stages))
    widths = funnel.locator("rect.bar").evaluate_all("rs => rs.map(r => Number(r.getAttribute('width')))")
    assert widths[0] > 0 and widths == sorted(widths, reverse=True), "reached counts never grow down the funnel"
    assert "Awareness" in funnel.get_attribute("aria-label")
    assert page.locator("#chart-time svg rect.bar").count() >= 3
    assert page.locator("#chart-daily svg rect.bar").count() >= 3
    expect(page.locator("#chart-daily .legend li").first).to_be_visible()
    expect(page.locator("#chart-transitions table.matrix td.heat.h4").first).to_be_visible()
    expect(page.locator("#chart-rates table.rates tbody tr")).to_have_count(len(stages))
    assert page.locator("#chart-rates svg.rate-bar rect.bar").count() == 3 * len(stages)
    gaps = page.locator("#gaps li.gap")
    expect(gaps.filter(has_text=BLANK).locator(".badge")).to_contain_text(["thumbs down 1"])
    if any(a["question"] == CANCEL for a in staff.api("GET", "/answers").json()["items"]):
        expect(gaps.filter(has_text=CANCEL)).to_have_count(0)  # a staff answer (an earlier test) closed this gap
    else:
        expect(gaps.filter(has_text=CANCEL).locator(".badge")).to_contain_text(["handoff 1"])
    counts = [int(c[:-1]) for c in gaps.locator(".count").all_inner_texts()]
    assert counts == sorted(counts, reverse=True), "most frequent first"
    csat = page.locator("#chart-csat-stage svg[role=img]")
    blank = next(c for c in staff.api("GET", "/conversations", params={"q": "blank"}).json()["items"])
    labels = {st["name"]: st["label"] for st in staff.api("GET", "/stages").json()["stages"]}
    stage_label = labels[blank["stage"]]
    assert f"{stage_label} 0% (0 up, 1 down)" in csat.get_attribute("aria-label"), "the thumbs down on BLANK"
    expect(page.locator("#chart-csat-day svg rect.bar")).to_have_count(1)
    expect(page.locator("#chart-csat-day svg text.value")).to_have_text("0% (0 up, 1 down)")
    expect(page.locator("#csat-overall")).to_have_text("Overall 0%: 0 thumbs up, 1 thumbs down.")
    figures = staff.api("GET", "/analytics").json()
    time_label = page.locator("#chart-time svg[role=img]").get_attribute("aria-label")
    for t in figures["time_in_stage"]:  # the chart says what the API measured, stage by stage
        if t["median_seconds"] is None:
            assert f"{labels[t['stage']]} – ({t['single']} on one touchpoint)" in time_label, (t, time_label)
        else:
            assert f"{labels[t['stage']]} " in time_label and f"{t['spans']}×" in time_label, (t, time_label)
    proactive = page.locator("#chart-proactive table.proactive tbody tr")
    expect(proactive).to_have_count(3)  # one row per rule of knowledge/proactive.yaml
    cells = ["1", "0 (0%)", "0 (0%)", "0", "0"]  # shown, opened, dismissed, then wrote, moved
    expect(proactive.filter(has_text="pricing-first-look").locator("td")).to_have_text(cells)
    desk.shot("staff-desktop-analytics", full_page=True)

    page.locator("#a-until").fill("2001-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#chart-funnel")).to_have_text("No data in this period.")
    expect(page.locator("#gaps")).to_have_text("No knowledge gaps in this period.")
    desk.assert_clean()


# ---- layout, keyboard, contrast ----


def test_tablet_width_stacks_without_sideways_scrolling(browser, staff):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=TABLET, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    try:
        tab = StaffPage(context.new_page(), staff).sign_in(staff.editor)
        tab.shot("staff-768-list")
        pane = tab.open(PRICING)
        tab.turn(0).locator(".evidence summary").click()
        list_box = tab.page.locator("section.list").bounding_box()
        pane_box = pane.bounding_box()
        assert pane_box["y"] >= list_box["y"] + list_box["height"], "the transcript goes below the list"
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
        tab.shot("staff-768-transcript")
        pane.get_by_role("button", name="Back to the list").click()
        expect(tab.rows().filter(has_text=PRICING).get_by_role("link")).to_be_focused()
        tab.page.get_by_role("link", name="Analytics").click()
        expect(tab.page.locator("#chart-funnel rect.bar").first).to_be_attached()
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
        tab.shot("staff-768-analytics", full_page=True)
        tab.assert_clean()
    finally:
        context.close()


def test_keyboard_only(desk, staff):
    from playwright.sync_api import expect

    page = desk.page
    page.goto(staff.url)
    expect(page.get_by_label("Staff token")).to_be_focused()
    page.keyboard.type(staff.editor)
    page.keyboard.press("Enter")
    expect(desk.rows().first).to_be_visible()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('td.question a')"):
            break
    else:
        pytest.fail("no conversation link reachable with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "keyboard focus must be visible"
    page.keyboard.press("Enter")
    expect(page.locator("#transcript .turn").first).to_be_visible()
    expect(page.locator("#transcript")).to_be_focused()
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('.turn select[name=stage]')"):
            break
    else:
        pytest.fail("the stage correction is not reachable with Tab")
    desk.assert_clean()


TEXTS = [
    ".brand",
    ".brand span",
    "#tabs a[aria-current]",
    "#tabs a:not([aria-current])",
    "#who-name",
    "label",
    ".hint",
    "td.when time",
    "td.question a",
    ".turn-count",
    ".badge.handoff",
    ".badge.down",
    ".conf",
    ".who-said",
    ".bubble.visitor .text",
    ".bubble.guide .text",
    "dl.facts dt",
    ".sources a",
    ".snippet",
    "summary",
    "button.quiet",
    ".fix button[type=submit]",
    ".events .event",
]


def test_text_contrast_is_wcag_aa(desk, staff):
    desk.sign_in(staff.editor)
    desk.open(PRICING)
    assert_contrast(desk.page, None, TEXTS)


# ---- export and erasure (kept last: erasure removes a conversation it makes) ----


def test_export_downloads_the_touchpoints_of_the_filtered_list(desk, staff):
    from playwright.sync_api import expect

    page = desk.page
    desk.sign_in(staff.editor)
    desk.check("Thumbs down")
    expect(desk.rows()).to_have_count(1)
    with page.expect_download() as download:
        page.locator("#export").get_by_role("button", name="CSV").click()
    path = download.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert {r["question"] for r in rows if r["kind"] == "exchange"} == {BLANK}
    assert {r["kind"] for r in rows} >= {"exchange", "feedback"}
    assert download.value.suggested_filename.endswith(".csv")
    expect(page.locator("#export-msg")).to_contain_text("with the current filters")
    with page.expect_download() as download:
        page.locator("#export").get_by_role("button", name="JSON lines").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows) and all(json.loads(line)["visitor_id"] == rows[0]["visitor_id"] for line in lines)
    desk.assert_clean()


def test_admin_erases_a_visitor_after_a_confirmation_naming_what_goes(browser, desk, staff):
    from playwright.sync_api import expect

    question = "Please forget me: what is Lumio?"
    gone = chat(staff.server, question)
    staff.api("POST", f"/conversations/{gone['conversation_id']}/notes", json={"text": "asked to be forgotten"})
    _, admin = create_token(staff.server.data_dir, "admin@lumio.example", "admin")
    desk.sign_in(staff.editor)
    pane = desk.open(question)
    expect(pane.get_by_role("button", name="Erase this visitor…")).to_have_count(0)  # editors cannot erase
    desk.page.get_by_role("button", name="Sign out").click()

    desk.sign_in(admin)
    pane = desk.open(question)
    pane.get_by_role("button", name="Erase this visitor…").click()
    confirm = pane.locator(".erase .confirm")
    expect(confirm).to_contain_text(f"Erase visitor {gone['visitor_id']}?")
    expect(confirm).to_contain_text("their 1 conversation with every turn")
    expect(pane.get_by_role("button", name="Keep everything")).to_be_focused()
    desk.shot("erase-confirm-1280")
    pane.get_by_role("button", name="Keep everything").click()
    assert staff.transcript(gone["conversation_id"])["id"] == gone["conversation_id"], "kept"
    pane.get_by_role("button", name="Erase this visitor…").click()
    pane.get_by_role("button", name=f"Yes, erase visitor {gone['visitor_id']}").click()
    expect(desk.page.locator("#transcript")).to_contain_text(
        f"Visitor {gone['visitor_id']} erased: 1 conversation, 1 touchpoint, 1 note, 0 annotations."
    )
    expect(desk.page.locator("#list-count")).to_have_text("28 conversations")
    assert staff.api("GET", f"/conversations/{gone['conversation_id']}").status_code == 404
    desk.assert_clean()


def test_customer_view_of_a_signed_identity_with_labelled_fields(desk, staff):
    from playwright.sync_api import expect

    from app.security.identity import sign

    identity = {"id": "cus_77", "email": "kim@salon.example", "name": "Kim <b>Lee</b>", "plan": "pro"}
    identity = {**identity, "known_customer": True, "expires": int(time.time()) + 3600}
    identity["signature"] = sign(identity, IDENTITY_SECRET)
    laptop = chat(staff.server, "Do you integrate with Square for payments?", identity=identity)
    phone = chat(staff.server, "How do I move a booking to another day?", identity=identity)
    down = {"visitor_id": phone["visitor_id"], "message_id": phone["message_id"], "rating": "down"}
    httpx.post(f"{staff.server.url}/v1/conversations/{phone['conversation_id']}/feedback", json=down).raise_for_status()
    desk.sign_in(staff.viewer)
    pane = desk.open("How do I move a booking to another day?")
    fields = pane.locator("dl.identity")
    labels = ["Name", "Email", "Customer id", "Plan", "Known customer", "Signed by the site"]
    expect(fields.locator("dt")).to_have_text(labels)
    expect(fields.locator("dd").first).to_have_text("Kim <b>Lee</b>")
    pane.get_by_role("link", name="Customer view: every conversation of this customer").click()
    expect(pane.locator("h2")).to_contain_text("Customer cus_77")
    expect(pane).to_contain_text("2 conversations from 2 devices or browsers")
    links = pane.locator(".customer-conversations a")
    expect(links).to_have_count(2)
    expect(links).to_contain_text(["How do I move a booking", "Do you integrate with Square"])
    steps = pane.locator("ol.journey > li")
    view = staff.api("GET", "/customers/cus_77", token=staff.viewer).json()
    expect(steps).to_have_count(len(view["journey"]))
    for i, step in enumerate(view["journey"]):  # each step: its date, the stage reached, in which conversation
        item = steps.nth(i)
        expect(item.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
        expect(item.locator(".stage")).to_be_visible()
        href = f"#/conversations/{step['conversation_id']}"
        expect(item.locator(".where a")).to_have_attribute("href", href)
    boxes = steps.evaluate_all("""items => items.map((li) => {
        const r = li.getBoundingClientRect(), t = li.querySelector('time').getBoundingClientRect(),
          s = li.querySelector('.stage').getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, time: t.left, timeRight: t.right, stage: s.left}; })""")
    for above, below in zip(boxes, boxes[1:], strict=False):
        assert below["top"] >= above["bottom"] - 1, f"journey steps overlap or share a line: {boxes}"
    assert len({round(b["time"]) for b in boxes}) == 1 and len({round(b["stage"]) for b in boxes}) == 1, boxes
    assert all(b["stage"] >= b["timeRight"] + 8 for b in boxes), f"the date runs into the stage: {boxes}"
    expect(pane.get_by_role("region", name="Feedback")).to_contain_text("Thumbs down")
    assert pane.locator("dl.identity b").count() == 0
    desk.shot("customer-view-1280")
    links.filter(has_text="Square").click()
    expect(desk.page.locator("#transcript .turn").first).to_contain_text("Square")
    assert laptop["conversation_id"] in desk.page.url
    desk.assert_clean()
