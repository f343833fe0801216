"""Messages of concurrent turns are embedded together, with the same vectors as one at a time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.embeddings import EmbeddingBatcher, LocalMiniLMEmbeddings, VectorCache

QUESTIONS = [f"How do I connect calendar number {i} to my account?" for i in range(24)]


class CountingModel:
    """The real local model, counting how many calls reach it and how many texts each carried."""

    def __init__(self, model: LocalMiniLMEmbeddings, fail: bool = False) -> None:
        self.model = model
        self.calls: list[int] = []
        self.fail = fail

    def embed_array(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        if self.fail:
            raise RuntimeError("model broke")
        return self.model.embed_array(texts)


@pytest.fixture(scope="module")
def model() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings()


def test_concurrent_messages_share_model_calls_and_get_their_own_vectors(model):
    counting = CountingModel(model)
    batcher = EmbeddingBatcher(VectorCache(counting))

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.embed(q) for q in QUESTIONS))

    vectors = asyncio.run(main())
    assert sum(counting.calls) == len(QUESTIONS)
    assert len(counting.calls) < len(QUESTIONS) / 4, counting.calls  # the first alone, then the rest together
    for question, vector in zip(QUESTIONS, vectors, strict=True):
        assert np.allclose(vector, model.embed_array([question])[0], atol=1e-4)
    calls = len(counting.calls)
    again = asyncio.run(batcher.embed(QUESTIONS[3]))  # recently seen: from the cache, no model call
    assert len(counting.calls) == calls and np.array_equal(again, vectors[3])


def test_a_model_error_reaches_every_waiting_turn_and_the_next_turn_works(model):
    counting = CountingModel(model, fail=True)
    batcher = EmbeddingBatcher(VectorCache(counting))

    async def main() -> list:
        return await asyncio.gather(*(batcher.embed(q) for q in QUESTIONS[:6]), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "model broke" in str(r) for r in results)
    counting.fail = False
    assert np.allclose(asyncio.run(batcher.embed(QUESTIONS[0])), model.embed_array([QUESTIONS[0]])[0], atol=1e-4)


def test_a_cancelled_turn_does_not_hold_up_the_others(model):
    batcher = EmbeddingBatcher(VectorCache(CountingModel(model)))

    async def main() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.embed("a message whose visitor leaves"))
        others = [asyncio.ensure_future(batcher.embed(q)) for q in QUESTIONS[:5]]
        await asyncio.sleep(0)
        first.cancel()
        return await asyncio.wait_for(asyncio.gather(*others), 30)

    assert len(asyncio.run(main())) == 5
