"""The local embedding model: real all-MiniLM-L6-v2 int8 vectors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.config import Settings
from app.embeddings import LocalMiniLMEmbeddings, _model_files, make_embeddings
from app.quantized import cached_name, quantized_model

REPO = Path(__file__).resolve().parent.parent


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
    with pytest.raises(ValueError, match="JOURNEY_EMBEDDING_MODEL must be 'local', 'local-int8q' or 'openai:<model>'"):
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


QUANTIZED_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}


@pytest.fixture(scope="module")
def quantized_data_dir(tmp_path_factory) -> Path:
    """A data dir whose cache holds the int8q model, built once for the module."""
    data_dir = tmp_path_factory.mktemp("quantized")
    quantized_model(_model_files()[0], data_dir / "cache")
    return data_dir


def test_quantized_model_is_built_once_and_reused(quantized_data_dir):
    cache = quantized_data_dir / "cache"
    (built,) = cache.glob("*.onnx")
    assert built.name == cached_name(_model_files()[0]) and built.name.startswith("minilm-l6-int8q-")
    before = built.stat()
    assert quantized_model(_model_files()[0], cache) == built
    after = built.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in cache.iterdir()) == sorted([built.name, built.with_suffix(".lock").name])
    ops = {node.op_type for node in onnx.load(str(built)).graph.node}
    assert QUANTIZED_OPS & ops, f"no int8 compute in the derived model: {sorted(ops)}"


def test_quantized_vectors_stay_close_to_the_packaged_models(model, quantized_data_dir):
    embeddings = make_embeddings(Settings(data_dir=quantized_data_dir, embedding_model="local-int8q"))
    assert embeddings.name == "minilm-l6-int8q"
    texts = [
        "How much does the pro plan cost?",
        "my google calendar stopped syncing since yesterday",
        "can i get a refund on my annual plan",
        "hello",
        "Deposits and no-show fees\nYou can ask clients for a deposit when they book; it is kept if they do not come.",
    ]
    cosine = (embeddings.embed_array(texts) * model.embed_array(texts)).sum(axis=1)
    assert cosine.min() >= 0.98 and cosine.mean() >= 0.99, cosine
    assert cosine.min() < 0.99999, "the derived model gives the packaged model's vectors: it was not used"


def test_the_int8q_model_gets_its_own_collection_and_the_packaged_one_keeps_its_own(quantized_data_dir):
    from app.state import build_knowledge_base

    settings = Settings(data_dir=quantized_data_dir, embedding_model="local-int8q")
    assert build_knowledge_base(settings, make_embeddings(settings)).name == "journey-knowledge-minilm-l6-int8q"
    packaged = make_embeddings(Settings(data_dir=quantized_data_dir))  # the default: the packaged model as it is
    assert build_knowledge_base(settings, packaged).name == "journey-knowledge-minilm-l6-int8"


def test_concurrent_builders_make_one_whole_model(quantized_data_dir, tmp_path):
    script = (
        "import sys; from pathlib import Path; from app.embeddings import _model_files; "
        "from app.quantized import quantized_model; print(quantized_model(_model_files()[0], Path(sys.argv[1])))"
    )
    cache = tmp_path / "cache"
    builders = [
        subprocess.Popen([sys.executable, "-c", script, str(cache)], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(2)
    ]
    paths = {builder.communicate(timeout=300)[0].strip() for builder in builders}
    assert all(builder.returncode == 0 for builder in builders)
    (built,) = cache.glob("*.onnx")
    assert paths == {str(built)}
    reference = next((quantized_data_dir / "cache").glob("*.onnx"))
    assert built.read_bytes() == reference.read_bytes(), "the derived model differs from one built alone"
