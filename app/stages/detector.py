"""Stage detection: which journey stage a visitor's message puts them in, with confidence and evidence.

The offline detector is an ensemble fitted at start-up on the labelled examples of stages.yaml: the nearest
labelled examples and a linear classifier over local embeddings, and a word/bigram naive Bayes, in fixed
proportions chosen on the development sets, with one temperature fitted on their out-of-fold predictions so the
confidence is a probability. Then what the message is about (the stages of the knowledge passages that answer it),
the page rule, whether the visitor is a customer (the host page says so, or the conversation is already past the
purchase), a short follow-up read together with the previous message, and hysteresis towards the conversation's
stage. A turn it is unsure of is flagged and keeps the conversation's stage.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from app.stages.calibration import fit_temperature
from app.stages.config import JourneyConfig
from app.stages.evidence import LEARNED, nearest_examples
from app.stages.lexical import NaiveBayes
from app.stages.linear import SoftmaxRegression
from app.stages.passages import PassageSignal, passage_logits

TOP_K = 3
FOLDS = 5
# The ensemble's proportions, chosen on evals/stages_dev.jsonl and evals/stages_real_dev.jsonl (docs/stages.md):
KNN_WEIGHT = 30.0  # times the mean similarity of the 3 nearest examples of each stage
LINEAR_WEIGHT = 1.0  # times the softmax regression's logits
NB_WEIGHT = 0.5  # times the naive Bayes log posterior (surface words: more of it hurt real customers' language)
LINEAR_L2 = 1e-4
UNSURE_BELOW = 0.5  # a stage less probable than this is uncertain: the conversation keeps its stage
STICKINESS = 1.0  # logits added to the conversation's current stage
KNOWN_CUSTOMER_PENALTY = 1.0  # logits taken from before-purchase stages when the host says "customer"
FOLLOW_UP_WORDS = 6  # messages this short, and unsure on their own, are read with the previous one
CONTEXT_BELOW = 0.6
VAGUE_SIMILARITY = 0.30  # below this no labelled example is close: vague, unless the ensemble is sure all the same
CORRECTION_SIMILARITY = 0.9  # a message this close to a staff-corrected one takes the corrected stage
CORRECTION_BONUS = 6.0
FIT_VERSION = 1  # bump when the fitting changes in a way the constants in the cache key do not show


@dataclass(frozen=True)
class StageSignals:
    """Everything the detector may look at for one visitor turn."""

    message: str
    history: tuple[str, ...] = ()
    page_url: str = ""
    page_title: str = ""
    known_customer: bool = False
    previous: str | None = None
    passages: tuple[PassageSignal, ...] = ()  # the knowledge passages nearest to the message


@dataclass
class StageResult:
    """The stage of a turn, its confidence, every stage's probability, readable evidence and whether it is unsure."""

    name: str
    confidence: float
    scores: dict[str, float]
    evidence: list[dict] = field(default_factory=list)
    previous: str | None = None
    uncertain: bool = False

    @property
    def changed(self) -> bool:
        """True when this turn moved the conversation to another stage."""
        return self.previous is not None and self.previous != self.name

    def as_dict(self) -> dict:
        """The stored shape {name, confidence, evidence, scores, previous, uncertain}, all evidence included (visitors
        get app.stages.evidence.visitor_stage of it)."""
        return {
            "name": self.name,
            "confidence": round(self.confidence, 3),
            "evidence": self.evidence,
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
            "previous": self.previous,
            "uncertain": self.uncertain,
        }


@dataclass(frozen=True)
class StageVote:
    """An outside opinion (the LLM's) as logits to add, with the evidence to show for it."""

    logits: np.ndarray
    evidence: dict


class StageDetector(Protocol):
    """Anything that turns signals into a StageResult."""

    def detect(
        self, signals: StageSignals, vector: np.ndarray | None = None, vote: StageVote | None = None
    ) -> StageResult:
        """Classify one visitor turn (vector: the message's embedding, if already computed)."""
        ...


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass
class _Fit:
    """Everything derived from the labelled examples."""

    texts: list[str]
    labels: np.ndarray
    vectors: np.ndarray
    class_index: list[np.ndarray]
    neutral: np.ndarray
    bayes: NaiveBayes
    linear: SoftmaxRegression
    temperature: float
    oof_accuracy: float
    oof_nll: float
    learned: list[tuple[str, int]] = field(default_factory=list)
    learned_vectors: np.ndarray | None = None


