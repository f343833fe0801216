"""Several workers, no sticky sessions: two `journey serve` processes sharing PostgreSQL, Redis and a Chroma server.

Each worker gets a data dir of its own (holding only the stage-vector cache), so anything a turn needs from an
earlier turn, a staff change or an ingestion job must travel through the shared services.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from chroma_server import LUNAR_DOC, ChromaServer
from conftest import REPO, Server, base_env, create_pg_database, free_port, local_redis_url, run_cli
from sse import iter_events

REDIS_DB = 13
VISITOR_LIMIT = 8
RUN = secrets.token_hex(4)  # visitor ids of this run (Redis keys are cleaned up by it)


def visitor(name: str) -> str:
    return f"{RUN}-{name}-{secrets.token_hex(4)}"


class Cluster:
    """Two workers (a and b) on the same PostgreSQL database, Redis and Chroma server, and an admin token."""

    def __init__(self, tmp: Callable[[str], Path], stage_cache: Callable[[Path], Path]) -> None:
        self._stage_cache = stage_cache
        self.redis = local_redis_url(REDIS_DB)
        self.pg_url, self._drop_pg = create_pg_database()
        self.chroma = ChromaServer(tmp("chroma") / "data")
        self.servers: list[Server] = []
        try:
            self._start(tmp)
        except BaseException:
            self.close()
            raise

    def _start(self, tmp: Callable[[str], Path]) -> None:
        self.chroma.start()
        self.env = {
            "JOURNEY_DATABASE_URL": self.pg_url,
            "JOURNEY_CHROMA_URL": self.chroma.url,
            "JOURNEY_REDIS_URL": self.redis,
            "JOURNEY_RATE_LIMIT_VISITOR": f"{VISITOR_LIMIT}/60",
            "JOURNEY_RATE_LIMIT_IP": "10000/60",
            # a worker only polls for staff changes hourly here: what arrives sooner came over Redis
            "JOURNEY_LEARNING_POLL_SECONDS": "3600",
        }
        self.seed = self._stage_cache(tmp("seed"))
        ingested = run_cli("ingest", env=base_env(self.seed, **self.env))
        assert ingested.returncode == 0, ingested.stderr
        created = run_cli("staff", "create-token", "admin@lumio.example", "--role", "admin", env=self._env(self.seed))
        assert created.returncode == 0, created.stderr
        self.token = created.stdout.strip().splitlines()[-1]
        self.ingest_root = tmp("ingest-root")
        shutil.copytree(REPO / "knowledge" / "docs", self.ingest_root / "docs")
        (self.ingest_root / "docs" / "lunar-outpost.md").write_text(LUNAR_DOC)
        self._tmp = tmp
        for _ in range(2):
            self.servers.append(Server(self.data_dir(), **self.env, JOURNEY_INGEST_ROOT=str(self.ingest_root)))
        self.a, self.b = self.servers

    def _env(self, data_dir: Path) -> dict[str, str]:
        return base_env(data_dir, **self.env)

    def data_dir(self) -> Path:
        """A worker's own data dir: a copy of the seed's stage-vector cache, nothing else."""
        target = self._tmp("worker")
        shutil.copytree(self.seed, target, dirs_exist_ok=True)
        return target

    def staff(self, server: Server, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{server.url}/v1{path}", headers=headers, timeout=60, **kwargs)

    def close(self) -> None:
        import redis

        for server in self.servers:
            server.stop()
        self.chroma.stop()
        self._drop_pg()
        client = redis.Redis.from_url(self.redis)
        for key in client.scan_iter(f"journey:rl:visitor:{RUN}-*"):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, stage_cache):
    made = Cluster(tmp_path_factory.mktemp, stage_cache)
    yield made
    made.close()


def chat(server: Server, message: str, **ids: str) -> dict:
    response = httpx.post(f"{server.url}/v1/chat", json={"message": message, **ids}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_one_conversation_alternating_between_two_workers(cluster: Cluster):
    a, b = cluster.a, cluster.b
    who = visitor("alternating")
    first = chat(a, "How much does the pro plan cost?", visitor_id=who)
    ids = {"conversation_id": first["conversation_id"], "visitor_id": who}
    assert first["stage"]["name"] == "decision"
    second = chat(b, "and for 12 staff?", **ids)
    assert second["conversation_id"] == first["conversation_id"]
    assert second["stage"]["previous"] == "decision" and second["stage"]["name"] == "decision"
    third = chat(a, "Is there a free trial?", **ids)
    assert third["stage"]["previous"] == "decision"
    with httpx.stream(
        "POST", f"{b.url}/v1/chat/stream", json={"message": "how long is it?", **ids}, timeout=60
    ) as response:
        fourth = dict(iter_events(response))["done"]
    assert fourth["conversation_id"] == first["conversation_id"]
    assert fourth["stage"]["previous"] == third["stage"]["name"]
    # read alone, "how long is it?" gets a question back with no sources: read with the turn before, the trial's length
    assert "14-day" in fourth["reply"], "the short follow-up is read with the turn before it"
    assert "trial/free-trial" in [s["id"] for s in fourth["sources"]], fourth["sources"]
    alone = chat(b, "how long is it?", visitor_id=visitor("alone"))
    assert "trial/free-trial" not in [s["id"] for s in alone["sources"]], "(without that turn it means nothing)"
    chat(a, "ok thanks", **ids)
    stranger = httpx.post(
        f"{b.url}/v1/chat", json={"message": "hello", "conversation_id": ids["conversation_id"]}, timeout=60
    )
    assert stranger.status_code == 404, "another visitor cannot continue it on any worker"

    path = f"/staff/conversations/{first['conversation_id']}"
    from_a, from_b = cluster.staff(a, "GET", path), cluster.staff(b, "GET", path)
    assert from_a.status_code == 200, from_a.text
    assert from_a.json() == from_b.json(), "both workers show the same transcript"
    turns = from_a.json()["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5]
    assert [t["question"] for t in turns] == [
        "How much does the pro plan cost?",
        "and for 12 staff?",
        "Is there a free trial?",
        "how long is it?",
        "ok thanks",
    ]
    assert [t["stage"]["previous"] for t in turns[1:]] == [t["stage"]["name"] for t in turns[:-1]]


def test_stage_correction_on_one_worker_changes_the_other_at_once(cluster: Cluster):
    a, b = cluster.a, cluster.b
    message = f"the teal lantern {RUN} hums beside the garden gate"
    before = chat(b, message, visitor_id=visitor("correct"))
    target = "advocacy" if before["stage"]["name"] != "advocacy" else "awareness"
    corrected = cluster.staff(a, "PUT", f"/staff/touchpoints/{before['message_id']}/stage", json={"stage": target})
    assert corrected.status_code == 200, corrected.text
    started = time.monotonic()
    seen = []
    while time.monotonic() - started < 10:
        seen.append(chat(b, message, visitor_id=visitor("correct"))["stage"]["name"])
        if seen[-1] == target:
            break
        time.sleep(0.3)
    assert seen[-1] == target, f"worker b never learned the correction made on a: {seen}"
    assert time.monotonic() - started < 10  # its poll is hourly: the Redis notice carried it


def test_curated_answer_written_on_one_worker_is_served_by_the_other(cluster: Cluster):
    a, b = cluster.a, cluster.b
    question = "Can I book the zeppelin hangar for a yoga class?"
    assert chat(b, question, visitor_id=visitor("curated"))["mode"] != "curated"
    written = cluster.staff(a, "POST", "/staff/answers", json={"question": question, "answer": "Yes, on Sundays."})
    assert written.status_code == 201, written.text
    started = time.monotonic()
    while True:
        reply = chat(b, "can i book the zeppelin hangar for yoga classes?", visitor_id=visitor("curated"))
        if reply["mode"] == "curated" or time.monotonic() - started > 10:
            break
        time.sleep(0.3)
    assert reply["mode"] == "curated" and reply["reply"] == "Yes, on Sundays."
    assert cluster.staff(a, "DELETE", f"/staff/answers/{written.json()['id']}").status_code == 204
    started = time.monotonic()
    while True:
        reply = chat(b, question, visitor_id=visitor("curated"))
        if reply["mode"] != "curated" or time.monotonic() - started > 10:
            break
        time.sleep(0.3)
    assert reply["mode"] != "curated", "a deleted answer stops being served on the other worker too"


def test_visitor_rate_limit_counts_across_both_workers(cluster: Cluster):
    import redis

    who = visitor("limited")
    servers = [cluster.a, cluster.b] * VISITOR_LIMIT
    codes = [
        httpx.post(f"{s.url}/v1/chat", json={"message": "hi", "visitor_id": who}, timeout=60).status_code
        for s in servers[: VISITOR_LIMIT + 2]
    ]
    assert codes == [200] * VISITOR_LIMIT + [429, 429], codes
    client = redis.Redis.from_url(cluster.redis)
    assert int(client.get(f"journey:rl:visitor:{who}")) == VISITOR_LIMIT + 2, "the count lives in Redis"
    client.close()


def wait_for_no_running_job(cluster: Cluster) -> None:
    deadline = time.monotonic() + 180
    while not all(j["done"] for j in cluster.staff(cluster.a, "GET", "/admin/ingest").json()["jobs"]):
        assert time.monotonic() < deadline, "an ingestion job did not finish"
        time.sleep(0.2)


def test_ingest_job_started_on_one_worker_is_followed_on_the_other(cluster: Cluster):
    a, b = cluster.a, cluster.b
    started = cluster.staff(a, "POST", "/admin/ingest", json={"path": "docs"})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert cluster.staff(b, "POST", "/admin/ingest", json={"path": "docs"}).status_code in {409, 202}
    deadline = time.monotonic() + 180
    while True:
        polled = cluster.staff(b, "GET", f"/admin/ingest/{job_id}")
        assert polled.status_code == 200, polled.text
        job = polled.json()
        if job["done"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["status"] == "done", job
    assert job["report"]["added"] == ["lunar-outpost"]
    assert job["worker"].endswith(f":{a.process.pid}"), "the work ran on worker a"
    listed = cluster.staff(b, "GET", "/admin/ingest").json()["jobs"]
    assert job_id in [j["job_id"] for j in listed]
    deadline = time.monotonic() + 10  # the other worker's in-memory copy follows within LEXICAL_CHECK_SECONDS (1 s)
    while True:
        reply = chat(b, "Can Lumio book appointments at the lunar outpost?", visitor_id=visitor("lunar"))
        if (reply["sources"] and reply["sources"][0]["id"] == "lunar-outpost") or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert reply["sources"][0]["id"] == "lunar-outpost", "the other worker retrieves what the job stored"
    wait_for_no_running_job(cluster)


def test_two_admins_starting_ingestion_at_once_on_two_workers_start_one_job(cluster: Cluster):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    together = Barrier(2)
    wait_for_no_running_job(cluster)

    def start(server: Server) -> httpx.Response:
        together.wait()
        return cluster.staff(server, "POST", "/admin/ingest", json={"path": "docs"})

    for _ in range(10):  # without the lock, both start in some of the rounds
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(start, [cluster.a, cluster.b]))
        codes = sorted(r.status_code for r in responses)
        started = [r.json()["job_id"] for r in responses if r.status_code == 202]
        deadline = time.monotonic() + 120
        jobs = []
        for job_id in started:
            while not (job := cluster.staff(cluster.b, "GET", f"/admin/ingest/{job_id}").json())["done"]:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            jobs.append(job)
        if codes == [202, 202]:  # on a loaded machine one request can arrive after the other's job has ended
            first, second = sorted(jobs, key=lambda j: j["created_at"])
            assert first["finished_at"] <= second["created_at"], f"two jobs ran at once: {jobs}"
        else:
            assert codes == [202, 409], [r.text for r in responses]


def test_serve_with_two_workers_on_one_port(cluster: Cluster):
    port = free_port()
    data_dir = cluster.data_dir()
    log = (data_dir / "serve-workers.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO,
        env=base_env(data_dir, **cluster.env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:
            assert process.poll() is None, (data_dir / "serve-workers.log").read_text()
            workers = [p for p in psutil.Process(process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
            try:
                healthy = httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and len(workers) >= 2:
                break
            time.sleep(0.3)
        assert len(workers) >= 2, [p.cmdline() for p in psutil.Process(process.pid).children()]
        who = visitor("served")
        first = httpx.post(f"{url}/v1/chat", json={"message": "Is there a free trial?", "visitor_id": who}, timeout=60)
        assert first.status_code == 200, first.text
        ids = {"conversation_id": first.json()["conversation_id"], "visitor_id": who}
        replies = []
        for message in ("how long is it?", "and after that?", "ok thanks"):
            # a new connection for each turn, so the kernel may hand it to either worker
            reply = httpx.post(f"{url}/v1/chat", json={"message": message, **ids}, timeout=60)
            assert reply.status_code == 200, reply.text
            assert reply.json()["conversation_id"] == ids["conversation_id"]
            replies.append(reply.json())
        assert "14-day" in replies[0]["reply"], "the follow-up is read with the turn before it"
        assert "trial/free-trial" in [s["id"] for s in replies[0]["sources"]], replies[0]["sources"]
        transcript = cluster.staff(cluster.a, "GET", f"/staff/conversations/{ids['conversation_id']}").json()
        assert [t["turn"] for t in transcript["turns"]] == [1, 2, 3, 4]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_redis_down_means_limits_per_worker_not_failed_chats(make_data_dir):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = Server(make_data_dir(), JOURNEY_REDIS_URL=dead, JOURNEY_RATE_LIMIT_VISITOR="2/60")
    try:
        who = visitor("no-redis")
        codes = [
            httpx.post(f"{server.url}/v1/chat", json={"message": "hi", "visitor_id": who}, timeout=60).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429], "the worker counts by itself while Redis is unreachable"
    finally:
        server.stop()
    assert "rate limits: Redis unavailable" in server.log.read_text()


def test_a_redis_url_without_its_scheme_is_refused():
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="JOURNEY_REDIS_URL must look like redis://host:6379/0"):
        Settings(redis_url="localhost:6379")
    assert Settings(redis_url=" ").redis_url is None
