"""Headless Debian chromium for the browser tests (Playwright): where it is, how it starts, when tests skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts"


def missing() -> str | None:
    """Why the browser tests can't run here, or None."""
    if not CHROMIUM.exists():
        return "Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


def launch() -> Iterator:
    """Yield one headless chromium; skip without it, or fail when JOURNEY_REQUIRE_SERVICES=1."""
    reason = missing()
    if reason:
        if os.environ.get("JOURNEY_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; JOURNEY_REQUIRE_SERVICES=1 requires the browser tests to run")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


CONTRAST = """([root, selectors]) => {
  const scope = root ? document.querySelector(root).shadowRoot : document;
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = (c) => { const [r, g, b] = rgb(c).slice(0, 3).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = (e) => { for (; e && e.nodeType === 1; e = e.parentElement || e.getRootNode().host) {
      const c = getComputedStyle(e).backgroundColor; if (rgb(c)[3] !== 0) return c; } return 'rgb(255, 255, 255)'; };
  return selectors.map((css) => { const e = scope.querySelector(css); if (!e) return [css, null];
    const a = lum(getComputedStyle(e).color), b = lum(bg(e));
    return [css, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; });
}"""


def assert_contrast(page, root: str | None, selectors: list[str], context: str = "") -> None:
    """Each element's text against its background is at least 4.5:1 (WCAG AA).

    root: the element whose shadow root holds the selectors (the widget), or None for the document itself.
    """
    ratios = dict(page.evaluate(CONTRAST, [root, selectors]))
    assert all(ratios[css] is not None for css in selectors), ratios
    low = {css: round(r, 2) for css, r in ratios.items() if r < 4.5}
    assert not low, f"text below 4.5:1{context}: {low}"
