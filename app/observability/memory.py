"""Give the heap memory a burst of turns freed back to the system (glibc's allocator keeps it otherwise)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

from anyio import to_thread

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


LIBC = _glibc()


def limit_arenas(count: int) -> bool:
    """At most `count` malloc arenas: the thread pool's threads share them instead of each keeping its own."""
    return bool(LIBC is not None and LIBC.mallopt(M_ARENA_MAX, count))


def trim() -> bool:
    """Return free heap pages to the system; True if some were."""
    return bool(LIBC is not None and LIBC.malloc_trim(0))


async def trim_loop(chat, interval: float) -> None:
    """Every `interval` seconds: when turns were answered since the last look and none is open now, trim the heap."""
    seen = chat.turns_recorded
    while True:
        await asyncio.sleep(interval)
        if chat.open_turns == 0 and chat.turns_recorded != seen:
            seen = chat.turns_recorded
            try:
                await to_thread.run_sync(trim)
            except Exception:  # noqa: BLE001 - only an optimisation
                log.exception("malloc_trim failed")
