"""Hybrid retrieval: BM25 over the stored passages finds exact words the vectors miss, and follows other processes."""

from __future__ import annotations

import pytest

import app.kb.store as store
from app.config import Settings
from app.embeddings import LocalMiniLMEmbeddings
from app.kb.documents import parse_document
from app.kb.lexical import BM25Index, tokens
from app.state import build_knowledge_base

TOPICS = {
    "sync": "Calendar sync problems: reconnect your calendar when events stop appearing.",
    "billing": "Invoices are emailed each month; download receipts from the billing page.",
    "login": "Reset your password from the sign-in page; two-factor codes expire after 30 seconds.",
    "codes": "If the app shows QX7731 the connection to the payment provider was refused; reconnect Stripe.",
    "hours": "Set weekly working hours, breaks and holidays so clients only book free times.",
}


def doc(name: str, text: str):
    return parse_document(name, f"---\ntitle: {name.title()}\n---\n## {name.title()}\n{text}\n")


@pytest.fixture(scope="module")
def embeddings() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings()


def test_bm25_scores_rare_words_highest():
    index = BM25Index(["a", "b", "c"], ["the cat sat", "a rare zebra and a cat", "dogs and cats"])
    scores = index.scores("zebra cat")
    assert scores.argmax() == 1 and scores[2] == 0
    assert tokens("How do I reset MY password?") == ["reset", "password"]


def test_exact_terms_are_found_and_similarity_stays_cosine(tmp_path, embeddings, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    kb = build_knowledge_base(settings, embeddings)
    kb.ingest([doc(name, text) for name, text in TOPICS.items()])
    query = "what does QX7731 mean"
    vector = embeddings.embed_query(query)
    hybrid = kb.search(vector, stage=None, k=3, stage_boost=0.0, query_text=query)
    assert hybrid[0].doc_id == "codes"
    assert hybrid[0].score > hybrid[0].similarity and -1 <= hybrid[0].similarity <= 1

    monkeypatch.setattr(store, "LEXICAL_CHECK_SECONDS", 0.0)
    other = build_knowledge_base(settings, embeddings)  # another worker sharing the collection
    assert other.search(vector, stage=None, k=1, stage_boost=0.0, query_text=query)[0].doc_id == "codes"
    kb.ingest([doc(name, text) for name, text in TOPICS.items() if name != "codes"] + [doc("errors", TOPICS["codes"])])
    moved = other.search(vector, stage=None, k=1, stage_boost=0.0, query_text=query)
    assert moved[0].doc_id == "errors", "the other worker's lexical index follows the change"


def test_in_memory_search_ranks_like_chromas_query(tmp_path, embeddings):
    """The exact in-memory scan and Chroma's HNSW query (used above MEMORY_SEARCH_MAX passages) agree on the ranking."""
    settings = Settings(data_dir=tmp_path)
    memory = build_knowledge_base(settings, embeddings)
    memory.ingest([doc(name, text) for name, text in TOPICS.items()])
    chroma = build_knowledge_base(settings, embeddings)
    chroma.memory_search_max = 0  # every query goes to Chroma
    for query in ["my calendar stopped syncing", "where are my invoices", "what does QX7731 mean", "set holidays"]:
        vector = embeddings.embed_query(query)
        for text in (None, query):
            a = memory.search(vector, stage=None, k=5, stage_boost=0.0, query_text=text)
            b = chroma.search(vector, stage=None, k=5, stage_boost=0.0, query_text=text)
            assert [h.id for h in a] == [h.id for h in b]
            assert [round(h.similarity, 4) for h in a] == [round(h.similarity, 4) for h in b]
