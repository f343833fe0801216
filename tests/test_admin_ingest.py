"""The admin ingestion API through real HTTP: roles, refusals, a background crawl with progress, review listing."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import REPO, Server
from site_server import Site

from app.config import Settings
from app.staff.auth import create_token
from app.store.db import make_engine, make_sessionmaker


@pytest.fixture(scope="module")
def admin(make_data_dir):
    data_dir = make_data_dir()
    engine = make_engine(Settings(data_dir=data_dir))
    with make_sessionmaker(engine)() as session:
        tokens = {r: create_token(session=session, name=f"{r}@x.example", role=r)[1] for r in ("viewer", "admin")}
    engine.dispose()
    with Site() as site:
        server = Server(data_dir, JOURNEY_CRAWL_ALLOW_HOSTS="127.0.0.1")
        yield server, tokens, site
        server.stop()


def call(server, token, method, path, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{server.url}/v1/admin{path}", headers=headers, timeout=30, **kwargs)


def wait_done(server, token, job_id: str) -> dict:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = call(server, token, "GET", f"/ingest/{job_id}").json()
        if job["done"]:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_ingest_needs_the_admin_role(admin):
    server, tokens, site = admin
    body = {"url": f"{site.url}/sitemap.xml"}
    assert call(server, None, "POST", "/ingest", json=body).status_code == 401
    refused = call(server, tokens["viewer"], "POST", "/ingest", json=body)
    assert refused.status_code == 403 and "admin role" in refused.json()["detail"]
    assert call(server, tokens["viewer"], "GET", "/ingest/nope").status_code == 403
    assert site.requested == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "refused: 169.254.169.254"),
        ({"url": "http://10.0.0.1/"}, "refused: 10.0.0.1"),
        ({"url": "http://localhost:9/"}, "refused: localhost"),
        ({"url": "file:///etc/passwd"}, "must start with http"),
        ({"path": "../../../etc"}, "must stay inside the ingest folder"),
        ({"path": "/etc"}, "must stay inside the ingest folder"),
        ({"path": "docs", "url": "https://example.com/"}, "either url or path"),
    ],
)
def test_unsafe_targets_are_refused(admin, body, message):
    server, tokens, _ = admin
    response = call(server, tokens["admin"], "POST", "/ingest", json=body)
    assert response.status_code == 422 and message in response.json()["error"], response.text


def test_crawl_job_reports_progress_and_the_site_becomes_citable(admin):
    server, tokens, site = admin
    host = f"web/127.0.0.1_{site.port}"
    started = call(server, tokens["admin"], "POST", "/ingest", json={"url": f"{site.url}/sitemap.xml"})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] in {"queued", "running"} and job["target"] == f"{site.url}/sitemap.xml"
    job = wait_done(server, tokens["admin"], job["job_id"])
    assert job["status"] == "done", job
    assert sorted(job["report"]["added"]) == sorted(f"{host}/{p}" for p in ("index", "pricing", "help", "guide.pdf"))
    assert job["progress"]["processed"] == 4 and job["progress"]["seen"] >= 6
    assert any("HTTP 500" in e for e in job["errors"]) and any("robots.txt" in s for s in job["skipped"])
    assert job["source"] == f"web:{site.url}/sitemap.xml"
    listed = call(server, tokens["admin"], "GET", "/ingest").json()["jobs"]
    assert listed[0]["job_id"] == job["job_id"]

    web = call(server, tokens["viewer"], "GET", "/knowledge", params={"source": job["source"]}).json()["documents"]
    assert {d["id"] for d in web} == set(job["report"]["added"])
    every = call(server, tokens["viewer"], "GET", "/knowledge").json()["documents"]
    demo = str(REPO / "knowledge" / "docs")
    assert any(d["id"] == "pricing/plans" and d["source"] == demo for d in every), "the demo documents stay"
    assigned = call(server, tokens["viewer"], "GET", "/knowledge", params={"assigned": "true"}).json()["documents"]
    assert {d["id"] for d in assigned} == {f"{host}/index", f"{host}/help", f"{host}/guide.pdf"}

    reply = httpx.post(
        f"{server.url}/v1/chat", json={"message": "How much is the Brightdesk Team plan per agent?"}, timeout=30
    ).json()
    assert f"{site.url}/pricing#team-plan" in [s["url"] for s in reply["sources"]], reply["sources"]


def test_dry_run_job_on_the_demo_folder(admin):
    server, tokens, _ = admin
    started = call(server, tokens["admin"], "POST", "/ingest", json={"path": "docs", "dry_run": True})
    assert started.status_code == 202, started.text
    job = wait_done(server, tokens["admin"], started.json()["job_id"])
    assert job["status"] == "done" and job["dry_run"] and job["report"]["dry_run"]
    assert job["report"]["added"] == [] and job["report"]["removed"] == [] and job["report"]["unchanged"] >= 40
    assert job["message"].startswith("dry run, nothing written")
    assert call(server, tokens["admin"], "GET", "/ingest/not-a-job").status_code == 404
