"""Ingestion speed: `journey ingest` of the knowledge folder and of a generated corpus into fresh data dirs.

Usage: .venv/bin/python bench/ingest_rate.py [--copies 8]

The generated corpus is the knowledge folder's documents copied --copies times under new titles and URLs (each
copy's paragraphs shuffled, so no two passages are equal). Chunks per second = passages / wall time of the command;
the marginal rate (extra passages / extra seconds between the two runs) leaves out start-up (loading the model,
embedding the stage examples).
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, clean_env, header

DOCS = REPO / "knowledge" / "docs"


def corpus(copies: int) -> Path:
    """Write copies x the knowledge documents, retitled and with shuffled paragraphs."""
    root = Path(tempfile.mkdtemp(prefix="journey-corpus-"))
    rng = random.Random(7)
    for n in range(copies):
        for source in sorted(DOCS.rglob("*.md")):
            head, _, body = source.read_text().partition("\n---\n")
            head = re.sub(r"^title: (.*)$", rf"title: \1 (edition {n})", head, flags=re.M)
            head = re.sub(r"^url: (.*)$", rf"url: \1-{n}", head, flags=re.M)
            paragraphs = body.split("\n\n")
            rng.shuffle(paragraphs)
            target = root / f"copy{n}" / source.relative_to(DOCS)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(head + "\n---\n" + "\n\n".join(paragraphs))
    return root


def ingest(folder: Path) -> tuple[int, float]:
    """Run `journey ingest folder` into a fresh data dir; return passages embedded and wall seconds."""
    data = Path(tempfile.mkdtemp(prefix="journey-ingest-"))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app", "ingest", str(folder)],
        cwd=REPO,
        env=clean_env(data),
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    found = re.search(r"embedded (\d+) passages", done.stdout + done.stderr)
    if not found:
        raise SystemExit(done.stdout + done.stderr)
    return int(found.group(1)), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    args = parser.parse_args()
    header("ingestion chunks per second")
    small, small_s = ingest(DOCS)
    print(f"knowledge/docs: {small} passages in {small_s:.1f}s = {small / small_s:.1f} chunks/s (with start-up)")
    big, big_s = ingest(corpus(args.copies))
    print(f"generated corpus ({args.copies} copies): {big} passages in {big_s:.1f}s = {big / big_s:.1f} chunks/s")
    print(f"INGEST marginal rate: {(big - small) / (big_s - small_s):.1f} chunks/s (start-up excluded)")


if __name__ == "__main__":
    main()
