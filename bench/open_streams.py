"""Concurrent open streams in one server process (held open by a slow fake LLM): memory per stream, flat memory.

Usage: .venv/bin/python bench/open_streams.py [--streams 1000] [--step 250] [--hold 30] [--delay 2]

Streams are opened in steps of --step; after each step, once every stream has its first token, the server's RSS
is read. Then all --streams are held open for --hold seconds (RSS sampled every second: flat memory means no
growth while streams idle), then the clients leave and every stream must leave one client_disconnected touchpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from harness import FakeLLMProcess, ServerProcess, client, data_dir, header, llm_env, stream_turn


async def hold(server: ServerProcess, streams: int, step: int, seconds: float, marker: str) -> dict:
    """Open streams step by step, hold them, then leave; return the RSS figures."""
    figures: dict = {"steps": [], "held": []}
    figures["base"] = server.rss_mb()
    async with client(streams + 50, timeout=900) as http:
        tasks, events = [], []
        started = time.perf_counter()
        for opened in range(step, streams + step, step):
            for i in range(len(tasks), min(opened, streams)):
                event = asyncio.Event()
                body = {"message": f"How much does the pro plan cost? ({marker} LONGREPLY #{i})"}
                tasks.append(asyncio.create_task(stream_turn(http, server.url, body, opened=event)))
                events.append(event)
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 900)
            figures["steps"].append((len(tasks), time.perf_counter() - started, server.rss_mb()))
            print(
                f"  {len(tasks)} streams open after {time.perf_counter() - started:.1f}s: RSS {server.rss_mb():.1f} MB"
            )
        failed = [t.result() for t in tasks if t.done()]
        for _ in range(int(seconds)):
            await asyncio.sleep(1)
            figures["held"].append(server.rss_mb())
        figures["still_open"] = sum(1 for t in tasks if not t.done())
        figures["ended_early"] = failed
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--step", type=int, default=250)
    parser.add_argument("--hold", type=float, default=30)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds between two words of the fake LLM")
    args = parser.parse_args()
    header(f"{args.streams} concurrent open streams in one process")
    fake = FakeLLMProcess(mode="trickle", delay=args.delay, long_words=2000)
    server = ServerProcess(data_dir(), **llm_env(fake, timeout=3600, token_timeout=args.delay * 5))
    marker = uuid.uuid4().hex[:10]
    try:
        figures = asyncio.run(hold(server, args.streams, args.step, args.hold, marker))
        deadline = time.monotonic() + 120
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = [r for r in server.touchpoints("id, question, outcome") if marker in r["question"]]
            if len(rows) >= args.streams:
                break
            time.sleep(1)
        time.sleep(3)
        after = server.rss_mb()
    finally:
        server.stop()
        fake.stop()
    base = figures["base"]
    top_n, _, top_rss = figures["steps"][-1]
    per_stream_kb = (top_rss - base) / top_n * 1000
    held = figures["held"]
    outcomes: dict[str, int] = {}
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    print(f"RSS before: {base:.1f} MB; " + "; ".join(f"{n} open: {rss:.1f} MB" for n, _, rss in figures["steps"]))
    print(
        f"OPEN STREAMS {figures['still_open']}/{args.streams} still open after holding {args.hold:g}s "
        f"(ended early: {len(figures['ended_early'])}); memory per open stream: {per_stream_kb:.0f} KB"
    )
    print(
        f"FLAT MEMORY while held: min {min(held):.1f} max {max(held):.1f} MB (drift {held[-1] - held[0]:+.1f} MB over "
        f"{len(held)}s); after the clients left: {after:.1f} MB"
    )
    print(f"touchpoints {len(rows)}/{args.streams}: {outcomes}")


if __name__ == "__main__":
    main()
