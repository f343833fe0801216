"""Journey Guide side by side with the RAG server a LangChain tutorial gives, against the same fake LLM (issue 21).

Usage: .venv/bin/python bench/peer_compare.py [--turns 300] [--clients 8] [--rounds 2] [--no-offline] [--data DIR]
Quick (a couple of minutes): .venv/bin/python bench/peer_compare.py --turns 60 --rounds 1

One run starts the fake OpenAI-compatible LLM (tests/fake_llm.py, answering at once), Journey Guide (`journey serve`
with its own copy of the ingested demo knowledge, the LLM configured), the tutorial peer (bench/tutorial_peer.py:
FastAPI + langchain-chroma + ChatOpenAI, the same embedder and passages, no stage, no log) and, for reference,
Journey Guide offline (no LLM). Each round drives every server in turn (ours, peer; plain turns, then streamed ones)
with --clients concurrent clients for --turns turns, every turn a different question (evals/answers_dev.jsonl, then
the same with a counter), and prints turns/s, first-token p50, LLM calls per turn (counted by the fake) and server
CPU per turn, then the ratios ours/peer. Compare runs by the ratios and CPU per turn: the machine may be shared.
Exits 1 if any turn of any server went unanswered. Needs the bench extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from harness import (
    REPO,
    FakeLLMProcess,
    ServerProcess,
    client,
    data_dir,
    free_port,
    header,
    ingested,
    llm_env,
    pct,
    wait_http,
)


def questions() -> tuple[list[str], list[str]]:
    """The answer evaluation's distinct questions (answerable or not): a few to warm up on, the rest to measure.

    The warm-up takes answerable and unanswerable ones: a decline loads what only declines use (word frequencies),
    seconds of CPU that belong to starting, not to a measured row."""
    lines = (REPO / "evals" / "answers_dev.jsonl").read_text().splitlines()
    cases = list({case["question"]: case for case in map(json.loads, filter(str.strip, lines))}.values())
    warm = [c["question"] for c in cases if c["answerable"]][:6] + [
        c["question"] for c in cases if not c["answerable"]
    ][:6]
    return warm, [c["question"] for c in cases if c["question"] not in warm]


class Questions:
    """A stream of distinct questions: the evaluation's, then the same with a counter (no cache flatters a row)."""

    def __init__(self) -> None:
        self.warm, self.pool = questions()
        self.next = 0

    def take(self, n: int) -> list[str]:
        """The next n questions of the stream."""
        size = len(self.pool)
        out = [self.pool[i % size] + (f" ({i // size})" if i >= size else "") for i in range(self.next, self.next + n)]
        self.next += n
        return out


@dataclass
class Target:
    """A server under load: where it answers and how much CPU it has used."""

    name: str
    url: str
    plain: str
    stream: str
    pid: int
    data: Path | None = None  # Journey Guide's data dir

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server process and its children."""
        proc = psutil.Process(self.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


@dataclass
class Row:
    """One server, one kind of turn, one round."""

    target: str
    kind: str
    turns: int
    seconds: float = 0.0
    answered: int = 0
    first_tokens: list[float] = field(default_factory=list)
    llm_calls: int = 0
    cpu: float = 0.0
    fake_cpu: float = 0.0  # the fake LLM's CPU during the row
    client_cpu: float = 0.0  # the load generator's (this process, the client of every turn)
    modes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Turns per second."""
        return self.turns / self.seconds

    @property
    def first_token_p50(self) -> float:
        """Median time to the first token, in ms (streamed rows)."""
        return pct(self.first_tokens, 50) * 1000 if self.first_tokens else float("nan")

    def line(self) -> str:
        """The row as one printed line."""
        text = (
            f"{self.target:<8} {self.kind:<8} {self.rate:6.1f} turns/s  answered {self.answered}/{self.turns}  "
            f"LLM calls/turn {self.llm_calls / self.turns:.2f}  server CPU {self.cpu / self.turns * 1000:5.1f} ms/turn "
            f"(fake LLM {self.fake_cpu / self.turns * 1000:.1f}, client {self.client_cpu / self.turns * 1000:.1f})"
        )
        if self.kind == "streamed":
            text += f"  first token p50 {self.first_token_p50:.0f} ms"
        if self.modes:
            text += f"  replies by mode {dict(sorted(self.modes.items()))}"
        if self.errors:
            text += f"  first error: {self.errors[0]}"
        return text


async def plain_turn(http: httpx.AsyncClient, url: str, question: str, row: Row) -> None:
    """One JSON turn; answered when it is a 200 with a non-empty reply."""
    try:
        response = await http.post(url, json={"message": question})
        body = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError) as exc:
        row.errors.append(f"{type(exc).__name__}: {exc}")
        return
    if response.status_code != 200 or not body.get("reply"):
        row.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return
    row.answered += 1
    if "mode" in body:
        row.modes[body["mode"]] = row.modes.get(body["mode"], 0) + 1


