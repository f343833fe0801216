"""SIGTERM with open streams: how long `journey serve` takes to exit and what the touchpoints say.

Usage: .venv/bin/python bench/shutdown.py [--streams 200] [--grace 10] [--workers 1]

Half the streams get a short reply (done within the grace period), half a reply far longer than the grace (cut,
recorded with outcome shutdown). The fake LLM (its own process) sends one word every 0.2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from harness import FakeLLMProcess, ServerProcess, client, data_dir, header, llm_env, stream_turn

LONG = "LONGREPLY"


async def open_then_term(server: ServerProcess, streams: int, marker: str) -> tuple[list[dict], float, float]:
    """Open the streams, wait until all have a token, SIGTERM; return results, seconds to exit, seconds to open."""
    opened = [asyncio.Event() for _ in range(streams)]
    async with client(streams + 20, timeout=300) as http:
        started = time.perf_counter()
        tasks = [
            asyncio.create_task(
                stream_turn(
                    http,
                    server.url,
                    {"message": f"How much does the pro plan cost? ({marker} {LONG if i % 2 else 'short'} #{i})"},
                    opened=opened[i],
                )
            )
            for i in range(streams)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 600)
        open_seconds = time.perf_counter() - started
        term = time.perf_counter()
        server.process.terminate()
        while server.process.poll() is None:
            await asyncio.sleep(0.02)
        exit_seconds = time.perf_counter() - term
        results = await asyncio.gather(*tasks)
    return results, exit_seconds, open_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--grace", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    header(f"SIGTERM with {args.streams} open streams, JOURNEY_SHUTDOWN_GRACE_SECONDS={args.grace:g}")
    # short replies: 5 words = 1 s; long ones: 600 words = 120 s, far past any grace period
    fake = FakeLLMProcess(mode="trickle", delay=0.2, reply="Pro is $29 a month [1].", long_words=600)
    data = data_dir()
    env = llm_env(fake, timeout=300, token_timeout=10)
    server = ServerProcess(data, workers=args.workers, JOURNEY_SHUTDOWN_GRACE_SECONDS=str(args.grace), **env)
    marker = uuid.uuid4().hex[:10]
    try:
        results, exit_seconds, open_seconds = asyncio.run(open_then_term(server, args.streams, marker))
    finally:
        server.stop()
        fake.stop()
    rows = [r for r in server.touchpoints("id, question, outcome") if marker in r["question"]]
    outcomes: dict[str, int] = {}
    for row in rows:
        kind = "long" if LONG in row["question"] else "short"
        key = f"{kind}:{row['outcome']}"
        outcomes[key] = outcomes.get(key, 0) + 1
    finished = sum(1 for r in results if r["done"])
    print(f"{args.streams} streams open (first token on all) after {open_seconds:.1f}s")
    print(
        f"SHUTDOWN exit {exit_seconds:.1f}s after SIGTERM (grace {args.grace:g}s); streams finished with done: "
        f"{finished}; touchpoints {len(rows)}/{args.streams}: {outcomes}"
    )


if __name__ == "__main__":
    main()
