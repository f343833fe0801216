"""500 concurrent streams: every accepted request leaves exactly one touchpoint; server memory returns to baseline.

Usage: .venv/bin/python bench/load_streams.py [--streams 500] [--rounds 3] [--delay 0.05]

The fake LLM (its own process) streams each reply one word every --delay seconds, so all streams are open at once.
Server RSS is read with psutil before the first round, at the peak of each round and after its streams close.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from harness import QUESTIONS, FakeLLMProcess, ServerProcess, client, data_dir, header, llm_env, pct, stream_turn

REPLY = " ".join(["The Pro plan costs $29 per staff calendar per month, billed monthly [1]."] * 2)


async def round_of(server: ServerProcess, streams: int, marker: str) -> dict:
    """Open `streams` streams at once, sample the server's RSS while they run; return the figures."""
    peak = server.rss_mb()
    async with client(streams + 50, timeout=300) as http:
        bodies = [{"message": f"{QUESTIONS[i % len(QUESTIONS)]} ({marker} #{i})"} for i in range(streams)]
        started = time.perf_counter()
        tasks = [asyncio.create_task(stream_turn(http, server.url, b)) for b in bodies]
        while not all(t.done() for t in tasks):
            peak = max(peak, server.rss_mb())
            await asyncio.sleep(0.2)
        results = [t.result() for t in tasks]
        elapsed = time.perf_counter() - started
    return {"results": results, "elapsed": elapsed, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between two words of the fake LLM")
    args = parser.parse_args()
    header(f"{args.streams} concurrent streams x {args.rounds} rounds: touchpoints and server memory")
    fake = FakeLLMProcess(mode="trickle", delay=args.delay, reply=REPLY)
    server = ServerProcess(data_dir(), **llm_env(fake, timeout=120, token_timeout=10))
    lost = duplicated = 0
    try:
        asyncio.run(round_of(server, 20, "warmup"))
        time.sleep(2)
        baseline = server.rss_mb()
        print(f"server RSS baseline (after 20 warm-up turns): {baseline:.1f} MB")
        for n in range(args.rounds):
            marker = uuid.uuid4().hex[:10]
            got = asyncio.run(round_of(server, args.streams, marker))
            time.sleep(6)  # the server gives freed heap back within TRIM_SECONDS (5 s) of a burst's end (app/main.py)
            after = server.rss_mb()
            results = got["results"]
            accepted = [r for r in results if r["status"] == 200]
            done = [r for r in accepted if r["done"]]
            ids = [r["done"]["message_id"] for r in done]
            rows = [r for r in server.touchpoints("id, question, outcome") if marker in r["question"]]
            per_question: dict[str, int] = {}
            for row in rows:
                per_question[row["question"]] = per_question.get(row["question"], 0) + 1
            lost += len(accepted) - len(per_question)
            duplicated += sum(c - 1 for c in per_question.values())
            missing_done = len(set(ids) - {r["id"] for r in rows})
            first = [r["first_token"] * 1000 for r in done if r["first_token"]]
            outcomes: dict[str, int] = {}
            for row in rows:
                outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
            print(
                f"round {n + 1}: {len(results)} streams, accepted={len(accepted)} done={len(done)} "
                f"errors={sum(1 for r in results if r['error'])} in {got['elapsed']:.1f}s; touchpoints={len(rows)} "
                f"outcomes={outcomes} done-ids-missing={missing_done}; first token p50={pct(first, 50):.0f} "
                f"p99={pct(first, 99):.0f} ms; RSS peak={got['peak']:.1f} MB after={after:.1f} MB "
                f"(baseline {baseline:.1f}, +{after - baseline:.1f})"
            )
    finally:
        server.stop()
        fake.stop()
    print(f"TOUCHPOINTS lost={lost} duplicated={duplicated} (target 0)")


if __name__ == "__main__":
    main()
