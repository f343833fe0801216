"""`journey ingest` repeated beside a running `journey serve` on the default setup (SQLite, embedded Chroma).

Usage: .venv/bin/python bench/ingest_beside_chat.py [--minutes 10] [--every 20] [--clients 8]

The knowledge folder is copied to a temporary folder and ingested into a fresh data dir; the server then runs on it
while `--clients` visitors chat without pause (half of them through /v1/chat, half through /v1/chat/stream) and
every `--every` seconds a few documents of the copy change (text edited, one removed or restored) and
`journey ingest` runs on it in another process. Printed at the end: requests, how many were accepted (answered
200, or failed on the server: 5xx or a stream's `error` event), the 5xx answers and error events, /health answers
other than 200, and the exchange touchpoints stored for the bench's visitors per accepted request (1.000 is right).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from harness import REPO, ServerProcess, clean_env, header, visitor_question

VISITOR_PREFIX = "bench-ingest-"


def ingest(folder: Path, data: Path) -> subprocess.CompletedProcess:
    """`journey ingest FOLDER` as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "app", "ingest", str(folder)],
        cwd=REPO,
        env=clean_env(data),
        capture_output=True,
        text=True,
        timeout=600,
    )


def change(folder: Path, round_number: int, parked: Path) -> None:
    """Edit three documents and remove (odd rounds) or restore (even rounds) a fourth."""
    documents = sorted(p for p in folder.rglob("*.md") if p.is_file())
    for path in documents[:3]:
        path.write_text(path.read_text() + f"\n\nRevision {round_number} of this page.\n")
    removable = folder / "account" / "pause-plan.md"
    if removable.exists():
        shutil.move(removable, parked)
    elif parked.exists():
        shutil.move(parked, removable)


class Tally:
    """What the chatting clients saw (shared between their threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.stream_errors = 0
        self.no_answer = 0
        self.samples: list[str] = []

    def add(self, status: int, *, stream_error: bool = False, text: str = "") -> None:
        """Count one answered request."""
        with self.lock:
            self.statuses[status] += 1
            self.stream_errors += stream_error
            if (status >= 500 or stream_error) and len(self.samples) < 5:
                self.samples.append(f"{status}: {text[:200]}")

    def accepted(self) -> int:
        """Requests the server took on: answered 200 or failed on its side."""
        return sum(n for status, n in self.statuses.items() if status == 200 or status >= 500)


def chat_client(url: str, number: int, stop: threading.Event, tally: Tally) -> None:
    """Ask question after question until stopped; odd clients stream."""
    stream = number % 2 == 1
    visitor = f"{VISITOR_PREFIX}{number:04d}"
    turn = 0
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            body = {"message": visitor_question(number * 1000 + turn), "visitor_id": visitor}
            turn += 1
            try:
                if stream:
                    with client.stream("POST", f"{url}/v1/chat/stream", json=body) as response:
                        text = "".join(response.iter_text())
                    tally.add(response.status_code, stream_error="event: error" in text, text=text)
                else:
                    response = client.post(f"{url}/v1/chat", json=body)
                    tally.add(response.status_code, text=response.text)
            except httpx.HTTPError:
                with tally.lock:
                    tally.no_answer += 1


def health_watch(url: str, stop: threading.Event, seen: Counter[int]) -> None:
    """GET /health every second, counting its answers."""
    while not stop.wait(1.0):
        try:
            seen[httpx.get(f"{url}/health", timeout=10).status_code] += 1
        except httpx.HTTPError:
            seen[0] += 1


def touchpoints(data: Path) -> int:
    """Exchange touchpoints stored for the bench's visitors."""
    con = sqlite3.connect(data / "journey.db")
    try:
        query = "SELECT count(*) FROM touchpoints WHERE kind = 'exchange' AND visitor_id LIKE ?"
        return con.execute(query, (VISITOR_PREFIX + "%",)).fetchone()[0]
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between ingestions")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    header(f"ingest beside chat: {args.minutes:g} min, ingest every {args.every:g} s, {args.clients} clients")

    work = Path(tempfile.mkdtemp(prefix="journey-bench-ingest-"))
    folder, data, parked = work / "docs", work / "data", work / "pause-plan.md"
    shutil.copytree(REPO / "knowledge" / "docs", folder)
    first = ingest(folder, data)
    if first.returncode != 0:
        raise SystemExit(f"the first ingestion failed:\n{first.stderr}")
    server = ServerProcess(data)
    stop, tally, health = threading.Event(), Tally(), Counter()
    threads = [
        threading.Thread(target=chat_client, args=(server.url, n, stop, tally), daemon=True)
        for n in range(args.clients)
    ]
    threads.append(threading.Thread(target=health_watch, args=(server.url, stop, health), daemon=True))
    for thread in threads:
        thread.start()
    ingests: list[str] = []
    started = time.monotonic()
    round_number = 0
    try:
        while time.monotonic() - started < args.minutes * 60:
            next_at = started + (round_number + 1) * args.every
            time.sleep(max(0.0, next_at - time.monotonic()))
            round_number += 1
            change(folder, round_number, parked)
            result = ingest(folder, data)
            summary = (result.stdout.strip().splitlines() or [""])[-2:-1] or [result.stderr.strip()[-200:]]
            ingests.append(f"exit {result.returncode}: {summary[0]}")
            print(f"ingest {round_number} at {time.monotonic() - started:.0f} s: {ingests[-1]}", flush=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
        server.stop()

    accepted = tally.accepted()
    stored = touchpoints(data)
    server_errors = sum(n for status, n in tally.statuses.items() if status >= 500)
    print(f"ingestions: {len(ingests)}, failed: {sum(not line.startswith('exit 0') for line in ingests)}")
    requests = sum(tally.statuses.values()) + tally.no_answer
    print(f"requests: {requests} (statuses {dict(sorted(tally.statuses.items()))})")
    print(f"no answer (connection failed): {tally.no_answer}")
    print(f"accepted: {accepted}")
    print(f"5xx: {server_errors}")
    print(f"stream error events: {tally.stream_errors}")
    print(f"/health not 200: {sum(n for status, n in health.items() if status != 200)} of {sum(health.values())}")
    print(f"touchpoints: {stored}")
    print(f"touchpoints per accepted request: {stored / accepted if accepted else 0:.3f}")
    for sample in tally.samples:
        print(f"  sample failure {json.dumps(sample)}")
    print(f"work dir (data, docs, server log): {work}")


if __name__ == "__main__":
    main()
