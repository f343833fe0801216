"""One visitor turn: stage -> retrieval -> answer -> touchpoint, as a stream of events."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, field, replace
from urllib.parse import urlparse

import anyio
import numpy as np
from anyio import to_thread

from app.answer.chat_model import ChatModelAnswerer
from app.answer.followup import resolve
from app.answer.llm import LLMAnswerer, LLMFailure
from app.answer.offline import OfflineReply, Tone, decline_text, frustrated, offline_reply
from app.answer.prompts import (
    NO_ANSWER,
    format_docs,
    is_no_answer,
    may_be_no_answer,
    neutralise,
    render,
    stage_prompt,
    strip_citations,
)
from app.answer.question import classify, read_question
from app.answer.suggestions import candidate_questions, pick_suggestions
from app.chat.schemas import ChatRequest
from app.config import Settings
from app.embeddings import EmbeddingBatcher, VectorCache
from app.kb.store import Hit, KnowledgeBase, by_document
from app.security.output import leaks_prompt, sanitize_reply
from app.security.redact import redact
from app.staff.learning import CuratedMatch, Learning
from app.stages.config import JourneyConfig
from app.stages.detector import StageDetector, StageResult, StageSignals, StageVote
from app.stages.evidence import visitor_stage
from app.stages.llm import ChatModelStageClassifier, LLMStageClassifier, as_vote, wants_vote
from app.stages.passages import nearest
from app.store.service import ExchangeRecord, get_conversation, recent_turns, record_exchange
from app.store.spool import DATABASE_DOWN, read_or_spooled, spool_for

OFFLINE_MODEL = "offline-composer"
CURATED_MODEL = "staff-answer"
SNIPPET_CHARS = 240
WORD_CACHE = 20_000  # unknown words whose closest knowledge-base word is remembered
COMPOSER_PASSAGES = 8  # passages the offline composer reads (the LLM gets JOURNEY_RETRIEVAL_K of them)
_SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|hiya|good (morning|afternoon|evening)|thanks?( you)?|thank you( very much)?|ok(ay)?|"
    r"cool|great|cheers|bye|goodbye)\W*$",
    re.IGNORECASE,
)


def is_small_talk(message: str) -> bool:
    """Greetings, thanks and other messages with nothing to look up."""
    return bool(_SMALL_TALK.match(message))


_PIECE = re.compile(r"(?:\S+\s*){1,4}|\s+")  # a composed reply streams four words to a token event


def pieces(text: str) -> list[str]:
    """A reply that is already whole, in the pieces it is streamed in (they join back to the text exactly)."""
    return _PIECE.findall(text)


Event = tuple[str, dict]


class ConversationFull(Exception):
    """The conversation reached JOURNEY_MAX_TURNS; the visitor should start a new one."""


@dataclass(frozen=True)
class Query:
    """What a turn searches and answers: the message as corrected, with the question it leans on if a follow-up."""

    text: str
    asked: str  # the message alone, shorthand written out and misspellings corrected
    vector: np.ndarray
    topic: str | None = None


@dataclass
class Prepared:
    """A checked request with its conversation's history."""

    request: ChatRequest
    conversation_id: str
    visitor_id: str
    message_id: str
    history: list[tuple[str, str]]
    previous_stage: str | None
    started: float


@dataclass
class TurnState:
    """What a turn has produced so far (so a disconnect can still be recorded)."""

    stage: StageResult | None = None
    hits: list[Hit] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    reply: str = ""
    mode: str = "offline"
    model: str | None = OFFLINE_MODEL
    error: str | None = None
    data: dict | None = None
    top_similarity: float | None = None
    declined: bool = False  # the knowledge base does not cover the question: no sources, handoff no_answer
    recorded: bool = False


