"""bench/peer_compare.py at a tiny size: it runs both servers, both answer every turn, and it prints the ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TURNS = 10


def test_peer_compare_runs_both_servers_and_prints_ratios(ingested: Path) -> None:
    try:
        import langchain_chroma  # noqa: F401
    except ImportError:
        pytest.fail('the tutorial peer needs the bench extra: pip install -e ".[bench]" (make setup installs it)')
    args = ["--turns", str(TURNS), "--clients", "2", "--rounds", "1", "--no-offline", "--data", str(ingested)]
    result = subprocess.run(
        [sys.executable, "bench/peer_compare.py", *args], cwd=REPO, capture_output=True, text=True, timeout=280
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"^machine speed: [\d.]+ ms", out, re.M), out
    rows = re.findall(
        r"^(ours|peer)\s+(plain|streamed)\s+[\d.]+ turns/s  answered (\d+)/(\d+)  LLM calls/turn ([\d.]+)", out, re.M
    )
    assert sorted((name, kind) for name, kind, *_ in rows) == [
        ("ours", "plain"),
        ("ours", "streamed"),
        ("peer", "plain"),
        ("peer", "streamed"),
    ], out
    for name, kind, answered, turns, calls in rows:
        assert (answered, turns) == (str(TURNS), str(TURNS)), f"{name} {kind}: {out}"
        if name == "peer":  # the tutorial makes exactly one LLM call a turn: the fake counted every one
            assert calls == "1.00", out
        else:  # Journey Guide answers with the LLM (a decline needs no call), at most answer + stage vote
            assert 0 < float(calls) <= 2, out
    for label in ("plain turns/s", "streamed turns/s", "first token p50"):
        assert re.search(rf"^RATIO round 1 {label} ours/peer: \d+\.\d\d$", out, re.M), out
    assert re.search(r"^\| plain turns/s \| [\d.]+ \| [\d.]+ \| \d+\.\d\d \|$", out, re.M), out
