"""A real Chroma server (`chroma run`, installed with chromadb in the venv) on a free port, for scale-out tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import free_port

CHROMA = Path(sys.executable).parent / "chroma"


# A document the demo knowledge lacks: ingesting it through a Chroma server must change what chat cites.
LUNAR_DOC = """---
title: Scheduling at the lunar outpost
stages: [consideration]
url: https://www.lumio.example/lunar-outpost
questions:
  - Can Lumio book appointments at the lunar outpost?
---
## Lunar outpost bookings
Lumio books regolith-drilling appointments at the lunar outpost. Crews pick a drilling slot in the outpost
calendar and the airlock rota is kept in sync with every booking.
"""


class ChromaServer:
    """`chroma run --path PATH --host 127.0.0.1 --port PORT`; start() waits for its heartbeat."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = path.parent / f"chroma-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ChromaServer:
        """Start the server and wait until it answers GET /api/v2/heartbeat."""
        assert CHROMA.exists(), f"the chroma CLI is missing next to {sys.executable}"
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer its heartbeat:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None
