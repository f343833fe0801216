"""The widget on a page in headless Debian chromium: the browser, a visitor's actions, a customer's site."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chromium import ARTIFACTS

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
PRICING = "How much does the pro plan cost?"
# the widget's texts whose contrast against their background is checked (chromium.assert_contrast)
TEXTS = ["h2", "header p", ".m.u", ".m.b p", ".m.b a", ".src b", ".chip", ".hb", ".fb span", ".compose textarea"]


class Widget:
    """A page with the widget on it, and what a visitor does with it."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", lambda dialog: (self.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))

    def __call__(self, css: str):
        """A locator inside the widget's shadow root."""
        return self.page.locator(f"journey-guide {css}")

    def goto(self, url: str) -> Widget:
        self.page.goto(url)
        self.page.wait_for_selector("journey-guide", state="attached")
        return self

    def open(self) -> None:
        from playwright.sync_api import expect

        self(".launch").click()
        expect(self(".panel")).to_be_visible()

    def ask(self, text: str) -> None:
        self("#jg-in").fill(text)
        self("#jg-in").press("Enter")

    def wait_replies(self, count: int) -> None:
        """Wait until count replies are complete (their feedback buttons appear when `done` arrives)."""
        from playwright.sync_api import expect

        expect(self(".m.b .fb")).to_have_count(count)

    def reply(self, index: int = -1):
        return self(".m.b:has(.fb)").nth(index)

    def focused(self) -> str:
        """Class or id of the element focused inside the widget."""
        return self.page.evaluate(
            "() => { const a = document.querySelector('journey-guide').shadowRoot.activeElement;"
            " return a ? (a.id || a.className) : ''; }"
        )

    def state(self) -> dict:
        return self.page.evaluate(
            "() => ({visitor: JourneyGuide.visitorId, conversation: JourneyGuide.conversationId,"
            " xss: window.__xss === undefined ? null : String(window.__xss)})"
        )

    def shot(self, name: str, folder: Path = ARTIFACTS) -> None:
        folder.mkdir(exist_ok=True)
        self.page.wait_for_timeout(150)
        self.page.screenshot(path=str(folder / f"{name}.png"))

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.state()["xss"] is None


def desktop_widget(browser) -> Iterator[Widget]:
    """A fresh desktop browser context (own storage), closed afterwards."""
    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    context.set_default_timeout(30_000)
    yield Widget(context.new_page())
    context.close()


class Site:
    """A customer's website on its own origin, serving static pages."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.root = root
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name: str, body: str, *, head: str = "", config: str = "{}", widget_url: str) -> str:
        html = (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{name} page</title>{head}</head>"
            f"<body>{body}<script>window.JourneyGuide = {config};</script>"
            f'<script src="{widget_url}/widget.js" async></script></body></html>'
        )
        (self.root / f"{name}.html").write_text(html, encoding="utf-8")
        return f"{self.url}/{name}.html"

    def stop(self) -> None:
        self.httpd.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve_site(tmp_path: Path) -> Iterator[Site]:
    """A customer's website serving tmp_path, stopped afterwards."""
    s = Site(tmp_path)
    yield s
    s.stop()


XSS = "<img src=x onerror=\"window.__xss='img'\"><script>window.__xss='script'</script>[x](javascript:window.__xss=1)"


def assert_inert(widget: Widget) -> None:
    """Nothing in the widget is markup from the payloads: no img/script/iframe, no handlers, only safe links."""
    found = widget.page.evaluate(
        """() => { const root = document.querySelector('journey-guide').shadowRoot;
        const all = [...root.querySelectorAll('*')];
        return { tags: all.filter(e => ['IMG', 'SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(e.tagName)).length,
                 handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                 hrefs: [...root.querySelectorAll('a')].map(a => a.getAttribute('href')) }; }"""
    )
    assert found["tags"] == 0 and found["handlers"] == 0, found
    assert all(h.startswith(("https://", "http://", "mailto:")) for h in found["hrefs"]), found["hrefs"]
    widget.assert_clean()
