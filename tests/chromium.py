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
