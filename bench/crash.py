"""kill -9 of the server under load: after a restart every exchange whose `done` was sent is in the store.

Usage: .venv/bin/python bench/crash.py [--visitors 100] [--confirmed 300] [--workers 1]

--visitors clients stream turns back to back (fake LLM in its own process, one word every 20 ms); once
--confirmed `done` events have arrived the server (and its workers) get SIGKILL. The clients keep the message_ids
of the done events they received before the kill; after a restart on the same data dir all must be stored.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx
from harness import QUESTIONS, FakeLLMProcess, ServerProcess, client, data_dir, header, llm_env, stream_turn


async def load_then_kill(server: ServerProcess, visitors: int, confirmed_target: int, marker: str) -> dict:
    """Run visitors until enough done events arrived, SIGKILL the server, return what the clients saw."""
    confirmed: list[str] = []
    killed = asyncio.Event()
    cut = 0

    async def visitor(http: httpx.AsyncClient, n: int) -> None:
        nonlocal cut
        i = 0
        while not killed.is_set():
            body = {"message": f"{QUESTIONS[(n + i) % len(QUESTIONS)]} ({marker} {n}.{i})"}
            result = await stream_turn(http, server.url, body)
            if result["done"] is not None:
                confirmed.append(result["done"]["message_id"])
            elif killed.is_set():
                cut += 1
            i += 1

    async def killer() -> None:
        while len(confirmed) < confirmed_target:
            await asyncio.sleep(0.02)
        server.kill9()
        killed.set()

    async with client(visitors + 20, timeout=120) as http:
        await asyncio.gather(killer(), *(visitor(http, n) for n in range(visitors)))
    return {"confirmed": confirmed, "cut": cut}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument("--confirmed", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    header(f"kill -9 under load: {args.visitors} visitors, {args.workers} worker(s)")
    fake = FakeLLMProcess(mode="trickle", delay=0.02)
    data = data_dir()
    env = llm_env(fake, timeout=60, token_timeout=10)
    server = ServerProcess(data, workers=args.workers, **env)
    marker = uuid.uuid4().hex[:10]
    try:
        seen = asyncio.run(load_then_kill(server, args.visitors, args.confirmed, marker))
        started = time.perf_counter()
        server.start()  # same port, same data dir
        restart = time.perf_counter() - started
        stored = {r["id"]: r for r in server.touchpoints("id, question, outcome") if marker in r["question"]}
    finally:
        server.stop()
        fake.stop()
    confirmed = seen["confirmed"]
    missing = [m for m in confirmed if m not in stored]
    extra = len(stored) - len(set(confirmed) & set(stored))
    print(
        f"done events received before the kill: {len(confirmed)}; streams cut by the kill: {seen['cut']}; "
        f"restart to healthy: {restart:.1f}s"
    )
    print(
        f"stored after restart: {len(stored)} (confirmed ones {len(confirmed) - len(missing)}, plus {extra} committed "
        f"whose done never reached the client)"
    )
    print(f"CRASH confirmed exchanges missing from the store: {len(missing)} (target 0)")


if __name__ == "__main__":
    main()
