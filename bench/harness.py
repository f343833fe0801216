"""Shared parts of the reliability and speed benchmarks: data dirs, the fake LLM and server processes, SSE turns."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How much does the pro plan cost?",
    "How do I cancel my subscription?",
    "My Google calendar stopped syncing",
    "how is lumio different from bookbee",
    "how do i import my clients",
    "I want to refer a friend",
    "is there an api",
    "sms reminders are not going out",
    "Can I get a refund on my annual plan?",
    "What is Lumio?",
]


def visitor_question(i: int) -> str:
    """The i-th of a stream of distinct visitor questions the knowledge base answers: the retrieval evaluation's 111,
    then the same with a counter, so no turn repeats an earlier one's text (no cache flatters a benchmark)."""
    if not _EVAL_QUESTIONS:
        for line in (REPO / "evals" / "retrieval_dev.jsonl").read_text().splitlines():
            _EVAL_QUESTIONS.append(json.loads(line)["question"])
    n = len(_EVAL_QUESTIONS)
    return _EVAL_QUESTIONS[i % n] + (f" ({i // n})" if i >= n else "")


_EVAL_QUESTIONS: list[str] = []
# Loads are run from one IP: lift the per-IP and per-visitor limits for benchmarks.
UNLIMITED = {
    "JOURNEY_RATE_LIMIT_IP": "1000000/60",
    "JOURNEY_RATE_LIMIT_VISITOR": "1000000/60",
    "JOURNEY_RATE_LIMIT_READS": "1000000/60",
}


def header(title: str) -> None:
    """Print what runs, the exact command and the machine's load (the machine may be shared)."""
    print(f"== {title}")
    print(f"command: {shlex.join([os.path.relpath(sys.executable, REPO), *sys.argv])}")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    print(f"machine speed: {reference_ms():.1f} ms for a reference loop (lower is faster; compare runs by it)")


def reference_ms() -> float:
    """Best of 7 timings of a fixed pure-Python loop, in ms. One machine of this kind gave 5.8 to 10 ms within an
    hour (a shared host), and every figure the benchmarks print moves with it."""
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        sum(i * i for i in range(100_000))
        best = min(best, time.perf_counter() - started)
    return best * 1000


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An environment without inherited JOURNEY_/OPENAI_ settings, pointing at data_dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "OPENAI_"))}
    env["JOURNEY_DATA_DIR"] = str(data_dir)
    env["JOURNEY_LOG_FORMAT"] = "text"
    env.update(extra)
    return env


_TEMPLATE: Path | None = None


def ingested(template: Path | None = None) -> Path:
    """The data dir fresh copies are made from: template when given (already ingested), else the demo knowledge base
    ingested once per benchmark run."""
    global _TEMPLATE
    if template is not None:
        _TEMPLATE = template
    if _TEMPLATE is None:
        _TEMPLATE = Path(tempfile.mkdtemp(prefix="journey-bench-kb-"))
        subprocess.run(
            [sys.executable, "-m", "app", "ingest"], cwd=REPO, env=clean_env(_TEMPLATE), check=True, capture_output=True
        )
    return _TEMPLATE


def data_dir() -> Path:
    """A fresh data dir holding the demo knowledge base (ingested once per benchmark run, then copied)."""
    target = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    shutil.copytree(ingested(), target, dirs_exist_ok=True)
    return target


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    """Poll url until it answers 200; fail if the process exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{url} did not answer")


class FakeLLMProcess:
    """tests/fake_llm.py in its own process (so it does not share the GIL with the load generator)."""

    def __init__(
        self,
        mode: str = "ok",
        delay: float = 5.0,
        reply: str | None = None,
        stage_votes: bool = True,
        long_words: int = 0,
    ):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        args = [sys.executable, str(REPO / "tests" / "fake_llm.py"), "--port", str(self.port), "--mode", mode]
        args += ["--delay", str(delay)] + (["--reply", reply] if reply else []) + (["--stage-votes"] * stage_votes)
        args += ["--long-words", str(long_words)]
        self.process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.base_url}/models", self.process)

    def stats(self) -> dict:
        """Requests received and the fake's own time per chat completion."""
        return httpx.get(f"http://127.0.0.1:{self.port}/fake/stats", timeout=10).json()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the fake has used."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        """Stop the fake."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def llm_env(fake: FakeLLMProcess, timeout: float = 20, token_timeout: float = 8) -> dict[str, str]:
    """Settings pointing Journey Guide at the fake LLM."""
    return {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "bench",
        "JOURNEY_LLM_MODEL": "fake-model",
        "JOURNEY_LLM_TIMEOUT": str(timeout),
        "JOURNEY_LLM_TOKEN_TIMEOUT": str(token_timeout),
        "JOURNEY_LLM_MAX_RETRIES": "0",
    }


class ServerProcess:
    """`journey serve` on a free port with its own data dir."""

    def __init__(
        self, data: Path, workers: int = 1, port: int | None = None, checkout: Path = REPO, **env: str
    ) -> None:
        self.data = data
        self.checkout = checkout  # the code it runs: this repository, or an earlier checkout to compare with
        self.env = clean_env(data, **UNLIMITED, **env)
        self.workers = workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data / f"server-{self.port}.log"
        self.start()

    def start(self) -> None:
        """Start (or restart) the process and wait for /health."""
        args = [sys.executable, "-m", "app", "serve", "--port", str(self.port), "--workers", str(self.workers)]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(args, cwd=self.checkout, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/health", self.process)
        if self.workers > 1:  # every worker has loaded its models once the health check passes a few times
            for _ in range(20 * self.workers):
                httpx.get(f"{self.url}/health", timeout=30)

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes, in MB."""
        proc = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1e6

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and its workers."""
        proc = psutil.Process(self.process.pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total

    def kill9(self) -> None:
        """SIGKILL the server (and its workers): no cleanup runs."""
        proc = psutil.Process(self.process.pid)
        for p in [*proc.children(recursive=True), proc]:
            p.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM and wait; return the seconds it took to exit."""
        started = time.perf_counter()
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.perf_counter() - started

    def touchpoints(self, columns: str = "id, outcome, error, latency_ms, mode") -> list[dict]:
        """Rows of the touchpoints table, read straight from the SQLite file."""
        con = sqlite3.connect(self.data / "journey.db")
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute(f"SELECT {columns} FROM touchpoints")]
        con.close()
        return rows


def client(connections: int = 2000, timeout: float = 120) -> httpx.AsyncClient:
    """An async client allowed as many open connections as the benchmark needs."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


async def stream_turn(
    http: httpx.AsyncClient,
    url: str,
    body: dict,
    *,
    stop_after: str | None = None,
    opened: asyncio.Event | None = None,
) -> dict:
    """POST /v1/chat/stream; return status, event names, the done object and timings (optionally leave early)."""
    started = time.perf_counter()
    result: dict = {"status": None, "events": [], "done": None, "first_token": None, "error": None}
    try:
        async with http.stream("POST", f"{url}/v1/chat/stream", json=body) as response:
            result["status"] = response.status_code
            if response.status_code != 200:
                await response.aread()
                return result
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event:
                    result["events"].append(event)
                    if event == "token" and result["first_token"] is None:
                        result["first_token"] = time.perf_counter() - started
                        if opened is not None:
                            opened.set()
                    if event == "done":
                        result["done"] = json.loads(line[5:])
                    if event == stop_after:
                        return result
    except httpx.HTTPError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["seconds"] = time.perf_counter() - started
    return result
