"""Server CPU per offline /v1/chat turn, this checkout against an earlier one, interleaved in the same run.

Usage: .venv/bin/python bench/offline_turn_cpu.py --baseline DIR [--block 40] [--limit 0]
DIR is a checkout of an earlier version (e.g. `git worktree add /tmp/base <commit>`). Each side gets its own data dir,
ingested by its own code, and its own `journey serve` (run with this venv's Python from that checkout). The questions
of evals/answers_dev.jsonl and evals/answers_heldout.jsonl are asked one at a time, each as a new conversation, in
blocks that alternate between the two servers (which goes first alternates too), so a change in the machine's speed
affects both alike; the CPU time of each server process is read before and after its blocks. Every question is asked
once per server, so the embedding cache does not flatter either side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from harness import free_port, reference_ms

REPO = Path(__file__).resolve().parent.parent


def questions(limit: int) -> list[str]:
    out = []
    for name in ("answers_dev.jsonl", "answers_heldout.jsonl"):
        out += [json.loads(line)["question"] for line in (REPO / "evals" / name).read_text().splitlines() if line]
    return out[:limit] if limit else out


def start(checkout: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "OPENAI_"))}
    env.update(JOURNEY_DATA_DIR=str(data_dir), JOURNEY_RATE_LIMIT_IP="1000000/60")
    env["JOURNEY_RATE_LIMIT_VISITOR"] = "1000000/60"
    ingest = subprocess.run([sys.executable, "-m", "app", "ingest"], cwd=checkout, env=env, capture_output=True)
    if ingest.returncode != 0:
        raise SystemExit(f"ingest failed in {checkout}: {ingest.stderr.decode()[-500:]}")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"the server of {checkout} did not start")
        time.sleep(0.3)


def cpu(process: subprocess.Popen) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--block", type=int, default=40)
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions (0: all)")
    args = parser.parse_args()
    asked = questions(args.limit)
    print(f"machine speed: {reference_ms():.1f} ms for a reference loop (lower is faster; compare runs by it)")
    with tempfile.TemporaryDirectory() as scratch:
        sides = {}
        try:
            for name, checkout in (("baseline", args.baseline.resolve()), ("this checkout", REPO)):
                sides[name] = start(checkout, Path(scratch) / name.replace(" ", "-"))
            spent = dict.fromkeys(sides, 0.0)
            with httpx.Client(timeout=60) as http:
                for _, url in sides.values():  # warm up: one-off loading (models, KB word vectors) is not timed
                    for message in ("hello", "what does it cost", "can my clients pay in zorkmids"):
                        http.post(f"{url}/v1/chat", json={"message": message}).raise_for_status()
                for n, first in enumerate(range(0, len(asked), args.block)):
                    order = list(sides.items()) if n % 2 == 0 else list(reversed(sides.items()))
                    for name, (process, url) in order:
                        before = cpu(process)
                        for question in asked[first : first + args.block]:
                            http.post(f"{url}/v1/chat", json={"message": question}).raise_for_status()
                        spent[name] += cpu(process) - before
        finally:
            for process, _ in sides.values():
                process.terminate()
                process.wait(timeout=30)
    for name, seconds in spent.items():
        print(f"{name:14} server CPU per offline turn: {1000 * seconds / len(asked):.1f} ms (n={len(asked)})")
    print(f"this checkout / baseline: {spent['this checkout'] / spent['baseline']:.2f}")
    print(f"machine speed: {reference_ms():.1f} ms for a reference loop")


if __name__ == "__main__":
    main()
