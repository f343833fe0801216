"""A progress bar on stderr for long ingestions (only when stderr is a terminal)."""

from __future__ import annotations

import sys

LABELS = {"crawl": "crawling", "load": "reading", "embed": "embedding"}


class ProgressBar:
    """Callable as a sync progress callback; one tqdm bar per phase, nothing at all when stderr is not a TTY."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._phase = ""

    def __call__(self, phase: str, done: int, total: int, item: str) -> None:
        """Move the bar of this phase to done/total."""
        if not self.enabled or total <= 0:
            return
        from tqdm import tqdm

        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = tqdm(total=total, desc=LABELS.get(phase, phase), unit="doc", file=sys.stderr, leave=True)
        bar = self._bar
        bar.total = max(total, done)
        bar.n = done
        bar.set_postfix_str(item[-50:], refresh=False)
        bar.refresh()

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
