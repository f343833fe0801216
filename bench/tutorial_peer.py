"""The RAG server a LangChain tutorial gives, as the peer of bench/peer_compare.py.

FastAPI + `langchain-chroma` + `ChatOpenAI`: the knowledge documents split into passages, `Chroma.from_documents`,
a retriever, the tutorial's prompt and one LLM call a turn. No journey stage, no touchpoint log, no conversation.
It embeds with Journey Guide's own embedder (app/embeddings.py), and its passages are the ones `journey ingest`
stores (the same documents split the same way), so both servers retrieve from the same texts with the same vectors.

    .venv/bin/python bench/tutorial_peer.py --port 8100 --llm-base-url http://127.0.0.1:9000/v1 [--vectors-from DATA]

`POST /chat` `{"message": "..."}` -> `{"reply", "sources"}`; `POST /chat/stream` -> SSE events `token`
(`{"text"}`) then `done` (the same object as /chat). `GET /health` answers once the index is built.
Needs the bench extra: `pip install -e ".[bench]"` (langchain-chroma).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from app.embeddings import LocalMiniLMEmbeddings
from app.kb.documents import load_folder

REPO = Path(__file__).resolve().parent.parent
# The prompt of LangChain's RAG tutorial (the hub's rlm/rag-prompt).
PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "human",
            "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to "
            "answer the question. If you don't know the answer, just say that you don't know. Use three sentences "
            "maximum and keep the answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:",
        )
    ]
)
STORED_COLLECTION = "journey-knowledge-minilm-l6-int8"  # where `journey ingest` keeps the passages (app/state.py)


class Ask(BaseModel):
    """A question."""

    message: str = Field(min_length=1, max_length=4000)


class StoredVectors(Embeddings):
    """Our embedder, handing back the vectors `journey ingest` already stored for the same passage texts.

    Building the index is not what the benchmark measures, and recomputing 280 identical vectors costs ~20 s of CPU on
    a shared 2-core machine. Queries are always embedded afresh; a text the store lacks is embedded too.
    """

    def __init__(self, inner: LocalMiniLMEmbeddings, known: dict[str, list[float]]) -> None:
        self.inner = inner
        self.known = known

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Stored vectors where there are, computed ones for the rest."""
        missing = [t for t in texts if t not in self.known]
        fresh = dict(zip(missing, self.inner.embed_documents(missing), strict=True)) if missing else {}
        return [self.known[t] if t in self.known else fresh[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a question with the model."""
        return self.inner.embed_query(text)


def passages(knowledge: Path) -> list[Document]:
    """The knowledge folder's documents split into passages as `journey ingest` splits them (headings, then size)."""
    docs, errors = load_folder(knowledge)
    if errors:
        raise SystemExit(f"knowledge folder has errors: {errors}")
    return [
        Document(
            page_content=p.embedding_text(),
            metadata={"id": p.id, "title": p.title, "url": p.url},
            id=p.id,
        )
        for doc in docs
        for p in doc.passages()
    ]


def stored_vectors(data_dir: Path, documents: list[Document], embedder: LocalMiniLMEmbeddings) -> dict[str, list]:
    """Passage text -> the vector `journey ingest` stored in data_dir, checked against the model on a few passages."""
    import chromadb

    collection = chromadb.PersistentClient(path=str(data_dir / "chroma")).get_collection(STORED_COLLECTION)
    got = collection.get(ids=[d.id for d in documents], include=["embeddings"])
    by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
    known = {d.page_content: list(map(float, by_id[d.id])) for d in documents if d.id in by_id}
    sample = list(known)[:3]
    for text, vector in zip(sample, embedder.embed_documents(sample), strict=True):
        if float(np.dot(vector, known[text])) < 0.999:
            raise SystemExit(f"{data_dir}: stored vectors differ from the model's; build without --vectors-from")
    return known


def create_app(
    *, llm_base_url: str, model: str, knowledge: Path, vectors_from: Path | None, index_dir: Path
) -> FastAPI:
    """Index the knowledge (Chroma.from_documents), then serve /chat and /chat/stream."""
    embedder = LocalMiniLMEmbeddings()
    documents = passages(knowledge)
    embeddings = (
        StoredVectors(embedder, stored_vectors(vectors_from, documents, embedder)) if vectors_from else embedder
    )
    store = Chroma.from_documents(
        documents,
        embedding=embeddings,
        ids=[d.id for d in documents],
        persist_directory=str(index_dir),
        collection_name="tutorial",
    )
    retriever = store.as_retriever(search_kwargs={"k": 4})
    llm = ChatOpenAI(model=model, base_url=llm_base_url, api_key="bench", timeout=20, max_retries=0)
    chain = PROMPT | llm | StrOutputParser()
    app = FastAPI(title="LangChain tutorial RAG peer")

    async def retrieve(question: str) -> tuple[dict, list[dict]]:
        docs = await retriever.ainvoke(question)
        context = "\n\n".join(d.page_content for d in docs)
        sources = [{"id": d.metadata["id"], "title": d.metadata["title"], "url": d.metadata["url"]} for d in docs]
        return {"question": question, "context": context}, sources

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "passages": len(documents)}

    @app.post("/chat")
    async def chat(ask: Ask) -> dict:
        inputs, sources = await retrieve(ask.message)
        return {"reply": await chain.ainvoke(inputs), "sources": sources}

    @app.post("/chat/stream")
    async def chat_stream(ask: Ask) -> EventSourceResponse:
        async def events():
            inputs, sources = await retrieve(ask.message)
            reply = []
            async for piece in chain.astream(inputs):
                if not piece:  # the first and last chunks of an OpenAI stream carry no text
                    continue
                reply.append(piece)
                yield {"event": "token", "data": json.dumps({"text": piece})}
            yield {"event": "done", "data": json.dumps({"reply": "".join(reply), "sources": sources})}

        return EventSourceResponse(events())

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm-base-url", required=True, help="an OpenAI-compatible server, e.g. tests/fake_llm.py")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--knowledge", type=Path, default=REPO / "knowledge" / "docs")
    parser.add_argument("--vectors-from", type=Path, help="a Journey Guide data dir whose ingested vectors to reuse")
    parser.add_argument("--index-dir", type=Path, help="where Chroma keeps the index (default: a fresh temp dir)")
    args = parser.parse_args()
    index_dir = args.index_dir or Path(tempfile.mkdtemp(prefix="tutorial-peer-"))
    app = create_app(
        llm_base_url=args.llm_base_url,
        model=args.model,
        knowledge=args.knowledge,
        vectors_from=args.vectors_from,
        index_dir=index_dir,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
