"""Shared fixtures: an ingested knowledge base, real uvicorn servers, the fake OpenAI-compatible LLM."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_llm import FakeLLMServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a Journey Guide process: no inherited OpenAI or JOURNEY_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "OPENAI_"))}
    env["JOURNEY_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `journey ARGS` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


class Server:
    """A `journey serve` process on a free port."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self._drop_database: Callable[[], None] | None = None
        if os.environ.get("JOURNEY_TEST_POSTGRES") == "1" and "JOURNEY_DATABASE_URL" not in env:
            # run API test files on PostgreSQL: JOURNEY_TEST_POSTGRES=1 pytest tests/test_chat_api.py
            env["JOURNEY_DATABASE_URL"], self._drop_database = create_pg_database()
        self.database_url = env.get("JOURNEY_DATABASE_URL")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"server-{self.port}.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=base_env(data_dir, **env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log.read_text()}")

    def touchpoints(self, **where: str) -> list[dict]:
        """Rows of the touchpoints table (read straight from the SQLite file, or PostgreSQL, as SQLite shows them)."""
        if self.database_url and self.database_url.startswith(("postgres://", "postgresql://")):
            return _pg_touchpoints(self.database_url, where)
        con = sqlite3.connect(self.data_dir / "journey.db")
        con.row_factory = sqlite3.Row
        clause = " AND ".join(f"{k} = ?" for k in where) or "1=1"
        rows = con.execute(f"SELECT * FROM touchpoints WHERE {clause} ORDER BY created_at", tuple(where.values()))
        result = [dict(r) for r in rows]
        con.close()
        return result

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log_file.close()
        if self._drop_database is not None:
            self._drop_database()
            self._drop_database = None


