"""Latency of /v1/chat and of the first stream token on embedded defaults; prints figures.

Usage: .venv/bin/python bench/chat_latency.py [--url http://127.0.0.1:8000] [--rounds 3] [--concurrency 8]
Without --url it ingests the demo knowledge into a temporary data dir and starts `journey serve` itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import QUESTIONS

REPO = Path(__file__).resolve().parent.parent


def start_server() -> tuple[subprocess.Popen, str]:
    """Ingest into a temp dir and start a server on a free port."""
    data = tempfile.mkdtemp(prefix="journey-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "OPENAI_"))}
    env["JOURNEY_DATA_DIR"] = data
    subprocess.run([sys.executable, "-m", "app", "ingest"], cwd=REPO, env=env, check=True, capture_output=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def sequential(url: str, rounds: int) -> None:
    """One request at a time: full reply latency and time to first token."""
    full, first = [], []
    with httpx.Client(timeout=60) as client:
        client.post(f"{url}/v1/chat", json={"message": "warm up"})
        for _ in range(rounds):
            for question in QUESTIONS:
                start = time.perf_counter()
                client.post(f"{url}/v1/chat", json={"message": question}).raise_for_status()
                full.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                with client.stream("POST", f"{url}/v1/chat/stream", json={"message": question}) as response:
                    for line in response.iter_lines():
                        if line.startswith("event: token"):
                            first.append((time.perf_counter() - start) * 1000)
                            break
    print(
        f"sequential /v1/chat ms: n={len(full)} p50={pct(full, 50):.0f} p95={pct(full, 95):.0f} "
        f"mean={statistics.mean(full):.0f}"
    )
    print(f"sequential first token ms: n={len(first)} p50={pct(first, 50):.0f} p95={pct(first, 95):.0f}")


async def concurrent(url: str, concurrency: int, total: int) -> None:
    """Many visitors at once: throughput and latency under load."""
    latencies: list[float] = []
    queue = list(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            start = time.perf_counter()
            response = await client.post(f"{url}/v1/chat", json={"message": QUESTIONS[i % len(QUESTIONS)]})
            response.raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)

    async with httpx.AsyncClient(timeout=120) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    print(
        f"concurrency {concurrency}: {total} requests in {elapsed:.1f}s = {total / elapsed:.1f} req/s, "
        f"p50={pct(latencies, 50):.0f} ms p95={pct(latencies, 95):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    proc = None
    url = args.url
    if not url:
        proc, url = start_server()
    try:
        sequential(url, args.rounds)
        asyncio.run(concurrent(url, args.concurrency, total=len(QUESTIONS) * args.rounds))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
