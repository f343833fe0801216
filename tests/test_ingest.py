"""Ingestion is repeatable: changed documents are replaced, vanished ones removed, unchanged ones not re-embedded."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, base_env, run_cli

from app.config import Settings
from app.embeddings import LocalMiniLMEmbeddings
from app.kb.documents import DocumentError, load_folder, parse_document
from app.state import build_knowledge_base

DOC = """---
title: {title}
stages: [decision]
url: https://www.example.test/{name}
questions:
  - What does {name} cost?
---
## Price
The {name} plan costs {price} per month.

## Details
{name} includes unlimited widgets.
"""


class CountingEmbeddings(LocalMiniLMEmbeddings):
    """The real local model, counting how many texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded += len(texts)
        return super().embed_documents(texts)


def write(folder: Path, name: str, price: str) -> None:
    (folder / f"{name}.md").write_text(DOC.format(title=name.title(), name=name, price=price))


def stored(kb) -> dict[str, str]:
    got = kb._collection.get(include=["documents", "metadatas"])
    return {i: d for i, d in zip(got["ids"], got["documents"], strict=True)}


@pytest.fixture(scope="module")
def embeddings() -> CountingEmbeddings:
    return CountingEmbeddings()


def test_reingest_replaces_removes_and_skips(tmp_path, embeddings):
    docs_dir = tmp_path / "docs"
    (docs_dir / "plans").mkdir(parents=True)
    write(docs_dir / "plans", "basic", "$5")
    write(docs_dir / "plans", "premium", "$50")
    write(docs_dir, "gold", "$500")
    kb = build_knowledge_base(Settings(data_dir=tmp_path / "data"), embeddings)

    docs, errors = load_folder(docs_dir)
    report = kb.ingest(docs)
    assert errors == [] and sorted(report.added) == ["gold", "plans/basic", "plans/premium"]
    assert set(stored(kb)) == {
        "plans/basic#0",
        "plans/basic#1",
        "plans/premium#0",
        "plans/premium#1",
        "gold#0",
        "gold#1",
    }

    embeddings.embedded = 0
    report = kb.ingest(load_folder(docs_dir)[0])
    assert embeddings.embedded == 0, "unchanged documents must not be embedded again"
    assert len(report.unchanged) == 3 and not (report.added or report.updated or report.removed)

    write(docs_dir / "plans", "premium", "$60")
    (docs_dir / "gold.md").unlink()
    report = kb.ingest(load_folder(docs_dir)[0])
    assert report.updated == ["plans/premium"] and report.removed == ["gold"]
    # only the changed document: its 2 passages and the 4 units the offline composer scores (a heading and a sentence
    # per passage)
    assert embeddings.embedded == 2 + 4, "only the changed document's passages and units are embedded"
    units = kb._units.get(include=["metadatas"])["metadatas"]
    assert sorted(m["doc_id"] for m in units) == ["plans/basic"] * 4 + ["plans/premium"] * 4, "gold's units removed"
    texts = stored(kb)
    assert set(texts) == {"plans/basic#0", "plans/basic#1", "plans/premium#0", "plans/premium#1"}
    assert "The premium plan costs $60 per month." in texts["plans/premium#0"]
    assert not any("$50" in t for t in texts.values())

    hits = kb.search(embeddings.embed_query("premium price"), stage="decision", k=2, stage_boost=0.05)
    assert hits[0].doc_id == "plans/premium" and hits[0].url == "https://www.example.test/premium#price"


def test_bad_documents_are_reported_not_fatal(tmp_path):
    (tmp_path / "ok.md").write_text(DOC.format(title="Ok", name="ok", price="$1"))
    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    (tmp_path / "badstage.md").write_text("---\ntitle: X\nstages: [nirvana]\n---\nbody text\n")
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00garbage")
    docs, errors = load_folder(tmp_path, {"decision", "support"})
    assert [d.id for d in docs] == ["ok"]
    assert len(errors) == 3
    assert sorted(e.doc_id for e in errors) == ["badstage", "binary", "broken"]
    assert any("broken: front matter is not valid YAML" in str(e) for e in errors)
    assert any("unknown stage(s) ['nirvana']" in str(e) for e in errors)
    assert any("binary: not UTF-8" in str(e) for e in errors)