async def streamed_turn(http: httpx.AsyncClient, url: str, question: str, row: Row) -> None:
    """One SSE turn; answered when a `done` event carries a non-empty reply. Times the first non-empty token."""
    started = time.perf_counter()
    first = None
    event = None
    try:
        async with http.stream("POST", url, json={"message": question}) as response:
            if response.status_code != 200:
                await response.aread()
                row.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "token" and first is None:
                    if json.loads(line[5:]).get("text"):
                        first = time.perf_counter() - started
                elif line.startswith("data:") and event == "done":
                    done = json.loads(line[5:])
                    if done.get("reply") and first is not None:
                        row.answered += 1
                        row.first_tokens.append(first)
                        if "mode" in done:
                            row.modes[done["mode"]] = row.modes.get(done["mode"], 0) + 1
                    return
                elif line.startswith("data:") and event == "error":
                    row.errors.append(f"error event: {line[5:].strip()[:200]}")
                    return
    except (httpx.HTTPError, ValueError) as exc:
        row.errors.append(f"{type(exc).__name__}: {exc}")
        return
    row.errors.append("the stream ended without a done event")


async def drive(target: Target, kind: str, batch: list[str], clients: int, fake: FakeLLMProcess) -> Row:
    """Run the batch of questions against one server with `clients` in flight; count its LLM calls and CPU."""
    row = Row(target.name, kind, len(batch))
    turn = plain_turn if kind == "plain" else streamed_turn
    url = target.url + (target.plain if kind == "plain" else target.stream)
    queue = list(reversed(batch))

    async def visitor(http: httpx.AsyncClient) -> None:
        while queue:
            await turn(http, url, queue.pop(), row)

    async with client(clients * 2) as http:
        calls, cpu, fake_cpu, own = (
            fake.stats()["requests"],
            target.cpu_seconds(),
            fake.cpu_seconds(),
            time.process_time(),
        )
        started = time.perf_counter()
        await asyncio.gather(*(visitor(http) for _ in range(clients)))
        row.seconds = time.perf_counter() - started
        row.cpu = target.cpu_seconds() - cpu
        row.fake_cpu, row.client_cpu = fake.cpu_seconds() - fake_cpu, time.process_time() - own
        row.llm_calls = fake.stats()["requests"] - calls
    return row


async def warm_up(target: Target, questions: list[str]) -> None:
    """A few turns of each kind, so models are loaded and connections open before anything is timed."""
    scratch = Row(target.name, "warm-up", 0)
    async with client(8) as http:
        for kind, turn in (("plain", plain_turn), ("stream", streamed_turn)):
            url = target.url + getattr(target, kind)
            await asyncio.gather(*(turn(http, url, q, scratch) for q in questions))
    if scratch.errors:
        raise SystemExit(f"{target.name} failed its warm-up turns: {scratch.errors[0]}")


def warm(target: Target, stream: Questions) -> None:
    """Warm up until Journey Guide has built its knowledge base word vectors: the first turn that checks whether to
    decline embeds the knowledge base's words (seconds of CPU, once per data dir, then cached in it), which would
    otherwise land in whichever measured row meets it first."""
    batch = stream.warm
    for _ in range(10):
        asyncio.run(warm_up(target, batch))
        if target.data is None or list((target.data / "cache").glob("kb-words-*.npy")):
            return
        batch = stream.take(6)  # not measured: rows take the questions after these
    raise SystemExit(f"{target.name} did not build its word vectors in its warm-up turns")


def settle(target: Target, seconds: float = 60) -> float:
    """Wait until the server is idle (under 5% of a core for half a second): work it does on its own after starting
    (loading indexes, caches) must not land in a measured row. Returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        cpu = target.cpu_seconds()
        time.sleep(0.5)
        if target.cpu_seconds() - cpu < 0.025:
            break
    return time.perf_counter() - started


def start_peer(fake: FakeLLMProcess) -> tuple[subprocess.Popen, str, Path]:
    """Start bench/tutorial_peer.py (it indexes the knowledge before it answers /health)."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="tutorial-peer-")) / "peer.log"
    args = [sys.executable, str(REPO / "bench" / "tutorial_peer.py"), "--port", str(port)]
    vectors = data_dir()  # a copy of its own: Chroma may write to a directory it opens
    args += ["--llm-base-url", fake.base_url, "--vectors-from", str(vectors), "--index-dir", str(log.parent / "index")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "OPENAI_"))}
    with log.open("w") as out:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def ratio(ours: float, peer: float) -> str:
    """ours/peer with two decimals."""
    return f"{ours / peer:.2f}" if peer else "n/a"