class EnsembleStageDetector:
    """Nearest examples, a linear model and naive Bayes, calibrated out of fold; with passages, page and context."""

    def __init__(self, journey: JourneyConfig, embeddings, *, cache_dir: Path | None = None) -> None:
        self.journey = journey
        self.names = journey.names
        self.embeddings = embeddings
        self.cache_dir = cache_dir
        self._extra: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._fit = self._build()

    # -- fitting ---------------------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts, reusing a cache file keyed by the model and the texts."""
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        if self.cache_dir is None:
            return self.embeddings.embed_array(texts)
        key = hashlib.sha256("\n".join([self.embeddings.name, *texts]).encode()).hexdigest()[:24]
        path = self.cache_dir / f"stage-vectors-{key}.npy"
        if path.is_file():
            return np.load(path)
        vectors = self.embeddings.embed_array(texts)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return vectors

    def _knn(self, sims: np.ndarray, class_index: list[np.ndarray]) -> np.ndarray:
        """Per class, the mean of the TOP_K highest similarities (sims: (n, examples) or (examples,))."""
        sims = np.atleast_2d(sims)
        out = np.empty((sims.shape[0], len(class_index)))
        for c, idx in enumerate(class_index):
            block = sims[:, idx]
            k = min(TOP_K, block.shape[1])
            out[:, c] = np.sort(np.partition(block, block.shape[1] - k, axis=1)[:, -k:], axis=1).mean(axis=1)
        return out

    def _build(self) -> _Fit:
        configured = [(text, i) for i, stage in enumerate(self.journey.stages) for text in stage.examples]
        learned = [(text, self.names.index(stage)) for text, stage in self._extra]
        learned_vectors = self.embeddings.embed_array([t for t, _ in learned]) if learned else None
        texts = [t for t, _ in configured + learned]
        labels = np.array([label for _, label in configured + learned])
        vectors = self._embed([t for t, _ in configured])  # cached on disk: the configured examples only
        if learned_vectors is not None:
            vectors = np.vstack([vectors, learned_vectors])
        class_index = [np.flatnonzero(labels == c) for c in range(len(self.names))]
        n_classes = len(self.names)
        oof, linear = self._fitted_models(texts, labels, vectors, class_index, cache=not learned)
        temperature, nll = fit_temperature(oof, labels)
        neutral = self._embed(list(self.journey.neutral)) if self.journey.neutral else np.zeros((0, vectors.shape[1]))
        return _Fit(
            texts=texts,
            labels=labels,
            vectors=vectors,
            class_index=class_index,
            neutral=neutral,
            bayes=NaiveBayes(n_classes).fit(texts, labels.tolist()),
            linear=linear,
            temperature=temperature,
            oof_accuracy=float((oof.argmax(axis=1) == labels).mean()),
            oof_nll=nll,
            learned=learned,
            learned_vectors=learned_vectors,
        )

    def _fitted_models(
        self, texts: list[str], labels: np.ndarray, vectors: np.ndarray, class_index: list[np.ndarray], *, cache: bool
    ) -> tuple[np.ndarray, SoftmaxRegression]:
        """The out-of-fold ensemble logits and the linear model on all examples: about two seconds of CPU, so
        kept in the cache directory (keyed by everything they depend on) for the configured examples."""
        n_classes = len(self.names)
        path = None
        if cache and self.cache_dir is not None:
            settings = (FIT_VERSION, n_classes, FOLDS, TOP_K, KNN_WEIGHT, LINEAR_WEIGHT, NB_WEIGHT, LINEAR_L2)
            key = hashlib.sha256(
                repr((settings, texts)).encode()
                + labels.tobytes()
                + np.ascontiguousarray(vectors).tobytes()
            ).hexdigest()[:24]
            path = self.cache_dir / f"stage-fit-{key}.npz"
            if path.is_file():
                with np.load(path) as stored:
                    linear = SoftmaxRegression(n_classes, l2=LINEAR_L2)
                    linear.weights, linear.bias = stored["weights"], stored["bias"]
                    return stored["oof"], linear
        oof = np.zeros((len(texts), n_classes))
        folds = np.arange(len(texts)) % FOLDS
        for fold in range(FOLDS):
            train = folds != fold
            held = np.flatnonzero(~train)
            train_index = [idx[train[idx]] for idx in class_index]
            bayes = NaiveBayes(n_classes).fit([texts[i] for i in np.flatnonzero(train)], labels[train].tolist())
            fold_linear = SoftmaxRegression(n_classes, l2=LINEAR_L2).fit(vectors[train], labels[train])
            oof[held] = (
                KNN_WEIGHT * self._knn(vectors[held] @ vectors.T, train_index)
                + LINEAR_WEIGHT * fold_linear.logits(vectors[held])
                + NB_WEIGHT * np.array([bayes.log_posterior(texts[i]) for i in held])
            )
        linear = SoftmaxRegression(n_classes, l2=LINEAR_L2).fit(vectors, labels)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, oof=oof, weights=linear.weights, bias=linear.bias)
            tmp.replace(path)
        return oof, linear

    def set_learned(self, pairs: list[tuple[str, str]]) -> None:
        """Train on the configured examples plus these (staff corrections), without a restart."""
        with self._lock:
            self._extra = [(text, stage) for text, stage in pairs if stage in self.names]
            self._fit = self._build()

    @property
    def fitted(self) -> dict:
        """How the ensemble was fitted: weights, temperature and out-of-fold figures on the labelled examples."""
        fit = self._fit
        return {
            "examples": len(fit.texts),
            "knn_weight": KNN_WEIGHT,
            "linear_weight": LINEAR_WEIGHT,
            "nb_weight": NB_WEIGHT,
            "temperature": round(fit.temperature, 4),
            "oof_accuracy": round(fit.oof_accuracy, 4),
            "oof_nll": round(fit.oof_nll, 4),
        }

    # -- detection -------------------------------------------------------------------------------

    def _message_logits(self, fit: _Fit, vector: np.ndarray, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The message's calibrated logits (log-probabilities up to a constant) and its similarity to each example."""
        sims = fit.vectors @ vector
        logits = (
            KNN_WEIGHT * self._knn(sims, fit.class_index)[0]
            + LINEAR_WEIGHT * fit.linear.logits(vector)[0]
            + NB_WEIGHT * fit.bayes.log_posterior(text)
        )
        return logits / fit.temperature, sims

    def detect(
        self, signals: StageSignals, vector: np.ndarray | None = None, vote: StageVote | None = None
    ) -> StageResult:
        """Classify the last message in its context."""
        fit = self._fit
        names = self.names
        if vector is None:
            vector = self.embeddings.embed_array([signals.message])[0]
        logits, sims = self._message_logits(fit, vector, signals.message)
        evidence: list[dict] = []
        best_similarity = float(sims.max())
        neutral_similarity = float((fit.neutral @ vector).max()) if len(fit.neutral) else -1.0
        alone = float(_softmax(logits).max())  # how sure the message alone makes the ensemble
        small_talk = neutral_similarity >= best_similarity
        # far from every example is vague only if the ensemble is unsure too: a clear message in the words of a
        # business the examples do not cover ("the motor cuts out going uphill") is far from all of them
        vague = small_talk or (best_similarity < VAGUE_SIMILARITY and alone < UNSURE_BELOW)
        words = len(signals.message.split())
        unsure = alone < CONTEXT_BELOW
        if signals.history and words <= FOLLOW_UP_WORDS and unsure:
            joined = f"{signals.history[-1]} {signals.message}"
            context_vector = self.embeddings.embed_array([joined])[0]
            context_logits, _ = self._message_logits(fit, context_vector, joined)
            logits = (logits + context_logits) / 2
            evidence.append(
                {"type": "context", "detail": "a short, unclear follow-up, read together with the previous message"}
            )
        if signals.passages:
            lent, passage_evidence = passage_logits(signals.passages, names)
            logits = logits + lent
            evidence.extend(passage_evidence)
        page_stage = None
        for rule in self.journey.page_rules:
            if rule.matches(signals.page_url, signals.page_title):
                page_stage = names.index(rule.stage)
                logits[page_stage] += rule.weight
                evidence.append(
                    {
                        "type": "page_rule",
                        "pattern": rule.pattern,
                        "stage": rule.stage,
                        "detail": f"the visitor is on a page matching {rule.pattern!r}",
                    }
                )
                break
        previous = signals.previous if signals.previous in names else None
        # a conversation already in a stage after the purchase (onboarding, support...) says the visitor is a customer
        # as surely as the host page does
        customer_so_far = previous is not None and not self.journey.get(previous).before_purchase
        if signals.known_customer or customer_so_far:
            for i, stage in enumerate(self.journey.stages):
                if stage.before_purchase:
                    logits[i] -= KNOWN_CUSTOMER_PENALTY
            detail = (
                "the host page says the visitor is a customer"
                if signals.known_customer
                else f"the conversation is past the purchase ({previous})"
            )
            evidence.append({"type": "known_customer", "detail": detail})
        if vote is not None:
            logits = logits + vote.logits
            evidence.append(vote.evidence)
        if fit.learned_vectors is not None:
            learned_sims = fit.learned_vectors @ vector
            nearest_learned = int(np.argmax(learned_sims))
            if learned_sims[nearest_learned] >= CORRECTION_SIMILARITY:
                text, label = fit.learned[nearest_learned]
                logits[label] += CORRECTION_BONUS
                vague = False
                evidence.append(
                    {
                        "type": "correction",
                        "stage": names[label],
                        "text": text,
                        "similarity": round(float(learned_sims[nearest_learned]), 3),
                        "detail": "staff corrected a message like this one",
                        LEARNED: True,
                    }
                )
        if previous is not None:
            logits[names.index(previous)] += STICKINESS
        probs = _softmax(logits)
        chosen = int(np.argmax(probs))
        uncertain = vague or float(probs[chosen]) < UNSURE_BELOW
        if uncertain and not vague and previous is not None:
            guess, chosen = names[chosen], names.index(previous)
            detail = f"unsure of {guess}" if guess != previous else "the message alone is not clear"
            evidence.append({"type": "kept_previous", "stage": previous, "detail": f"kept the stage: {detail}"})
        elif uncertain and not vague:
            evidence.append({"type": "uncertain", "detail": "no stage is likely enough to be sure of"})
        elif vague and previous is not None:
            chosen = names.index(previous)
            detail = "small talk" if small_talk else "no labelled example is close"
            evidence.append({"type": "kept_previous", "stage": previous, "detail": f"kept the stage: {detail}"})
        elif vague:
            chosen = page_stage if page_stage is not None else 0
            source = "the page rule" if page_stage is not None else "the first stage of the journey"
            evidence.append({"type": "vague", "detail": f"nothing stage-specific in the message; using {source}"})
        elif previous is not None and names[chosen] != previous:
            evidence.append({"type": "transition", "detail": f"moved from {previous} to {names[chosen]}"})
        confidence = float(probs[chosen])
        if vague and previous is None:
            confidence = min(confidence, 0.5)
        examples = nearest_examples(
            texts=fit.texts,
            sims=sims,
            indices=fit.class_index[chosen],
            configured=len(fit.texts) - len(fit.learned),
            stage=names[chosen],
            k=TOP_K,
        )
        telling = fit.bayes.telling_words(signals.message, chosen)
        if telling:
            examples.append({"type": "words", "stage": names[chosen], "words": telling})
        return StageResult(
            name=names[chosen],
            confidence=confidence,
            scores={n: float(p) for n, p in zip(names, probs, strict=True)},
            evidence=examples + evidence,
            previous=previous,
            uncertain=uncertain,
        )
