"""200 visitors leaving mid-stream: each leaves one touchpoint with outcome client_disconnected.

Usage: .venv/bin/python bench/disconnects.py [--clients 200] [--delay 0.3]

Each client reads until its first token, then closes the connection; the fake LLM (its own process) sends one word
every --delay seconds, so the server is mid-reply when the visitor leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from harness import QUESTIONS, FakeLLMProcess, ServerProcess, client, data_dir, header, llm_env, stream_turn

REPLY = " ".join(f"word{i}" for i in range(60))


async def leave_early(server: ServerProcess, clients: int, marker: str) -> list[dict]:
    """Open the streams at once and leave each after its first token."""
    async with client(clients + 50, timeout=300) as http:
        bodies = [{"message": f"{QUESTIONS[i % len(QUESTIONS)]} ({marker} #{i})"} for i in range(clients)]
        return await asyncio.gather(*(stream_turn(http, server.url, b, stop_after="token") for b in bodies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args()
    header(f"{args.clients} clients dropping mid-stream")
    fake = FakeLLMProcess(mode="trickle", delay=args.delay, reply=REPLY)
    server = ServerProcess(data_dir(), **llm_env(fake, timeout=120, token_timeout=10))
    marker = uuid.uuid4().hex[:10]
    try:
        started = time.perf_counter()
        results = asyncio.run(leave_early(server, args.clients, marker))
        left = sum(1 for r in results if r["events"] and r["events"][-1] == "token" and not r["done"])
        deadline = time.monotonic() + 60
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = [r for r in server.touchpoints("id, question, outcome, reply") if marker in r["question"]]
            if len(rows) >= args.clients:
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
        fake.stop()
    outcomes: dict[str, int] = {}
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    partial = sum(1 for r in rows if r["reply"].startswith("word0"))
    questions = {r["question"] for r in rows}
    print(
        f"clients that left after a token: {left}/{args.clients}; touchpoints: {len(rows)} "
        f"(distinct questions {len(questions)}), outcomes={outcomes}, with the partial reply kept: {partial}; "
        f"all recorded {elapsed:.1f}s after the start"
    )
    ok = len(rows) == len(questions) == args.clients and outcomes == {"client_disconnected": args.clients}
    print(f"DISCONNECTS {'all recorded as client_disconnected' if ok else 'MISMATCH'}")


if __name__ == "__main__":
    main()