def table(rounds: list[dict[tuple[str, str], Row]]) -> None:
    """The issue's table: each figure for every round, comma-separated."""

    def cells(fmt, target, kind, attr):
        return ", ".join(fmt(getattr(r[(target, kind)], attr)) for r in rounds)

    def ratios(kind, attr):
        return ", ".join(ratio(getattr(r[("ours", kind)], attr), getattr(r[("peer", kind)], attr)) for r in rounds)

    print(f"| {len(rounds)} interleaved round(s) | Journey Guide with an LLM | tutorial peer | ratio |")
    print("|---|---|---|---|")
    one = "{:.1f}".format
    for label, kind, attr, fmt in (
        ("plain turns/s", "plain", "rate", one),
        ("streamed turns/s", "streamed", "rate", one),
        ("first token p50 ms", "streamed", "first_token_p50", "{:.0f}".format),
    ):
        print(
            f"| {label} | {cells(fmt, 'ours', kind, attr)} | {cells(fmt, 'peer', kind, attr)} | {ratios(kind, attr)} |"
        )
    for kind in ("plain", "streamed"):
        cpu = [
            (
                r[("ours", kind)].cpu / r[("ours", kind)].turns * 1000,
                r[("peer", kind)].cpu / r[("peer", kind)].turns * 1000,
            )
            for r in rounds
        ]
        print(
            f"| server CPU ms/turn, {kind} | {', '.join(one(o) for o, _ in cpu)} | {', '.join(one(p) for _, p in cpu)} "
            f"| {', '.join(ratio(o, p) for o, p in cpu)} |"
        )
    calls = [
        (r[("ours", k)].llm_calls, r[("peer", k)].llm_calls, r[("ours", k)].turns)
        for r in rounds
        for k in ("plain", "streamed")
    ]
    ours_calls, peer_calls, turns = (sum(c[i] for c in calls) for i in range(3))
    share = ratio(ours_calls, peer_calls)
    print(f"| LLM calls per turn | {ours_calls / turns:.2f} | {peer_calls / turns:.2f} | {share} |")
    if ("offline", "plain") in rounds[0]:
        print(
            f"| offline (no LLM) turns/s, plain / streamed | {cells(one, 'offline', 'plain', 'rate')} / "
            f"{cells(one, 'offline', 'streamed', 'rate')} | | |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="turns per row (every one a different question)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (ours, peer, ours, peer...)")
    parser.add_argument(
        "--offline", action=argparse.BooleanOptionalAction, default=True, help="a row of Journey Guide without an LLM"
    )
    parser.add_argument("--data", type=Path, help="an already ingested data dir to copy (default: ingest one now)")
    args = parser.parse_args()
    header(f"Journey Guide vs the LangChain tutorial RAG server, {args.clients} clients, {args.turns} turns a row")
    ingested(args.data)
    launched = time.perf_counter()
    fake = FakeLLMProcess(mode="ok")
    peer_process, peer_url, peer_log = start_peer(fake)
    servers: list[ServerProcess] = []
    try:
        configs = [llm_env(fake)] + ([{}] if args.offline else [])
        with ThreadPoolExecutor(len(configs)) as pool:  # start them side by side with the peer's indexing
            servers = list(pool.map(lambda env: ServerProcess(data_dir(), **env), configs))
        wait_http(f"{peer_url}/health", peer_process, seconds=300)
        targets = [
            Target("ours", servers[0].url, "/v1/chat", "/v1/chat/stream", servers[0].process.pid, servers[0].data),
            Target("peer", peer_url, "/chat", "/chat/stream", peer_process.pid),
        ]
        if args.offline:
            targets.append(
                Target(
                    "offline", servers[1].url, "/v1/chat", "/v1/chat/stream", servers[1].process.pid, servers[1].data
                )
            )
        stream = Questions()
        for target in targets:
            warm(target, stream)
        waited = [settle(target) for target in targets]
        print(f"servers ready in {time.perf_counter() - launched:.0f} s (then idle after {max(waited):.1f} s more)")
        rounds: list[dict[tuple[str, str], Row]] = []
        for number in range(1, args.rounds + 1):
            print(f"-- round {number}")
            rows: dict[tuple[str, str], Row] = {}
            for kind in ("plain", "streamed"):
                batch = stream.take(args.turns)  # every server of the round answers the same questions
                for target in targets:
                    row = asyncio.run(drive(target, kind, batch, args.clients, fake))
                    rows[(target.name, kind)] = row
                    print(row.line(), flush=True)
            ours, peer = rows[("ours", "plain")], rows[("peer", "plain")]
            print(f"RATIO round {number} plain turns/s ours/peer: {ratio(ours.rate, peer.rate)}")
            ours, peer = rows[("ours", "streamed")], rows[("peer", "streamed")]
            print(f"RATIO round {number} streamed turns/s ours/peer: {ratio(ours.rate, peer.rate)}")
            print(
                f"RATIO round {number} first token p50 ours/peer: {ratio(ours.first_token_p50, peer.first_token_p50)}"
            )
            for kind in ("plain", "streamed"):
                ours, peer = rows[("ours", kind)], rows[("peer", kind)]
                print(f"RATIO round {number} server CPU per turn, {kind}, ours/peer: {ratio(ours.cpu, peer.cpu)}")
            rounds.append(rows)
        print("-- summary")
        table(rounds)
    finally:
        for server in servers:
            server.stop()
        peer_process.terminate()
        peer_process.wait(30)
        fake.stop()
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    missing = [row for r in rounds for row in r.values() if row.answered != row.turns]
    if missing:
        print(f"UNANSWERED turns in {len(missing)} row(s); server logs: {servers[0].log}, {peer_log}")
        sys.exit(1)


if __name__ == "__main__":
    main()
