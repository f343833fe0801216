"""`journey chat` (against a server and in-process) and `journey export`, run as a user would."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import httpx
from conftest import REPO, base_env, run_cli

PRICING = "How much does the pro plan cost?"


def chat_cli(*args: str, stdin: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", "chat", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_chat_with_a_running_server_keeps_the_conversation(offline_server):
    env = base_env(offline_server.data_dir)
    stdin = f"{PRICING}\nok thanks\n/new\nWhat is Lumio?\n"
    result = chat_cli("--url", offline_server.url, "--json", stdin=stdin, env=env)
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(replies) == 3
    assert "$29" in replies[0]["reply"] and replies[0]["stage"]["name"] == "decision"
    assert replies[1]["conversation_id"] == replies[0]["conversation_id"]
    assert replies[2]["conversation_id"] != replies[0]["conversation_id"], "/new starts a new conversation"
    assert len({r["visitor_id"] for r in replies}) == 1
    assert [t["turn"] for t in offline_server.touchpoints(conversation_id=replies[0]["conversation_id"])] == [1, 2]


def test_chat_prints_the_streamed_reply_with_stage_and_sources(offline_server):
    result = chat_cli("--url", offline_server.url, stdin=PRICING + "\n", env=base_env(offline_server.data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("guide> ") and "$29" in result.stdout
    assert "[decision " in result.stdout and "[1] " in result.stdout and "https://" in result.stdout


def test_chat_reports_an_unreachable_server(tmp_path):
    result = chat_cli("--url", "http://127.0.0.1:9", stdin="hello\n", env=base_env(tmp_path))
    assert result.returncode == 1
    assert "error: cannot talk to http://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr


def test_chat_in_process(make_data_dir):
    data_dir = make_data_dir()
    result = chat_cli("--json", stdin=f"{PRICING}\n", env=base_env(data_dir))
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.splitlines()[-1])
    assert "$29" in reply["reply"] and reply["outcome"] == "ok"
    export = run_cli("export", env=base_env(data_dir))
    assert [json.loads(line)["id"] for line in export.stdout.splitlines()] == [reply["message_id"]]


def test_export_csv_and_jsonl(offline_server, tmp_path):
    body = {"message": "Is there a discount for paying yearly?"}
    mid = httpx.post(f"{offline_server.url}/v1/chat", json=body, timeout=60).json()["message_id"]
    env = base_env(offline_server.data_dir)
    as_csv = run_cli("export", "--format", "csv", env=env)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    mine = [r for r in rows if r["id"] == mid]
    assert len(mine) == 1 and mine[0]["question"] == body["message"] and mine[0]["kind"] == "exchange"
    assert json.loads(mine[0]["sources"])[0]["id"]
    target = tmp_path / "touchpoints.jsonl"
    as_jsonl = run_cli("export", "--since", "2000-01-01", "--output", str(target), env=env)
    assert as_jsonl.returncode == 0 and as_jsonl.stdout == ""
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == len(rows) and mid in {line["id"] for line in lines}
    assert run_cli("export", "--since", "2999-01-01", env=env).stdout == ""
    assert run_cli("export", "--format", "xml", env=env).returncode == 2


def test_cli_csv_export_neutralises_formula_cells(offline_server):
    sent = {}
    for message in ("@SUM(1+1) is that the price?", "+cmd|' /C calc'!A0"):
        reply = httpx.post(f"{offline_server.url}/v1/chat", json={"message": message}, timeout=60).json()
        sent[reply["message_id"]] = message
    result = run_cli("export", "--format", "csv", env=base_env(offline_server.data_dir))
    questions = {r["id"]: r["question"] for r in csv.DictReader(io.StringIO(result.stdout)) if r["id"] in sent}
    assert questions == {mid: "'" + message for mid, message in sent.items()}