def _source(hit: Hit) -> dict:
    snippet = " ".join(hit.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
    return {"id": hit.doc_id, "title": hit.title, "url": hit.url, "snippet": snippet}


def new_id() -> str:
    """An unguessable id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class ChatService:
    """Runs visitor turns against the knowledge base, the stage detector and the touchpoint store."""

    def __init__(
        self,
        *,
        settings: Settings,
        journey: JourneyConfig,
        kb: KnowledgeBase,
        detector: StageDetector,
        sessions,
        llm: LLMAnswerer | ChatModelAnswerer | None,
        vectors: VectorCache | None = None,
        stage_llm: LLMStageClassifier | ChatModelStageClassifier | None = None,
        learning: Learning | None = None,
        guidance: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.journey = journey
        self.kb = kb
        self.detector = detector
        self.sessions = sessions
        self.llm = llm
        self.stage_llm = stage_llm
        self.learning = learning
        self.guidance = guidance or {}  # how the LLM answers at each stage (stages.yaml `guidance:`)
        self.vectors = vectors or VectorCache(kb.embeddings)
        self.batcher = EmbeddingBatcher(self.vectors)
        self.live = None  # the live handoff desk (app/live/desk.py), set by the app's lifespan
        self.spool = spool_for(settings.data_dir)
        self.open_turns = 0  # turns being answered or recorded now; shutdown waits for them (drain)
        # SQLite takes one writer at a time and makes the others sleep and retry (1, 2, 5, 10... ms): this process's
        # turns queue for the write here instead, and are written back to back
        self._writing = threading.Lock() if settings.sqlalchemy_url.startswith("sqlite") else nullcontext()
        self._word_similarity: tuple[object, dict[str, float]] = (None, {})  # word -> closest KB word's similarity
        self.turns_recorded = 0  # touchpoints this process wrote (app/observability/memory.py trims after a burst)

    def _history(self, request: ChatRequest) -> tuple[str | None, list[tuple[str, str]]]:
        with self.sessions() as session:
            conversation = get_conversation(
                session=session, conversation_id=request.conversation_id, visitor_id=request.visitor_id
            )
            if conversation.turns >= self.settings.max_turns:
                raise ConversationFull(self.settings.max_turns)
            turns = recent_turns(session=session, conversation_id=conversation.id)
            return conversation.stage, [(t.question, t.reply) for t in turns]

    def _load(self, request: ChatRequest) -> Prepared:
        visitor_id = request.visitor_id
        history: list[tuple[str, str]] = []
        previous_stage = None
        if request.conversation_id:  # the database down: no history (see app/store/spool.py)
            previous_stage, history = read_or_spooled(
                lambda: self._history(request), spool=self.spool, sessions=self.sessions, fallback=(None, [])
            )
        return Prepared(
            request=request,
            conversation_id=request.conversation_id or new_id(),
            visitor_id=visitor_id or new_id(),
            message_id=new_id(),
            history=history,
            previous_stage=previous_stage,
            started=time.perf_counter(),
        )

    async def prepare(self, request: ChatRequest) -> Prepared:
        """Check the conversation belongs to the visitor and load its recent turns (ConversationNotFound if not)."""
        if not request.conversation_id:  # a new conversation: nothing to read
            return self._load(request)
        return await to_thread.run_sync(self._load, request)

    def _signals(self, p: Prepared) -> StageSignals:
        request = p.request
        page = request.page
        return StageSignals(
            message=request.message,
            history=tuple(q for q, _ in p.history),
            page_url=page.url if page else "",
            page_title=page.title if page else "",
            known_customer=bool(request.identity and request.identity.known_customer),
            previous=p.previous_stage,
        )

    def _understand(
        self, p: Prepared, signals: StageSignals, vote: StageVote | None, vector: np.ndarray
    ) -> tuple[StageResult, list[Hit], Query, CuratedMatch | None]:
        message = p.request.message
        if self.learning is not None:
            self.learning.refresh()
        curated = self.learning.match(vector) if self.learning is not None else None
        passages = nearest(self.kb, vector)  # what the message is about: the stages of the passages that answer it
        stage = self.detector.detect(replace(signals, passages=passages), vector, vote)
        vocabulary = self.kb.vocabulary()
        asked = vocabulary.normalise(message)
        last_reply = p.history[-1][1] if p.history else ""
        text, topic = resolve(asked, [vocabulary.normalise(q) for q, _ in p.history], last_reply)
        # a follow-up is searched and answered together with the question it leans on; a misspelt one as corrected
        query_vector = vector if text == message else self.vectors.embed_array([text])[0]
        hits = self.kb.search(
            query_vector.tolist(),
            stage=stage.name,
            k=max(self.settings.retrieval_k, COMPOSER_PASSAGES),
            stage_boost=self.settings.stage_boost,
            query_text=text,
        )
        return stage, hits, Query(text=text, asked=asked, vector=query_vector, topic=topic), curated

    def _wants_vote(self, p: Prepared, stage: StageResult, hits: list[Hit], curated: CuratedMatch | None) -> bool:
        """Ask the LLM for a stage vote only when the detector is unsure and the LLM will answer the turn itself:
        never for small talk, a curated answer or a decline (no passage relevant enough)."""
        if self.stage_llm is None or self.llm is None or curated is not None or is_small_talk(p.request.message):
            return False
        return wants_vote(stage, self.settings.llm_stage_below) and bool(self._relevant(hits))

    async def _vote(self, signals: StageSignals) -> StageVote | None:
        answer = await self.stage_llm.classify(signals)
        if answer is None:
            return None
        return as_vote(answer, self.journey.names, self.settings.llm_stage_weight)

    def _offline(self, p: Prepared, stage: StageResult, hits: list[Hit], query: Query) -> OfflineReply:
        """The offline reply: small talk, a composed answer, or an honest decline (the last value)."""
        message = p.request.message
        company = self.settings.company_name
        if _SMALL_TALK.match(message):
            text = (
                f"Hi! I'm the {company} guide. Ask me anything about "
                f"{company}: what it does, plans and pricing, setting up, or getting help."
            )
            if re.search(r"thank|cheers|bye", message, re.IGNORECASE):
                text = "You're welcome! Is there anything else I can help you with?"
            return OfflineReply(text=text, cited=[], declined=False)
        question = read_question(query.text)
        own_kind = classify(query.asked)
        if own_kind not in {"what", question.kind}:  # "and how long does that take?": the kind is the message's own
            question = replace(question, kind=own_kind)
        vocabulary = self.kb.vocabulary()
        reply = offline_reply(
            question=question,
            asked=query.asked,
            question_vector=query.vector,
            hits=hits,
            nearest=self._nearest_words,
            unit_vectors=self._unit_vectors,
            vocabulary=vocabulary,
            passages_of=self.kb.passages_of,
            company=company,
            tone=Tone(
                stage=stage.name,
                next_step=self.journey.get(stage.name).next_step,
                uncertain=bool(getattr(stage, "uncertain", False)),
                upset=frustrated(message),
                earlier_replies=[r for _, r in p.history],
            ),
            known_links=set(vocabulary.links),
        )
        return reply

    def _nearest_words(self, words: list[str]) -> list[float]:
        """For each word, the similarity of the knowledge base's word closest to it in meaning."""
        vocabulary = self.kb.vocabulary()
        owner, table = self._word_similarity
        if owner is not vocabulary or len(table) > WORD_CACHE:  # a new ingestion brings new words
            table = {}
            self._word_similarity = (vocabulary, table)
        found = {w: table[w] for w in words if w in table}
        missing = [w for w in dict.fromkeys(words) if w not in found]
        if missing:
            cache = self.settings.data_dir / "cache"
            for word, vector in zip(missing, self.vectors.embed_array(missing), strict=True):
                similar = vocabulary.nearest(vector, self.vectors.embed_array, cache, self.kb.embeddings.name)[1]
                found[word] = table[word] = similar
        return [found[w] for w in words]

    @staticmethod
    def _took(state: TurnState, reply: OfflineReply) -> str:
        """Keep an offline reply's sources, whether it declined and why in the turn's state; return its text."""
        state.reply, state.declined = reply.text, reply.declined
        state.hits, state.sources = reply.cited, [_source(h) for h in reply.cited]
        if reply.evidence is not None:  # why it answered or declined: for staff, and for fitting the decline model
            state.data = {
                **(state.data or {}),
                "answerability": {**reply.evidence.as_dict(), "declined": reply.declined},
            }
        return reply.text

    def _unit_vectors(self, probes: list[str]) -> np.ndarray:
        """Vectors of the composer's units: computed at ingestion (app/kb/store.py), else embedded now and cached."""
        known = self.kb.unit_vectors()
        missing = list(dict.fromkeys(t for t in probes if t not in known))
        fresh = dict(zip(missing, self.vectors.embed_array(missing), strict=True)) if missing else {}
        return np.vstack([known[t] if t in known else fresh[t] for t in probes])

    def _relevant(self, hits: list[Hit]) -> list[Hit]:
        """The passages an LLM answers from: the best JOURNEY_RETRIEVAL_K above the minimum similarity."""
        return [h for h in hits if h.similarity >= self.settings.retrieval_min_score][: self.settings.retrieval_k]

    def _suggestions(self, p: Prepared, stage: StageResult, hits: list[Hit]) -> list[str]:
        names = self.journey.names
        index = names.index(stage.name)
        candidates = candidate_questions(
            catalog=self.kb.catalog(),
            hits=hits,
            stage=stage.name,
            following_stage=names[index + 1] if index + 1 < len(names) else None,
        )
        return pick_suggestions(
            candidates=candidates,
            asked=[p.request.message] + [q for q, _ in p.history],
            embed=self.vectors.embed_array,
        )

    def _prompt(self, p: Prepared, stage: StageResult, hits: list[Hit]) -> list[dict[str, str]]:
        folder = self.settings.prompts_dir
        info = self.journey.get(stage.name)
        system = render(folder, "system", company=self.settings.company_name, no_answer=NO_ANSWER)
        question = neutralise(p.request.message)
        who, how = stage_prompt(
            label=info.label,
            description=info.description,
            guidance=self.guidance.get(stage.name, ""),
            next_step=info.next_step,
            uncertain=bool(getattr(stage, "uncertain", False)),
        )
        prompt = render(
            folder,
            "answer",
            stage=who,
            guidance=how,
            stage_label=info.label,  # for templates written before {stage} and {guidance}
            stage_description=info.description,
            next_step=info.next_step,
            documents=format_docs(hits),
            question=question,
            no_answer=NO_ANSWER,
        )
        history = [(question, strip_citations(reply)) for question, reply in p.history[-4:]]
        return LLMAnswerer.messages(system, history, prompt)

    async def run(self, p: Prepared, state: TurnState) -> AsyncIterator[Event]:
        """Yield stage, sources, token..., done; the touchpoint is committed before done."""
        if self.live is not None and (human := await self.live.human_turn(p, state)) is not None:
            for name, data in human:  # a staff member holds the conversation: the bot stays silent
                yield name, data
            return
        signals = self._signals(p)
        # embedded together with the messages of other turns arriving now; cached for the suggestions
        vector = await self.batcher.embed(p.request.message)
        stage, hits, query, curated = await to_thread.run_sync(self._understand, p, signals, None, vector)
        if self._wants_vote(p, stage, hits, curated) and (vote := await self._vote(signals)) is not None:
            stage, hits, query, curated = await to_thread.run_sync(self._understand, p, signals, vote, vector)
        state.stage = stage
        state.top_similarity = hits[0].similarity if hits else None
        yield "stage", visitor_stage(stage.as_dict())
        relevant = self._relevant(hits)
        use_llm = self.llm is not None and relevant and not _SMALL_TALK.match(p.request.message)
        outcome = "ok"
        if curated is not None:
            state.mode, state.model = "curated", CURATED_MODEL
            state.data = {
                "curated_answer_id": curated.id,
                "curated_question": curated.question,
                "similarity": round(curated.similarity, 3),
            }
            yield "sources", {"sources": []}
            for token in pieces(curated.answer):
                state.reply += token
                yield "token", {"text": token}
            state.reply = curated.answer
        elif use_llm:
            state.hits = relevant
            state.sources = [_source(group[0]) for group in by_document(relevant)]
            state.mode, state.model = "llm", self.llm.model
            streamed = False  # the sources and the first tokens wait until the reply cannot be NO_ANSWER
            try:
                messages = self._prompt(p, stage, relevant)
                async with aclosing(self.llm.stream(messages)) as stream:
                    async for piece in stream:
                        state.reply += piece
                        if streamed:
                            yield "token", {"text": piece}
                        elif is_no_answer(state.reply):
                            break  # the rest is not shown either
                        elif not may_be_no_answer(state.reply):
                            streamed = True
                            yield "sources", {"sources": state.sources}
                            yield "token", {"text": state.reply}
                if not state.reply.strip():
                    raise LLMFailure("llm_error", "the LLM returned an empty answer")
                if is_no_answer(state.reply):
                    state.declined, state.hits, state.sources = True, [], []
                    state.data = {**(state.data or {}), "llm_declined": True}
                    state.reply = decline_text(self.settings.company_name, frustrated(p.request.message))
                    yield "sources", {"sources": []}
                    for token in pieces(state.reply):
                        yield "token", {"text": token}
                else:
                    if not streamed:  # a reply shorter than the marker, e.g. "No."
                        streamed = True
                        yield "sources", {"sources": state.sources}
                        yield "token", {"text": state.reply}
                    if leaks_prompt(state.reply, messages[0]["content"]):
                        raise LLMFailure("llm_unsafe", "the reply repeated the system prompt")
                    state.reply = sanitize_reply(state.reply, self.link_hosts())
            except LLMFailure as failure:
                outcome, state.error = failure.outcome, failure.detail
                reply = await to_thread.run_sync(self._offline, p, stage, hits, query)
                text = self._took(state, reply)
                state.mode, state.model = "offline", OFFLINE_MODEL
                if not streamed:
                    yield "sources", {"sources": state.sources}
                    for token in pieces(text):
                        yield "token", {"text": token}
        else:
            text = self._took(state, await to_thread.run_sync(self._offline, p, stage, hits, query))
            state.reply = ""
            yield "sources", {"sources": state.sources}
            for token in pieces(text):
                state.reply += token
                yield "token", {"text": token}
            state.reply = text
        payload = await self.record(p, state, outcome=outcome)
        if self.live is not None:  # publish to a waiting staff member, or ask for one (docs/live-handoff.md)
            payload = await self.live.after_turn(p, payload, is_small_talk)
        yield "done", payload

    def link_hosts(self) -> set[str]:
        """Sites LLM replies may link to: the knowledge base's own and JOURNEY_LINK_HOSTS."""
        hosts = {h.strip().lower() for h in self.settings.link_hosts.split(",") if h.strip()}
        for entry in self.kb.catalog().values():
            host = urlparse(entry.url).hostname
            if host:
                labels = host.lower().split(".")
                keep = 3 if len(labels) > 2 and len(labels[-2]) <= 3 else 2
                hosts.add(".".join(labels[-keep:]))
        return hosts

    def _handoff(self, stage: StageResult | None, state: TurnState) -> dict:
        if state.declined or (not state.sources and state.reply and not state.error and state.mode != "curated"):
            return {"suggested": True, "reason": "no_answer"}
        if stage is not None and stage.name == "support":
            return {"suggested": True, "reason": "support"}
        return {"suggested": False, "reason": None}

    def _store(self, p: Prepared, state: TurnState, outcome: str) -> dict:
        stage = state.stage.as_dict() if state.stage else {}
        suggestions = (
            self._suggestions(p, state.stage, state.hits or [])
            if state.stage and outcome != "client_disconnected"
            else []
        )
        latency_ms = int((time.perf_counter() - p.started) * 1000)
        request = p.request
        scrub = redact if self.settings.redact_pii else (lambda text: text)
        page = request.page.as_record() if request.page else None
        if page and self.settings.redact_pii:
            page = {**page, "url": scrub(page["url"]), "referrer": scrub(page["referrer"])}
        record = ExchangeRecord(
            id=p.message_id,
            conversation_id=p.conversation_id,
            visitor_id=p.visitor_id,
            question=scrub(request.message),
            reply=scrub(state.reply),
            stage=stage,
            sources=state.sources,
            suggestions=suggestions,
            page=page,
            identity=request.identity.model_dump(exclude_none=True, exclude={"signature"})
            if request.identity
            else None,
            retrieval_score=state.top_similarity,
            mode=state.mode,
            model=state.model,
            latency_ms=latency_ms,
            outcome=outcome,
            error=state.error,
            data=state.data,
        )
        try:
            with self._writing, self.sessions() as session:
                record_exchange(session=session, record=record)
        except DATABASE_DOWN:  # kept in the fsync'd spool, written when the database is back; the visitor is answered
            self.spool.append(record)
        state.recorded = True
        self.turns_recorded += 1
        return {
            "conversation_id": p.conversation_id,
            "visitor_id": p.visitor_id,
            "message_id": p.message_id,
            "reply": state.reply,
            "stage": visitor_stage(stage),
            "sources": state.sources,
            "suggestions": suggestions,
            "handoff": self._handoff(state.stage, state),
            "mode": state.mode,
            "model": state.model,
            "outcome": outcome,
            "latency_ms": latency_ms,
        }

    async def record(self, p: Prepared, state: TurnState, *, outcome: str) -> dict:
        """Commit the touchpoint (shielded from cancellation) and return the public reply object."""
        with anyio.CancelScope(shield=True):
            return await to_thread.run_sync(self._store, p, state, outcome)

    async def answer(self, prepared: Prepared) -> dict:
        """Run a whole turn and return the done object (the non-streaming API)."""
        state = TurnState()
        payload: dict = {}
        self.open_turns += 1
        try:
            async for name, data in self.run(prepared, state):
                if name == "done":
                    payload = data
        except BaseException as exc:
            if not state.recorded:  # every accepted turn leaves its touchpoint, a failed one too
                if isinstance(exc, Exception):
                    state.error = f"{type(exc).__name__}: {exc}"[:500]
                    await self.record(prepared, state, outcome="server_error")
                else:  # cancelled: the server stopped mid-turn
                    await self.record(prepared, state, outcome="shutdown")
            raise
        finally:
            self.open_turns -= 1
        return payload

    async def drain(self, seconds: float) -> int:
        """Wait (at most `seconds`) until no turn is being answered or recorded; return how many still are."""
        with anyio.move_on_after(seconds):
            while self.open_turns:
                await anyio.sleep(0.05)
        return self.open_turns