def test_headings_inside_code_fences_do_not_split():
    doc = parse_document("x", "---\ntitle: X\n---\n## Setup\nRun:\n```\n## not a heading\n```\nDone.\n")
    passages = doc.passages()
    assert len(passages) == 1 and "## not a heading" in passages[0].text
    with pytest.raises(DocumentError):
        parse_document("y", "---\nstages: 5\n---\ntext")


def test_cli_ingest_is_idempotent(tmp_path, stage_cache):
    """Documents re-ingested are replaced, skipped or removed, never duplicated (the data dir starts with the
    session's stage-detector cache: the labelled examples are not what this test is about)."""
    docs_dir = tmp_path / "docs"
    (docs_dir / "plans").mkdir(parents=True)
    write(docs_dir / "plans", "basic", "$5")
    write(docs_dir, "gold", "$500")
    env = base_env(stage_cache(tmp_path / "data"))
    first = run_cli("ingest", str(docs_dir), env=env)
    assert first.returncode == 0, first.stderr
    assert "added 2, updated 0, unchanged 0, removed 0, errors 0; embedded 4 passages" in first.stdout
    # the knowledge base's words are embedded by the ingest, not by the first visitor whose question lacks one
    assert "knowledge words: " in first.stdout and list((tmp_path / "data" / "cache").glob("kb-words-*.npy"))
    write(docs_dir, "gold", "$600")
    second = run_cli("ingest", str(docs_dir), env=env)
    assert "added 0, updated 1, unchanged 1, removed 0, errors 0; embedded 2 passages" in second.stdout
    (docs_dir / "gold.md").write_text("---\ntitle: [broken\n---\ntext")
    third = run_cli("ingest", str(docs_dir), env=env)
    assert "skipped gold: front matter is not valid YAML" in third.stderr
    assert "unchanged 1, removed 0, errors 1" in third.stdout, "a broken file keeps its earlier passages"
    (docs_dir / "gold.md").unlink()
    fourth = run_cli("ingest", str(docs_dir), env=env)
    assert "unchanged 1, removed 1, errors 0" in fourth.stdout
    missing = run_cli("ingest", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 2 and "knowledge folder not found" in missing.stderr


def test_demo_knowledge_base_is_ingested(ingested):
    count = len(list((REPO / "knowledge" / "docs").rglob("*.md")))
    env = base_env(ingested)
    again = run_cli("ingest", env=env)
    assert again.returncode == 0, again.stderr
    assert f"added 0, updated 0, unchanged {count}, removed 0, errors 0; embedded 0 passages" in again.stdout


def test_the_composer_s_unit_vectors_are_stored_at_ingestion_and_backfilled(tmp_path, embeddings):
    """Every sentence the offline composer may score has its vector from ingestion: a turn embeds only its question."""
    from app.answer.composer import split_units

    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    for name, price in [("basic", "$5"), ("premium", "$50")]:
        write(docs_dir, name, price)
    settings = Settings(data_dir=tmp_path / "data")
    kb = build_knowledge_base(settings, embeddings)
    kb.ingest(load_folder(docs_dir)[0])
    hits = kb.search(embeddings.embed_query("premium price"), stage=None, k=4, stage_boost=0.0)
    probes = [u.probe for u in split_units(hits)]
    known = kb.unit_vectors()
    assert probes and all(p in known for p in probes)
    for probe in probes:
        assert abs(float(known[probe] @ embeddings.embed_array([probe])[0]) - 1.0) < 1e-3

    kb._units.delete(where={"doc_id": "basic"})  # as if basic were stored before units were
    embeddings.embedded = 0
    report = kb.ingest(load_folder(docs_dir)[0])
    assert len(report.unchanged) == 2 and embeddings.embedded == 4, "only basic's four units are embedded"
    fresh = build_knowledge_base(settings, embeddings)  # another process sees them
    assert all(p in fresh.unit_vectors() for p in probes)
