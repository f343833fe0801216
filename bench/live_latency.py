"""Live handoff delivery time across two workers: agent message -> visitor stream, visitor message -> staff stream.

Usage: .venv/bin/python bench/live_latency.py [--messages 50] [--redis redis://127.0.0.1:6379/0] [--database URL]

Two `journey serve` processes share one database (a SQLite file by default, or --database, e.g. PostgreSQL) and
the Redis live channel (--redis ''  runs both without Redis: delivery then rests on the streams' 2 s poll). The
visitor's stream is on worker A, the staff member's on worker B. Each figure is the time from sending the request
to the event arriving on the other worker's stream.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid

import httpx
from harness import REPO, ServerProcess, clean_env, data_dir, header, pct


class Reader:
    """An SSE stream read on a thread; arrival times of events by (kind, text)."""

    def __init__(self, url: str, **kwargs) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        threading.Thread(target=self._read, args=(url, kwargs), daemon=True).start()

    def _read(self, url: str, kwargs: dict) -> None:
        event = "message"
        try:
            with self._client.stream("GET", url, **kwargs) as response:
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line.split(":", 1)[1])
                        self.arrived[(event, data.get("text", ""))] = time.perf_counter()
        except httpx.HTTPError:
            pass

    def wait(self, key: tuple[str, str], timeout: float = 10) -> float:
        """When `key` arrived (waits up to `timeout` seconds)."""
        deadline = time.perf_counter() + timeout
        while key not in self.arrived:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{key} never arrived")
            time.sleep(0.001)
        return self.arrived[key]

    def close(self) -> None:
        """Drop the connection."""
        self._client.close()


def token(env: dict[str, str], name: str, role: str) -> str:
    """A staff token made with the CLI."""
    out = subprocess.run(
        [sys.executable, "-m", "app", "staff", "create-token", name, "--role", role],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def report(label: str, values: list[float]) -> None:
    """Print p50, p95 and max in milliseconds."""
    ms = [v * 1000 for v in values]
    print(f"  {label}: n={len(ms)} p50 {pct(ms, 50):.1f} ms, p95 {pct(ms, 95):.1f} ms, max {max(ms):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database", default="")
    args = parser.parse_args()
    header("live handoff delivery across two workers")
    first, second = data_dir(), data_dir()
    database = args.database or f"sqlite:///{first / 'shared.db'}"
    env = {"JOURNEY_DATABASE_URL": database, "JOURNEY_HANDOFF_WAIT_SECONDS": "3600"}
    if args.redis:
        env["JOURNEY_REDIS_URL"] = args.redis
    print(f"database: {database.split('@')[-1]}; live channel: {'Redis' if args.redis else 'none (2 s poll)'}")
    agent = token(clean_env(first, **env), "Ana", "editor")
    a, b = ServerProcess(first, **env), ServerProcess(second, **env)
    try:
        turn = httpx.post(f"{a.url}/v1/chat", json={"message": "How much does the pro plan cost?"}, timeout=60).json()
        cid, vid = turn["conversation_id"], turn["visitor_id"]
        httpx.post(f"{a.url}/v1/conversations/{cid}/handoff", json={"visitor_id": vid}, timeout=30).raise_for_status()
        auth = {"authorization": f"Bearer {agent}"}
        httpx.post(f"{b.url}/v1/staff/handoffs/{cid}/claim", headers=auth, timeout=30).raise_for_status()
        visitor = Reader(f"{a.url}/v1/conversations/{cid}/live", params={"visitor_id": vid})
        desk = Reader(f"{b.url}/v1/staff/live", headers=auth)
        time.sleep(1)
        to_visitor, to_staff, posts = [], [], []
        marker = uuid.uuid4().hex[:6]
        with httpx.Client(timeout=30) as http:
            for i in range(args.messages):
                text = f"agent {marker} {i}"
                sent = time.perf_counter()
                http.post(f"{b.url}/v1/staff/conversations/{cid}/messages", headers=auth, json={"text": text})
                posts.append(time.perf_counter() - sent)
                to_visitor.append(visitor.wait(("agent.message", text)) - sent)
            for i in range(args.messages):
                text = f"visitor {marker} {i}"
                sent = time.perf_counter()
                http.post(f"{a.url}/v1/chat", json={"message": text, "conversation_id": cid, "visitor_id": vid})
                to_staff.append(desk.wait(("visitor.message", text)) - sent)
        report("agent POST /messages on B (answered)", posts)
        report("agent message on B -> visitor stream on A", to_visitor)
        report("visitor /v1/chat on A -> staff stream on B", to_staff)
        visitor.close()
        desk.close()
    finally:
        a.stop()
        b.stop()


if __name__ == "__main__":
    main()