def _pg_touchpoints(url: str, where: dict[str, str]) -> list[dict]:
    import json
    from datetime import datetime

    import psycopg
    from psycopg.rows import dict_row

    def as_sqlite(value):
        if isinstance(value, dict | list):
            return json.dumps(value)
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    clause = " AND ".join(f"{k} = %s" for k in where) or "1=1"
    with psycopg.connect(url, row_factory=dict_row, connect_timeout=3) as con:
        rows = con.execute(f"SELECT * FROM touchpoints WHERE {clause} ORDER BY created_at", tuple(where.values()))
        return [{k: as_sqlite(v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the demo knowledge base ingested once for the whole session.

    Under pytest-xdist (`make test` runs two workers) the first worker to get here ingests into a folder every worker
    sees, under a file lock; each worker then takes its own copy, so a test that writes to it affects only its worker.
    """
    data_dir = tmp_path_factory.mktemp("ingested")
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # no xdist: ingest here
        _ingest_into(data_dir)
        return data_dir
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this run
    template = shared / "ingested-template"
    with FileLock(str(shared / "ingested-template.lock")):
        if not (template / "done").exists():
            shutil.rmtree(template, ignore_errors=True)
            template.mkdir()
            _ingest_into(template)
            (template / "done").write_text("ok")
    shutil.copytree(template, data_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("done"))
    return data_dir


def _ingest_into(data_dir: Path) -> None:
    result = run_cli("ingest", env=base_env(data_dir))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def make_data_dir(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """A fresh copy of the ingested data dir (own database, own Chroma files)."""

    def make() -> Path:
        target = tmp_path_factory.mktemp("data")
        shutil.copytree(ingested, target, dirs_exist_ok=True)
        return target

    return make


@pytest.fixture(scope="session")
def stage_cache(ingested: Path) -> Callable[[Path], Path]:
    """Give a data dir (made if missing) the stage detector's cache of the session's ingested one and nothing else:
    the labelled examples' vectors and fit that every `journey ingest` or `serve` would otherwise compute again."""

    def seed(data_dir: Path) -> Path:
        shutil.copytree(ingested / "cache", data_dir / "cache", dirs_exist_ok=True)
        return data_dir

    return seed


@pytest.fixture(scope="session")
def offline_server(make_data_dir: Callable[[], Path]) -> Iterator[Server]:
    """Journey Guide on its embedded defaults: no API key, no LLM.

    Every test file shares it and all of them come from 127.0.0.1, so the per-address limit is lifted: otherwise
    whether a test passes depends on how many others ran in the same minute (the limits have their own tests).
    """
    server = Server(make_data_dir(), JOURNEY_RATE_LIMIT_IP="1000000/60")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_llm_session() -> Iterator[FakeLLMServer]:
    """One fake OpenAI-compatible server for the session."""
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture()
def fake_llm(fake_llm_session: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The fake LLM, reset to answer normally for each test."""
    fake_llm_session.reset()
    yield fake_llm_session
    fake_llm_session.reset()


@pytest.fixture(scope="session")
def llm_server(make_data_dir: Callable[[], Path], fake_llm_session: FakeLLMServer) -> Iterator[Server]:
    """Journey Guide pointed at the fake LLM with short timeouts."""
    server = Server(
        make_data_dir(),
        OPENAI_BASE_URL=fake_llm_session.base_url,
        OPENAI_API_KEY="test-key",
        JOURNEY_LLM_MODEL="fake-model",
        JOURNEY_LLM_TIMEOUT="3",
        JOURNEY_LLM_TOKEN_TIMEOUT="1",
        JOURNEY_LLM_MAX_RETRIES="0",
        JOURNEY_LLM_STAGE_TIMEOUT="1",
    )
    yield server
    server.stop()


PG_HOST = "127.0.0.1:5432"


def _pg_admin_url() -> str | None:
    """A URL to the `test` database on the local PostgreSQL, or None when it is unreachable."""
    import psycopg

    for user in ("postgres", "root"):
        url = f"postgresql://{user}@{PG_HOST}/test"
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.Error:
            continue
        return url
    return None


def skip_or_fail(reason: str) -> None:
    """Skip the calling test because a service is missing, or fail it when JOURNEY_REQUIRE_SERVICES=1 (CI)."""
    if os.environ.get("JOURNEY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; JOURNEY_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def local_redis_url(db: int) -> str:
    """The local Redis at database number `db` (one per test module), or skip / fail when it is not running."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        skip_or_fail("Redis on 127.0.0.1:6379 is not running")
    return f"redis://127.0.0.1:6379/{db}"


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """CREATE DATABASE journey_t_<random> on the local PostgreSQL; return its URL and a function that drops it.

    Skips the calling test when PostgreSQL is unreachable, or fails it when JOURNEY_REQUIRE_SERVICES=1.
    """
    import secrets

    import psycopg

    admin = _pg_admin_url()
    if admin is None:
        skip_or_fail(f"PostgreSQL on {PG_HOST} (database `test`, trust auth, user postgres or root) is unreachable")
    name = f"journey_t_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as con:
        con.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return admin.rsplit("/", 1)[0] + f"/{name}", drop


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end.

    Yields `postgresql://user@127.0.0.1:5432/journey_t_<random>`: usable as JOURNEY_DATABASE_URL (the app turns it
    into `postgresql+psycopg://`) and by `psycopg.connect`. Skips without PostgreSQL unless JOURNEY_REQUIRE_SERVICES=1.
    """
    url, drop = create_pg_database()
    yield url
    drop()


# ---- the browser tests' shared fixtures (tests/chromium.py, tests/widget_page.py) ----


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module (skipped without it, unless JOURNEY_REQUIRE_SERVICES=1)."""
    from chromium import launch

    yield from launch()


@pytest.fixture()
def widget(browser):
    """A fresh desktop browser context (own storage) with a Widget helper on its page."""
    from widget_page import desktop_widget

    yield from desktop_widget(browser)


@pytest.fixture()
def site(tmp_path: Path):
    """A customer's website on its own origin."""
    from widget_page import serve_site

    yield from serve_site(tmp_path)
