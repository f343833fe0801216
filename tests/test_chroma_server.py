"""Chroma in client/server mode: `journey ingest` and `journey serve` against a real `chroma run` server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import chromadb
import httpx
import pytest
from chroma_server import LUNAR_DOC, ChromaServer
from chromadb.config import Settings as ChromaSettings
from conftest import REPO, Server, base_env, free_port, run_cli
from sse import iter_events

from app.kb.store import collection_name


def server_collection(url: str):
    """The knowledge collection as stored in the Chroma server (read with chromadb's own client, not ours)."""
    parsed = urlparse(url)
    client = chromadb.HttpClient(
        host=parsed.hostname, port=parsed.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    return client.get_collection(collection_name("journey-knowledge", "minilm-l6-int8"))


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory):
    server = ChromaServer(tmp_path_factory.mktemp("chroma") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ingested_remote(chroma: ChromaServer, tmp_path_factory: pytest.TempPathFactory, stage_cache):
    """A data dir that ran `journey ingest` against the Chroma server (it keeps only the stage-vector cache)."""
    data_dir = stage_cache(tmp_path_factory.mktemp("remote-ingest"))
    result = run_cli("ingest", env=base_env(data_dir, JOURNEY_CHROMA_URL=chroma.url))
    assert result.returncode == 0, result.stderr
    return data_dir, result


@pytest.fixture(scope="module")
def copy_data_dir(ingested_remote, tmp_path_factory) -> Callable[[], Path]:
    def make() -> Path:
        target = tmp_path_factory.mktemp("remote-data")
        shutil.copytree(ingested_remote[0], target, dirs_exist_ok=True)
        return target

    return make


@pytest.fixture(scope="module")
def remote_app(chroma: ChromaServer, copy_data_dir, tmp_path_factory):
    """`journey serve` on the Chroma server, an admin token, and an ingest root with the docs plus one new one."""
    data_dir = copy_data_dir()
    root = tmp_path_factory.mktemp("ingest-root")
    shutil.copytree(REPO / "knowledge" / "docs", root / "docs")
    (root / "docs" / "lunar-outpost.md").write_text(LUNAR_DOC)
    created = run_cli("staff", "create-token", "admin@lumio.example", "--role", "admin", env=base_env(data_dir))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    server = Server(data_dir, JOURNEY_CHROMA_URL=chroma.url, JOURNEY_INGEST_ROOT=str(root))
    yield server, token
    server.stop()


def test_ingest_stores_the_passages_in_the_chroma_server(chroma, ingested_remote):
    data_dir, result = ingested_remote
    stored = server_collection(chroma.url).count()
    assert stored > 100
    assert f"({stored} passages)" in result.stdout
    assert not (data_dir / "chroma").exists(), "nothing may be written to a local Chroma directory"
    assert "httpx" not in result.stderr, "Chroma's HTTP requests are not the user's business"
    again = run_cli("ingest", env=base_env(data_dir, JOURNEY_CHROMA_URL=chroma.url))
    assert again.returncode == 0, again.stderr
    assert "added 0, updated 0" in again.stdout and "embedded 0 passages" in again.stdout
    assert server_collection(chroma.url).count() == stored


def test_chat_replies_cite_sources_from_the_chroma_server(remote_app, chroma):
    server, _ = remote_app
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    assert health["knowledge"]["passages"] == server_collection(chroma.url).count()
    reply = httpx.post(f"{server.url}/v1/chat", json={"message": "How much does the pro plan cost?"}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["stage"]["name"] == "decision"
    assert any("pricing" in s["id"] for s in body["sources"]), body["sources"]
    assert "$" in body["reply"]
    follow = {"message": "and the team plan?", "conversation_id": body["conversation_id"]}
    follow["visitor_id"] = body["visitor_id"]
    with httpx.stream("POST", f"{server.url}/v1/chat/stream", json=follow, timeout=60) as response:
        events = list(iter_events(response))
    names = [name for name, _ in events]
    assert names[0] == "stage" and names[-1] == "done", names
    assert any("pricing" in s["id"] for s in dict(events)["sources"]["sources"])
    assert not (server.data_dir / "chroma").exists()


def test_admin_ingest_job_writes_to_the_chroma_server(remote_app, chroma):
    server, token = remote_app
    auth = {"authorization": f"Bearer {token}"}
    started = httpx.post(f"{server.url}/v1/admin/ingest", json={"path": "docs"}, headers=auth, timeout=30)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 180
    while True:
        job = httpx.get(f"{server.url}/v1/admin/ingest/{job_id}", headers=auth, timeout=30).json()
        if job["done"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["status"] == "done", job
    assert job["report"]["added"] == ["lunar-outpost"], job["report"]
    assert job["report"]["removed"] == []
    stored = server_collection(chroma.url).get(where={"doc_id": "lunar-outpost"})
    assert stored["ids"], "the new document's passages are in the Chroma server"
    reply = httpx.post(
        f"{server.url}/v1/chat", json={"message": "Can Lumio book appointments at the lunar outpost?"}, timeout=60
    ).json()
    assert reply["sources"][0]["id"] == "lunar-outpost", reply["sources"]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The command failed with one `error:` line (besides INFO log lines) and no traceback; return that line."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "╭" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def serve(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`journey serve` that must exit by itself (a server that starts would hit the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_nothing_at_the_chroma_url_is_a_one_line_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path, JOURNEY_CHROMA_URL=url)
    started = time.monotonic()
    line = one_line_error(run_cli("ingest", env=env))
    assert line.startswith(f"error: cannot reach the Chroma server at {url}"), line
    assert "chroma run" in line and "JOURNEY_CHROMA_URL" in line
    assert time.monotonic() - started < 30
    line = one_line_error(serve(env))
    assert line.startswith(f"error: cannot reach the Chroma server at {url}"), line
    assert not (tmp_path / "chroma").exists()


def test_a_chroma_url_that_is_not_chroma_is_a_one_line_error(tmp_path, fake_llm):
    env = base_env(tmp_path, JOURNEY_CHROMA_URL=fake_llm.base_url.removesuffix("/v1"))
    line = one_line_error(run_cli("ingest", env=env))
    assert "does not look like a Chroma server" in line, line
    line = one_line_error(run_cli("docs", env=base_env(tmp_path, JOURNEY_CHROMA_URL="localhost:8000")))
    assert "JOURNEY_CHROMA_URL must look like http://host:8000" in line, line


def test_chroma_going_away_is_a_503_health_while_turns_use_the_copy_and_the_worker_recovers(tmp_path, copy_data_dir):
    chroma = ChromaServer(tmp_path / "chroma").start()
    server = Server(copy_data_dir(), JOURNEY_CHROMA_URL=chroma.url)
    try:
        ask = {"message": "How do I reset my password?", "visitor_id": "visitor-outage-1"}
        assert httpx.post(f"{server.url}/v1/chat", json=ask, timeout=60).status_code == 200
        chroma.stop()
        time.sleep(1.2)  # past the next look at the collection's version
        down = httpx.post(f"{server.url}/v1/chat", json=ask, timeout=60)
        assert down.status_code == 200, "answered from the copy of the knowledge base read before"
        assert down.json()["outcome"] == "ok"
        health = httpx.get(f"{server.url}/health", timeout=30)
        assert health.status_code == 503 and health.headers["retry-after"] == "5"
        assert f"the Chroma server at {chroma.url}" in health.json()["detail"]
        with httpx.stream("POST", f"{server.url}/v1/chat/stream", json=ask, timeout=60) as response:
            names = [name for name, _ in iter_events(response)]
        assert names[-1] == "done", names
        assert len(server.touchpoints(visitor_id="visitor-outage-1")) == 3, "one touchpoint per turn"
        chroma.start()
        again = httpx.post(f"{server.url}/v1/chat", json=ask, timeout=60)
        assert again.status_code == 200, again.text
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
    finally:
        server.stop()
        chroma.stop()
