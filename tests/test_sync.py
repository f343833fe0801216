"""`journey ingest` on a site and a folder side by side: re-sync, dry run, assigned stages; `journey eval-retrieval`."""

from __future__ import annotations

import json
import re

from conftest import REPO, base_env, run_cli
from site_server import Site, page

DOC = "---\ntitle: Widgets\nstages: [support]\n---\n## Fixing widgets\nTurn the widget off and on again.\n"


def listing(env) -> dict[str, dict]:
    result = run_cli("docs", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {d["id"]: d for d in json.loads(result.stdout)}


def test_site_and_folder_sync_side_by_side(tmp_path, stage_cache):
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    (docs_dir / "widgets.md").write_text(DOC)
    env = base_env(stage_cache(tmp_path / "data"), JOURNEY_CRAWL_ALLOW_HOSTS="127.0.0.1")
    with Site() as site:
        host = f"web/127.0.0.1_{site.port}"
        sitemap = f"{site.url}/sitemap.xml"
        assert run_cli("ingest", str(docs_dir), env=env).returncode == 0

        refused = run_cli("ingest", sitemap, env=base_env(tmp_path / "data"))
        assert refused.returncode == 2 and "refused: 127.0.0.1 resolves to 127.0.0.1" in refused.stderr
        assert site.requested == []

        first = run_cli("ingest", sitemap, env=env)
        assert first.returncode == 0, first.stderr
        assert "added 4, updated 0, unchanged 0, removed 0, errors 2" in first.stdout
        assert f"skipped {host}/broken: HTTP 500" in first.stderr
        assert "private/secret: disallowed by robots.txt" in first.stderr
        docs = listing(env)
        assert "widgets" in docs, "the folder's documents live beside the site's"
        assert docs[f"{host}/pricing"]["stages"] == ["decision"] and not docs[f"{host}/pricing"]["stages_assigned"]
        assigned = docs[f"{host}/help"]
        assert assigned["stages_assigned"] and assigned["source"] == f"web:{sitemap}"
        assert 0 < assigned["stage_confidence"] <= 1 and 1 <= len(assigned["stages"]) <= 2
        assert docs[f"{host}/guide.pdf"]["stages_assigned"]

        site.routes["/pricing"] = (
            200,
            "text/html",
            page("Pricing", '<h2 id="team-plan">Team plan</h2><p>The Team plan now costs $24 per agent.</p>'),
            {},
        )
        del site.routes["/help"]  # /old-help now redirects to a page that is gone
        site.routes["/guide.pdf"] = (503, "text/plain", b"try later", {})  # failing: keeps its passages

        dry = run_cli("ingest", sitemap, "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert f"  ~ {host}/pricing" in dry.stdout and f"  - {host}/help" in dry.stdout
        assert "dry run, nothing written: would have added 0, updated 1, unchanged 1, removed 1, errors 3" in dry.stdout
        assert listing(env) == docs, "a dry run changes nothing"

        second = run_cli("ingest", sitemap, env=env)
        assert "added 0, updated 1, unchanged 1, removed 1, errors 3; embedded 1 passages" in second.stdout
        third = run_cli("ingest", sitemap, env=env)
        assert "added 0, updated 0, unchanged 2, removed 0, errors 3; embedded 0 passages" in third.stdout
        after = listing(env)
        assert f"{host}/help" not in after and f"{host}/guide.pdf" in after and "widgets" in after

        again = run_cli("ingest", str(docs_dir), env=env)
        assert "added 0, updated 0, unchanged 1, removed 0, errors 0" in again.stdout
        assert f"{host}/pricing" in listing(env), "syncing the folder leaves the site's documents alone"


def _doc(title: str) -> str:
    return f"---\ntitle: {title}\nstages: [support]\n---\n## About {title}\n{title} is explained here.\n"


def test_a_second_folder_lives_beside_the_first(tmp_path, stage_cache):
    first, second = tmp_path / "docs", tmp_path / "help-export"
    for folder, names in ((first, ["widgets", "gadgets"]), (second, ["billing", "widgets"])):
        folder.mkdir()
        for name in names:
            (folder / f"{name}.md").write_text(_doc(f"{folder.name} {name}"))
    env = base_env(stage_cache(tmp_path / "data"))
    assert "added 2, updated 0, unchanged 0, removed 0, errors 0" in run_cli("ingest", str(first), env=env).stdout

    beside = run_cli("ingest", str(second), env=env)
    assert "added 1, updated 0, unchanged 0, removed 0, errors 1" in beside.stdout, beside.stdout
    assert f"widgets: a document with this id is already stored from {first.resolve()}" in beside.stderr
    docs = listing(env)
    assert {d: docs[d]["source"] for d in docs} == {
        "widgets": str(first.resolve()),
        "gadgets": str(first.resolve()),
        "billing": str(second.resolve()),
    }
    assert docs["widgets"]["title"] == "docs widgets", "the first folder's document is not overwritten"

    (second / "billing.md").unlink()
    again = run_cli("ingest", str(second), env=env)
    assert "removed 1" in again.stdout and set(listing(env)) == {"widgets", "gadgets"}
    assert "unchanged 2, removed 0" in run_cli("ingest", str(first / ".." / "docs"), env=env).stdout, "same folder"


def test_documents_ingested_under_the_old_folder_source_are_adopted_by_their_folder(tmp_path, stage_cache):
    from app.config import Settings
    from app.kb.documents import load_folder
    from app.state import build_knowledge_base

    old, other = tmp_path / "docs", tmp_path / "other"
    old.mkdir(), other.mkdir()
    for name in ("widgets", "gadgets", "gizmos"):
        (old / f"{name}.md").write_text(_doc(name))
    (other / "billing.md").write_text(_doc("billing"))
    (other / "widgets.md").write_text(_doc("widgets"))  # shares one id with the old folder: not enough to adopt
    kb = build_knowledge_base(Settings(data_dir=stage_cache(tmp_path / "data")))
    kb.ingest(load_folder(old)[0])  # as every folder was stored before: source "folder"
    env = base_env(tmp_path / "data")
    assert {d["source"] for d in listing(env).values()} == {"folder"}

    beside = run_cli("ingest", str(other), env=env)
    assert "added 1, updated 0, unchanged 0, removed 0, errors 1" in beside.stdout, beside.stdout
    assert listing(env)["gadgets"]["source"] == "folder", "another folder leaves the old documents alone"

    (old / "gizmos.md").unlink()
    adopted = run_cli("ingest", str(old), env=env)
    assert "added 0, updated 0, unchanged 2, removed 1, errors 0; embedded 0 passages" in adopted.stdout
    docs = listing(env)
    assert {d: docs[d]["source"] for d in docs} == {
        "widgets": str(old.resolve()),
        "gadgets": str(old.resolve()),
        "billing": str(other.resolve()),
    }


def test_eval_retrieval_prints_figures(ingested, tmp_path):
    env = base_env(ingested)
    result = run_cli("eval-retrieval", str(REPO / "evals" / "retrieval_dev.jsonl"), env=env)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"recall@3: (0\.\d{3}|1\.000) \(n=(\d+)\)", last)
    assert match, last
    assert int(match.group(2)) >= 80 and float(match.group(1)) >= 0.95
    assert re.search(r"^recall@1: \d\.\d{3}$", result.stdout, re.MULTILINE)
    assert re.search(r"^MRR: \d\.\d{3}$", result.stdout, re.MULTILINE)

    small = tmp_path / "small.jsonl"
    small.write_text(
        json.dumps({"question": "How much does the Pro plan cost?", "expected": ["knowledge/docs/pricing/plans.md"]})
        + "\n"
        + json.dumps({"question": "my card was declined", "expected": ["nowhere/else"]})
        + "\n"
    )
    figures = json.loads(run_cli("eval-retrieval", str(small), "--json", env=env).stdout)
    assert figures["n"] == 2 and figures["recall@3"] == 0.5 and figures["recall@1"] == 0.5
    assert [m["question"] for m in figures["misses"]] == ["my card was declined"]

    small.write_text('{"question": "x"}\n')
    bad = run_cli("eval-retrieval", str(small), env=env)
    assert bad.returncode == 2 and "small.jsonl:1: 'expected' must be a list" in bad.stderr
