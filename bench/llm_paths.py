"""The two LLM paths side by side: the direct OpenAI-compatible client and JOURNEY_LLM=openai:... through LangChain.

Usage: .venv/bin/python bench/llm_paths.py [--turns 100] [--rounds 2]

Both servers talk to the same fake OpenAI-compatible LLM (tests/fake_llm.py, its own process, answering stage votes
too). Each round runs --turns streamed turns one at a time against each server in turn (interleaved, so a change in
the shared machine's load hits both); every turn asks a question no earlier turn asked. Printed per path: the
server's CPU per turn (psutil, all of the turn's work: embedding, stage, retrieval, LLM client, recording), the
round trip and the first token (p50), and the LLM calls made per turn.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
from harness import FakeLLMProcess, ServerProcess, data_dir, header, llm_env, pct, visitor_question


def run(server: ServerProcess, fake: FakeLLMProcess, first: int, turns: int) -> dict:
    """Streamed turns one at a time; CPU of the server per turn, round trip and first token p50, LLM calls a turn."""
    calls = len(fake.stats()["timings"])
    cpu = server.cpu_seconds()
    rtt, ttft = [], []
    with httpx.Client(timeout=60) as http:
        for i in range(first, first + turns):
            started = time.perf_counter()
            token = None
            with http.stream("POST", f"{server.url}/v1/chat/stream", json={"message": visitor_question(i)}) as resp:
                for line in resp.iter_lines():
                    if token is None and line.startswith("event: token"):
                        token = time.perf_counter() - started
            rtt.append((time.perf_counter() - started) * 1000)
            ttft.append((token or 0) * 1000)
    return {
        "cpu_ms": (server.cpu_seconds() - cpu) * 1000 / turns,
        "rtt_p50": pct(rtt, 50),
        "ttft_p50": pct(ttft, 50),
        "calls": (len(fake.stats()["timings"]) - calls) / turns,
    }


def main() -> None:
    """Start the fake LLM and both servers, warm them up, run the interleaved rounds, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    header("LLM paths: direct OpenAI-compatible client vs JOURNEY_LLM through LangChain")
    fake = FakeLLMProcess(reply="The Pro plan costs $29 per staff calendar per month [1].")
    direct_env = llm_env(fake)
    options = json.dumps({"base_url": fake.base_url, "api_key": "bench"})
    langchain_env = {**direct_env, "JOURNEY_LLM": "openai:fake-model", "JOURNEY_LLM_OPTIONS": options}
    servers = {
        "direct": ServerProcess(data_dir(), **direct_env),
        "langchain": ServerProcess(data_dir(), **langchain_env),
    }
    try:
        for server in servers.values():
            run(server, fake, 10_000, 10)  # warm-up: first calls load models and open connections
        rows: dict[str, list[dict]] = {name: [] for name in servers}
        turn = 0
        for _ in range(args.rounds):
            for name, server in servers.items():
                rows[name].append(run(server, fake, turn, args.turns))
                turn += args.turns
        print(
            f"{'path':<10} {'round':>5} {'server CPU ms/turn':>19} {'round trip p50 ms':>18} "
            f"{'first token p50 ms':>19} {'LLM calls/turn':>15}"
        )
        for name, results in rows.items():
            for i, r in enumerate(results, 1):
                print(
                    f"{name:<10} {i:>5} {r['cpu_ms']:>19.1f} {r['rtt_p50']:>18.1f} {r['ttft_p50']:>19.1f} "
                    f"{r['calls']:>15.2f}"
                )
    finally:
        for server in servers.values():
            server.stop()
        fake.stop()


if __name__ == "__main__":
    main()
