"""The local embedding model: real all-MiniLM-L6-v2 int8 vectors."""

from __future__ import annotations

import numpy as np
import pytest

from app.config import Settings
from app.embeddings import LocalMiniLMEmbeddings, make_embeddings


@pytest.fixture(scope="module")
def model() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings()


def test_vectors_are_normalised_and_384_wide(model):
    vectors = model.embed_array(["How much does the Pro plan cost?", "hello"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_meaning_is_captured(model):
    query, near, far = model.embed_array(
        ["How much does the pro plan cost?", "Pricing of the Pro subscription", "My calendar sync is broken"]
    )
    assert query @ near > 0.6 > query @ far + 0.4


def test_batching_does_not_change_vectors(model):
    texts = ["short", "a much longer text about appointment reminders and deposits " * 6, "medium sized text"]
    together = model.embed_array(texts)
    alone = np.vstack([model.embed_array([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert model.embed_query(texts[0]) == pytest.approx(alone[0].tolist(), abs=1e-5)


def test_unknown_embedding_setting_is_refused():
    with pytest.raises(ValueError, match="JOURNEY_EMBEDDING_MODEL must be 'local' or 'openai:<model>'"):
        make_embeddings(Settings(embedding_model="bert"))


def test_openai_embeddings_through_a_compatible_server(fake_llm, tmp_path):
    from app.state import build_knowledge_base

    settings = Settings(
        data_dir=tmp_path,
        embedding_model="openai:text-embedding-3-small",
        openai_base_url=fake_llm.base_url,
        openai_api_key="test",
    )
    embeddings = make_embeddings(settings)
    assert embeddings.name == "openai-text-embedding-3-small"
    vectors = embeddings.embed_array(["pricing", "refunds"])
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fake_llm.embedding_requests[-1]["model"] == "text-embedding-3-small"
    kb = build_knowledge_base(settings, embeddings)
    assert kb.name == "journey-knowledge-openai-text-embedding-3-small"
