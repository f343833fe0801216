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
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from harness import REPO, ServerProcess, clean_env, reference_ms


def questions(limit: int) -> list[str]:
    out = []
    for name in ("answers_dev.jsonl", "answers_heldout.jsonl"):
        out += [json.loads(line)["question"] for line in (REPO / "evals" / name).read_text().splitlines() if line]
    return out[:limit] if limit else out


def start(checkout: Path, data_dir: Path) -> ServerProcess:
    """Ingest the demo knowledge with that checkout's code, then serve it (no rate limits: all load is one IP)."""
    data_dir.mkdir()
    ingest = subprocess.run([sys.executable, "-m", "app", "ingest"], cwd=checkout, env=clean_env(data_dir))
    if ingest.returncode != 0:
        raise SystemExit(f"ingest failed in {checkout}")
    return ServerProcess(data_dir, checkout=checkout)


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
                for server in sides.values():  # warm up: one-off loading (models, KB word vectors) is not timed
                    for message in ("hello", "what does it cost", "can my clients pay in zorkmids"):
                        http.post(f"{server.url}/v1/chat", json={"message": message}).raise_for_status()
                for n, first in enumerate(range(0, len(asked), args.block)):
                    order = list(sides.items()) if n % 2 == 0 else list(reversed(sides.items()))
                    for name, server in order:
                        before = server.cpu_seconds()
                        for question in asked[first : first + args.block]:
                            http.post(f"{server.url}/v1/chat", json={"message": question}).raise_for_status()
                        spent[name] += server.cpu_seconds() - before
        finally:
            for server in sides.values():
                server.stop()
    for name, seconds in spent.items():
        print(f"{name:14} server CPU per offline turn: {1000 * seconds / len(asked):.1f} ms (n={len(asked)})")
    print(f"this checkout / baseline: {spent['this checkout'] / spent['baseline']:.2f}")
    print(f"machine speed: {reference_ms():.1f} ms for a reference loop")


if __name__ == "__main__":
    main()
