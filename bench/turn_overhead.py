"""Server overhead per turn with an instant fake LLM (p50/p99), time-to-first-token overhead, turns/s (1 and 2 workers).

Usage: .venv/bin/python bench/turn_overhead.py [--turns 300] [--concurrency 32] [--load-turns 1500] [--workers 1,2]
       [--configs llm,llm-novote,offline]

Configurations: `llm` (the fake LLM answers and votes on the stage: two LLM calls a turn), `llm-novote`
(JOURNEY_LLM_STAGE=false: one LLM call a turn), `offline` (no LLM: the grounded composer answers).

Overhead = the client's round trip minus the time the fake LLM itself spent on that turn's calls (the stage vote
and the answer), measured by the fake and read from its /fake/stats. Turns run one at a time for the overhead
figures; the throughput runs keep --concurrency streamed turns in flight. Measured turns never repeat a question
(harness.visitor_question), so the server's embedding cache does not flatter the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx
from harness import (
    QUESTIONS,
    FakeLLMProcess,
    ServerProcess,
    client,
    data_dir,
    header,
    llm_env,
    pct,
    stream_turn,
    visitor_question,
)


def overhead(server: ServerProcess, fake: FakeLLMProcess, turns: int, mode: str) -> None:
    """Sequential /v1/chat turns: round trip minus the fake's own time; streamed: first token minus the fake's."""
    rtt, over, ttft, ttft_over, recorded = [], [], [], [], []
    modes: dict[str, int] = {}  # a question the knowledge base cannot answer gets the offline reply, not the LLM
    with httpx.Client(timeout=60) as http:
        for i in range(20):
            http.post(f"{server.url}/v1/chat", json={"message": QUESTIONS[i % len(QUESTIONS)]}).raise_for_status()
        for i in range(turns):
            seen = len(fake.stats()["timings"])
            started = time.perf_counter()
            response = http.post(f"{server.url}/v1/chat", json={"message": visitor_question(i)})
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            modes[response.json()["mode"]] = modes.get(response.json()["mode"], 0) + 1
            llm = fake.stats()["timings"][seen:]
            rtt.append(elapsed * 1000)
            over.append((elapsed - sum(t["total"] for t in llm)) * 1000)
            recorded.append(response.json()["latency_ms"])
        for i in range(turns):
            seen = len(fake.stats()["timings"])
            started = time.perf_counter()
            first = None
            body = {"message": visitor_question(turns + i)}  # none repeats a question of the /v1/chat turns
            with http.stream("POST", f"{server.url}/v1/chat/stream", json=body) as resp:
                for line in resp.iter_lines():
                    if first is None and line.startswith("event: token"):
                        first = time.perf_counter() - started
            llm = fake.stats()["timings"][seen:]
            # before the first token: the whole stage vote, then the answer call up to its first chunk
            llm_before_first = sum(t["total"] for t in llm[:-1]) + (llm[-1]["first"] if llm else 0)
            if mode == "offline":
                llm_before_first = 0
            ttft.append(first * 1000)
            ttft_over.append((first - llm_before_first) * 1000)
    fake_ms = [t["total"] * 1000 for t in fake.stats()["timings"]] or [0.0]
    print(f"fake LLM own time per call ms: p50={pct(fake_ms, 50):.1f} p99={pct(fake_ms, 99):.1f}")
    print(f"/v1/chat round trip ms (n={turns}, one at a time): p50={pct(rtt, 50):.1f} p99={pct(rtt, 99):.1f}")
    print(f"replies by mode (expected mostly {mode}): {modes}")
    print(
        f"SERVER OVERHEAD per turn ms (round trip - fake LLM time): p50={pct(over, 50):.1f} p99={pct(over, 99):.1f} "
        f"mean={statistics.mean(over):.1f}   [target p50<=15 p99<=50]"
    )
    print(f"touchpoint latency_ms (server's own clock, incl. LLM): p50={pct(recorded, 50)} p99={pct(recorded, 99)}")
    print(f"stream first token ms: p50={pct(ttft, 50):.1f} p99={pct(ttft, 99):.1f}")
    print(
        f"TIME-TO-FIRST-TOKEN OVERHEAD ms (first token - fake time before it): p50={pct(ttft_over, 50):.1f} "
        f"p99={pct(ttft_over, 99):.1f}"
    )


async def throughput(
    url: str, concurrency: int, total: int, cpu_seconds=lambda: 0.0
) -> tuple[float, list[float], int, float]:
    """Streamed turns with `concurrency` in flight: turns per second, latencies, failures, server CPU seconds.

    The server's CPU is read after the warm-up turns, so it counts the measured turns only."""
    queue = list(range(total))
    latencies: list[float] = []
    failures = 0

    async def visitor(http: httpx.AsyncClient) -> None:
        nonlocal failures
        while queue:
            i = queue.pop()
            result = await stream_turn(http, url, {"message": visitor_question(i)})
            if result["done"] is None:
                failures += 1
            latencies.append(result["seconds"] * 1000)

    async with client(concurrency * 2) as http:
        warm = [stream_turn(http, url, {"message": q}) for q in QUESTIONS * 2]
        await asyncio.gather(*warm)
        cpu, own = cpu_seconds(), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(visitor(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu, own = cpu_seconds() - cpu, time.process_time() - own
    print(f"  load generator (this process) CPU {own / total * 1000:.1f} ms/turn, on the same 2 cores")
    return total / elapsed, latencies, failures, cpu


CONFIGS = {
    "llm": {"JOURNEY_LLM_STAGE": "true"},
    "llm-novote": {"JOURNEY_LLM_STAGE": "false"},
    "offline": {},
}


def server_for(config: str, fake: FakeLLMProcess, workers: int = 1) -> ServerProcess:
    """A server in one of the CONFIGS."""
    env = {**llm_env(fake), **CONFIGS[config]} if config != "offline" else {}
    return ServerProcess(data_dir(), workers=workers, **env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="sequential turns for the overhead figures")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--load-turns", type=int, default=1500, help="turns per throughput run")
    parser.add_argument("--workers", default="1,2", help="worker counts for the throughput runs")
    parser.add_argument("--configs", default="llm,llm-novote,offline")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    header("server overhead per turn, first-token overhead, turns per second (fake LLM answering instantly)")
    fake = FakeLLMProcess(mode="ok")
    try:
        for config in args.configs.split(","):
            print(f"-- {config}")
            if not args.skip_overhead:
                server = server_for(config, fake)
                try:
                    overhead(server, fake, args.turns, "offline" if config == "offline" else "llm")
                finally:
                    server.stop()
            for workers in [int(w) for w in args.workers.split(",")]:
                server = server_for(config, fake, workers)
                try:
                    fake_cpu = fake.cpu_seconds()
                    rate, lat, failures, cpu = asyncio.run(
                        throughput(server.url, args.concurrency, args.load_turns, server.cpu_seconds)
                    )
                    fake_cpu = fake.cpu_seconds() - fake_cpu
                    if config != "offline":
                        print(f"  fake LLM CPU {fake_cpu / args.load_turns * 1000:.1f} ms/turn (incl. warm-up)")
                    stored = len(server.touchpoints("id"))
                finally:
                    server.stop()
                print(
                    f"THROUGHPUT {config} workers={workers} concurrency={args.concurrency}: {rate:.1f} turns/s "
                    f"(n={args.load_turns}, failed={failures}, touchpoints={stored}), latency p50={pct(lat, 50):.0f} "
                    f"p99={pct(lat, 99):.0f} ms, server CPU {cpu / args.load_turns * 1000:.1f} ms/turn   [target >=150]"
                )
    finally:
        fake.stop()
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
